/**
 * Failure detector: turns the arrival times of valid heartbeats into up / suspect / down.
 *
 * One instance watches the whole peer (fed by every link) and, if wanted, one more per link for
 * per-link liveness. It is pure logic: all time comes from the injected Clock, and each deadline is
 * a clock timer armed for the exact moment, so `down` is declared at last beat + timeout, not when
 * some later beat or poll happens to look. At most one timer is pending at any moment.
 *
 * States and rules (S = silence since the last valid beat, I = intervalMs):
 *
 *   unknown  -- first beat ever ----------------------------------------------> up
 *   unknown  -- no beat by start + startupGraceMs ---------------------------> down
 *   up       -- S >= I * suspectMisses (or phi >= phiSuspectThreshold) ------> suspect
 *   suspect  -- one beat -----------------------------------------------------> up
 *   up/suspect -- S >= I * missThreshold (or phi >= phiThreshold) -----------> down
 *   down     -- recoverBeats consecutive beats, each < I * missThreshold
 *               after the previous one -----------------------------------> up
 *
 * First contact: the very first valid beat ever seen brings the detector up at once, even when
 * the startup grace has already run out and the state is `down`. recoverBeats is hysteresis
 * against a link that has been up and failed and may be flapping; a peer we have never heard from
 * has no such history, and an HA pair that has just been started should be up on its first beat.
 *
 * Phi mode (phiThreshold > 0): each threshold is whichever comes first of the fixed timeout and the
 * phi crossing. `down` when phi >= phiThreshold OR S >= I * missThreshold; `suspect` when
 * phi >= phiSuspectThreshold (default phiThreshold / 2) OR S >= I * suspectMisses. So phi can only
 * make detection earlier: a misconfigured phi can never delay `down` past the fixed timeout.
 * Recovery counting always uses the fixed timeout.
 *
 * Feed each distinct heartbeat once: the detector does not deduplicate, so a peer-wide instance fed
 * the same heartbeat over two links would count it twice toward recoverBeats and learn a
 * near-zero inter-arrival time for phi. Deduplicate by sequence number before calling beat().
 */
import { ColoAgentError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { ArrivalWindow, PHI_MAX } from './phi.js';

export type DetectorState = 'unknown' | 'up' | 'suspect' | 'down';

export type TransitionReason =
  | 'first-contact' // first beat ever (unknown -> up, or down -> up after the grace ran out)
  | 'beat' // suspect -> up
  | 'recovered' // down -> up after recoverBeats consecutive beats
  | 'suspect-timeout' // S reached I * suspectMisses
  | 'suspect-phi' // phi reached phiSuspectThreshold
  | 'timeout' // S reached I * missThreshold
  | 'phi' // phi reached phiThreshold
  | 'startup-grace'; // no beat at all within startupGraceMs

export type TransitionKind = `${DetectorState}->${DetectorState}`;

export interface StateChange {
  from: DetectorState;
  to: DetectorState;
  /** Clock time of the transition. */
  at: number;
  /**
   * How long the peer had been silent: for a deadline, the silence that ran out (since the last
   * beat, or since the detector started if there was none); for a beat, the gap that beat ended.
   */
  silentForMs: number;
  reason: TransitionReason;
}

export type StateListener = (change: StateChange) => void;

export interface DetectorStats {
  /** Beats accepted. */
  beats: number;
  /** Beats refused: not newer than the last one, or after stop(). */
  ignoredBeats: number;
  /** Transitions by kind, e.g. `{ 'up->suspect': 2, 'suspect->up': 2 }`. */
  transitions: Partial<Record<TransitionKind, number>>;
  /** Times the detector entered `suspect`. */
  suspicions: number;
  /** suspect -> up: suspicions a later beat proved false. */
  suspicionsCleared: number;
  /** Times the detector entered `down`. */
  downs: number;
  /** down -> up through recoverBeats (first contact not counted). */
  recoveries: number;
  /** Recovery runs broken by a gap >= the timeout: evidence of a flapping link. */
  brokenRecoveries: number;
  /** State listeners that threw (caught and logged; the detector carries on). */
  listenerErrors: number;
}

/** Everything a SIGHUP may change. */
export interface DetectorTunables {
  /** Nominal heartbeat interval of the sender. */
  intervalMs: number;
  /** `down` after intervalMs * missThreshold of silence. */
  missThreshold: number;
  /** `suspect` after intervalMs * suspectMisses of silence; < missThreshold. Default missThreshold / 2. */
  suspectMisses?: number;
  /** Consecutive beats needed to leave `down` (integer >= 1; 1 = no hysteresis). Default 3. */
  recoverBeats?: number;
  /** With no beat at all, `down` this long after start. Default intervalMs * missThreshold. */
  startupGraceMs?: number;
  /** phi-accrual `down` threshold; 0 = off (fixed timeouts only). Default 0. */
  phiThreshold?: number;
  /** phi at which to suspect; 0 < x < phiThreshold. Default phiThreshold / 2. */
  phiSuspectThreshold?: number;
  /** Inter-arrival samples kept for phi. Default 100. */
  phiWindowSize?: number;
  /** Standard deviation floor for phi. Default intervalMs / 4. */
  phiMinStdDevMs?: number;
}

export interface FailureDetectorOptions extends DetectorTunables {
  clock?: Clock;
  logger?: Logger;
  /** Names the instance in logs, e.g. the peer or link name. */
  name?: string;
}

export type ResolvedDetectorOptions = Readonly<Required<DetectorTunables>>;

export class DetectorOptionsError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_HB_DETECTOR_OPTIONS', message);
  }
}

