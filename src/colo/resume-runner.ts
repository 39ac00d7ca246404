/**
 * Runs one part of a resume sequence (resume-sequences.ts) on a QMP connection, step by step.
 *
 * The same rules as the failover runner (runner.ts), for the same reasons: every command and
 * every wait has a timeout; it never throws or rejects (a QMP loss is a failed step with a typed
 * ColoStepError); no retries. Differences:
 * - wait steps (block job ready/gone, COLO running) and the rollback's conditional steps, which
 *   read QMP events from a QmpEventLog the caller opened before the first step;
 * - `continueOnFailure` for the rollback: every undo step runs even when one fails, so that the
 *   final `cont` is never skipped;
 * - each record carries its start and end on the caller's clock (pause and resync times).
 */
import { hmpSucceeded } from './hmp-reply.js';
import { silentLogger, type Logger } from '../log.js';
import type { QmpClient } from '../qmp/index.js';
import { QmpCommandError } from '../qmp/index.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ColoStepError } from './errors.js';
import { QmpEventLog, type LoggedEvent } from './qmp-event-log.js';
import { isResumeExistsError, isResumeMissingError } from './resume-already-done.js';
import type {
  CancelMigrationStep,
  ContIfPausedStep,
  LeaveColoStep,
  ResumeCommandStep,
  ResumePhase,
  ResumeStep,
  ResumeYankStep,
  WaitColoStep,
  WaitJobGoneStep,
  WaitJobReadyStep,
} from './resume-sequences.js';
import { toStepError } from './runner.js';
import { blockNodesUnder, parseYankInstances, resolveYank, type YankInstance, type YankTarget } from './yank.js';

/** The QMP surface used; a QmpClient fits. Its clock must be the runner's (events carry receivedAt). */
export type ResumeQmp = Pick<QmpClient, 'execute' | 'sessionInfo' | 'on' | 'off'>;

export type ResumeStepOutcome = 'done' | 'already-done' | 'failed';

export interface ResumeStepRecord {
  phase: ResumePhase;
  name: string;
  kind: ResumeStep['kind'];
  /** The QMP command for command steps; the kind for the others. */
  command: string;
  outcome: ResumeStepOutcome;
  optional: boolean;
  /** Clock times: the step's start, and when it ended (for `stop`: when QEMU's reply arrived). */
  startedAt: number;
  endedAt: number;
  durationMs: number;
  error?: ColoStepError;
  /** What a conditional step found, e.g. "migration status colo: nothing to cancel". */
  note?: string;
  /** yank: what was yanked. */
  yanked?: YankInstance[];
  /** wait-job-ready: the job's length in bytes. */
  bytes?: number;
  /** wait-job-ready: BLOCK_JOB_READY's arrival; wait-colo: the first RESUME's (the guest ran again). */
  eventAt?: number;
}

export interface ResyncProgress {
  job: string;
  offset: number;
  len: number;
  /** 0..100, one decimal. */
  percent: number;
  /** Since the wait began. */
  elapsedMs: number;
  ready: boolean;
}

export interface RunResumeStepsOptions {
  qmp: ResumeQmp;
  phase: ResumePhase;
  steps: readonly ResumeStep[];
  /** Timeout of each QMP command (the waits have their own overall timeout). */
  stepTimeoutMs: number;
  /** Opened before the first step of the operation; default: one opened (and closed) here. */
  events?: QmpEventLog;
  /** Run every step even after a required one failed (rollback). */
  continueOnFailure?: boolean;
  clock?: Clock;
  logger?: Logger;
  /** Awaited after each step; errors land in hookErrors (a lost journal line must not stop a rollback). */
  onStep?: (record: ResumeStepRecord) => void | Promise<void>;
  onProgress?: (progress: ResyncProgress) => void;
}

export interface ResumeStepsResult {
  phase: ResumePhase;
  /** No required step failed. */
  ok: boolean;
  records: ResumeStepRecord[];
  /** The first required failure. */
  error?: ColoStepError;
  /** Every failure, optional ones included. */
  failures: ColoStepError[];
  /** Steps not reached (not continueOnFailure). */
  notRun: string[];
  hookErrors: Array<{ step: string; error: unknown }>;
  durationMs: number;
}

