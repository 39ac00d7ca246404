/**
 * A failover drill's timeline and verdict, from what the agents logged (each record carries the
 * agent's own wall-clock time) and what QEMU answered afterwards. Pure: drill.ts gathers the
 * records and the answers, this file reads them.
 *
 * The labels, in the order a failover goes through them:
 *   injected  the demo injected the fault (T0, the demo's clock);
 *   suspect   the observer's failure detector found the peer late (informational);
 *   detected  the first evidence the observer acted on: the peer declared down (heartbeats
 *             missed), its own QEMU's COLO_EXIT with reason error, or the peer's agent saying
 *             that its QEMU is gone;
 *   probe     what the probe of the peer's QEMU port said (alive / refused / silent);
 *   decision  a takeover refused by the takeover rule, with its reason;
 *   asked     (the witness) a node asked for the next epoch;
 *   verdict   (the witness) it granted or refused that request, and why;
 *   refused   the takeover gate said no (the arbiter refused, the epoch is stale, no gateway
 *             answers), with the step and the reason;
 *   granted   the arbiter granted the takeover (or the primary's solo continuation) at an epoch;
 *   stale     the agent learnt of a newer epoch: another node holds the guest, it stays passive;
 *   paused    the agent paused its guest (its lease ran out, or its epoch is stale), `resumed`;
 *   started   the failover sequence began ("failover starting");
 *   done      it finished and the guest runs ("failover done"), or `failed`.
 */
import { recordTimeMs, type LogRecord } from './agent-child.js';
import { otherSide, type DemoArbiter, type DemoSide } from './plan.js';

export type DrillKind = 'kill-primary' | 'kill-secondary' | 'partition';
export const DRILL_KINDS: readonly DrillKind[] = ['kill-primary', 'kill-secondary', 'partition'];

export type TimelineLabel =
  | 'injected'
  | 'suspect'
  | 'detected'
  | 'probe'
  | 'decision'
  | 'asked'
  | 'verdict'
  | 'refused'
  | 'granted'
  | 'stale'
  | 'paused'
  | 'resumed'
  | 'started'
  | 'done'
  | 'failed';

/** Who logged a timeline event: an agent (by its side) or the witness. */
export type TimelineSource = DemoSide | 'witness';

export interface TimelineEvent {
  /** Wall-clock ms. */
  at: number;
  label: TimelineLabel;
  /** The process that logged it; none for the injected fault. */
  side?: TimelineSource;
  detail: string;
  /** For `granted`: the epoch granted. */
  epoch?: number;
}

/** What QEMU said about a side after the drill. */
export interface SideOutcome {
  side: DemoSide;
  qemuAlive: boolean;
  /** query-status. */
  status?: string;
  running?: boolean;
  /** query-colo-status. */
  coloMode?: string;
  lastMode?: string;
  /** Why QEMU could not be asked. */
  error?: string;
}

export interface DrillReport {
  kind: DrillKind;
  /** Date.now() when the fault was injected. */
  t0: number;
  /** What was done, e.g. "SIGKILL primary QEMU (pid 1) and its agent (pid 2)". */
  fault: string;
  /** The agents' arbiter.mode in this drill. */
  arbiter: DemoArbiter;
  /** The processes whose records make up the timeline. */
  observers: TimelineSource[];
  /** Sorted by time; the injected event first. */
  events: TimelineEvent[];
  outcomes: SideOutcome[];
  /** Extra lines for the reader (e.g. how one machine differs from two hosts). */
  notes: string[];
}

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v));

