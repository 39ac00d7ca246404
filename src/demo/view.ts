/**
 * The demo's live view: pure functions from snapshots (each agent's /status and a few /metrics
 * values, the witness's /status, plus whether the processes still run) to text. A terminal gets the whole view redrawn
 * a few times a second (renderView); anything else gets one line per change (viewChanges), which
 * reads well in a log or a CI transcript.
 */
import type { AgentStatus } from '../agent.js';
import type { FailoverOutage } from './outage.js';
import { DEMO_HOSTS, DEMO_WITNESS_HOST, type DemoArbiter, type DemoSide } from './plan.js';

/** The /metrics values the view shows. */
export interface DemoMetrics {
  /** colo_agent_checkpoints_total. */
  checkpoints?: number;
  /** colo_agent_colo_starts_total. */
  coloStarts?: number;
  /** colo_agent_peer_outage_seconds: how long the peer has been down now (0 while up): shown in PEER. */
  peerOutageSeconds?: number;
}

export interface SideSnapshot {
  side: DemoSide;
  agentPid: number;
  agentAlive: boolean;
  /** How the agent ended, e.g. "SIGKILL", when it no longer runs. */
  agentExit?: string;
  qemuPid: number;
  qemuAlive: boolean;
  /** The agent's /status, undefined when it could not be asked. */
  status?: AgentStatus;
  metrics?: DemoMetrics;
  /** The guest's outage in this side's last failover (src/demo/outage.ts), once one ended. */
  outage?: FailoverOutage;
}

/** The witness's /status as it serves it (JSON: it runs no QEMU and has no peer). */
export interface WitnessStatus {
  node: string;
  role: 'witness';
  /** 'witness' while it arbitrates; 'starting' / 'stopped' around that. */
  state: string;
  epoch: number;
  /** The node that may run the guest at this epoch. */
  holder?: string;
  /** The holder's lease left at the witness (lease + guard from its last renewal). */
  leaseRemainingMs?: number;
  /** Nodes whose request for the next epoch waits for a decision. */
  pending: string[];
  /** Its connections from the agents; state is the connection's (established, connecting, ...). */
  links: { link: string; peer?: string; state: string; rttMs?: number }[];
}

export interface WitnessSnapshot {
  pid: number;
  alive: boolean;
  /** How it ended, e.g. "SIGKILL", when it no longer runs. */
  exit?: string;
  /** HOST:PORT the agents dial (their arbiter.witness). */
  listen: string;
  /** Its /status, undefined when it could not be asked. */
  status?: WitnessStatus;
}

export interface DemoSnapshot {
  /** Date.now() when taken. */
  at: number;
  /** Date.now() when the pair was up. */
  since: number;
  qemuVersion: string;
  checkpointDelayMs: number;
  /** The agents' arbiter.mode. Absent: none. */
  arbiter?: DemoArbiter;
  sides: SideSnapshot[];
  witness?: WitnessSnapshot;
}

/** Sums of the samples of each wanted metric in a Prometheus text exposition (labels ignored). */
export function parseMetricSums(text: string, names: readonly string[]): Record<string, number> {
  const wanted = new Set(names);
  const sums: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !wanted.has(m[1] as string)) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) sums[m[1] as string] = (sums[m[1] as string] ?? 0) + v;
  }
  return sums;
}

export const VIEW_METRICS = ['colo_agent_checkpoints_total', 'colo_agent_colo_starts_total', 'colo_agent_peer_outage_seconds'] as const;

export function demoMetricsFrom(text: string): DemoMetrics {
  const s = parseMetricSums(text, VIEW_METRICS);
  return { checkpoints: s.colo_agent_checkpoints_total, coloStarts: s.colo_agent_colo_starts_total, peerOutageSeconds: s.colo_agent_peer_outage_seconds };
}

const COLUMNS = ['SIDE', 'NODE', 'ROLE', 'STATE', 'QEMU', 'COLO', 'EPOCH', 'ARBITER LEASE', 'PEER', 'LINK RTT', 'CKPT', 'OUTAGE'] as const;
const WIDTHS = [10, 8, 10, 17, 13, 10, 9, 15, 10, 16, 5, 8];

function pad(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i] ?? 10))).join(' ').trimEnd();
}