interface Ctx {
  qmp: ResumeQmp;
  events: QmpEventLog;
  clock: Clock;
  stepTimeoutMs: number;
  /** Event mark taken when the step before this one started. */
  mark: number;
  onProgress?: (p: ResyncProgress) => void;
}

type StepResult = Omit<ResumeStepRecord, 'phase' | 'name' | 'kind' | 'command' | 'optional' | 'startedAt' | 'endedAt' | 'durationMs'>;

/** Runs `steps`. Resolves in every case; never rejects. */
export async function runResumeSteps(opts: RunResumeStepsOptions): Promise<ResumeStepsResult> {
  const clock = opts.clock ?? systemClock;
  const log = (opts.logger ?? silentLogger()).child({ component: 'colo-resume', phase: opts.phase });
  const ownEvents = opts.events === undefined;
  const events = opts.events ?? new QmpEventLog(opts.qmp);
  const started = clock.now();
  const result: ResumeStepsResult = { phase: opts.phase, ok: true, records: [], failures: [], notRun: [], hookErrors: [], durationMs: 0 };
  try {
    const dup = opts.steps.map((s) => s.name).find((n, i, all) => all.indexOf(n) !== i);
    if (dup !== undefined) throw new ColoStepError('COLO_STEP_ERROR', dup, '-', `two ${opts.phase} steps are named "${dup}"`);
    let mark = events.mark();
    for (let i = 0; i < opts.steps.length; i++) {
      const step = opts.steps[i] as ResumeStep;
      const ctx: Ctx = { qmp: opts.qmp, events, clock, stepTimeoutMs: opts.stepTimeoutMs, mark, ...(opts.onProgress && { onProgress: opts.onProgress }) };
      mark = events.mark();
      const t0 = clock.now();
      let partial: StepResult;
      try {
        partial = await runStep(step, ctx);
      } catch (err) {
        partial = { outcome: 'failed', error: err instanceof ColoStepError ? err : toStepError(step.name, commandOf(step), err) };
      }
      const endedAt = clock.now();
      const record: ResumeStepRecord = {
        phase: opts.phase,
        name: step.name,
        kind: step.kind,
        command: commandOf(step),
        optional: step.optional ?? false,
        startedAt: t0,
        endedAt,
        durationMs: endedAt - t0,
        ...partial,
      };
      result.records.push(record);
      logRecord(log, record);
      if (opts.onStep) {
        try {
          await opts.onStep(record);
        } catch (error) {
          log.error({ err: error, step: step.name }, 'resume onStep hook failed; continuing');
          result.hookErrors.push({ step: step.name, error });
        }
      }
      if (record.outcome === 'failed' && record.error) {
        result.failures.push(record.error);
        if (!record.optional) {
          result.ok = false;
          result.error ??= record.error;
          if (!opts.continueOnFailure) {
            result.notRun = opts.steps.slice(i + 1).map((s) => s.name);
            break;
          }
        }
      }
    }
  } catch (err) {
    result.ok = false;
    result.error = err instanceof ColoStepError ? err : new ColoStepError('COLO_STEP_ERROR', '-', '-', String(err), { cause: err });
    result.failures.push(result.error);
  } finally {
    if (ownEvents) events.close();
  }
  result.durationMs = clock.now() - started;
  return result;
}

function commandOf(step: ResumeStep): string {
  return step.kind === 'command' ? step.command : step.kind;
}

function logRecord(log: Logger, r: ResumeStepRecord): void {
  const fields = {
    step: r.name,
    outcome: r.outcome,
    durationMs: Math.round(r.durationMs * 10) / 10,
    ...(r.note && { note: r.note }),
    ...(r.yanked && { yanked: r.yanked }),
    ...(r.error && { code: r.error.code, errorClass: r.error.errorClass, desc: r.error.desc }),
  };
  if (r.outcome === 'failed') log.warn(fields, r.optional ? 'optional resume step failed; continuing' : 'resume step failed');
  else log.info(fields, 'resume step');
}

