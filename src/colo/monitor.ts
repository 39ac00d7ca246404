/**
 * ColoMonitor: what our QEMU's COLO is doing, from `query-colo-status` polls plus QEMU's STOP /
 * RESUME / COLO_EXIT events. A drop-in superset of ColoStatusPoller (status, start, stop, poll,
 * `change`) that also accounts checkpoints and notices a checkpoint that never ends.
 *
 * QEMU has no checkpoint counter (query-migrate says just `{status: colo}`): a checkpoint shows
 * only as STOP then RESUME while in COLO mode (facts §3). The pause is measured with QEMU's own
 * event timestamps (RESUME minus STOP), never with our arrival times, so a slow socket or a busy
 * agent does not inflate it.
 *
 * Where we are, as a phase (decided by polls and COLO_EXIT, never by STOP/RESUME alone):
 * - `unknown`: nothing answered yet, or the QMP connection was lost (events may have been missed).
 * - `outside`: query-colo-status said mode none.
 * - `entering`: a poll said primary/secondary after one had said none, and the RESUME that ends
 *   the migration into COLO has not arrived yet.
 * - `inside`: in COLO, the colo-start pause is behind us: STOP/RESUME pairs are checkpoints.
 * - `exited`: COLO_EXIT arrived. Only a poll answering none leaves it (to `outside`): after
 *   COLO_EXIT reason error, QEMU 7.2's secondary keeps reporting mode secondary until
 *   x-colo-lost-heartbeat, and that failover's own STOP/RESUME must not count as a checkpoint.
 *
 * The colo-start rule. QEMU sets the COLO migration state before the `vm_start()` that ends the
 * migration into COLO (migration/colo.c, both sides): that RESUME comes after a poll can see the
 * COLO mode, and before any checkpoint. Measured on 7.2 (test/fixtures/qmp-transcripts/
 * monitor-colo-start-*): a primary that ran its guest emits STOP at the migration's
 * completion and RESUME at COLO start; a primary started with -S and the incoming secondary emit
 * only that RESUME. Hence:
 * - A RESUME in `entering` is the colo-start.
 * - A RESUME in `outside` (with or without a STOP before it) becomes a candidate, and we poll at
 *   once: if the first poll *sent after that RESUME arrived* answers primary/secondary, it was the
 *   colo-start; if it answers none, it was an ordinary pause outside COLO (an operator's stop/cont,
 *   `cont` of a -S VM) and is dropped. A STOP arriving before the candidate is decided drops it
 *   (the VM ran again, so that RESUME was not the last one before COLO).
 * - A colo-start without a STOP seen has pauseMs 0 and stopAt === resumeAt.
 * - Measured on 11.1.3 (monitor-*-qemu-11.1.3, polls every 20 ms; query-status alongside): the
 *   same events as 7.2 (running primary: STOP at completion, RESUME at COLO start; -S primary and
 *   secondary: that RESUME only; checkpoints complete under TCG, STOP/RESUME 50-90 ms apart on
 *   both sides), but the COLO mode shows earlier: the primary answers primary ~25-40 ms before its
 *   colo-start RESUME (runstate finish-migrate), the secondary answers secondary ~8 ms before its
 *   RESUME (runstate still inmigrate); on 7.2 the secondary's mode and RESUME came together. An
 *   agent that connects inside that window (the e2e lab's secondary) gets mode secondary as its
 *   first answer, from `unknown`. Hence: when the first answer after `unknown` says
 *   primary/secondary and no STOP is pending, the phase is `inside` but a RESUME with no STOP
 *   before it, arriving before any other STOP or RESUME, is the colo-start (pause 0), not
 *   `resume-without-stop`. Cost: attaching to a QEMU long in COLO in the middle of a checkpoint
 *   (STOP missed, then its RESUME) counts one colo-start instead of that anomaly; never a checkpoint.
 * - A pair whose STOP or RESUME came in `unknown` and which turns out to be in COLO cannot be told
 *   apart (colo-start or checkpoint?): it is counted as anomaly `unclassified-pause`, no event.
 *   The agent polls at start, so in practice `unknown` only covers the first round trip.
 * colo-start pauses are emitted with kind `colo-start` and never counted as checkpoints.
 *
 * Odd event streams, each handled without a bogus pause and counted in `anomalies`:
 * - `duplicate`: the same event name with the same QEMU timestamp as the previous one of that
 *   name; ignored entirely.
 * - `stop-while-stopped`: a STOP while a STOP is pending. QEMU emits STOP only for a running VM,
 *   so we missed a RESUME: the older pause is dropped, the new STOP starts a fresh pause and a
 *   fresh stall timer (a stall in progress is cleared: the VM evidently ran in between).
 * - `resume-without-stop`: a RESUME in `inside` with no pending STOP (other than the attach case
 *   above); ignored. (Outside COLO a
 *   lone RESUME is normal: `cont`, an incoming migration; it is not counted.)
 * - `resume-before-stop`: a RESUME whose timestamp is earlier than the pending STOP's; the VM
 *   is running, so the pause ends, but no checkpoint is emitted.
 * - `unclassified-pause`: see above.
 *
 * Stalls: a STOP in `inside` with no RESUME for stallAfterMs (the injectable Clock's timer, from
 * the STOP's arrival) emits `stalled` once and sets `stalled`: QEMU 7.2 under TCG deadlocks the
 * primary exactly there (facts §3; measured here: usually at the first checkpoint, sometimes at
 * the second or third), and it is evidence that our QEMU is unhealthy. The RESUME
 * that finally comes (the checkpoint is then counted: it did complete), COLO ending (COLO_EXIT, a
 * poll answering none) or the QMP connection dropping emits `stall-cleared`.
 *
 * Polls follow ColoStatusPoller: a failed poll reports mode `unknown` and never throws. An
 * unknown answer does not change the phase (the deadlocked primary answers nothing, yet is still
 * in COLO). poll() while a poll is in flight runs one more right after it (callers asking "now"
 * get an answer sent after their call); concurrent callers share that follow-up. Periodic polling
 * runs between start() and stop() only.
 */