function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** QMP's state as the agent sees it, or PAUSED when the agent stopped the guest (lease ran out, stale epoch). */
function qemuCell(s: SideSnapshot): string {
  if (!s.qemuAlive) return 'gone';
  if (s.status?.guestStopped) return `PAUSED:${s.status.guestStopped}`;
  return s.status?.qemu.status ?? '?';
}

/** e.g. "1", or "0 stale:1" when a newer epoch exists (another node holds the guest). */
export function epochCell(st: AgentStatus): string {
  const e = st.epoch;
  if (!e) return '?';
  return e.stale ? `${e.epoch} stale:${e.newestSeen}` : String(e.epoch);
}

/** e.g. "none", "ok 412ms" (the primary's lease left), "ok" (no lease: the secondary), "UNREACHABLE 0ms". */
export function arbiterCell(st: AgentStatus): string {
  const a = st.arbiter;
  if (!a) return '?';
  if (a.mode === 'none') return 'none';
  const lease = a.leaseRemainingMs === undefined ? '' : ` ${Math.round(a.leaseRemainingMs)}ms`;
  return `${a.reachable ? 'ok' : 'UNREACHABLE'}${lease}`;
}

/** e.g. "2/2 up 0.41ms": links up of all (each agent dials one and accepts one per path), best RTT. */
function linksCell(st: AgentStatus): string {
  if (st.links.length === 0) return '-';
  const up = st.links.filter((l) => l.state === 'up');
  const rtts = up.flatMap((l) => (l.rttMs === undefined ? [] : [l.rttMs]));
  const rtt = rtts.length ? ` ${Math.min(...rtts).toFixed(2)}ms` : '';
  if (up.length === st.links.length) return `${up.length}/${st.links.length} up${rtt}`;
  const worst = st.links.find((l) => l.state !== 'up')?.state ?? '?';
  return `${up.length}/${st.links.length} up, ${worst}`;
}

/** e.g. "up", or "down 12s": how long the peer has been declared down (its heartbeats missed). */
function peerCell(st: AgentStatus, m: DemoMetrics | undefined): string {
  const o = m?.peerOutageSeconds;
  return st.peer.state === 'down' && o !== undefined && o > 0 ? `down ${duration(o * 1000)}` : st.peer.state;
}

/**
 * CKPT: the checkpoints of the replication this side runs now. A side out of COLO (solo after a
 * failover, its QEMU gone or not answering) replicates nothing: "n/a", never the count of a
 * replication that has ended (a 0 under it would read as "checkpointing, none yet").
 */
export function checkpointCell(s: SideSnapshot): string {
  const mode = s.status?.qemu.colo.mode;
  if (!s.qemuAlive || (mode !== 'primary' && mode !== 'secondary')) return 'n/a';
  const c = s.metrics?.checkpoints;
  return c === undefined ? '?' : String(c);
}

/**
 * OUTAGE: how long the guest was out in this side's last failover, from the fault to its
 * "failover done" (src/demo/outage.ts says where the fault's time comes from), e.g. "0.62s";
 * "failed" when that failover failed; "-" before any failover on this side.
 */
export function outageCell(o: FailoverOutage | undefined): string {
  if (!o) return '-';
  if (!o.ok) return 'failed';
  const sec = o.ms / 1000;
  return sec < 10 ? `${sec.toFixed(2)}s` : duration(o.ms);
}

/** One table row for a side. */
export function sideRow(s: SideSnapshot): string {
  const st = s.status;
  if (!s.agentAlive || !st) {
    const agent = s.agentAlive ? `agent pid ${s.agentPid}: no /status` : `agent pid ${s.agentPid} gone${s.agentExit ? ` (${s.agentExit})` : ''}`;
    return `${pad([s.side, '-', '-'])}  ${agent}; QEMU pid ${s.qemuPid} ${s.qemuAlive ? 'runs' : 'gone'}`;
  }
  return pad([
    s.side,
    st.node,
    st.role,
    st.state + (st.maintenance?.on ? '*' : ''),
    qemuCell(s),
    st.qemu.colo.mode,
    epochCell(st),
    arbiterCell(st),
    peerCell(st, s.metrics),
    linksCell(st),
    checkpointCell(s),
    outageCell(s.outage),
  ]);
}

