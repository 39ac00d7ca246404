/**
 * Helpers for the metrics tests: real agents from a real config, reading metric values out of a
 * registry, waiting for a condition, and plain HTTP requests. Not a test file (tap runs
 * *.test.ts only).
 */
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from '../../src/agent.js';
import { loadConfig, type AgentConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/log.js';
import type { AgentMetrics } from '../../src/metrics/registry.js';
import type { MetricName } from '../../src/metrics/names.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A port that was free a moment ago (two agents must know each other's port before starting). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
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

export interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request on its own connection (no keep-alive pool left behind). */
export function httpRequest(port: number, path: string, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
