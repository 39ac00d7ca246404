/**
 * What the split-brain tests (test/e2e/split-brain.test.ts, split-brain-trials.test.ts) and the
 * separate-hosts test read of a real QEMU COLO pair: the observer that says, from QEMU itself,
 * which side runs the guest as primary now (pairObserver), and the watch that says it for every
 * moment so far (PrimaryWatch); plus the log predicates those tests look for. The rig that brings
 * the pair, its agents, its arbiter and its faults up on the lab of separate hosts is
 * test/lab/lab-split-brain.ts.
 *
 * "Running primary" (the tests' outcome): query-status says running AND query-colo-status mode is
 * not `secondary` (a COLO secondary's VM also says running). PrimaryWatch follows the same from
 * QEMU's own events (STOP/RESUME/COLO_EXIT, stamped by QEMU on the host clock) to find any moment
 * at which both sides ran the guest as primary.
 */
import { ColoAgentError } from '../../src/errors.js';
import type { QmpClient, QmpEvent } from '../../src/qmp/index.js';
import { sleep, type LogPredicate } from './agent-process.js';
import type { AgentStatusJson } from './colo-agents.js';
import { queryColoStatus, queryStatus, type ColoRole } from './colo-pair.js';

export const SIDES: readonly ColoRole[] = ['primary', 'secondary'];

export class SplitBrainRigError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_SPLIT_BRAIN_RIG', message);
  }
}

export type ArbiterKind = 'witness' | 'etcd';

// ---- observation ----

export interface QemuView {
  alive: boolean;
  running?: boolean;
  status?: string;
  mode?: string;
  /** The harness's query failed or hung (error says which). */
  error?: string;
  /**
   * running/mode come from QEMU's events (PrimaryWatch), not from a query: QEMU's QMP did not
   * answer (7.2 blocks its main loop in `stop` while the replication disk flushes to a secondary
   * it cannot reach, having already paused the vCPUs and sent STOP).
   */
  fromEvents?: boolean;
}

export interface SideView {
  qemu: QemuView;
  /** The agent's /status, undefined when it is dead or does not answer. */
  agent: AgentStatusJson | undefined;
  agentAlive: boolean;
  runningPrimary: boolean;
}

export interface Observation {
  at: number;
  sides: Record<ColoRole, SideView>;
  runningPrimaries: ColoRole[];
}

export const isRunningPrimary = (q: QemuView): boolean => q.alive && q.running === true && q.mode !== undefined && q.mode !== 'secondary';

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** One line per side, for comments and failure messages. */
export function describeObservation(o: Observation): string {
  return SIDES.map((side) => {
    const v = o.sides[side];
    const q = v.qemu.alive ? `qemu ${v.qemu.status ?? '?'}${v.qemu.error ? ` (${v.qemu.error})` : ''} colo=${v.qemu.mode ?? '?'}` : 'qemu gone';
    const a = v.agent
      ? `agent ${v.agent.state} epoch=${v.agent.epoch?.epoch}${v.agent.epoch?.stale ? ' STALE' : ''} newestSeen=${v.agent.epoch?.newestSeen}` +
        `${v.agent.guestStopped ? ` guestStopped=${v.agent.guestStopped}` : ''} arbiter=${v.agent.arbiter.reachable ? 'reachable' : 'unreachable'}` +
        `${v.agent.arbiter.leaseRemainingMs !== undefined ? ` lease=${v.agent.arbiter.leaseRemainingMs}ms` : ''}`
      : v.agentAlive
        ? 'agent (no /status answer)'
        : 'agent gone';
    return `${side}: ${q}; ${a}${v.runningPrimary ? ' => RUNNING PRIMARY' : ''}`;
  }).join(' | ');
}

// ---- the event-based watch ----

interface SideTrack {
  running: boolean;
  mode: string;
  alive: boolean;
  poller?: NodeJS.Timeout;
  /** [QEMU time ms, running primary after it] for every change. */
  changes: Array<[number, boolean]>;
  events: string[];
}