function runStep(step: ResumeStep, ctx: Ctx): Promise<StepResult> {
  switch (step.kind) {
    case 'command':
      return runCommand(step, ctx);
    case 'wait-job-ready':
      return waitJobReady(step, ctx);
    case 'wait-job-gone':
      return waitJobGone(step, ctx);
    case 'wait-colo':
      return waitColo(step, ctx);
    case 'yank':
      return runYank(step, ctx);
    case 'cancel-migration':
      return cancelMigration(step, ctx);
    case 'leave-colo':
      return leaveColo(step, ctx);
    case 'cont-if-paused':
      return contIfPaused(step, ctx);
  }
}

// ---- commands ----

async function runCommand(step: ResumeCommandStep, ctx: Ctx): Promise<StepResult> {
  let errorClass: string | undefined;
  let desc: string;
  let failure: ColoStepError;
  try {
    const value = await ctx.qmp.execute(step.command, step.args, { timeoutMs: step.timeoutMs ?? ctx.stepTimeoutMs });
    // HMP prints its errors into a successful reply (hmp-reply.ts).
    if (!step.hmp || typeof value !== 'string' || hmpSucceeded(value)) return { outcome: 'done' };
    desc = value.trim();
    failure = new ColoStepError('COLO_STEP_FAILED', step.name, step.command, `HMP said: ${desc}`, { errorClass: 'HmpError', desc });
  } catch (err) {
    failure = toStepError(step.name, step.command, err);
    if (!(err instanceof QmpCommandError)) return { outcome: 'failed', error: failure };
    errorClass = err.errorClass;
    desc = err.desc;
  }
  if (step.target) {
    if (step.onMissing === 'done' && isResumeMissingError(step.target, errorClass, desc)) return { outcome: 'already-done', note: desc };
    if (step.onExists === 'done' && isResumeExistsError(step.target, errorClass, desc)) return { outcome: 'already-done', note: desc };
  }
  return { outcome: 'failed', error: failure };
}

// ---- helpers for the waits ----

function q<T>(ctx: Ctx, step: string, command: string, args?: Record<string, unknown>): Promise<T> {
  return ctx.qmp.execute<T>(command, args, { timeoutMs: ctx.stepTimeoutMs }).catch((err: unknown) => {
    throw toStepError(step, command, err);
  });
}

function fail(step: ResumeStep, errorClass: string, desc: string, command: string = step.kind): StepResult {
  return { outcome: 'failed', error: new ColoStepError('COLO_STEP_FAILED', step.name, command, `${errorClass}: ${desc}`, { errorClass, desc }) };
}

function timeout(step: ResumeStep, what: string): StepResult {
  return { outcome: 'failed', error: new ColoStepError('COLO_STEP_TIMEOUT', step.name, step.kind, `${what} not within ${step.timeoutMs} ms`) };
}

interface BlockJobInfo {
  device: string;
  len: number;
  offset: number;
  ready?: boolean;
  status?: string;
}

const jobOf = (ev: LoggedEvent) => (typeof ev.data.device === 'string' ? ev.data.device : undefined);
const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function progressOf(job: string, offset: number, len: number, elapsedMs: number, ready: boolean): ResyncProgress {
  const percent = len > 0 ? Math.floor((offset / len) * 1000) / 10 : ready ? 100 : 0;
  return { job, offset, len, percent, elapsedMs, ready };
}

// ---- wait-job-ready ----

