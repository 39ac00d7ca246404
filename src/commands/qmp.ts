/**
 * `colo-agent qmp --qmp ADDR COMMAND [JSON-ARGS]`: one QMP command, its reply printed as JSON.
 * The operator's way to poke QEMU, and the test suite's way to script checks.
 */
import { QmpClient } from '../qmp/index.js';
import { ColoAgentError } from '../errors.js';

export class UsageError extends ColoAgentError {
  constructor(message: string) {
    super('CLI_USAGE', message);
  }
}

export function parseJsonArgs(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`arguments must be a JSON object: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UsageError('arguments must be a JSON object, e.g. \'{"device":"colo-disk0"}\'');
  }
  return parsed as Record<string, unknown>;
}

export async function qmpCommand(opts: {
  address: string;
  command: string;
  args?: Record<string, unknown>;
  timeoutMs: number;
  oob: boolean;
}): Promise<unknown> {
  const client = new QmpClient({
    address: opts.address,
    reconnect: false,
    connectTimeoutMs: opts.timeoutMs,
    commandTimeoutMs: opts.timeoutMs,
  });
  try {
    await client.connect();
    return await client.execute(opts.command, opts.args, { oob: opts.oob });
  } finally {
    await client.close();
  }
}