/**
 * The witness reports its connections' own states (connecting, hello, confirming, established,
 * closed), not detector states: `established` reads as `up`, like the agents' links.
 */
function witnessLinkState(state: string): string {
  return state === 'established' ? 'up' : state;
}

function witnessLinks(st: WitnessStatus): string {
  if (st.links.length === 0) return 'no agent linked';
  return st.links.map((l) => `${l.peer ?? l.link} ${witnessLinkState(l.state)}${l.rttMs === undefined ? '' : ` ${l.rttMs.toFixed(2)}ms`}`).join(', ');
}

/**
 * The witness's row, e.g.
 * `witness    colo-w   127.0.0.3:7410 epoch 1, holder colo-a (lease 512ms), links colo-a up 0.30ms, colo-b up 0.28ms`.
 */
export function witnessRow(w: WitnessSnapshot): string {
  const head = `${'witness'.padEnd(WIDTHS[0] ?? 10)} `;
  if (!w.alive) return `${head}pid ${w.pid} gone${w.exit ? ` (${w.exit})` : ''}: the agents have no arbiter (no takeover can be granted)`;
  const st = w.status;
  if (!st) return `${head}pid ${w.pid} on ${w.listen}: no /status`;
  const lease = st.holder !== undefined && st.leaseRemainingMs !== undefined ? ` (lease ${Math.round(st.leaseRemainingMs)}ms)` : '';
  const state = st.state === 'witness' ? '' : `state ${st.state}, `;
  const pending = st.pending.length ? `, pending ${st.pending.join(', ')}` : '';
  return `${head}${st.node.padEnd(WIDTHS[1] ?? 8)} ${w.listen} ${state}epoch ${st.epoch}, holder ${st.holder ?? 'none'}${lease}${pending}, links ${witnessLinks(st)}`;
}

/** The whole view, as lines (no trailing newline). */
export function renderView(snap: DemoSnapshot): string[] {
  const hosts = `primary ${DEMO_HOSTS.primary} / secondary ${DEMO_HOSTS.secondary}${snap.witness ? ` / witness ${DEMO_WITNESS_HOST}` : ''}`;
  const lines = [
    `colo-agent demo · QEMU ${snap.qemuVersion} (TCG) · ${hosts} · up ${duration(snap.at - snap.since)} · Ctrl-C stops everything`,
    pad([...COLUMNS]),
    ...snap.sides.map(sideRow),
    ...(snap.witness ? [witnessRow(snap.witness)] : []),
  ];
  if (!snap.witness && (snap.arbiter ?? 'none') === 'none') {
    lines.push('arbiter none: a partition between the sides makes both take over (split brain); the default --arbiter witness prevents it');
  }
  for (const s of snap.sides) {
    const f = s.status?.lastFailover;
    if (f) lines.push(`${s.side}: last failover ${f.sequence} (${f.trigger}) ${f.ok ? 'ok' : 'FAILED'} in ${f.durationMs} ms${f.error ? `: ${f.error}` : ''}`);
    const o = s.outage;
    if (f && o?.ok) lines.push(`${s.side}: guest outage ${o.ms.toFixed(0)} ms until failover done, counted from ${o.fromWhat}`);
  }
  lines.push(
    `CKPT: checkpoints while in COLO (n/a out of it); the idle period is ${Math.round(snap.checkpointDelayMs / 1000)} s (QEMU 7.2 under TCG deadlocks in its first checkpoint)`,
    'OUTAGE: the guest\'s outage in the side\'s last failover, from the fault to failover done',
    'kill -9 a pid printed above, or run `colo-agent demo --drill kill-primary`, to watch a failover',
  );
  return lines;
}