async function waitJobReady(step: WaitJobReadyStep, ctx: Ctx): Promise<StepResult> {
  const start = ctx.clock.now();
  const deadline = start + step.timeoutMs;
  const pollMs = step.pollMs ?? 500;
  let nextPoll = start;
  let last: { offset: number; len: number } | undefined;
  const report = (offset: number, len: number, ready: boolean) => {
    last = { offset, len };
    ctx.onProgress?.(progressOf(step.job, offset, len, ctx.clock.now() - start, ready));
  };
  /** The verdict of the job's events so far, if they decide. */
  const byEvents = (): StepResult | undefined => {
    for (const ev of ctx.events.since(ctx.mark)) {
      if (jobOf(ev) !== step.job) continue;
      switch (ev.event) {
        case 'BLOCK_JOB_READY': {
          const len = num(ev.data.len) ?? last?.len ?? 0;
          report(num(ev.data.offset) ?? len, len, true);
          return { outcome: 'done', bytes: len, eventAt: ev.receivedAt };
        }
        case 'BLOCK_JOB_ERROR':
          return fail(step, 'BlockJobError', `block job ${step.job}: ${str(ev.data.operation) ?? 'I/O'} error (action ${str(ev.data.action) ?? '?'})`);
        case 'BLOCK_JOB_COMPLETED':
          return fail(step, 'BlockJobEnded', `block job ${step.job} ended before it was ready${str(ev.data.error) ? `: ${str(ev.data.error)}` : ''}`);
        case 'BLOCK_JOB_CANCELLED':
          return fail(step, 'BlockJobEnded', `block job ${step.job} was cancelled before it was ready`);
      }
    }
    return undefined;
  };
  for (;;) {
    const decided = byEvents();
    if (decided) return decided;
    if (ctx.clock.now() >= nextPoll) {
      const jobs = await q<BlockJobInfo[]>(ctx, step.name, 'query-block-jobs');
      nextPoll = ctx.clock.now() + pollMs;
      const job = jobs.find((j) => j.device === step.job);
      if (!job) {
        // An ending event arrives before this reply (one ordered stream): it says why, if there is one.
        return byEvents() ?? fail(step, 'BlockJobVanished', `block job ${step.job} is not in query-block-jobs`, 'query-block-jobs');
      }
      const ready = job.ready === true || job.status === 'ready';
      report(job.offset, job.len, ready);
      if (ready) return { outcome: 'done', bytes: job.len, note: 'ready per query-block-jobs' };
    }
    if (ctx.clock.now() >= deadline) return timeout(step, `BLOCK_JOB_READY of ${step.job} (last ${last ? `${last.offset}/${last.len}` : 'unknown'})`);
    await ctx.events.sleep(Math.min(nextPoll, deadline) - ctx.clock.now(), ctx.clock);
  }
}

// ---- wait-job-gone ----

async function waitJobGone(step: WaitJobGoneStep, ctx: Ctx): Promise<StepResult> {
  const deadline = ctx.clock.now() + step.timeoutMs;
  for (;;) {
    // Query first: every event QEMU sent before the reply is in the log by the time it resolves.
    const jobs = await q<BlockJobInfo[]>(ctx, step.name, 'query-block-jobs');
    let completedOk = false;
    for (const ev of ctx.events.since(ctx.mark)) {
      if (jobOf(ev) !== step.job) continue;
      const error = str(ev.data.error);
      if (ev.event === 'BLOCK_JOB_COMPLETED' && error === undefined) completedOk = true;
      if (!step.requireSynced) continue;
      if (ev.event === 'BLOCK_JOB_COMPLETED' && error !== undefined) return fail(step, 'BlockJobError', `block job ${step.job} ended with an error: ${error}`);
      if (ev.event === 'BLOCK_JOB_ERROR') return fail(step, 'BlockJobError', `block job ${step.job}: ${str(ev.data.operation) ?? 'I/O'} error`);
      if (ev.event === 'BLOCK_JOB_CANCELLED') {
        return fail(step, 'BlockJobCancelled', `block job ${step.job} was cancelled, not completed: the target is not a synchronised copy`);
      }
    }
    if (!jobs.some((j) => j.device === step.job)) {
      if (!step.requireSynced || completedOk) return { outcome: 'done' };
      return fail(step, 'BlockJobEnded', `block job ${step.job} is gone without BLOCK_JOB_COMPLETED`);
    }
    if (ctx.clock.now() >= deadline) return timeout(step, `the end of block job ${step.job}`);
    await ctx.events.sleep(Math.min(20, deadline - ctx.clock.now()), ctx.clock);
  }
}

// ---- wait-colo ----

interface ColoStatus {
  mode: string;
  reason?: string;
}
interface VmStatus {
  running: boolean;
  status: string;
}
interface MigrateInfo {
  status?: string;
  'error-desc'?: string;
}