import { EventEmitter } from 'node:events';
import type { ColoModeName } from '../heartbeat/messages.js';
import { silentLogger, type Logger } from '../log.js';
import type { QmpClient, QmpEvent, QmpStatusChange, QmpTimestamp } from '../qmp/index.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import type { CheckpointEvent, ColoMonitorEvents, ColoStatus } from './monitor-events.js';

export interface ColoMonitorOptions {
  qmp: QmpClient;
  /** Period of query-colo-status polls, ms. */
  pollPeriodMs: number;
  /** A STOP with no RESUME for this long while in COLO is a stalled checkpoint. Default 5000. */
  stallAfterMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export const COLO_MONITOR_DEFAULTS = { stallAfterMs: 5000 } as const;

export const COLO_MONITOR_ANOMALIES = ['duplicate', 'stop-while-stopped', 'resume-without-stop', 'resume-before-stop', 'unclassified-pause'] as const;
export type ColoMonitorAnomaly = (typeof COLO_MONITOR_ANOMALIES)[number];

export type ColoMonitorPhase = 'unknown' | 'outside' | 'entering' | 'inside' | 'exited';

interface PendingStop {
  stamp: QmpTimestamp;
  /** QEMU's timestamp as epoch ms. */
  at: number;
  /** Our Clock.now() when it arrived: the stall timer runs from here. */
  localAt: number;
  /** The phase it arrived in: decides what its RESUME completes. */
  phase: ColoMonitorPhase;
}

/** A RESUME outside COLO that may have been the colo-start; the next poll decides. */
interface StartCandidate {
  stop: PendingStop | undefined;
  resume: QmpTimestamp;
  resumeAt: number;
  /** `unknown` when we could not have known whether COLO had already started. */
  phase: ColoMonitorPhase;
  /** Decided by the first poll whose sequence number is above this. */
  afterPoll: number;
}

type ReplyMode = { mode?: string; 'last-mode'?: string; reason?: string };

const COLO_MODES: readonly string[] = ['primary', 'secondary'];
const KNOWN_MODES: readonly string[] = ['none', ...COLO_MODES];
const LOST: readonly string[] = ['reconnecting', 'disconnected', 'closed'];

function positive(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`${name} must be a positive finite number, got ${value}`);
  return value;
}