/** The first record of each kind, from one observer, at or after t0, in time order. */
export function observerEvents(side: DemoSide, records: readonly LogRecord[], t0: number): TimelineEvent[] {
  const events: TimelineEvent[] = [];
  const seen = new Set<TimelineLabel>();
  const add = (label: TimelineLabel, r: LogRecord, detail: string, epoch?: number) => {
    if (seen.has(label)) return;
    seen.add(label);
    events.push({ at: recordTimeMs(r), label, side, detail, ...(epoch !== undefined && { epoch }) });
  };
  for (const r of records) {
    const at = recordTimeMs(r);
    if (!(at >= t0)) continue;
    const peerDetector = r.component === 'failure-detector' && r.detector === 'peer';
    if (peerDetector && r.to === 'suspect') add('suspect', r, `peer late (${str(r.reason)})`);
    else if (peerDetector && r.to === 'down') add('detected', r, `peer down: heartbeats missed (${str(r.reason)})`);
    else if (r.component === 'colo-monitor' && r.msg === 'COLO_EXIT' && r.reason === 'error') {
      add('detected', r, 'its QEMU left COLO with reason error: the replication stream from the peer broke');
    } else if (r.msg === "peer's agent reports its QEMU gone") add('detected', r, "the peer's agent reports its QEMU gone");
    else if (r.msg === 'probed the peer QEMU') add('probe', r, `peer QEMU ${str(r.host)}:${str(r.port)} ${str(r.verdict)} (${str(r.detail)})`);
    else if (r.msg === 'no takeover' && r.step !== undefined) add('refused', r, `no takeover at the ${str(r.step)} step: ${str(r.reason)}`);
    else if (r.msg === 'no takeover') add('decision', r, `no takeover: ${str(r.reason)}`);
    else if (r.component === 'takeover-gate' && r.msg === 'arbiter granted the takeover') {
      add('granted', r, `${str(r.action)} granted at epoch ${str(r.epoch)} by ${str(r.by)}`, typeof r.epoch === 'number' ? r.epoch : undefined);
    } else if (r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('stale epoch')) {
      add('stale', r, `epoch ${str(r.newestSeen)} (from ${str(r.from)}) is newer than ours (${str(r.epoch)}): another node holds the guest; staying passive`);
    } else if (r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('guest STOPPED')) add('paused', r, r.msg.slice('guest '.length));
    else if (r.component === 'agent' && r.msg === 'guest resumed (cont)') add('resumed', r, `guest resumed (${str(r.why)})`);
    else if (r.component === 'failover' && r.msg === 'failover starting') add('started', r, `${str(r.sequence)} (${str(r.reason)})`);
    else if (r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('failover done')) {
      add('done', r, `${str(r.sequence)}: ${str(r.durationMs)} ms of QMP steps; guest running solo`);
    } else if (r.component === 'agent' && r.msg === 'failover FAILED') {
      add('failed', r, `${str(r.sequence)}: ${str((r.err as { message?: string } | undefined)?.message ?? r.err)}`);
    }
  }
  return events.sort((a, b) => a.at - b.at);
}

/**
 * What the witness logged from t0 on: each node's first request (`asked`) and its first grant and
 * first refusal (`verdict`), in time order. A refused node asks again every
 * failover.reprobeIntervalMs; the repeats say nothing new.
 */
export function witnessEvents(records: readonly LogRecord[], t0: number): TimelineEvent[] {
  const events: TimelineEvent[] = [];
  const seen = new Set<string>();
  const add = (key: string, label: TimelineLabel, r: LogRecord, detail: string, epoch?: number) => {
    if (seen.has(key)) return;
    seen.add(key);
    events.push({ at: recordTimeMs(r), label, side: 'witness', detail, ...(epoch !== undefined && { epoch }) });
  };
  for (const r of records) {
    if (!(recordTimeMs(r) >= t0)) continue;
    if (r.component === 'witness-grants' && r.msg === 'grant requested') {
      add(`asked ${str(r.node)}`, 'asked', r, `${str(r.node)} asks to ${str(r.action)} at epoch ${str(r.epoch)} (holder ${r.holder === undefined ? 'none' : str(r.holder)})`);
    } else if (r.component === 'witness' && r.msg === 'arbitration verdict') {
      const granted = r.granted === true;
      add(
        `verdict ${str(r.node)} ${granted}`,
        'verdict',
        r,
        granted ? `granted ${str(r.action)} to ${str(r.node)}: epoch ${str(r.epoch)}` : `refused ${str(r.action)} to ${str(r.node)}: ${str(r.reason)}`,
        granted && typeof r.epoch === 'number' ? r.epoch : undefined,
      );
    }
  }
  return events.sort((a, b) => a.at - b.at);
}

/** Running alone: the VM runs and QEMU is no longer in COLO (what a finished failover leaves). */
export function runsSolo(o: SideOutcome | undefined): boolean {
  return o !== undefined && o.qemuAlive && o.running === true && o.coloMode === 'none';
}

/**
 * Runs the guest as a primary: running, and out of COLO or still COLO primary (with its
 * replication cut it serves the clients all the same). Two of these is a split brain.
 */
export function runsAsPrimary(o: SideOutcome | undefined): boolean {
  return o !== undefined && o.qemuAlive && o.running === true && (o.coloMode === 'none' || o.coloMode === 'primary');
}

export interface DrillVerdict {
  ok: boolean;
  /** The side that runs the guest alone at the end, when exactly one does. */
  survivor?: DemoSide;
  /** Fault to the survivor's "failover done" (its guest running solo), ms. */
  outageMs?: number;
  summary: string;
}

/**
 * The drill passed when exactly the expected side ended running the guest solo; for the
 * partition, when exactly one side took over and the other does not run the guest as a primary.
 */
