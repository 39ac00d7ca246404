/**
 * Helpers for the metrics tests: real agents from a real config, reading metric values out of a
 * registry, waiting for a condition, and plain HTTP requests. Not a test file (tap runs
 * *.test.ts only).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from '../../src/agent.js';
import { loadConfig, type AgentConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/log.js';
import type { AgentMetrics } from '../../src/metrics/registry.js';
import type { MetricName } from '../../src/metrics/names.js';
import { freePort } from '../helpers/free-port.js';

export { freePort };
export { httpRequest, type HttpReply } from '../helpers/http.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface AgentSpec {
  role: 'primary' | 'secondary';
  /** State dir (journal). */
  stateDir: string;
  listen: string;
  peers: string[];
  /** `unix:PATH`; a path nothing listens on means no QEMU. */
  qmp: string;
  sets?: string[];
}

/** The shipped example config for the role, insecure heartbeats at test speed. */
export function agentConfig(spec: AgentSpec): AgentConfig {
  return loadConfig({
    files: [join(ROOT, 'config/examples', `${spec.role}.yaml`)],
    env: {},
    sets: [
      `node.stateDir=${spec.stateDir}`,
      `qemu.qmp=${spec.qmp}`,
      `heartbeat.listen=${spec.listen}`,
      `heartbeat.peers=${spec.peers.join(',')}`,
      'heartbeat.insecure=true',
      'heartbeat.keyFile=',
      'heartbeat.intervalMs=25',
      'heartbeat.missThreshold=12',
      'heartbeat.suspectMisses=6',
      'heartbeat.recoverBeats=2',
      'heartbeat.reconnectInitialMs=20',
      'heartbeat.reconnectMaxMs=200',
      'qemu.reconnectInitialMs=50',
      'qemu.reconnectMaxMs=200',
      'metrics.listen=',
      ...(spec.sets ?? []),
    ],
  });
}

/**
 * agentConfig for `role` with its state and QMP socket in `dir`: heartbeat on a free port, and a
 * peer nobody listens on (the agent waits for its peer, which is all a single-agent test needs).
 */
export async function loneAgentConfig(role: AgentSpec['role'], dir: string): Promise<AgentConfig> {
  return agentConfig({
    role,
    stateDir: join(dir, 'state'),
    listen: `127.0.0.1:${await freePort()}`,
    peers: [`127.0.0.1:${await freePort()}`],
    qmp: `unix:${join(dir, 'none.sock')}`,
  });
}

/** A real Agent (not started), stopped at teardown. */
export function makeAgent(t: Teardown, cfg: AgentConfig): Agent {
  const agent = new Agent(cfg, { logger: silentLogger(), key: undefined });
  t.teardown(() => agent.stop('test teardown'));
  return agent;
}

type Labels = Record<string, string>;

const matches = (have: Record<string, unknown>, want: Labels): boolean => Object.entries(want).every(([k, v]) => have[k] === v);

/**
 * A metric's value for the labels given (a subset; the first series that matches). For a
 * histogram, `part` picks `count` (default) or `sum`. undefined when no series matches.
 */
export async function metricValue(m: AgentMetrics, name: MetricName, labels: Labels = {}, part: 'count' | 'sum' = 'count'): Promise<number | undefined> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { type, values } = await metric.get();
  const series = (values as Array<{ labels: Record<string, unknown>; value: number; metricName?: string }>).filter((v) =>
    String(type) === 'histogram' ? v.metricName === `${name}_${part}` : true,
  );
  return series.find((v) => matches(v.labels, labels))?.value;
}

/** The sum over every series of a counter or gauge (or every histogram count). */
export async function metricTotal(m: AgentMetrics, name: MetricName): Promise<number> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { type, values } = await metric.get();
  return (values as Array<{ value: number; metricName?: string }>)
    .filter((v) => String(type) !== 'histogram' || v.metricName === `${name}_count`)
    .reduce((a, v) => a + v.value, 0);
}

/** Polls `cond` until it is true; rejects naming `what` after timeoutMs. */
export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
