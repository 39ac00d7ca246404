/**
 * The demo's live view: pure functions from snapshots (each agent's /status and a few /metrics
 * values, plus whether its processes still run) to text. A terminal gets the whole view redrawn
 * a few times a second (renderView); anything else gets one line per change (viewChanges), which
 * reads well in a log or a CI transcript.
 */
import type { AgentStatus } from '../agent.js';
import type { DemoSide } from './plan.js';

/** The /metrics values the view shows. */
export interface DemoMetrics {
  /** colo_agent_checkpoints_total. */
  checkpoints?: number;
  /** colo_agent_colo_starts_total. */
  coloStarts?: number;
  /** colo_agent_peer_outage_seconds: how long the peer has been down now (0 while up). */
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
}

export interface DemoSnapshot {
  /** Date.now() when taken. */
  at: number;
  /** Date.now() when the pair was up. */
  since: number;
  qemuVersion: string;
  checkpointDelayMs: number;
  sides: SideSnapshot[];
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

const COLUMNS = ['SIDE', 'NODE', 'ROLE', 'STATE', 'QEMU', 'COLO', 'PEER', 'LINK RTT', 'CKPT', 'OUTAGE'] as const;
const WIDTHS = [10, 8, 10, 17, 13, 10, 8, 16, 5, 8];

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

function qemuCell(s: SideSnapshot): string {
  if (!s.qemuAlive) return 'gone';
  return s.status?.qemu.status ?? '?';
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

function outageCell(m: DemoMetrics | undefined): string {
  const o = m?.peerOutageSeconds;
  return o !== undefined && o > 0 ? `${o < 10 ? o.toFixed(2) : o.toFixed(0)}s` : '-';
}

/** One table row for a side. */
export function sideRow(s: SideSnapshot): string {
  const st = s.status;
  if (!s.agentAlive || !st) {
    const agent = s.agentAlive ? `agent pid ${s.agentPid}: no /status` : `agent pid ${s.agentPid} gone${s.agentExit ? ` (${s.agentExit})` : ''}`;
    return `${pad([s.side, '-', '-'])}  ${agent}; QEMU pid ${s.qemuPid} ${s.qemuAlive ? 'runs' : 'gone'}`;
  }
  const checkpoints = s.metrics?.checkpoints;
  return pad([
    s.side,
    st.node,
    st.role,
    st.state + (st.maintenance?.on ? '*' : ''),
    qemuCell(s),
    st.qemu.colo.mode,
    st.peer.state,
    linksCell(st),
    checkpoints === undefined ? '?' : String(checkpoints),
    outageCell(s.metrics),
  ]);
}

/** The whole view, as lines (no trailing newline). */
export function renderView(snap: DemoSnapshot): string[] {
  const lines = [
    `colo-agent demo · QEMU ${snap.qemuVersion} (TCG) · primary 127.0.0.1 / secondary 127.0.0.2 · up ${duration(snap.at - snap.since)} · Ctrl-C stops everything`,
    pad([...COLUMNS]),
    ...snap.sides.map(sideRow),
  ];
  for (const s of snap.sides) {
    const f = s.status?.lastFailover;
    if (f) lines.push(`${s.side}: last failover ${f.sequence} (${f.trigger}) ${f.ok ? 'ok' : 'FAILED'} in ${f.durationMs} ms${f.error ? `: ${f.error}` : ''}`);
  }
  lines.push(
    `CKPT: checkpoints; the idle period is ${Math.round(snap.checkpointDelayMs / 1000)} s (QEMU 7.2 under TCG deadlocks in its first checkpoint)`,
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
    const f = st.lastFailover;
    if (f) sig.failover = `${f.sequence} ${f.ok ? 'ok' : 'FAILED'} in ${f.durationMs} ms`;
    if (s.metrics?.checkpoints !== undefined) sig.checkpoints = String(s.metrics.checkpoints);
  }
  return sig;
}

/** An agent that runs but did not answer this time: its state is unknown, not changed. */
function unknown(s: SideSnapshot): boolean {
  return s.agentAlive && s.status === undefined;
}

/**
 * `next`, with each side the agent did not answer for replaced by its last known state in `prev`,
 * so that a missed /status is not printed as a change (and its return not either).
 */
export function lastKnown(prev: DemoSnapshot | undefined, next: DemoSnapshot): DemoSnapshot {
  if (!prev) return next;
  return { ...next, sides: next.sides.map((s) => (unknown(s) ? (prev.sides.find((p) => p.side === s.side) ?? s) : s)) };
}

/**
 * One line per side whose state changed since `prev` (every side the first time), e.g.
 * `12:00:01.234 secondary: state peer-up -> failing-over, peer up -> down`.
 */
export function viewChanges(prev: DemoSnapshot | undefined, next: DemoSnapshot): string[] {
  const lines: string[] = [];
  for (const s of next.sides) {
    const now = signature(s);
    const before = prev?.sides.find((p) => p.side === s.side);
    if (!before) {
      lines.push(`${clock(next.at)} ${s.side}: ${Object.entries(now).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      continue;
    }
    const was = signature(before);
    const diffs = Object.keys({ ...was, ...now })
      .filter((k) => was[k] !== now[k])
      .map((k) => `${k} ${was[k] ?? '-'} -> ${now[k] ?? '-'}`);
    if (diffs.length > 0) lines.push(`${clock(next.at)} ${s.side}: ${diffs.join(', ')}`);
  }
  return lines;
}
