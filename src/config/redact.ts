/**
 * The effective configuration with sensitive values hidden, for `colo-agent check-config` and logs.
 */
import { schemaLeaves } from './schema.js';
import type { AgentConfig } from './types.js';

export const REDACTED = '[redacted]';

/**
 * A deep copy of `cfg` in which every key marked `sensitive` holds "[redacted]". An empty value stays
 * empty: "no key file configured" is not a secret and matters when reading the output.
 */
export function redactedConfig(cfg: AgentConfig): AgentConfig {
  const copy = structuredClone(cfg);
  for (const { path, spec } of schemaLeaves()) {
    if (!spec.sensitive) continue;
    const keys = path.split('.');
    const last = keys.pop()!;
    const parent = keys.reduce<Record<string, unknown>>((node, k) => node[k] as Record<string, unknown>, copy as unknown as Record<string, unknown>);
    if (parent[last] !== '' && parent[last] !== undefined) parent[last] = REDACTED;
  }
  return copy;
}

/** redactedConfig() as indented JSON with a final newline, ready to print. */
export function redactedConfigJson(cfg: AgentConfig): string {
  return `${JSON.stringify(redactedConfig(cfg), null, 2)}\n`;
}
