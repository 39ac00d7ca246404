/**
 * Runs one resume (continuous replication after a failover) on the current primary, exactly once
 * and with rollback: journal.begin -> prepare (drive-mirror until in sync) -> switchover (guest
 * paused from `stop` until COLO runs) -> journal.finish.
 *
 * Any failure (a step's error or timeout, QMP lost, the new secondary dying: the mirror job's
 * error, a failed migration) runs the rollback, which leaves the primary running solo as before.
 * Then the decision is abandoned ("rolled back: ..."), so the agent is not stuck with an
 * unfinished decision; only when the rollback itself fails is it finished as failed (an operator
 * must look). A half switch-over is never continued: an agent restarted with a running resume in
 * the journal calls recover(), which rolls it back.
 *
 * Before anything is sent, the executor checks that QEMU is a primary running solo with nothing
 * of a resume present (resumePreflight): this is what makes the rollback's deletions safe, since
 * everything it finds was added by the resume.
 */
import type { ColoAgentError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { QmpClient } from '../qmp/index.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ColoStepError, ResumePreconditionError } from './errors.js';
import type { FinishInput, Journal, JournalDecision } from './journal.js';
import { describeProfile, resolveQemuProfile, type QemuProfile } from './profile.js';
import { QmpEventLog } from './qmp-event-log.js';
import { runResumeSteps, type ResumeStepRecord, type ResumeStepsResult, type ResyncProgress } from './resume-runner.js';
import {
  isResumeSequenceName,
  RESYNC_JOB_ID,
  resumeProxyIds,
  resumeRollback,
  resumeSequenceByName,
  secondaryPrepare,
  withResumeDefaults,
  type DialAddress,
  type ResumePhase,
  type ResumeStep,
  type ResumeSequenceName,
  type ResumeTimeouts,
  type ResumeTopologyInput,
} from './resume-sequences.js';
import { toStepError } from './runner.js';

/** The QMP surface used; a QmpClient fits (same clock as the executor's). */
export type ResumeExecutorQmp = Pick<QmpClient, 'execute' | 'sessionInfo' | 'on' | 'off' | 'version'>;

export interface ResumeExecutorOptions {
  qmp: ResumeExecutorQmp;
  journal: Journal;
  colo: ResumeTopologyInput;
  /** qemu.profile from config: `auto` or an explicit version. */
  profile: string;
  /** Timeout of each QMP command (failover.stepTimeoutMs); the waits have their own. */
  stepTimeoutMs: number;
  /** The netdev of the proxy filters. Default hn0. */
  netdev?: string;
  /** drive-mirror bandwidth limit in bytes/s; absent or 0: unlimited. */
  resyncSpeed?: number;
  timeouts?: Partial<ResumeTimeouts>;
  clock?: Clock;
  logger?: Logger;
  /** After each step (journal line written); awaited. For metrics, logs, and tests' fault injection. */
  onStep?: (record: ResumeStepRecord) => void | Promise<void>;
  /** Resync progress (bytes copied of the disk), every timeouts.progressPollMs and at READY. */
  onProgress?: (progress: ResyncProgress) => void;
}

export interface ResumeRequest {
  sequence: ResumeSequenceName;
  /** Why (the handshake with the new secondary, an operator), for logs. */
  reason: string;
  /** The new secondary's host: the peer's (core/topology.ts resumeTargets). */
  peerHost: string;
  /** Where NBD / the migration dial, when something stands in between. Default peerHost with the colo ports. */
  nbd?: DialAddress;
  migration?: DialAddress;
  /** Journal decision id. Default `<sequence>-<ISO time>`. */
  id?: string;
  /** The arbiter's epoch, recorded with the decision. */
  epoch?: number;
}

export interface ResumeOutcome {
  ok: boolean;
  sequence: ResumeSequenceName;
  /** A failure was undone: the rollback ran and the guest runs solo again. */
  rolledBack: boolean;
  /** `stop` returned -> query-status said running (after COLO started, or after the rollback's cont). */
  pauseMs: number | undefined;
  /** `stop` returned -> the RESUME event (finer than pauseMs, which polls). */
  pauseByEventMs: number | undefined;
  /** drive-mirror sent -> BLOCK_JOB_READY. */
  resyncMs: number | undefined;
  /** The disk's length as the mirror reported it. */
  bytes: number | undefined;
  /** Every step run, in order, prepare/switchover/rollback. */
  steps: ResumeStepRecord[];
  /** What made it fail: a step error, or a ResumePreconditionError (nothing was sent then). */
  error?: ColoAgentError;
  /** The rollback's first failure (the guest may be paused or half-replicating: operator needed). */
  rollbackError?: ColoStepError;
  /** The journal decision as left (undefined when refused before begin). */
  decision?: JournalDecision;
  /** From recover(): an agent restart found this decision unfinished. */
  recovered: boolean;
  durationMs: number;
}

export interface RecoverOptions {
  /**
   * When the journal's resume had in fact completed (COLO mode primary, guest running, migration
   * in COLO), record it as finished instead of rolling it back. Default false: always roll back.
   */
  keepCompleted?: boolean;
}

/** Sequence names the journal records for resume decisions. */
export function isResumeDecision(d: Pick<JournalDecision, 'sequence'> | undefined): boolean {
  return d !== undefined && isResumeSequenceName(d.sequence);
}

export class ResumeExecutor {
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly opts: ResumeExecutorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'resume' });
  }

  /**
   * Runs the resume. Resolves with the outcome in every case QEMU can cause; rejects only when the
   * journal cannot be written (the agent must then stop acting on its own).
   */
  async run(req: ResumeRequest): Promise<ResumeOutcome> {
    const started = this.clock.now();
    const out = this.emptyOutcome(req.sequence, false);
    const refuse = (error: ColoAgentError): ResumeOutcome => {
      this.log.warn({ sequence: req.sequence, code: error.code, err: error.message }, 'resume refused; nothing sent');
      return { ...out, error, durationMs: this.clock.now() - started };
    };
    const unfinished = this.opts.journal.unfinished();
    if (unfinished) {
      const what = isResumeDecision(unfinished) ? 'an unfinished resume (call recover() first)' : `an unfinished ${unfinished.sequence}`;
      return refuse(new ResumePreconditionError('COLO_RESUME_BLOCKED', `the journal holds ${what}: decision ${unfinished.id} is ${unfinished.status}`));
    }
    let profile: QemuProfile;
    try {
      profile = resolveQemuProfile(this.opts.profile, this.opts.qmp.version);
    } catch (err) {
      return refuse(new ResumePreconditionError('COLO_RESUME_PRECONDITION', (err as Error).message, { cause: err }));
    }
    const seq = resumeSequenceByName(req.sequence, this.opts.colo, profile, {
      peerHost: req.peerHost,
      ...(req.nbd && { nbd: req.nbd }),
      ...(req.migration && { migration: req.migration }),
      ...(this.opts.netdev !== undefined && { netdev: this.opts.netdev }),
      ...(this.opts.resyncSpeed !== undefined && { resyncSpeed: this.opts.resyncSpeed }),
      ...(this.opts.timeouts && { timeouts: this.opts.timeouts }),
    });
    const problems = await resumePreflight(this.opts.qmp, this.opts.colo, req.sequence, this.opts.stepTimeoutMs);
    if (problems.length > 0) {
      return refuse(new ResumePreconditionError('COLO_RESUME_PRECONDITION', `not ready for ${req.sequence}: ${problems.join('; ')}`));
    }

    const events = new QmpEventLog(this.opts.qmp);
    try {
      const begun = await this.opts.journal.begin({
        id: req.id ?? `${req.sequence}-${new Date().toISOString()}`,
        ...(req.epoch !== undefined && { epoch: req.epoch }),
        sequence: req.sequence,
        roleBefore: 'primary',
        roleAfter: 'primary',
      });
      if (!begun.started) {
        return refuse(new ResumePreconditionError('COLO_RESUME_BLOCKED', `the journal holds an unfinished ${begun.unfinished.sequence} (${begun.unfinished.id})`));
      }
      out.decision = begun.decision;
      this.log.warn(
        { sequence: seq.name, decision: begun.decision.id, peer: seq.peer, profile: describeProfile(profile), reason: req.reason },
        'resume starting',
      );
      const prepare = await this.runPart('prepare', seq.prepare, events, out);
      const switchover = prepare.ok ? await this.runPart('switchover', seq.switchover, events, out) : undefined;
      const failed = !prepare.ok ? prepare : switchover && !switchover.ok ? switchover : undefined;
      if (!failed) {
        out.ok = true;
        await this.journalSwitchover(out);
        out.decision = await this.opts.journal.finish({ ok: true });
        this.measure(out, events);
        out.durationMs = this.clock.now() - started;
        this.log.warn({ sequence: seq.name, pauseMs: out.pauseMs, resyncMs: out.resyncMs, bytes: out.bytes }, 'resume finished: COLO runs');
        return out;
      }
      out.error = failed.error;
      this.log.error({ sequence: seq.name, phase: failed.phase, step: failed.error?.step, code: failed.error?.code, err: failed.error?.message }, 'resume failed; rolling back');
      await this.rollBack(seq.rollback, events, out, `rolled back: ${failed.phase} step "${failed.error?.step ?? '?'}" failed: ${failed.error?.message ?? 'unknown'}`);
      this.measure(out, events);
      out.durationMs = this.clock.now() - started;
      return out;
    } finally {
      events.close();
    }
  }

  /**
   * For an agent (re)starting: when the journal's unfinished decision is a resume, roll it back and
   * abandon it (or, with keepCompleted, finish it when COLO is in fact running). Undefined when
   * there is no unfinished resume decision. Rejects only for journal I/O.
   */
  async recover(opts: RecoverOptions = {}): Promise<ResumeOutcome | undefined> {
    const d = this.opts.journal.unfinished();
    if (!d || !isResumeSequenceName(d.sequence)) return undefined;
    const started = this.clock.now();
    const out = this.emptyOutcome(d.sequence, true);
    out.decision = d;
    let profile: QemuProfile;
    try {
      profile = resolveQemuProfile(this.opts.profile, this.opts.qmp.version);
    } catch (err) {
      out.error = new ResumePreconditionError('COLO_RESUME_PRECONDITION', (err as Error).message, { cause: err });
      out.durationMs = this.clock.now() - started;
      return out;
    }
    this.log.warn({ sequence: d.sequence, decision: d.id, status: d.status, completedSteps: d.completedSteps }, 'unfinished resume in the journal; recovering');
    const events = new QmpEventLog(this.opts.qmp);
    try {
      if (opts.keepCompleted && d.status === 'running' && (await this.coloRunning())) {
        out.ok = true;
        out.decision = await this.opts.journal.finish({ ok: true });
        this.log.warn({ decision: d.id }, 'the unfinished resume had completed: COLO runs; recorded as finished');
      } else {
        await this.rollBack(resumeRollback(this.opts.colo, profile, this.opts.timeouts ? { timeouts: this.opts.timeouts } : {}), events, out, `rolled back after an agent restart (decision was ${d.status})`);
      }
    } finally {
      events.close();
    }
    out.durationMs = this.clock.now() - started;
    return out;
  }

  private emptyOutcome(sequence: ResumeSequenceName, recovered: boolean): ResumeOutcome {
    return {
      ok: false,
      sequence,
      rolledBack: false,
      pauseMs: undefined,
      pauseByEventMs: undefined,
      resyncMs: undefined,
      bytes: undefined,
      steps: [],
      recovered,
      durationMs: 0,
    };
  }

  /**
   * Runs one part; each completed step goes to the journal. In the switch-over the guest is
   * paused, and a journal write (two fsyncs) per step would lengthen the pause: those lines are
   * written together once the part has ended (after the rollback's `cont` when it failed). The
   * journal's step list is a record for operators; recovery never depends on it (the rollback is
   * idempotent and always runs whole).
   */
  private async runPart(phase: ResumePhase, steps: readonly ResumeStep[], events: QmpEventLog, out: ResumeOutcome, continueOnFailure = false): Promise<ResumeStepsResult> {
    const { journal } = this.opts;
    const deferred = phase === 'switchover';
    const result = await runResumeSteps({
      qmp: this.opts.qmp,
      phase,
      steps,
      stepTimeoutMs: this.opts.stepTimeoutMs,
      events,
      continueOnFailure,
      clock: this.clock,
      // The root logger: the runner's child names its own component (a child of ours would carry `component` twice).
      ...(this.opts.logger && { logger: this.opts.logger }),
      ...(this.opts.onProgress && { onProgress: this.opts.onProgress }),
      onStep: async (rec) => {
        out.steps.push(rec);
        if (rec.outcome !== 'failed' && !deferred) await journal.stepDone(`${phase}/${rec.name}`);
        await this.opts.onStep?.(rec);
      },
    });
    for (const h of result.hookErrors) this.log.error({ step: h.step, err: h.error }, 'journal write or onStep hook failed during the resume');
    return result;
  }

  /** Writes the switch-over's completed steps to the journal (deferred out of the guest's pause). */
  private async journalSwitchover(out: ResumeOutcome): Promise<void> {
    for (const rec of out.steps) {
      if (rec.phase === 'switchover' && rec.outcome !== 'failed') await this.opts.journal.stepDone(`switchover/${rec.name}`);
    }
  }

  /** Rollback, then abandon (guest runs solo) or finish failed (operator needed). */
  private async rollBack(steps: readonly ResumeStep[], events: QmpEventLog, out: ResumeOutcome, reason: string): Promise<void> {
    const rb = await this.runPart('rollback', steps, events, out, true);
    await this.journalSwitchover(out);
    const running = await this.guestRunning();
    if (rb.ok && running) {
      out.rolledBack = true;
      out.decision = await this.opts.journal.abandon(reason);
      this.log.warn({ decision: out.decision.id }, 'resume rolled back: the primary runs solo as before');
      return;
    }
    const rbError =
      rb.error ?? new ColoStepError('COLO_STEP_FAILED', 'cont-if-paused', 'query-status', 'the guest does not run after the rollback', { errorClass: 'GuestNotRunning', desc: 'not running' });
    out.rollbackError = rbError;
    out.error ??= rbError;
    const orig = out.error;
    const finish: FinishInput = {
      ok: false,
      error: {
        code: rbError.code,
        step: `rollback/${rbError.step}`,
        message: `rollback failed (${rbError.message})${orig !== rbError ? ` after: ${orig.message}` : ''}`,
        errorClass: rbError.errorClass,
        desc: rbError.desc,
      },
    };
    const current = this.opts.journal.current();
    if (current?.status === 'running') out.decision = await this.opts.journal.finish(finish);
    this.log.error({ err: rbError.message, running }, 'resume rollback FAILED: the primary may be paused or half-replicating; operator needed');
  }

  private async guestRunning(): Promise<boolean> {
    try {
      const st = await this.opts.qmp.execute<{ running: boolean }>('query-status', undefined, { timeoutMs: this.opts.stepTimeoutMs });
      return st.running === true;
    } catch {
      return false;
    }
  }

  private async coloRunning(): Promise<boolean> {
    try {
      const t = { timeoutMs: this.opts.stepTimeoutMs };
      const [colo, vm, mig] = await Promise.all([
        this.opts.qmp.execute<{ mode: string }>('query-colo-status', undefined, t),
        this.opts.qmp.execute<{ running: boolean }>('query-status', undefined, t),
        this.opts.qmp.execute<{ status?: string }>('query-migrate', undefined, t),
      ]);
      return colo.mode === 'primary' && vm.running && mig.status === 'colo';
    } catch {
      return false;
    }
  }

  /** pause, resync and bytes from the step records and events. */
  private measure(out: ResumeOutcome, events: QmpEventLog): void {
    const find = (phase: ResumePhase, name: string) => out.steps.find((r) => r.phase === phase && r.name === name && r.outcome !== 'failed');
    const mirror = find('prepare', 'drive-mirror');
    const ready = find('prepare', `wait-job-ready ${RESYNC_JOB_ID}`);
    if (mirror && ready) {
      out.resyncMs = (ready.eventAt ?? ready.endedAt) - mirror.startedAt;
      out.bytes = ready.bytes;
    }
    const stop = find('switchover', 'stop');
    if (!stop) return;
    const running = out.ok ? find('switchover', 'wait-colo') : find('rollback', 'cont-if-paused');
    if (running) out.pauseMs = running.endedAt - stop.endedAt;
    const resume = events.since(0).find((e) => e.event === 'RESUME' && e.receivedAt >= stop.startedAt);
    if (resume) out.pauseByEventMs = resume.receivedAt - stop.endedAt;
  }
}

