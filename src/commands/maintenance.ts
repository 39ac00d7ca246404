/**
 * Maintenance mode: an operator suspends automatic failover for planned work.
 *
 * `colo-agent maintenance on|off|status --config FILE [--reason TEXT]` writes or removes a small
 * JSON file `maintenance` in node.stateDir. A file (not an HTTP call) so it works whether or not the
 * agent runs, survives an agent restart, and is one `rm` away for an operator in a hurry. The
 * running agent watches the file; while it exists no automatic takeover STARTS (a manual
 * `requestFailover` still works, and a sequence already running finishes).
 */
import { readFileSync, statSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ColoAgentError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';

export const MAINTENANCE_FILE_NAME = 'maintenance';

export interface MaintenanceInfo {
  reason: string;
  /** ISO time it was turned on. */
  since: string;
  /** The pid of the `colo-agent maintenance on` that wrote it. */
  by: number;
}

export class MaintenanceStateDirError extends ColoAgentError {
  constructor(dir: string, cause?: unknown) {
    super('MAINTENANCE_STATE_DIR', `node.stateDir ${dir} does not exist or is not a directory: is this the node's config?`, { cause });
  }
}

export function maintenancePath(stateDir: string): string {
  return join(stateDir, MAINTENANCE_FILE_NAME);
}

async function requireDir(stateDir: string): Promise<void> {
  try {
    if ((await stat(stateDir)).isDirectory()) return;
  } catch (err) {
    throw new MaintenanceStateDirError(stateDir, err);
  }
  throw new MaintenanceStateDirError(stateDir);
}

/**
 * Turns maintenance on. Already on (two operators, two jobs): it stays on since the first time, and
 * the new reason is added to the old one, never replacing it. Atomic and durable
 * (util/atomic-file), so the agent never reads half a file. `was` is the record before, if any.
 */
export async function maintenanceOn(stateDir: string, reason: string): Promise<{ info: MaintenanceInfo; was?: MaintenanceInfo }> {
  await requireDir(stateDir);
  const was = readMaintenance(stateDir);
  const reasons = [was?.reason ?? '', reason].filter((r, i, all) => r !== '' && all.indexOf(r) === i);
  const info: MaintenanceInfo = { reason: reasons.join('; '), since: was?.since || new Date().toISOString(), by: process.pid };
  await writeFileAtomic(stateDir, MAINTENANCE_FILE_NAME, `${JSON.stringify(info)}\n`, { mode: 0o644 });
  return { info, ...(was && { was }) };
}

/** Turns maintenance off; returns whether it was on. */
export async function maintenanceOff(stateDir: string): Promise<boolean> {
  await requireDir(stateDir);
  const was = readMaintenance(stateDir) !== undefined;
  await rm(maintenancePath(stateDir), { force: true });
  return was;
}

/**
 * The maintenance file's content, or undefined when maintenance is off. Synchronous and cheap (one
 * stat; a read only when the file exists): the agent calls it before every automatic takeover. A
 * file that exists but cannot be parsed still means maintenance is on: the operator's intent is the
 * file's presence, and failing open here would let a failover through.
 */
export function readMaintenance(stateDir: string): MaintenanceInfo | undefined {
  const path = maintenancePath(stateDir);
  try {
    statSync(path);
  } catch {
    return undefined;
  }
  try {
    const raw = JSON.parse(readFileSync(path, 'utf8')) as Partial<MaintenanceInfo>;
    return {
      reason: typeof raw.reason === 'string' ? raw.reason : '',
      since: typeof raw.since === 'string' ? raw.since : '',
      by: typeof raw.by === 'number' ? raw.by : 0,
    };
  } catch {
    return { reason: '(unreadable maintenance file)', since: '', by: 0 };
  }
}

export function formatMaintenance(info: MaintenanceInfo | undefined): string {
  if (!info) return 'maintenance off: automatic failover enabled';
  return `maintenance ON since ${info.since || '?'}${info.reason ? ` (${info.reason})` : ''}: automatic failover suspended`;
}