/** b - a in ms from QEMU's integer stamps (exact to the microsecond, no float drift). */
function stampDiffMs(a: QmpTimestamp, b: QmpTimestamp): number {
  return (b.seconds - a.seconds) * 1000 + (b.microseconds - a.microseconds) / 1000;
}

function stampKey(ts: QmpTimestamp): string {
  return `${ts.seconds}.${ts.microseconds}`;
}

export class ColoMonitor extends EventEmitter<ColoMonitorEvents> {
  private readonly qmp: QmpClient;
  private readonly pollPeriodMs: number;
  private readonly stallAfterMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;

  private current: ColoStatus = { mode: 'unknown' };
  private phaseValue: ColoMonitorPhase = 'unknown';
  private started = false;
  private pollTimer: TimerHandle | undefined;
  private pollsSent = 0;
  private running: Promise<ColoStatus> | undefined;
  private queued: Promise<ColoStatus> | undefined;

  private pending: PendingStop | undefined;
  private candidate: StartCandidate | undefined;
  /**
   * Set when the first answer after `unknown` said primary/secondary: we may have attached between
   * QEMU setting the COLO mode and the colo-start RESUME (QEMU 11.1, see the file comment). Until
   * the next STOP or RESUME, a RESUME with no STOP before it is that colo-start.
   */
  private attachedInColo = false;
  private readonly lastStamp = new Map<string, string>();

  private stallTimer: TimerHandle | undefined;
  /** The STOP we declared stalled, while stalled. */
  private stalledStop: PendingStop | undefined;

  private checkpointCount = 0;
  private coloStartCount = 0;
  private stallCount = 0;
  private lastCheckpoint: number | undefined;
  private lastPause: number | undefined;
  private readonly anomalyCounts = Object.fromEntries(COLO_MONITOR_ANOMALIES.map((k) => [k, 0])) as Record<ColoMonitorAnomaly, number>;