export function drillVerdict(r: DrillReport): DrillVerdict {
  const solo = r.outcomes.filter(runsSolo).map((o) => o.side);
  const primaries = r.outcomes.filter(runsAsPrimary).map((o) => o.side);
  const outage = (side: DemoSide) => {
    const done = r.events.find((e) => e.side === side && e.label === 'done');
    return done ? done.at - r.t0 : undefined;
  };
  if (r.kind !== 'partition') {
    const survivor = otherSide(r.kind === 'kill-primary' ? 'primary' : 'secondary');
    const o = r.outcomes.find((x) => x.side === survivor);
    if (runsSolo(o)) return { ok: true, survivor, outageMs: outage(survivor), summary: `the ${survivor} runs the guest alone` };
    return { ok: false, summary: `the ${survivor} does not run the guest alone: ${describeOutcome(o)}` };
  }
  if (solo.length === 2) {
    return r.arbiter === 'none'
      ? { ok: false, summary: 'arbiter none: both sides took over — split brain; run with a witness to prevent it' }
      : { ok: false, summary: `SPLIT BRAIN despite the ${r.arbiter} arbiter: both sides took over (see the grants above)` };
  }
  if (primaries.length === 2) {
    const taker = solo[0] as DemoSide;
    const other = otherSide(taker);
    return {
      ok: false,
      summary: `split brain: the ${taker} took over while the ${other} still runs its guest (${describeOutcome(r.outcomes.find((o) => o.side === other))})`,
    };
  }
  if (solo.length === 1) {
    const survivor = solo[0] as DemoSide;
    const other = otherSide(survivor);
    if (r.arbiter === 'none') return { ok: true, survivor, outageMs: outage(survivor), summary: `only the ${survivor} took over; the other side stood down` };
    const epoch = r.events.find((e) => e.side === survivor && e.label === 'granted')?.epoch;
    const refused = r.events.some((e) => e.side === other && e.label === 'refused');
    const stale = r.events.some((e) => e.side === other && e.label === 'stale');
    const how = `${refused ? 'was refused and ' : ''}stayed passive${stale ? ' (stale epoch)' : ''}`;
    return {
      ok: true,
      survivor,
      outageMs: outage(survivor),
      summary: `only the ${survivor} took over (granted epoch ${epoch ?? '?'} by the ${r.arbiter}); the ${other} ${how}: no split brain`,
    };
  }
  return { ok: false, summary: 'neither side took over: the guest keeps running in COLO with its replication cut (see the decisions above)' };
}

export function describeOutcome(o: SideOutcome | undefined): string {
  if (!o) return 'unknown';
  if (!o.qemuAlive) return 'QEMU gone';
  if (o.error) return `QEMU did not answer (${o.error})`;
  const last = o.lastMode && o.coloMode === 'none' ? ` (last mode ${o.lastMode})` : '';
  return `query-status ${o.status ?? '?'}, COLO mode ${o.coloMode ?? '?'}${last}`;
}

/** From the survivor's detection (or probe) to its grant: the time spent waiting for the arbiter. */
export function arbitrationWait(r: DrillReport, side: DemoSide): { ms: number; from: string; epoch?: number } | undefined {
  if (r.arbiter === 'none') return undefined;
  const granted = r.events.find((e) => e.side === side && e.label === 'granted');
  const detected = r.events.find((e) => e.side === side && e.label === 'detected');
  if (!granted || !detected) return undefined;
  return { ms: granted.at - detected.at, from: 'detection', ...(granted.epoch !== undefined && { epoch: granted.epoch }) };
}

function at(ms: number): string {
  return `+${String(Math.round(ms)).padStart(5)} ms`;
}

/** The report as printed: the timeline, each side's end state, the outage, the verdict. */
export function formatDrillReport(r: DrillReport): string[] {
  const v = drillVerdict(r);
  const lines = [`drill ${r.kind}: timeline (ms after the fault; agents' log times)`];
  for (const e of r.events) lines.push(`  ${at(e.at - r.t0)}  ${e.label.padEnd(9)} ${e.side ? `${e.side}: ` : ''}${e.detail}`);
  for (const side of r.observers) {
    if (side !== 'witness' && !r.events.some((e) => e.side === side && e.label === 'detected')) lines.push(`  (${side}: no detection logged)`);
  }
  for (const o of r.outcomes) lines.push(`  end state ${o.side}: ${describeOutcome(o)}`);
  if (v.survivor !== undefined && v.outageMs !== undefined) lines.push(`  total outage: ${Math.round(v.outageMs)} ms (fault -> the ${v.survivor}'s guest running solo)`);
  const wait = v.survivor === undefined ? undefined : arbitrationWait(r, v.survivor);
  if (wait) lines.push(`  of which arbitration: ${Math.round(wait.ms)} ms (${wait.from} -> the ${r.arbiter}'s grant of epoch ${wait.epoch ?? '?'})`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  lines.push(`drill ${r.kind}: ${v.ok ? 'PASS' : 'FAIL'}: ${v.summary}`);
  return lines;
}