/** Node timers cannot wait longer than this (about 24.8 days); longer delays fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * A deadline this close counts as reached: `now + (deadline - now)` can land one float ulp short
 * of `deadline`, and re-arming a timer for 1e-13 ms would never end.
 */
const DEADLINE_EPSILON_MS = 1e-6;

/** Apply defaults and check everything; throws DetectorOptionsError naming the bad value. */
export function resolveDetectorOptions(o: DetectorTunables): ResolvedDetectorOptions {
  const fail = (msg: string): never => {
    throw new DetectorOptionsError(`failure detector: ${msg}`);
  };
  const positive = (name: string, v: unknown): void => {
    if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
      fail(`${name} must be a positive number, got ${String(v)}`);
    }
  };
  positive('intervalMs', o.intervalMs);
  positive('missThreshold', o.missThreshold);
  const r = {
    intervalMs: o.intervalMs,
    missThreshold: o.missThreshold,
    suspectMisses: o.suspectMisses ?? o.missThreshold / 2,
    recoverBeats: o.recoverBeats ?? 3,
    startupGraceMs: o.startupGraceMs ?? o.intervalMs * o.missThreshold,
    phiThreshold: o.phiThreshold ?? 0,
    phiSuspectThreshold: o.phiSuspectThreshold ?? (o.phiThreshold ?? 0) / 2,
    phiWindowSize: o.phiWindowSize ?? 100,
    phiMinStdDevMs: o.phiMinStdDevMs ?? o.intervalMs / 4,
  };
  positive('suspectMisses', r.suspectMisses);
  if (r.suspectMisses >= r.missThreshold) {
    fail(`suspectMisses (${r.suspectMisses}) must be less than missThreshold (${r.missThreshold})`);
  }
  if (r.intervalMs * r.missThreshold > MAX_TIMER_MS) {
    const timeout = r.intervalMs * r.missThreshold;
    fail(`intervalMs * missThreshold (${timeout} ms) exceeds the timer limit of ${MAX_TIMER_MS} ms`);
  }
  if (!(Number.isInteger(r.recoverBeats) && r.recoverBeats >= 1)) {
    fail(`recoverBeats must be an integer >= 1, got ${String(r.recoverBeats)}`);
  }
  if (!(typeof r.startupGraceMs === 'number' && r.startupGraceMs >= 0 && r.startupGraceMs <= MAX_TIMER_MS)) {
    fail(`startupGraceMs must be a number from 0 to ${MAX_TIMER_MS}, got ${String(r.startupGraceMs)}`);
  }
  if (!(typeof r.phiThreshold === 'number' && r.phiThreshold >= 0 && r.phiThreshold <= PHI_MAX)) {
    fail(`phiThreshold must be 0 (off) or a number up to ${PHI_MAX}, got ${String(r.phiThreshold)}`);
  }
  if (r.phiThreshold > 0) {
    positive('phiSuspectThreshold', r.phiSuspectThreshold);
    if (r.phiSuspectThreshold >= r.phiThreshold) {
      fail(`phiSuspectThreshold (${r.phiSuspectThreshold}) must be less than phiThreshold (${r.phiThreshold})`);
    }
  }
  if (!(Number.isInteger(r.phiWindowSize) && r.phiWindowSize >= 2)) {
    fail(`phiWindowSize must be an integer >= 2, got ${String(r.phiWindowSize)}`);
  }
  positive('phiMinStdDevMs', r.phiMinStdDevMs);
  return Object.freeze(r);
}

interface Deadline {
  at: number;
  to: DetectorState;
  reason: TransitionReason;
}