/**
 * Follows each side's "running primary" from QEMU's events: STOP/RESUME (running), COLO_EXIT
 * with reason `request` (a failover: mode none from then on) and the kills this process made.
 * Times are QEMU's event stamps (host wall clock), and Date.now() for kills and polls, so both
 * sides are on one clock.
 *
 * COLO_EXIT with reason `error` (the replication stream broke) does NOT end COLO mode: QEMU then
 * waits, still in its mode, for a failover command (x-colo-lost-heartbeat), whose completion emits
 * no second event. So after such an event the side's mode is polled (every POLL_MS) until it
 * leaves `secondary`, and the change is stamped at the last poll that still saw `secondary`: the
 * earliest it can have happened, so that an overlap is never hidden (it may be over-reported by
 * up to one poll period).
 */
const POLL_MS = 10;

/**
 * What the watch follows: a QMP client per role key. A ColoPair, or any two QEMUs (e.g. after a
 * failback with the roles swapped, the new primary and the fresh secondary of the lab's hosts).
 */
export interface WatchedPair {
  side(role: ColoRole): { readonly qmp: QmpClient };
}

export class PrimaryWatch {
  private readonly track: Record<ColoRole, SideTrack>;
  private readonly off: Array<() => void> = [];
  readonly startedAt: number;

  private constructor(
    private readonly pair: WatchedPair,
    initial: Record<ColoRole, { running: boolean; mode: string }>,
    at: number,
  ) {
    this.startedAt = at;
    const mk = (s: { running: boolean; mode: string }): SideTrack => ({
      ...s,
      alive: true,
      changes: [[at, s.running && s.mode !== 'secondary']],
      events: [],
    });
    this.track = { primary: mk(initial.primary), secondary: mk(initial.secondary) };
  }

  /** Subscribes to both harness QMP clients, then reads the current state. */
  static async start(pair: WatchedPair): Promise<PrimaryWatch> {
    const buffered: Array<[ColoRole, QmpEvent]> = [];
    let watch: PrimaryWatch | undefined;
    const offs: Array<() => void> = [];
    for (const side of SIDES) {
      const onEvent = (e: QmpEvent) => (watch ? watch.onEvent(side, e) : buffered.push([side, e]));
      pair.side(side).qmp.on('event', onEvent);
      offs.push(() => pair.side(side).qmp.off('event', onEvent));
    }
    const at = Date.now();
    const initial = {} as Record<ColoRole, { running: boolean; mode: string }>;
    for (const side of SIDES) {
      const [st, colo] = await Promise.all([queryStatus(pair.side(side)), queryColoStatus(pair.side(side))]);
      initial[side] = { running: st.running, mode: colo.mode };
    }
    watch = new PrimaryWatch(pair, initial, at);
    watch.off.push(...offs);
    for (const [side, e] of buffered) if (e.timestampMs >= at) watch.onEvent(side, e);
    return watch;
  }

  close(): void {
    for (const f of this.off.splice(0)) f();
    for (const side of SIDES) this.stopPolling(side);
  }

  /** This process SIGKILLed the side's QEMU at `at` (Date.now()): it runs nothing from then on. */
  killed(side: ColoRole, at: number): void {
    const s = this.track[side];
    this.stopPolling(side);
    s.alive = false;
    s.events.push(`${at} killed`);
    this.change(side, at);
  }

  private onEvent(side: ColoRole, e: QmpEvent): void {
    const s = this.track[side];
    if (!s.alive) return;
    if (e.event === 'STOP') s.running = false;
    else if (e.event === 'RESUME') s.running = true;
    else if (e.event === 'COLO_EXIT' && e.data.reason === 'request') s.mode = 'none';
    else if (e.event === 'COLO_EXIT') this.pollMode(side, e.timestampMs);
    else return;
    s.events.push(`${e.timestampMs.toFixed(1)} ${e.event}${e.event === 'COLO_EXIT' ? ` ${JSON.stringify(e.data)}` : ''}`);
    this.change(side, e.timestampMs);
  }

