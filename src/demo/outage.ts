/**
 * The guest's outage in a failover, as the live view's OUTAGE column shows it (issue 14).
 *
 * What an operator watching the demo should see after `kill -9` of a pid the demo printed: on the
 * side that took over (or continued alone), how long the guest was out: from the fault to that
 * side's "failover done", the same span the drill reports as its total outage. The demo cannot
 * know when a fault was injected by hand, so the outage begins at the earliest of
 * - the moment the demo saw the other side's QEMU end (it started that process: a `kill -9` of
 *   the primary's QEMU stops the guest there, one of the secondary's QEMU stalls the primary's
 *   guest in COLO until its failover);
 * - this side's first evidence of the failure in its own log (the peer declared down, its QEMU's
 *   COLO_EXIT with reason error, the peer's agent reporting its QEMU gone): a fault the demo
 *   cannot see, e.g. a SIGSTOPped QEMU;
 * - else "failover starting" (an operator's `colo-agent failover`: no fault, only the sequence),
 * each counted only after this side's previous failover ended and after its peer last came back
 * up. It is a fixed figure once measured, not a running clock: the heartbeat outage clock
 * (colo_agent_peer_outage_seconds) is another thing, and stays 0 while both agents run, which is
 * why the view, reading that, showed "-" after a failover of a killed QEMU.
 *
 * Pure bookkeeping (FailoverOutages) plus the wiring to the demo's processes (watchOutages).
 */
import type { ColoPair } from '../qemu/colo-launch.js';
import { recordTimeMs, type DemoAgent, type LogRecord } from './agent-child.js';
import { DEMO_SIDES, otherSide, type DemoSide } from './plan.js';
import { observerEvents } from './timeline.js';

export interface FailoverOutage {
  /** Wall-clock ms the outage began. */
  from: number;
  /** What marked that beginning, e.g. "the primary's QEMU ending". */
  fromWhat: string;
  /** Wall-clock ms of "failover done" (or "failover FAILED"). */
  to: number;
  ms: number;
  /** false: the failover failed (the guest did not run again). */
  ok: boolean;
}

type Mark =
  | { kind: 'evidence'; at: number; what: string }
  | { kind: 'started'; at: number }
  | { kind: 'clear'; at: number }
  | { kind: 'end'; at: number; ok: boolean; durationMs?: number };

/** Marks kept per side: a long demo must not grow without bound (a failover needs a handful). */
const MAX_MARKS = 200;

export class FailoverOutages {
  private readonly marks: Record<DemoSide, Mark[]> = { primary: [], secondary: [] };

  /** The demo saw `side`'s QEMU end at `at`: evidence for the other side's next failover. */
  qemuEnded(side: DemoSide, at: number): void {
    this.add(otherSide(side), { kind: 'evidence', at, what: `the ${side}'s QEMU ending` });
  }

  /** One of `side`'s agent's log records. */
  record(side: DemoSide, r: LogRecord): void {
    const at = recordTimeMs(r);
    if (!Number.isFinite(at)) return;
    if (r.component === 'failure-detector' && r.detector === 'peer' && r.from === 'down' && r.to === 'up') {
      this.add(side, { kind: 'clear', at });
      return;
    }
    const e = observerEvents(side, [r], 0)[0];
    if (!e) return;
    if (e.label === 'detected') this.add(side, { kind: 'evidence', at, what: `detection (${e.detail})` });
    else if (e.label === 'started') this.add(side, { kind: 'started', at });
    else if (e.label === 'done' || e.label === 'failed') {
      this.add(side, { kind: 'end', at, ok: e.label === 'done', ...(typeof r.durationMs === 'number' && { durationMs: r.durationMs }) });
    }
  }

  /** The outage of `side`'s last failover, once it ended; undefined before any. */
  last(side: DemoSide): FailoverOutage | undefined {
    // Sorted here: the demo may see a QEMU's end after the survivor's record of what followed.
    const marks = [...this.marks[side]].sort((a, b) => a.at - b.at);
    const ends = marks.filter((m): m is Extract<Mark, { kind: 'end' }> => m.kind === 'end');
    const end = ends.at(-1);
    if (!end) return undefined;
    const after = Math.max(ends.at(-2)?.at ?? -Infinity, ...marks.filter((m) => m.kind === 'clear' && m.at <= end.at).map((m) => m.at));
    const window = marks.filter((m) => m.at > after && m.at <= end.at);
    const evidence = window.find((m): m is Extract<Mark, { kind: 'evidence' }> => m.kind === 'evidence');
    const started = window.find((m) => m.kind === 'started');
    const [from, fromWhat] = evidence
      ? [evidence.at, evidence.what]
      : started
        ? [started.at, 'failover starting (no fault seen before it)']
        : [end.at - (end.durationMs ?? 0), 'the failover sequence'];
    return { from, fromWhat, to: end.at, ms: Math.max(0, end.at - from), ok: end.ok };
  }

  private add(side: DemoSide, m: Mark): void {
    const list = this.marks[side];
    list.push(m);
    if (list.length > MAX_MARKS) list.splice(0, list.length - MAX_MARKS);
  }
}

export interface OutageWatch {
  readonly outages: FailoverOutages;
  /** Stops listening to the agents' logs. */
  stop(): void;
}

/** Feeds a FailoverOutages from the demo's agents (their records so far, then each new one) and its QEMUs' ends. */
export function watchOutages(pair: ColoPair, agents: Readonly<Record<DemoSide, DemoAgent>>, now: () => number = Date.now): OutageWatch {
  const outages = new FailoverOutages();
  const offs: Array<() => void> = [];
  for (const side of DEMO_SIDES) {
    const agent = agents[side];
    for (const r of agent.records()) outages.record(side, r);
    offs.push(agent.onEntry((e) => e.record && outages.record(side, e.record)));
    const q = pair.side(side);
    // The process's 'exit' event: the demo's own clock, within a tick of the kill.
    if (q.alive()) q.process.once('exit', () => outages.qemuEnded(side, now()));
  }
  return { outages, stop: () => offs.forEach((off) => off()) };
}