/**
 * What stands in the way of `sequence` on this QEMU (empty: ready). Read-only. A primary running
 * solo: COLO mode none, guest running, no resync job, no replication node, none of the five proxy
 * objects; rew0 present exactly for the secondary resume (a former secondary keeps its filter-rewriter).
 */
export async function resumePreflight(qmp: Pick<QmpClient, 'execute'>, colo: ResumeTopologyInput, sequence: ResumeSequenceName, timeoutMs: number): Promise<string[]> {
  const c = withResumeDefaults(colo);
  const t = { timeoutMs };
  const problems: string[] = [];
  let command = 'query-colo-status';
  try {
    const coloStatus = await qmp.execute<{ mode: string }>(command, undefined, t);
    if (coloStatus.mode !== 'none') problems.push(`COLO mode is ${coloStatus.mode}, not none`);
    command = 'query-status';
    const vm = await qmp.execute<{ running: boolean; status: string }>(command, undefined, t);
    if (!vm.running) problems.push(`the guest is ${vm.status}, not running`);
    command = 'query-block-jobs';
    const jobs = await qmp.execute<Array<{ device: string }>>(command, undefined, t);
    if (jobs.some((j) => j.device === RESYNC_JOB_ID)) problems.push(`block job ${RESYNC_JOB_ID} exists`);
    command = 'query-named-block-nodes';
    const nodes = await qmp.execute<Array<{ 'node-name': string }>>(command, { flat: true }, t);
    if (nodes.some((n) => n['node-name'] === c.replicationNode)) problems.push(`block node ${c.replicationNode} exists`);
    command = 'qom-list';
    const objects = (await qmp.execute<Array<{ name: string; type: string }>>(command, { path: '/objects' }, t)).filter((p) => p.type.startsWith('child<')).map((p) => p.name);
    const present = resumeProxyIds(c).filter((id) => objects.includes(id));
    if (present.length > 0) problems.push(`proxy objects present: ${present.join(', ')}`);
    const hasRewriter = objects.includes(c.ids.rew0);
    if (sequence === 'secondary-resume' && !hasRewriter) problems.push(`${c.ids.rew0} is missing: this primary was not a secondary (use primary-resume)`);
    if (sequence === 'primary-resume' && hasRewriter) problems.push(`${c.ids.rew0} is present: this primary was a secondary (use secondary-resume)`);
  } catch (err) {
    problems.push(toStepError('preflight', command, err).message);
  }
  return problems;
}