/** What a side looks like for change detection: everything but RTTs and running clocks. */
function signature(s: SideSnapshot): Record<string, string> {
  const st = s.status;
  const sig: Record<string, string> = {
    agent: s.agentAlive ? `pid ${s.agentPid}` : `gone${s.agentExit ? ` (${s.agentExit})` : ''}`,
    // The process; its QMP session as the agent sees it when the agent can be asked.
    qemu: !s.qemuAlive ? 'gone' : s.agentAlive && st ? st.qemu.status : `pid ${s.qemuPid}`,
  };
  if (s.agentAlive && st) {
    sig.node = st.node;
    sig.role = st.role;
    sig.state = st.state;
    sig.colo = st.qemu.colo.mode;
    sig.peer = st.peer.state;
    sig.links = st.links.map((l) => `${l.link} ${l.state}`).join(', ') || '-';
    sig.maintenance = st.maintenance?.on ? 'on' : 'off';
    if (st.epoch) sig.epoch = st.epoch.stale ? `${st.epoch.epoch} stale (epoch ${st.epoch.newestSeen} from ${st.epoch.newestSeenFrom ?? '?'})` : String(st.epoch.epoch);
    if (st.arbiter) sig.arbiter = st.arbiter.mode === 'none' ? 'none' : st.arbiter.reachable ? 'reachable' : 'UNREACHABLE';
    if (st.guestStopped) sig.guest = `PAUSED (${st.guestStopped})`;
    const f = st.lastFailover;
    if (f) sig.failover = `${f.sequence} ${f.ok ? 'ok' : 'FAILED'} in ${f.durationMs} ms`;
    const ckpt = checkpointCell(s);
    if (ckpt !== '?') sig.checkpoints = ckpt;
    if (s.outage) sig.outage = s.outage.ok ? `${s.outage.ms.toFixed(0)} ms, from ${s.outage.fromWhat}` : 'failed';
  }
  return sig;
}

/** The witness for change detection: everything but lease clocks and RTTs. */
function witnessSignature(w: WitnessSnapshot): Record<string, string> {
  const sig: Record<string, string> = { agent: w.alive ? `pid ${w.pid}` : `gone${w.exit ? ` (${w.exit})` : ''}` };
  const st = w.status;
  if (w.alive && st) {
    sig.state = st.state;
    sig.epoch = String(st.epoch);
    sig.holder = st.holder ?? 'none';
    sig.pending = st.pending.join(', ') || '-';
    sig.links = st.links.map((l) => `${l.peer ?? l.link} ${witnessLinkState(l.state)}`).join(', ') || '-';
  }
  return sig;
}

/** An agent that runs but did not answer this time: its state is unknown, not changed. */
function unknown(s: SideSnapshot): boolean {
  return s.agentAlive && s.status === undefined;
}

/**
 * `next`, with each side the agent did not answer for replaced by its last known state in `prev`,
 * so that a missed /status is not printed as a change (and its return not either); the same for
 * the witness.
 */
export function lastKnown(prev: DemoSnapshot | undefined, next: DemoSnapshot): DemoSnapshot {
  if (!prev) return next;
  const sides = next.sides.map((s) => (unknown(s) ? (prev.sides.find((p) => p.side === s.side) ?? s) : s));
  const w = next.witness;
  const witness = w && w.alive && w.status === undefined && prev.witness ? prev.witness : w;
  return { ...next, sides, ...(witness && { witness }) };
}

function diffLine(at: number, name: string, was: Record<string, string> | undefined, now: Record<string, string>): string | undefined {
  if (!was) return `${clock(at)} ${name}: ${Object.entries(now).map(([k, v]) => `${k} ${v}`).join(', ')}`;
  const diffs = Object.keys({ ...was, ...now })
    .filter((k) => was[k] !== now[k])
    .map((k) => `${k} ${was[k] ?? '-'} -> ${now[k] ?? '-'}`);
  return diffs.length > 0 ? `${clock(at)} ${name}: ${diffs.join(', ')}` : undefined;
}

/**
 * One line per side (and the witness) whose state changed since `prev` (each the first time), e.g.
 * `12:00:01.234 secondary: state peer-up -> arbitrating, peer up -> down`.
 */
export function viewChanges(prev: DemoSnapshot | undefined, next: DemoSnapshot): string[] {
  const lines: string[] = [];
  for (const s of next.sides) {
    const before = prev?.sides.find((p) => p.side === s.side);
    const line = diffLine(next.at, s.side, before && signature(before), signature(s));
    if (line) lines.push(line);
  }
  if (next.witness) {
    const line = diffLine(next.at, 'witness', prev?.witness && witnessSignature(prev.witness), witnessSignature(next.witness));
    if (line) lines.push(line);
  }
  return lines;
}