  constructor(opts: ColoMonitorOptions) {
    super();
    this.qmp = opts.qmp;
    this.pollPeriodMs = positive('pollPeriodMs', opts.pollPeriodMs);
    this.stallAfterMs = positive('stallAfterMs', opts.stallAfterMs ?? COLO_MONITOR_DEFAULTS.stallAfterMs);
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'colo-monitor' });
  }

  // ---- the poller's API ----

  /** The latest poll's answer (mode unknown when QEMU could not be asked). */
  get status(): ColoStatus {
    return this.current;
  }

  /** Listen to QEMU's events and poll now and every pollPeriodMs. Idempotent. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.qmp.on('event', this.onEvent);
    this.qmp.on('status', this.onQmpStatus);
    void this.poll();
  }

  /** Clear every timer and remove every listener this monitor added. start() may be called again. */
  stop(): void {
    this.started = false;
    this.clock.clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.clock.clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.qmp.off('event', this.onEvent);
    this.qmp.off('status', this.onQmpStatus);
  }

  /** One poll sent now (or right after the one in flight); also what the timer runs. Never throws. */
  poll(): Promise<ColoStatus> {
    if (!this.running) return this.runPoll();
    this.queued ??= this.running.then(() => {
      this.queued = undefined;
      return this.runPoll();
    });
    return this.queued;
  }

  // ---- metrics ----

  /** Where the monitor thinks QEMU is (see the file comment). */
  get phase(): ColoMonitorPhase {
    return this.phaseValue;
  }

  /** Completed checkpoints (colo-start pauses not included). */
  get checkpoints(): number {
    return this.checkpointCount;
  }

  /** colo-start pauses seen (one per migration into COLO). */
  get coloStarts(): number {
    return this.coloStartCount;
  }

  /** QEMU's RESUME timestamp (epoch ms) of the last completed checkpoint. */
  get lastCheckpointAt(): number | undefined {
    return this.lastCheckpoint;
  }

  /** Pause of the last completed checkpoint, ms. */
  get lastPauseMs(): number | undefined {
    return this.lastPause;
  }

  /** A checkpoint has begun (STOP in COLO) and not ended. */
  get inProgress(): boolean {
    return this.phaseValue === 'inside' && this.pending !== undefined;
  }

  /** A checkpoint has been stopped for stallAfterMs or more: evidence that our QEMU is unhealthy. */
  get stalled(): boolean {
    return this.stalledStop !== undefined;
  }

  /** How many times a checkpoint was declared stalled. */
  get stalls(): number {
    return this.stallCount;
  }

  /** Odd event streams seen, by kind (a copy). */
  get anomalies(): Readonly<Record<ColoMonitorAnomaly, number>> {
    return { ...this.anomalyCounts };
  }

  // ---- polling ----

  private runPoll(): Promise<ColoStatus> {
    const p = this.pollOnce().finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return p;
  }

  private async pollOnce(): Promise<ColoStatus> {
    this.clock.clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    const seq = ++this.pollsSent;
    let next: ColoStatus = { mode: 'unknown' };
    const s = this.qmp.status;
    if (s === 'ready' || s === 'unhealthy') {
      try {
        const r = await this.qmp.execute<ReplyMode>('query-colo-status');
        const mode = KNOWN_MODES.includes(r.mode ?? '') ? (r.mode as ColoModeName) : 'unknown';
        next = { mode, lastMode: r['last-mode'], reason: r.reason };
      } catch (err) {
        this.log.debug({ err }, 'query-colo-status failed');
      }
    }
    this.update(next);
    if (next.mode !== 'unknown') this.onAnswer(next.mode, seq);
    if (this.started) {
      this.clock.clearTimeout(this.pollTimer);
      this.pollTimer = this.clock.setTimeout(() => void this.poll(), this.pollPeriodMs);
    }
    return next;
  }

  private update(next: ColoStatus): void {
    const prev = this.current;
    this.current = next;
    if (prev.mode !== next.mode || prev.lastMode !== next.lastMode || prev.reason !== next.reason) {
      this.log.info({ from: prev, to: next }, 'COLO status changed');
      this.fire('change', prev, next);
    }
  }

  /** A poll answered (mode none, primary or secondary): decide a candidate, move the phase. */
  private onAnswer(mode: ColoModeName, seq: number): void {
    const inColo = COLO_MODES.includes(mode);
    const c = this.candidate;
    if (c && seq > c.afterPoll) {
      this.candidate = undefined;
      if (inColo && c.phase === 'outside') {
        this.pause('colo-start', c.stop?.stamp ?? c.resume, c.resume);
        this.setPhase('inside', 'the colo-start RESUME came');
      } else if (inColo) {
        this.anomaly('unclassified-pause', 'a pause seen before we knew whether COLO had started', { resumeAt: c.resumeAt });
      } else {
        this.log.debug({ resumeAt: c.resumeAt }, 'a pause outside COLO (stop/cont): not a checkpoint');
      }
    }
    if (!inColo) {
      // From `unknown` a pending STOP is kept (still tagged unknown): it may predate this answer.
      if (this.phaseValue === 'inside' || this.phaseValue === 'entering' || this.phaseValue === 'exited') this.leaveColo('query-colo-status says mode none');
      this.setPhase('outside', 'query-colo-status says mode none');
      return;
    }
    if (this.phaseValue === 'unknown') {
      // Attached to a QEMU already in COLO: pairs from now on are checkpoints; but a lone RESUME
      // before any STOP is the colo-start we attached just ahead of (QEMU 11.1).
      this.attachedInColo = this.pending === undefined;
      this.setPhase('inside', `query-colo-status says mode ${mode}`);
      this.armStall();
    } else if (this.phaseValue === 'outside') {
      this.setPhase('entering', `query-colo-status says mode ${mode}`);
    }
  }

  // ---- QEMU's events ----

  private readonly onEvent = (ev: QmpEvent): void => {
    if (ev.event !== 'STOP' && ev.event !== 'RESUME' && ev.event !== 'COLO_EXIT') return;
    const key = stampKey(ev.timestamp);
    if (this.lastStamp.get(ev.event) === key) {
      this.anomaly('duplicate', `${ev.event} repeated with the same timestamp; ignored`, { at: ev.timestampMs });
      return;
    }
    this.lastStamp.set(ev.event, key);
    if (ev.event === 'STOP') this.onStop(ev);
    else if (ev.event === 'RESUME') this.onResume(ev);
    else this.onColoExit(ev);
  };

  private onStop(ev: QmpEvent): void {
    if (this.pending) {
      this.anomaly('stop-while-stopped', 'STOP while already stopped: a RESUME was missed; the new STOP starts a new pause', {
        previousStopAt: this.pending.at,
        at: ev.timestampMs,
      });
      this.clearStall('STOP while stopped: the VM ran in between');
    }
    if (this.candidate) {
      this.log.debug({ resumeAt: this.candidate.resumeAt }, 'the VM stopped again before the RESUME could be classified: not the colo-start');
      this.candidate = undefined;
    }
    this.attachedInColo = false;
    this.pending = { stamp: ev.timestamp, at: ev.timestampMs, localAt: this.clock.now(), phase: this.phaseValue };
    this.armStall();
  }

  private onResume(ev: QmpEvent): void {
    const stop = this.pending;
    this.pending = undefined;
    if (stop) this.attachedInColo = false;
    if (stop && stampDiffMs(stop.stamp, ev.timestamp) < 0) {
      this.anomaly('resume-before-stop', 'RESUME stamped before the pending STOP: pause dropped', { stopAt: stop.at, resumeAt: ev.timestampMs });
      this.clearStall('RESUME');
      return;
    }
    this.clearStall('RESUME');
    switch (this.phaseValue) {
      case 'inside':
        if (!stop && this.attachedInColo) {
          this.attachedInColo = false;
          this.pause('colo-start', ev.timestamp, ev.timestamp);
        } else if (!stop) this.anomaly('resume-without-stop', 'RESUME in COLO with no STOP before it; ignored', { at: ev.timestampMs });
        else if (stop.phase === 'inside') this.pause('checkpoint', stop.stamp, ev.timestamp);
        else this.anomaly('unclassified-pause', 'a pause that began before we knew whether COLO had started', { stopAt: stop.at });
        return;
      case 'entering':
        this.pause('colo-start', stop?.stamp ?? ev.timestamp, ev.timestamp);
        this.setPhase('inside', 'the colo-start RESUME came');
        return;
      case 'outside':
      case 'unknown': {
        const phase = this.phaseValue === 'unknown' || stop?.phase === 'unknown' ? 'unknown' : 'outside';
        this.candidate = { stop, resume: ev.timestamp, resumeAt: ev.timestampMs, phase, afterPoll: this.pollsSent };
        void this.poll();
        return;
      }
      case 'exited':
        // Likely the failover's own pause: see whether COLO is over.
        void this.poll();
        return;
    }
  }

  private onColoExit(ev: QmpEvent): void {
    const mode = typeof ev.data.mode === 'string' ? ev.data.mode : 'unknown';
    const reason = typeof ev.data.reason === 'string' ? ev.data.reason : 'unknown';
    this.log.warn({ mode, reason }, 'COLO_EXIT');
    this.leaveColo(`COLO_EXIT (${reason})`);
    this.setPhase('exited', `COLO_EXIT mode ${mode} reason ${reason}`);
    this.fire('colo-exit', { mode, reason, at: ev.timestampMs });
    void this.poll();
  }

  private readonly onQmpStatus = (change: QmpStatusChange): void => {
    if (LOST.includes(change.to)) {
      if (this.phaseValue !== 'unknown' || this.pending || this.candidate) {
        this.leaveColo(`QMP connection ${change.to}`);
        this.setPhase('unknown', `QMP connection ${change.to}: events may be missed`);
      }
      // Duplicates are judged within one session only.
      this.lastStamp.clear();
      if (this.current.mode !== 'unknown') void this.poll();
    } else if (change.to === 'ready' && change.from === 'connecting') {
      void this.poll();
    }
  };

  // ---- pauses and stalls ----

  private pause(kind: CheckpointEvent['kind'], stop: QmpTimestamp, resume: QmpTimestamp): void {
    const stopAt = stop.seconds * 1000 + stop.microseconds / 1000;
    const resumeAt = resume.seconds * 1000 + resume.microseconds / 1000;
    const ev: CheckpointEvent = { kind, pauseMs: stampDiffMs(stop, resume), stopAt, resumeAt };
    if (kind === 'checkpoint') {
      this.checkpointCount++;
      this.lastCheckpoint = resumeAt;
      this.lastPause = ev.pauseMs;
      this.log.debug({ pauseMs: ev.pauseMs }, 'checkpoint');
    } else {
      this.coloStartCount++;
      this.log.info({ pauseMs: ev.pauseMs }, 'COLO started');
    }
    this.fire('checkpoint', ev);
  }

  /** COLO ended or can no longer be followed: drop what was pending, end a stall. */
  private leaveColo(why: string): void {
    this.attachedInColo = false;
    this.pending = undefined;
    this.candidate = undefined;
    this.clearStall(why);
  }

  private armStall(): void {
    const p = this.pending;
    if (!p || this.phaseValue !== 'inside' || this.stallTimer !== undefined || this.stalledStop) return;
    const left = Math.max(0, p.localAt + this.stallAfterMs - this.clock.now());
    this.stallTimer = this.clock.setTimeout(() => this.onStallTimer(p), left);
  }

  private onStallTimer(p: PendingStop): void {
    this.stallTimer = undefined;
    if (this.pending !== p || this.phaseValue !== 'inside') return;
    // Node's timers may fire a fraction of a millisecond early by performance.now(): stalled
    // must mean stopped for at least stallAfterMs.
    const left = p.localAt + this.stallAfterMs - this.clock.now();
    if (left > 0) {
      this.stallTimer = this.clock.setTimeout(() => this.onStallTimer(p), left);
      return;
    }
    this.stalledStop = p;
    this.stallCount++;
    const stoppedForMs = this.clock.now() - p.localAt;
    this.log.warn({ stopAt: p.at, stoppedForMs }, 'checkpoint stalled: STOP with no RESUME');
    this.fire('stalled', { stopAt: p.at, stoppedForMs });
  }

  private clearStall(why: string): void {
    this.clock.clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    const s = this.stalledStop;
    if (!s) return;
    this.stalledStop = undefined;
    const stoppedForMs = this.clock.now() - s.localAt;
    this.log.warn({ stoppedForMs, why }, 'checkpoint stall cleared');
    this.fire('stall-cleared', { stoppedForMs });
  }

  // ---- plumbing ----

  private setPhase(to: ColoMonitorPhase, why: string): void {
    if (this.phaseValue === to) return;
    this.log.debug({ from: this.phaseValue, to, why }, 'COLO phase');
    this.phaseValue = to;
  }

  private anomaly(kind: ColoMonitorAnomaly, msg: string, fields: Record<string, unknown>): void {
    this.anomalyCounts[kind]++;
    this.log.warn({ anomaly: kind, ...fields }, msg);
  }

  /** Emit without letting a listener's exception unwind into our state changes or a timer. */
  private fire<K extends keyof ColoMonitorEvents>(name: K, ...args: ColoMonitorEvents[K]): void {
    try {
      (this.emit as (event: K, ...a: ColoMonitorEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      this.log.error({ err, event: name }, 'a ColoMonitor listener threw; ignored');
    }
  }
}
