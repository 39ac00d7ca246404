/**
 * Runs a failover sequence (sequences.ts) on a QMP connection, one step at a time.
 *
 * Rules, each for a reason:
 * - Every command has a timeout (the step's own, else `stepTimeoutMs`): a QEMU blocked on a dead
 *   peer must fail the step, not hang the agent.
 * - A failed required step stops the sequence; there are no retry loops here. Whether and when to
 *   try again is the caller's decision, with the journal's record of what completed.
 * - Never throws and never rejects: a QMP disconnect or timeout mid-sequence is a failed result
 *   with a typed ColoStepError, because the caller is the agent's failover path and must keep going.
 * - `alreadyDone` (from the journal) skips steps a previous run completed, so a resumed run does
 *   not repeat them; steps whose target QEMU reports as already gone count as done (already-done.ts).
 */
import { hmpSucceeded } from './hmp-reply.js';
import { silentLogger, type Logger } from '../log.js';
import type { QmpClient } from '../qmp/index.js';
import {
  QmpClosedError,
  QmpCommandDroppedError,
  QmpCommandError,
  QmpDisconnectedError,
  QmpTimeoutError,
} from '../qmp/index.js';
import { systemClock, type Clock } from '../util/clock.js';
import { isExistsError, isMissingError } from './already-done.js';
import { ColoStepError } from './errors.js';
import type { CommandStep, Sequence, SequenceName, Step, YankStep } from './sequences.js';
import { needsBlockGraph, parseYankInstances, resolveYank, type YankInstance } from './yank.js';

/** The QMP surface the runner uses; a QmpClient fits. */
export type SequenceQmp = Pick<QmpClient, 'execute' | 'sessionInfo'> & Partial<Pick<QmpClient, 'status'>>;

/**
 * done: executed and QEMU said ok. already-done: QEMU said the target is already gone (or, for
 * chardev-add, already there), counted as done. skipped: in `alreadyDone`, nothing sent.
 * failed: see `error`; stops the sequence unless the step is optional.
 */
export type StepOutcome = 'done' | 'already-done' | 'skipped' | 'failed';

export interface StepRecord {
  sequence: SequenceName;
  name: string;
  kind: Step['kind'];
  /** The QMP command (for yank steps: "yank"). */
  command: string;
  outcome: StepOutcome;
  optional: boolean;
  /** Clock time the step took; 0 when skipped. */
  durationMs: number;
  error?: ColoStepError;
  /** Yank steps: what was yanked (empty when none of the targets existed). */
  yanked?: YankInstance[];
  /** Yank steps: whether yank went out-of-band. */
  oob?: boolean;
  /** Yank steps: why a wanted block node was not yanked (the block graph query failed). */
  note?: string;
}

export interface SequenceResult {
  sequence: SequenceName;
  ok: boolean;
  /** One record per step reached, in order (steps after a stopping failure have none). */
  steps: StepRecord[];
  /** Steps that are done after this run: executed ok or already done, in order (not the skipped ones). */
  completed: string[];
  /** Steps skipped because `alreadyDone` named them. */
  skipped: string[];
  /** Among `completed`: those QEMU reported as already done. */
  alreadyDone: string[];
  /** Steps never reached because a required step failed. */
  notRun: string[];
  /** The error that stopped the sequence (ok === false). */
  error?: ColoStepError;
  /** onStep hook failures; the sequence went on regardless (see RunSequenceOptions.onStep). */
  hookErrors: Array<{ step: string; error: unknown }>;
  durationMs: number;
}

export interface RunSequenceOptions {
  qmp: SequenceQmp;
  sequence: Sequence;
  /** Default timeout of every QMP command of a step (failover.stepTimeoutMs). */
  stepTimeoutMs: number;
  /** Step names a previous run completed (the journal's record); they are skipped. */
  alreadyDone?: Iterable<string>;
  clock?: Clock;
  logger?: Logger;
  /**
   * Called with each step's record before the next step starts, and awaited: the place for
   * `journal.stepDone(name)` (for outcomes done/already-done) and metrics. If it throws or
   * rejects, the error lands in `hookErrors` and the sequence continues: a half-done failover is
   * worse for the guest than a missed journal entry, and replaying a step is made safe by the
   * already-done matching.
   */
  onStep?: (record: StepRecord) => void | Promise<void>;
  /**
   * A block graph (x-debug-query-block-graph's return value) taken earlier, while QEMU answered:
   * used by the yank step when the live query gets no answer. That query is in-band, so a main
   * loop stuck on the dead peer's NBD socket (a `stop` draining writes to it, QEMU 7.2) cannot
   * answer it, and the NBD node, the one instance that would unstick it, could not be named. The
   * node's generated name does not change while COLO runs; a stale name is only ever refused by
   * `yank` (instances are still intersected with what query-yank lists now).
   */
  cachedBlockGraph?: () => unknown;
}

