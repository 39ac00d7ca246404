/**
 * Taking one snapshot of the demo for the live view: each agent's /status and /metrics (HTTP on
 * its metrics.listen), the witness's /status when there is one, and whether the agent, witness
 * and QEMU processes still run. A process that cannot be asked (killed, stopping) simply has no
 * status in the snapshot.
 */
import { request } from 'node:http';
import { fetchStatus } from '../commands/status.js';
import { parseHostPort } from '../heartbeat/address.js';
import type { ColoPair } from '../qemu/colo-launch.js';
import type { DemoAgent } from './agent-child.js';
import type { FailoverOutages } from './outage.js';
import { DEMO_SIDES, type DemoArbiter, type DemoSide } from './plan.js';
import { demoMetricsFrom, type DemoMetrics, type DemoSnapshot, type SideSnapshot, type WitnessSnapshot, type WitnessStatus } from './view.js';

/** GET a path from HOST:PORT as text; undefined on any failure (the view shows what it has). */
export function fetchText(listen: string, path: string, timeoutMs: number): Promise<string | undefined> {
  const { host, port } = parseHostPort(listen);
  return new Promise((resolve) => {
    const req = request({ host, port, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** The witness's /status (it has no AgentStatus: no QEMU, no peer); undefined on any failure. */
export async function fetchWitnessStatus(listen: string, timeoutMs: number): Promise<WitnessStatus | undefined> {
  const text = await fetchText(listen, '/status', timeoutMs);
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as WitnessStatus;
    return parsed !== null && typeof parsed === 'object' && parsed.role === 'witness' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export interface SnapshotSources {
  pair: ColoPair;
  agents: Readonly<Record<DemoSide, DemoAgent>>;
  metricsListen: Readonly<Record<DemoSide, string>>;
  arbiter: DemoArbiter;
  /** The witness process and its addresses, with `--arbiter witness`. */
  witness?: { agent: DemoAgent; heartbeatListen: string; metricsListen: string };
  /** Date.now() when the pair was up. */
  since: number;
  /** The guest's outage in each side's last failover (watchOutages in outage.ts). */
  outages?: FailoverOutages;
}

async function sideSnapshot(src: SnapshotSources, side: DemoSide, timeoutMs: number): Promise<SideSnapshot> {
  const agent = src.agents[side];
  const qemu = src.pair.side(side);
  const base: SideSnapshot = {
    side,
    agentPid: agent.pid,
    agentAlive: agent.alive,
    ...(agent.exitStatus && { agentExit: agent.exitStatus.signal ?? `exit ${agent.exitStatus.code}` }),
    qemuPid: qemu.pid,
    qemuAlive: qemu.alive(),
  };
  const outage = src.outages?.last(side);
  if (outage) base.outage = outage;
  if (!agent.alive) return base;
  const listen = src.metricsListen[side];
  const [status, text] = await Promise.all([fetchStatus(listen, timeoutMs).catch(() => undefined), fetchText(listen, '/metrics', timeoutMs)]);
  const metrics: DemoMetrics | undefined = text === undefined ? undefined : demoMetricsFrom(text);
  return { ...base, ...(status && { status }), ...(metrics && { metrics }) };
}

async function witnessSnapshot(w: NonNullable<SnapshotSources['witness']>, timeoutMs: number): Promise<WitnessSnapshot> {
  const a = w.agent;
  const base: WitnessSnapshot = {
    pid: a.pid,
    alive: a.alive,
    ...(a.exitStatus && { exit: a.exitStatus.signal ?? `exit ${a.exitStatus.code}` }),
    listen: w.heartbeatListen,
  };
  if (!a.alive) return base;
  const status = await fetchWitnessStatus(w.metricsListen, timeoutMs);
  return { ...base, ...(status && { status }) };
}

export async function takeSnapshot(src: SnapshotSources, timeoutMs = 1000): Promise<DemoSnapshot> {
  const [sides, witness] = await Promise.all([
    Promise.all(DEMO_SIDES.map((side) => sideSnapshot(src, side, timeoutMs))),
    src.witness ? witnessSnapshot(src.witness, timeoutMs) : Promise.resolve(undefined),
  ]);
  const v = src.pair.version;
  return {
    at: Date.now(),
    since: src.since,
    qemuVersion: `${v.major}.${v.minor}.${v.micro}`,
    checkpointDelayMs: src.pair.colo.checkpointDelayMs,
    arbiter: src.arbiter,
    sides,
    ...(witness && { witness }),
  };
}