export class FailureDetector {
  private readonly clock: Clock;
  private readonly log: Logger;
  private raw: DetectorTunables;
  private opts: ResolvedDetectorOptions;
  private readonly window: ArrivalWindow;
  private readonly startedAt: number;
  private current: DetectorState = 'unknown';
  private last: number | undefined;
  /** Consecutive beats so far while `down`. */
  private recoveryRun = 0;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private readonly listeners: StateListener[] = [];
  private readonly counters: Omit<DetectorStats, 'transitions'> = {
    beats: 0,
    ignoredBeats: 0,
    suspicions: 0,
    suspicionsCleared: 0,
    downs: 0,
    recoveries: 0,
    brokenRecoveries: 0,
    listenerErrors: 0,
  };
  private readonly transitions: Partial<Record<TransitionKind, number>> = {};

  constructor(options: FailureDetectorOptions) {
    const { clock, logger, name, ...tunables } = options;
    this.opts = resolveDetectorOptions(tunables);
    this.raw = tunables;
    this.clock = clock ?? systemClock;
    this.log = (logger ?? silentLogger()).child({ component: 'failure-detector', ...(name ? { detector: name } : {}) });
    this.window = new ArrivalWindow(this.windowOptions());
    this.startedAt = this.clock.now();
    // Arm the grace timer directly rather than through evaluate(): even a zero grace must fire on
    // a later timer turn, after the caller has attached its listeners, never inside the constructor.
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.evaluate();
    }, this.opts.startupGraceMs);
  }

  get state(): DetectorState {
    return this.current;
  }

  /** Clock time of the last accepted beat; undefined before the first. */
  get lastBeatAt(): number | undefined {
    return this.last;
  }

  get options(): ResolvedDetectorOptions {
    return this.opts;
  }

  /** Silence so far: since the last beat, or since the detector started if there was none. */
  silentForMs(): number {
    return this.clock.now() - (this.last ?? this.startedAt);
  }

  /** Current phi; undefined when phi is off or no beat has arrived yet. */
  phi(): number | undefined {
    if (this.opts.phiThreshold === 0 || this.last === undefined) return undefined;
    return this.window.phi(this.clock.now() - this.last);
  }

  /**
   * While `down`: consecutive beats so far out of those needed. A run whose last beat is a
   * timeout or more ago has lapsed and counts 0. undefined in any other state.
   */
  recoveryProgress(): { beats: number; needed: number } | undefined {
    if (this.current !== 'down') return undefined;
    const lapsed = this.last === undefined || this.clock.now() - this.last >= this.timeoutMs();
    return { beats: lapsed ? 0 : this.recoveryRun, needed: this.opts.recoverBeats };
  }

  stats(): DetectorStats {
    return { ...this.counters, transitions: { ...this.transitions } };
  }

  on(event: 'state', listener: StateListener): this {
    if (event === 'state') this.listeners.push(listener);
    return this;
  }

  off(event: 'state', listener: StateListener): this {
    const i = event === 'state' ? this.listeners.indexOf(listener) : -1;
    if (i >= 0) this.listeners.splice(i, 1);
    return this;
  }

  /**
   * A valid heartbeat arrived at `at` (default now; a future time counts as now). Returns false
   * when the beat was ignored: not newer than the last one (a late copy from a slower link) or
   * the detector is stopped.
   */
  beat(at: number = this.clock.now()): boolean {
    if (Number.isNaN(at)) throw new RangeError('failure detector: beat time must be a number, got NaN');
    const now = this.clock.now();
    const t = Math.min(at, now);
    const prev = this.last;
    if (this.stopped || (prev !== undefined && t <= prev)) {
      this.counters.ignoredBeats++;
      return false;
    }
    const gap = prev === undefined ? t - this.startedAt : t - prev;
    const timeout = this.timeoutMs();
    this.counters.beats++;
    this.last = t;
    // A gap of a whole timeout or more is an outage, not jitter: learning it would inflate the
    // mean and slow phi down for the next hundred beats.
    if (prev !== undefined && gap < timeout) this.window.add(gap);

    if (prev === undefined) {
      this.setState('up', 'first-contact', now, gap);
    } else if (this.current === 'suspect') {
      this.setState('up', 'beat', now, gap);
    } else if (this.current === 'down') {
      if (this.recoveryRun > 0 && gap < timeout) {
        this.recoveryRun++;
      } else {
        if (this.recoveryRun > 0) this.counters.brokenRecoveries++;
        this.recoveryRun = 1;
      }
      if (this.recoveryRun >= this.opts.recoverBeats) this.setState('up', 'recovered', now, gap);
    }
    this.evaluate();
    return true;
  }

  /**
   * Reload thresholds (SIGHUP) keeping state, last beat, recovery progress and counters. Keys left
   * out keep their value; a key set to undefined returns to its default. The pending deadline is
   * recomputed at once from the last beat, so a shorter timeout applies to the current silence,
   * and a deadline that has already passed fires inside this call. A changed intervalMs also
   * clears the phi samples: they describe the old rate and would make phi fire early (or late).
   * Invalid options throw DetectorOptionsError and change nothing.
   */
  updateOptions(partial: Partial<DetectorTunables>): void {
    const raw = { ...this.raw, ...partial };
    const next = resolveDetectorOptions(raw);
    const intervalChanged = next.intervalMs !== this.opts.intervalMs;
    this.raw = raw;
    this.opts = next;
    this.window.configure(this.windowOptions());
    if (intervalChanged) this.window.reset();
    this.log.info({ options: next }, 'failure detector options updated');
    this.evaluate();
  }

  /** Clear every timer; afterwards the state is frozen and beats are ignored. */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
  }

  private timeoutMs(): number {
    return this.opts.intervalMs * this.opts.missThreshold;
  }

  private windowOptions() {
    return {
      intervalMs: this.opts.intervalMs,
      capacity: this.opts.phiWindowSize,
      minStdDevMs: this.opts.phiMinStdDevMs,
    };
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** The next deadline-driven transition from the current state, if any. */
  private nextDeadline(now: number): Deadline | undefined {
    if (this.current === 'down') return undefined; // only beats leave down
    if (this.last === undefined) {
      return { at: this.startedAt + this.opts.startupGraceMs, to: 'down', reason: 'startup-grace' };
    }
    const o = this.opts;
    const suspectAt = this.last + o.intervalMs * o.suspectMisses;
    let suspect: Deadline = { at: suspectAt, to: 'suspect', reason: 'suspect-timeout' };
    let down: Deadline = { at: this.last + this.timeoutMs(), to: 'down', reason: 'timeout' };
    if (o.phiThreshold > 0) {
      const phiSuspectAt = this.last + this.window.silenceForPhi(o.phiSuspectThreshold);
      if (phiSuspectAt < suspect.at) suspect = { at: phiSuspectAt, to: 'suspect', reason: 'suspect-phi' };
      const phiDownAt = this.last + this.window.silenceForPhi(o.phiThreshold);
      if (phiDownAt < down.at) down = { at: phiDownAt, to: 'down', reason: 'phi' };
    }
    if (this.current === 'suspect') return down;
    // From up: straight to down when that is already due (a stale beat time, a shortened timeout).
    return down.at - now <= DEADLINE_EPSILON_MS || down.at <= suspect.at ? down : suspect;
  }

  /**
   * Take every transition whose deadline has passed, then arm one timer for the next. Runs after
   * each beat, option change and timer; recomputing from scratch each time keeps one source of
   * truth and tolerates timers that fire a little early (they simply re-arm for the rest).
   */
  private evaluate(): void {
    this.clearTimer();
    while (!this.stopped) {
      const now = this.clock.now();
      const next = this.nextDeadline(now);
      if (!next) return;
      const wait = next.at - now;
      if (wait > DEADLINE_EPSILON_MS) {
        this.timer = this.clock.setTimeout(() => {
          this.timer = undefined;
          this.evaluate();
        }, wait);
        return;
      }
      this.setState(next.to, next.reason, now, this.silentForMs());
      this.clearTimer(); // a listener may have called beat(), which armed its own timer
    }
  }

  /** The one place the state changes: counts, logs and emits every transition. */
  private setState(to: DetectorState, reason: TransitionReason, at: number, silentForMs: number): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    const kind: TransitionKind = `${from}->${to}`;
    this.transitions[kind] = (this.transitions[kind] ?? 0) + 1;
    if (to === 'suspect') this.counters.suspicions++;
    if (to === 'down') {
      this.counters.downs++;
      this.recoveryRun = 0;
    }
    if (kind === 'suspect->up') this.counters.suspicionsCleared++;
    if (kind === 'down->up' && reason === 'recovered') this.counters.recoveries++;
    const change: StateChange = { from, to, at, silentForMs, reason };
    this.log.info(change, `peer ${from} -> ${to} (${reason})`);
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        // A broken listener must not leave the detector without its next timer.
        this.counters.listenerErrors++;
        this.log.error({ err }, 'failure detector state listener threw');
      }
    }
  }
}