/** Executes `sequence`. Resolves with the result in every case; never rejects. */
export async function runSequence(opts: RunSequenceOptions): Promise<SequenceResult> {
  const clock = opts.clock ?? systemClock;
  const log = (opts.logger ?? silentLogger()).child({ component: 'colo-failover', sequence: opts.sequence.name });
  const started = clock.now();
  const result: SequenceResult = {
    sequence: opts.sequence.name,
    ok: true,
    steps: [],
    completed: [],
    skipped: [],
    alreadyDone: [],
    notRun: [],
    hookErrors: [],
    durationMs: 0,
  };
  try {
    const skip = new Set(opts.alreadyDone ?? []);
    const steps = opts.sequence.steps;
    const dup = steps.map((s) => s.name).find((n, i, all) => all.indexOf(n) !== i);
    if (dup !== undefined) {
      throw new ColoStepError('COLO_STEP_ERROR', dup, '-', `two steps of ${opts.sequence.name} are named "${dup}"; the journal could not tell them apart`);
    }
    log.info({ steps: steps.length, resumeSkipping: [...skip] }, 'failover sequence starting');
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i] as Step;
      const record = skip.has(step.name) ? skipped(opts.sequence.name, step) : await runStep(opts, step, clock);
      result.steps.push(record);
      if (record.outcome === 'skipped') result.skipped.push(step.name);
      else if (record.outcome === 'done' || record.outcome === 'already-done') result.completed.push(step.name);
      if (record.outcome === 'already-done') result.alreadyDone.push(step.name);
      logRecord(log, record);
      if (opts.onStep) {
        try {
          await opts.onStep(record);
        } catch (error) {
          log.error({ err: error, step: step.name }, 'failover onStep hook failed; continuing the sequence');
          result.hookErrors.push({ step: step.name, error });
        }
      }
      if (record.outcome === 'failed' && !record.optional) {
        result.ok = false;
        result.error = record.error;
        result.notRun = steps.slice(i + 1).map((s) => s.name);
        break;
      }
    }
  } catch (err) {
    // Only reachable through a bug (or the duplicate-name check): still a result, never a throw.
    result.ok = false;
    result.error = err instanceof ColoStepError ? err : new ColoStepError('COLO_STEP_ERROR', '-', '-', String(err), { cause: err });
  }
  result.durationMs = clock.now() - started;
  if (result.ok) log.info({ durationMs: result.durationMs, completed: result.completed.length, skipped: result.skipped.length }, 'failover sequence completed');
  else log.error({ durationMs: result.durationMs, code: result.error?.code, step: result.error?.step, notRun: result.notRun }, 'failover sequence stopped');
  return result;
}

function skipped(sequence: SequenceName, step: Step): StepRecord {
  return {
    sequence,
    name: step.name,
    kind: step.kind,
    command: step.kind === 'yank' ? 'yank' : step.command,
    outcome: 'skipped',
    optional: step.optional ?? false,
    durationMs: 0,
  };
}

function logRecord(log: Logger, r: StepRecord): void {
  const fields = {
    step: r.name,
    outcome: r.outcome,
    durationMs: r.durationMs,
    ...(r.yanked && { yanked: r.yanked, oob: r.oob }),
    ...(r.note && { note: r.note }),
    ...(r.error && { code: r.error.code, errorClass: r.error.errorClass, desc: r.error.desc }),
  };
  if (r.outcome === 'failed') log.warn(fields, r.optional ? 'optional failover step failed; continuing' : 'failover step failed');
  else log.info(fields, 'failover step');
}