export interface SecondaryPrepareRunOptions {
  qmp: Pick<QmpClient, 'execute' | 'sessionInfo' | 'on' | 'off' | 'version'>;
  colo: ResumeTopologyInput;
  /** qemu.profile (`auto` or a version) or a resolved profile. */
  profile: string | QemuProfile;
  /** The address the NBD server listens on (the new secondary's host, or 0.0.0.0). */
  ownHost: string;
  stepTimeoutMs: number;
  clock?: Clock;
  logger?: Logger;
}

/**
 * Runs secondaryPrepare on the NEW secondary's QEMU (its agent's side of the resume handshake).
 * Idempotent; never rejects (a bad profile is a failed result too).
 */
export async function runSecondaryPrepare(opts: SecondaryPrepareRunOptions): Promise<ResumeStepsResult> {
  let profile: QemuProfile;
  try {
    profile = typeof opts.profile === 'string' ? resolveQemuProfile(opts.profile, opts.qmp.version) : opts.profile;
  } catch (err) {
    const error = toStepError('profile', '-', err);
    return { phase: 'secondary-prepare', ok: false, records: [], error, failures: [error], notRun: [], hookErrors: [], durationMs: 0 };
  }
  return runResumeSteps({
    qmp: opts.qmp,
    phase: 'secondary-prepare',
    steps: secondaryPrepare(opts.colo, profile, { ownHost: opts.ownHost }).steps,
    stepTimeoutMs: opts.stepTimeoutMs,
    ...(opts.clock && { clock: opts.clock }),
    ...(opts.logger && { logger: opts.logger }),
  });
}