  /** Poll the mode after a COLO_EXIT(error) until it is no longer `secondary` (see the class comment). */
  private pollMode(side: ColoRole, since: number): void {
    const s = this.track[side];
    if (s.poller || s.mode !== 'secondary') return;
    let lastSecondaryAt = since;
    let inFlight = false;
    s.poller = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      const askedAt = Date.now();
      queryColoStatus(this.pair.side(side))
        .then(
          (c) => {
            if (!s.alive || !s.poller) return;
            if (c.mode === 'secondary') {
              lastSecondaryAt = askedAt;
              return;
            }
            this.stopPolling(side);
            s.mode = c.mode;
            s.events.push(`${lastSecondaryAt.toFixed(1)} mode ${c.mode} (polled; still secondary at this time, ${c.mode} at ${askedAt})`);
            this.change(side, lastSecondaryAt);
          },
          () => undefined, // QEMU gone or busy: the next poll (or the kill) tells
        )
        .finally(() => (inFlight = false));
    }, POLL_MS);
  }

  private stopPolling(side: ColoRole): void {
    clearInterval(this.track[side].poller);
    this.track[side].poller = undefined;
  }

  private change(side: ColoRole, at: number): void {
    const s = this.track[side];
    const rp = s.alive && s.running && s.mode !== 'secondary';
    const last = s.changes[s.changes.length - 1];
    // Never before the previous change (a polled stamp can be earlier than a later-arriving event).
    if (!last || last[1] !== rp) s.changes.push([Math.max(at, last?.[0] ?? at), rp]);
  }

  /** Whether the side's VM runs now, as its events say. */
  running(side: ColoRole): boolean {
    const s = this.track[side];
    return s.alive && s.running;
  }

  /** The side's COLO mode as its events (and polls) say. */
  mode(side: ColoRole): string {
    return this.track[side].mode;
  }

  /** Whether the side runs the guest as primary now, as its events say. */
  runningPrimary(side: ColoRole): boolean {
    const c = this.track[side].changes;
    return c[c.length - 1]?.[1] ?? false;
  }

  /** Each side's [start, end) spans as running primary (end Infinity while it lasts). */
  spans(side: ColoRole): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let open: number | undefined;
    for (const [at, rp] of this.track[side].changes) {
      if (rp && open === undefined) open = at;
      if (!rp && open !== undefined) {
        out.push([open, at]);
        open = undefined;
      }
    }
    if (open !== undefined) out.push([open, Infinity]);
    return out;
  }

  /**
   * Pauses of at least `minMs` between two running-primary spans of a side: its guest stopped and
   * ran again as primary (a failover's own STOP/RESUME pair lasts well under a millisecond).
   */
  pauses(side: ColoRole, minMs = 50): Array<[number, number]> {
    const spans = this.spans(side);
    const out: Array<[number, number]> = [];
    for (let i = 1; i < spans.length; i++) {
      const gap: [number, number] = [spans[i - 1]![1], spans[i]![0]];
      if (gap[1] - gap[0] >= minMs) out.push(gap);
    }
    return out;
  }

  /** Every moment both sides ran the guest as primary: [start, end) spans (empty = never). */
  overlaps(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const [a0, a1] of this.spans('primary')) {
      for (const [b0, b1] of this.spans('secondary')) {
        const s = Math.max(a0, b0);
        const e = Math.min(a1, b1);
        if (s < e) out.push([s, e]);
      }
    }
    return out;
  }

  /**
   * When the guest moved from one side to the other: the gap between the end of one side's
   * running-primary span and the start of the other's (negative = they overlapped), or undefined
   * when it never moved.
   */
  handoverGapMs(): number | undefined {
    let best: number | undefined;
    for (const from of SIDES) {
      const to = from === 'primary' ? 'secondary' : 'primary';
      for (const [, end] of this.spans(from)) {
        if (end === Infinity) continue;
        for (const [start] of this.spans(to)) {
          if (start < this.startedAt + 1) continue; // running primary from the start: not a handover
          const gap = start - end;
          if (best === undefined || Math.abs(gap) < Math.abs(best)) best = gap;
        }
      }
    }
    return best;
  }

  /** The events seen, per side, for failure messages. */
  describe(): string {
    return SIDES.map((s) => `${s}: ${this.track[s].events.join(', ') || '(no events)'}`).join('\n');
  }
}

