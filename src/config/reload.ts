/**
 * Comparing two effective configurations key by key, for a reload (SIGHUP): which keys changed,
 * and a copy of the running config with only some of them taken from the new one.
 *
 * Which keys a running agent can apply is the agent's business (Agent.reload); this module only
 * knows the schema's keys, so that a key added to the schema is compared without anyone listing it.
 */
import { isDeepStrictEqual } from 'node:util';
import { schemaLeaves } from './schema.js';
import type { AgentConfig } from './types.js';

function getPath(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], obj);
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  const last = keys.pop() as string;
  let node = obj;
  for (const key of keys) node = node[key] as Record<string, unknown>;
  node[last] = value;
}

/** The dotted keys ("heartbeat.intervalMs") whose values differ, in schema order. */
export function changedConfigKeys(from: AgentConfig, to: AgentConfig): string[] {
  return schemaLeaves()
    .map((l) => l.path)
    .filter((path) => !isDeepStrictEqual(getPath(from, path), getPath(to, path)));
}

/** The value of one dotted key. */
export function configValue(cfg: AgentConfig, key: string): unknown {
  return getPath(cfg, key);
}

/** A deep copy of `base` in which each of `keys` has its value from `source`; neither input changes. */
export function withConfigKeys(base: AgentConfig, source: AgentConfig, keys: readonly string[]): AgentConfig {
  const copy = structuredClone(base);
  for (const key of keys) setPath(copy as unknown as Record<string, unknown>, key, structuredClone(getPath(source, key)));
  return copy;
}