async function runStep(opts: RunSequenceOptions, step: Step, clock: Clock): Promise<StepRecord> {
  const started = clock.now();
  const base = { sequence: opts.sequence.name, name: step.name, kind: step.kind, optional: step.optional ?? false };
  const timeoutMs = step.timeoutMs ?? opts.stepTimeoutMs;
  if (step.kind === 'yank') {
    const r = await runYank(opts.qmp, step, timeoutMs, opts.cachedBlockGraph);
    return { ...base, command: 'yank', durationMs: clock.now() - started, ...r };
  }
  const outcome = await runCommand(opts.qmp, step, timeoutMs);
  return { ...base, command: step.command, durationMs: clock.now() - started, ...outcome };
}

async function runCommand(qmp: SequenceQmp, step: CommandStep, timeoutMs: number): Promise<{ outcome: StepOutcome; error?: ColoStepError }> {
  let errorClass: string | undefined;
  let desc: string;
  let failure: ColoStepError;
  try {
    const value = await qmp.execute(step.command, step.args, { timeoutMs, ...(step.oob && { oob: true }) });
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
    if (step.onMissing === 'done' && isMissingError(step.target, errorClass, desc)) return { outcome: 'already-done' };
    if (step.onExists === 'done' && isExistsError(step.target, errorClass, desc)) return { outcome: 'already-done' };
  }
  return { outcome: 'failed', error: failure };
}

async function runYank(
  qmp: SequenceQmp,
  step: YankStep,
  timeoutMs: number,
  cachedBlockGraph?: () => unknown,
): Promise<{ outcome: StepOutcome; error?: ColoStepError; yanked?: YankInstance[]; oob: boolean; note?: string }> {
  // query-yank and yank are allow-oob: out-of-band they are answered even while QEMU's main loop
  // is blocked on the dead peer, which is exactly when they are needed.
  const oob = qmp.sessionInfo?.oob === true;
  let command = 'query-yank';
  try {
    const available = parseYankInstances(await qmp.execute('query-yank', undefined, { timeoutMs, oob }));
    let graph: unknown;
    let note: string | undefined;
    if (needsBlockGraph(step.targets, available)) {
      const before = cachedBlockGraph?.();
      if (before !== undefined && qmp.status === 'unhealthy') {
        // A command already went unanswered: the main loop is likely stuck, and the in-band graph
        // query would only add its whole timeout to the failover.
        graph = before;
        note = 'QMP unhealthy: used the block graph taken before';
      } else {
        // In-band only: if the main loop is stuck this times out, and the other instances are still
        // yanked; a block node is never yanked on a guess (nor on a graph we do not have).
        graph = await qmp.execute('x-debug-query-block-graph', undefined, { timeoutMs }).catch((err: unknown) => {
          const why = `x-debug-query-block-graph failed (${toStepError(step.name, 'x-debug-query-block-graph', err).message})`;
          note = before === undefined ? `${why}; no block node yanked` : `${why}; used the block graph taken before`;
          return before;
        });
      }
    }
    const instances = resolveYank(step.targets, available, graph);
    const extra = note === undefined ? {} : { note };
    if (instances.length === 0) return { outcome: 'done', yanked: [], oob, ...extra };
    command = 'yank';
    await qmp.execute('yank', { instances }, { timeoutMs, oob });
    return { outcome: 'done', yanked: instances, oob, ...extra };
  } catch (err) {
    return { outcome: 'failed', error: toStepError(step.name, command, err), oob };
  }
}

/** Maps what QmpClient.execute rejects with onto our stable codes. */
export function toStepError(step: string, command: string, err: unknown): ColoStepError {
  if (err instanceof QmpCommandError) {
    return new ColoStepError('COLO_STEP_FAILED', step, command, `${err.errorClass}: ${err.desc}`, { errorClass: err.errorClass, desc: err.desc, cause: err });
  }
  if (err instanceof QmpCommandDroppedError) {
    return new ColoStepError('COLO_STEP_FAILED', step, command, `QEMU dropped the command: ${err.reason}`, { errorClass: 'CommandDropped', desc: err.reason, cause: err });
  }
  if (err instanceof QmpTimeoutError) {
    return new ColoStepError('COLO_STEP_TIMEOUT', step, command, `no reply within ${err.timeoutMs} ms`, { cause: err });
  }
  if (err instanceof QmpDisconnectedError || err instanceof QmpClosedError) {
    return new ColoStepError('COLO_STEP_DISCONNECTED', step, command, `QMP connection lost or closed (${err.message}); whether QEMU ran it is unknown`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ColoStepError('COLO_STEP_ERROR', step, command, message, { cause: err });
}