// ---- observing a pair ----

/** What the observer reads of one side: its QEMU (over the harness's own QMP client) and its agent. */
export interface ObservedSide {
  readonly qemu: { readonly qmp: QmpClient; alive(): boolean };
  agentAlive(): boolean;
  /** The agent's GET /status; rejects when it does not answer. */
  status(timeoutMs: number): Promise<AgentStatusJson>;
}

export interface PairObserver {
  /** Which side runs the guest as primary now, and what each agent says. */
  observe(): Promise<Observation>;
  /** Poll observe() until `predicate` holds; the last observation either way. */
  waitFor(predicate: (o: Observation) => boolean, timeoutMs: number, pollMs?: number): Promise<{ ok: boolean; obs: Observation }>;
}

/**
 * Observes both sides: each QEMU's query-status and query-colo-status, each agent's /status. A
 * QEMU whose QMP hangs (see QemuView.fromEvents) gets no new query until the last one answered;
 * meanwhile its state comes from `watch()`'s events, when there is a watch.
 */
export function pairObserver(sides: (side: ColoRole) => ObservedSide, watch: () => PrimaryWatch | undefined): PairObserver {
  const pending: Partial<Record<ColoRole, Promise<unknown>>> = {};
  const queryQemu = async (side: ColoRole): Promise<QemuView> => {
    const s = sides(side).qemu;
    if (!s.alive()) return { alive: false };
    const fromEvents = (error: string): QemuView => {
      const w = watch();
      return {
        alive: s.alive(),
        error,
        ...(w && { fromEvents: true, running: w.running(side), mode: w.mode(side), status: w.running(side) ? 'running (events)' : 'paused (events)' }),
      };
    };
    if (pending[side]) return fromEvents('QMP busy: an earlier query is still unanswered');
    const q = Promise.all([queryStatus(s), queryColoStatus(s)]);
    pending[side] = q;
    void q.then(
      () => (pending[side] = undefined),
      () => (pending[side] = undefined),
    );
    try {
      const [st, colo] = await withTimeout(q, 1000, `${side} QEMU`);
      return { alive: true, running: st.running, status: st.status, mode: colo.mode };
    } catch (err) {
      return fromEvents((err as Error).message);
    }
  };
  const observe = async (): Promise<Observation> => {
    const at = Date.now();
    const entries = await Promise.all(
      SIDES.map(async (side): Promise<[ColoRole, SideView]> => {
        const agentAlive = sides(side).agentAlive();
        const agentP = agentAlive ? sides(side).status(1500).catch(() => undefined) : Promise.resolve(undefined);
        const [qemu, agent] = await Promise.all([queryQemu(side), agentP]);
        return [side, { qemu, agent, agentAlive, runningPrimary: isRunningPrimary(qemu) }];
      }),
    );
    const bySide = Object.fromEntries(entries) as Record<ColoRole, SideView>;
    return { at, sides: bySide, runningPrimaries: SIDES.filter((s) => bySide[s].runningPrimary) };
  };
  return {
    observe,
    waitFor: async (predicate, timeoutMs, pollMs = 150) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const obs = await observe();
        if (predicate(obs)) return { ok: true, obs };
        if (Date.now() >= end) return { ok: false, obs };
        await sleep(pollMs);
      }
    },
  };
}

// ---- log predicates the split-brain tests read ----

export const guestStopped: LogPredicate = (r) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('guest STOPPED');
export const guestResumed: LogPredicate = (r) => r.component === 'agent' && r.msg === 'guest resumed (cont)';
export const grantedTakeover: LogPredicate = (r) => r.component === 'takeover-gate' && r.msg === 'arbiter granted the takeover';
export const staleEpoch: LogPredicate = (r) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('stale epoch');
