/**
 * A trial's verdict, from what QEMU itself showed. Pure: the runner records, per QEMU process
 * that ever ran in the trial, when it ran the guest outside the COLO secondary role ("running
 * primary": query-status running and COLO mode not secondary, from 50 ms polls and QEMU's own
 * stamped STOP/RESUME/COLO_EXIT events), which agents ran which failover sequence when, and when
 * COLO was back; this module says whether the trial held.
 *
 * Safety (any breach is a violation; the campaign's full run must have none):
 * - never two QEMUs running the guest outside COLO at the same moment;
 * - no failover where none is due (an agent-only death: the peer's QEMU lives), and never on a
 *   node other than the expected survivor, and at most once;
 * - no guest left paused at the end when one could run.
 * Liveness (a failure is reported, with the seed, but is not a safety breach):
 * - where a takeover is due, the survivor runs the guest alone (within the bound: `overBound`
 *   when not, which the table counts as not held but a test does not fail on);
 * - where the pair is to resume, COLO is back by itself once the failed host is repaired.
 */
import type { Expectation } from './matrix.js';

export type HostName = 'a' | 'b';

/** One QEMU process's "running primary" changes: [clock ms, running primary]. */
export interface QemuTimeline {
  /** e.g. "a#1" (host a's first QEMU of the trial), for messages. */
  id: string;
  host: HostName;
  changes: Array<[number, boolean]>;
}

export interface FailoverRecord {
  host: HostName;
  sequence: string;
  /** The sequence started. */
  at: number;
  /** It finished ("failover done"): for a primary failover the guest ran all along, but its output waits in colo-compare until then. */
  doneAt?: number | undefined;
}

export interface TrialObservation {
  faultAt: number;
  /** The host that runs the role the expectation names when the fault hits. */
  hostOf: Record<'primary' | 'secondary', HostName>;
  qemus: QemuTimeline[];
  /** Failover sequences started after the fault (agents' "failover starting" records). */
  failovers: FailoverRecord[];
  /** When COLO was seen back (both modes) after the repair; undefined if never. */
  resumedAt?: number | undefined;
  /** The end of observation. */
  endAt: number;
  /** Something in the trial could not be done (the harness's own failure): not a verdict on the agent. */
  harnessError?: string | undefined;
}

export interface TrialVerdict {
  held: boolean;
  safety: string[];
  liveness: string[];
  /** Fault -> the survivor's QEMU runs the guest alone (ms), when a takeover was due. */
  takeoverMs?: number;
  /**
   * The takeover happened but later than the bound: a figure for the campaign's table (the full
   * run is a benchmark), not a test failure (tests never assert how fast: a loaded machine is slow).
   */
  overBound?: string;
  /** The longest moment with two QEMUs running the guest outside COLO (ms), 0 when none. */
  overlapMs: number;
}

/** Whether `q` runs primary at time `at`. */
function stateAt(q: QemuTimeline, at: number): boolean {
  let s = false;
  for (const [t, v] of q.changes) {
    if (t > at) break;
    s = v;
  }
  return s;
}

/** Every instant at which the set of running-primary QEMUs can change, in order. */
function instants(qemus: QemuTimeline[], from: number, to: number): number[] {
  const set = new Set<number>([from]);
  for (const q of qemus) for (const [t] of q.changes) if (t >= from && t <= to) set.add(t);
  return [...set].sort((x, y) => x - y);
}

/** The running-primary QEMUs over [from, to] as consecutive segments. */
export function segments(qemus: QemuTimeline[], from: number, to: number): Array<{ from: number; to: number; running: QemuTimeline[] }> {
  const ts = instants(qemus, from, to);
  return ts.map((t, i) => ({ from: t, to: ts[i + 1] ?? to, running: qemus.filter((q) => stateAt(q, t)) }));
}

export function judge(o: TrialObservation, e: Expectation): TrialVerdict {
  const safety: string[] = [];
  const liveness: string[] = [];
  if (o.harnessError) return { held: false, safety, liveness: [`harness: ${o.harnessError}`], overlapMs: 0 };
  const start = Math.min(o.faultAt, ...o.qemus.flatMap((q) => q.changes.map(([t]) => t)));
  const segs = segments(o.qemus, start, o.endAt);

  let overlapMs = 0;
  for (const s of segs) {
    if (s.running.length < 2) continue;
    overlapMs = Math.max(overlapMs, s.to - s.from);
    safety.push(`two guests running outside COLO at +${Math.round(s.from - o.faultAt)} ms for ${Math.round(s.to - s.from)} ms: ${s.running.map((q) => q.id).join(', ')}`);
  }

  const survivorHost = o.hostOf[e.runs];
  if (!e.takeover && o.failovers.length > 0) {
    safety.push(`no takeover was due (${e.why}) but ${o.failovers.map((f) => `${f.host} ran ${f.sequence} at +${Math.round(f.at - o.faultAt)} ms`).join(', ')}`);
  }
  if (e.takeover) {
    const elsewhere = o.failovers.filter((f) => f.host !== survivorHost);
    if (elsewhere.length > 0) safety.push(`failover on the wrong node: ${elsewhere.map((f) => `${f.host} ran ${f.sequence}`).join(', ')} (expected only ${survivorHost})`);
    const mine = o.failovers.filter((f) => f.host === survivorHost);
    if (mine.length > 1) safety.push(`${survivorHost} ran ${mine.length} failover sequences: exactly once was due`);
  }

  const last = segs.at(-1);
  if (!last || last.running.length === 0) safety.push('no guest runs at the end although one could');

  let takeoverMs: number | undefined;
  let overBound: string | undefined;
  if (e.takeover) {
    // The first moment at or after the survivor's failover finished at which its QEMU alone runs the guest.
    const f = o.failovers.find((x) => x.host === survivorHost);
    const ready = f ? (f.doneAt ?? f.at) : undefined;
    const alone = ready === undefined ? undefined : segs.find((s) => s.to > ready && s.running.length === 1 && s.running[0]!.host === survivorHost);
    if (!alone || ready === undefined) liveness.push(`no takeover: ${survivorHost} never ran the guest alone after a failover`);
    else {
      takeoverMs = Math.max(alone.from, ready) - o.faultAt;
      if (e.boundMs !== undefined && takeoverMs > e.boundMs) overBound = `takeover took ${Math.round(takeoverMs)} ms (bound ${e.boundMs} ms)`;
    }
  } else if (last && last.running.length === 1 && last.running[0]!.host !== survivorHost) {
    safety.push(`the guest ended on ${last.running[0]!.id}, expected on ${survivorHost} (${e.why})`);
  }
  if (e.resumes && o.resumedAt === undefined) liveness.push('replication did not resume by itself after the repair');

  return {
    held: safety.length === 0 && liveness.length === 0 && overBound === undefined,
    safety,
    liveness,
    ...(takeoverMs !== undefined && { takeoverMs }),
    ...(overBound !== undefined && { overBound }),
    overlapMs,
  };
}