async function waitColo(step: WaitColoStep, ctx: Ctx): Promise<StepResult> {
  const deadline = ctx.clock.now() + step.timeoutMs;
  let last = '';
  for (;;) {
    const exit = ctx.events.since(ctx.mark).find((e) => e.event === 'COLO_EXIT');
    if (exit) return fail(step, 'ColoExit', `COLO_EXIT ${JSON.stringify(exit.data)} while entering COLO`);
    const colo = await q<ColoStatus>(ctx, step.name, 'query-colo-status');
    const vm = await q<VmStatus>(ctx, step.name, 'query-status');
    if (colo.mode === 'primary' && vm.running) {
      const resume = ctx.events.since(ctx.mark).find((e) => e.event === 'RESUME');
      return { outcome: 'done', ...(resume && { eventAt: resume.receivedAt }) };
    }
    const mig = await q<MigrateInfo>(ctx, step.name, 'query-migrate');
    last = `COLO mode ${colo.mode}, VM ${vm.status}, migration ${mig.status ?? 'none'}`;
    if (mig.status === 'failed' || mig.status === 'cancelled') {
      return fail(step, 'MigrationFailed', `migration ${mig.status}: ${mig['error-desc'] ?? 'no error-desc'}`, 'query-migrate');
    }
    if (mig.status === 'completed' && colo.mode === 'none') {
      return fail(step, 'PlainMigration', 'the migration completed without entering COLO (the 10.0.0-10.0.6 / 10.1.x regression?)', 'query-migrate');
    }
    if (ctx.clock.now() >= deadline) return timeout(step, `COLO running (last: ${last})`);
    await ctx.events.sleep(Math.min(20, deadline - ctx.clock.now()), ctx.clock);
  }
}

// ---- rollback's conditional steps ----

/** query-migrate states in which a migration is still in flight (migrate_cancel applies). */
const IN_FLIGHT = new Set(['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'cancelling']);

async function cancelMigration(step: CancelMigrationStep, ctx: Ctx): Promise<StepResult> {
  const deadline = ctx.clock.now() + step.timeoutMs;
  let sent = false;
  for (;;) {
    const mig = await q<MigrateInfo>(ctx, step.name, 'query-migrate');
    const status = mig.status ?? 'none';
    if (!IN_FLIGHT.has(status)) return sent ? { outcome: 'done', note: `migration ${status}` } : { outcome: 'already-done', note: `migration ${status}: nothing to cancel` };
    if (!sent && status !== 'cancelling') {
      await q(ctx, step.name, 'migrate_cancel');
      sent = true;
    }
    if (ctx.clock.now() >= deadline) return timeout(step, `the migration's end (status ${status})`);
    await ctx.events.sleep(Math.min(20, deadline - ctx.clock.now()), ctx.clock);
  }
}

async function leaveColo(step: LeaveColoStep, ctx: Ctx): Promise<StepResult> {
  const deadline = ctx.clock.now() + step.timeoutMs;
  let sent = false;
  for (;;) {
    const colo = await q<ColoStatus>(ctx, step.name, 'query-colo-status');
    if (colo.mode === 'none') return sent ? { outcome: 'done', note: 'left COLO' } : { outcome: 'already-done', note: 'not in COLO' };
    if (colo.mode !== 'primary') return fail(step, 'UnexpectedColoMode', `COLO mode is ${colo.mode}, not primary: not this primary's resume to undo`, 'query-colo-status');
    if (!sent) {
      sent = true;
      try {
        await ctx.qmp.execute('x-colo-lost-heartbeat', undefined, { timeoutMs: ctx.stepTimeoutMs });
      } catch (err) {
        // "VM is not in COLO mode": COLO ended meanwhile; the next query tells.
        if (!(err instanceof QmpCommandError)) throw toStepError(step.name, 'x-colo-lost-heartbeat', err);
      }
    }
    if (ctx.clock.now() >= deadline) return timeout(step, 'COLO mode none');
    await ctx.events.sleep(Math.min(20, deadline - ctx.clock.now()), ctx.clock);
  }
}

async function contIfPaused(step: ContIfPausedStep, ctx: Ctx): Promise<StepResult> {
  const deadline = ctx.clock.now() + step.timeoutMs;
  let sent = false;
  let lastError = '';
  for (;;) {
    const vm = await q<VmStatus>(ctx, step.name, 'query-status');
    if (vm.running) return sent ? { outcome: 'done' } : { outcome: 'already-done', note: 'running' };
    // finish-migrate is transient (the migration's last pass holds the guest): wait it out.
    if (vm.status !== 'finish-migrate') {
      sent = true;
      try {
        await ctx.qmp.execute('cont', undefined, { timeoutMs: ctx.stepTimeoutMs });
        continue; // look again at once: the guest's pause is what this step ends
      } catch (err) {
        if (!(err instanceof QmpCommandError)) throw toStepError(step.name, 'cont', err);
        lastError = `${err.errorClass}: ${err.desc}`;
      }
    }
    if (ctx.clock.now() >= deadline) return timeout(step, `a running guest (status ${vm.status}${lastError ? `; cont said ${lastError}` : ''})`);
    await ctx.events.sleep(Math.min(20, deadline - ctx.clock.now()), ctx.clock);
  }
}

// ---- yank ----

interface GraphLike {
  nodes: Array<{ id: unknown; type?: string; name?: string }>;
  edges: Array<{ parent: unknown; child: unknown; name?: string }>;
}

function isGraph(v: unknown): v is GraphLike {
  const g = v as GraphLike | undefined;
  return typeof g === 'object' && g !== null && Array.isArray(g.nodes) && Array.isArray(g.edges);
}

/** Node names of the `target` child of each named block job (the mirror's NBD side). */
export function jobTargetNodes(graph: unknown, jobs: readonly string[]): string[] {
  if (!isGraph(graph)) return [];
  const names = new Map(graph.nodes.map((n) => [n.id, n.name]));
  const out: string[] = [];
  for (const n of graph.nodes) {
    if (n.type !== 'block-job' || n.name === undefined || !jobs.includes(n.name)) continue;
    for (const e of graph.edges) {
      const child = names.get(e.child);
      if (e.parent === n.id && e.name === 'target' && child) out.push(child);
    }
  }
  return out;
}

async function runYank(step: ResumeYankStep, ctx: Ctx): Promise<StepResult> {
  // Out-of-band when negotiated: answered even while the main loop hangs on the dead peer.
  const oob = ctx.qmp.sessionInfo?.oob === true;
  const timeoutMs = step.timeoutMs ?? ctx.stepTimeoutMs;
  const available = parseYankInstances(
    await ctx.qmp.execute('query-yank', undefined, { timeoutMs, oob }).catch((err: unknown) => {
      throw toStepError(step.name, 'query-yank', err);
    }),
  );
  const targets: YankTarget[] = [...step.targets];
  let graph: unknown;
  let note: string | undefined;
  const wantsBlock = step.jobTargets.length > 0 || targets.some((t) => t.type === 'block-node');
  if (wantsBlock && available.some((i) => i.type === 'block-node')) {
    graph = await ctx.qmp.execute('x-debug-query-block-graph', undefined, { timeoutMs }).catch((err: unknown) => {
      note = `x-debug-query-block-graph failed (${toStepError(step.name, 'x-debug-query-block-graph', err).message}); no block node yanked`;
      return undefined;
    });
    // A node is found by name; the job's target is an auto-named node ("#block503") with the NBD client below it.
    for (const name of jobTargetNodes(graph, step.jobTargets)) {
      if (blockNodesUnder(graph, name).size > 0) targets.push({ type: 'block-node', under: name });
    }
  }
  const instances = resolveYank(targets, available, graph);
  const extra = note === undefined ? {} : { note };
  if (instances.length === 0) return { outcome: 'done', yanked: [], ...extra };
  await ctx.qmp.execute('yank', { instances }, { timeoutMs, oob }).catch((err: unknown) => {
    throw toStepError(step.name, 'yank', err);
  });
  return { outcome: 'done', yanked: instances, ...extra };
}
