/**
 * The failover journal: what this node decided and how far it got, on disk, so that a failover
 * happens exactly once even when the agent crashes in the middle of one.
 *
 * One JSON file in node.stateDir, replaced atomically on every change: write a temp file in the
 * same directory, fsync it, rename it over the journal, fsync the directory. A crash at any point
 * leaves either the old or the new content (plus, at worst, a stray temp file, which open()
 * removes); never a half-written journal. A journal that is nevertheless unreadable (edited by
 * hand, a disk error) raises JournalCorruptError: the agent must not act automatically on a guess.
 *
 * Besides the latest decision, the journal keeps the node's role after a failover ("a former
 * secondary is now primary, running solo"): the config's node.role says what the node was
 * installed as, the journal says what it is now. One agent per stateDir.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../log.js';
import { removeStrayTempFiles, writeFileAtomic } from '../util/atomic-file.js';
import { JournalCorruptError, JournalIoError, JournalStateError } from './errors.js';

export const JOURNAL_FILE_NAME = 'failover-journal.json';
const FORMAT = 'colo-agent-failover-journal';
const VERSION = 1;

export type JournalRole = 'primary' | 'secondary';

/**
 * running: begun, not finished (the agent may have crashed in it). failed: a required step failed.
 * finished: every step done. abandoned: given up on by abandon(). running and failed are "unfinished".
 */
export type DecisionStatus = 'running' | 'failed' | 'finished' | 'abandoned';

export interface DecisionInput {
  /** Unique id of the decision (e.g. from the arbiter's epoch, or a random id). */
  id: string;
  /** The arbiter's epoch or term, when there is one. */
  epoch?: number;
  /** The sequence to run, e.g. "secondary-failover". */
  sequence: string;
  roleBefore: JournalRole;
  roleAfter: JournalRole;
}

export interface JournalError {
  code: string;
  step?: string;
  message: string;
  errorClass?: string;
  desc?: string;
}

export interface JournalDecision extends DecisionInput {
  /** Wall-clock ISO time of begin(). */
  startedAt: string;
  /** Steps done, in the order they completed. */
  completedSteps: string[];
  status: DecisionStatus;
  /** Wall-clock ISO time of finish() or abandon(). */
  endedAt?: string;
  error?: JournalError;
  /** abandon()'s reason. */
  abandonReason?: string;
}

export interface JournalRoleRecord {
  role: JournalRole;
  /** Wall-clock ISO time it was set. */
  since: string;
  /** e.g. "secondary-failover d-42 finished". */
  reason: string;
}

interface JournalFile {
  format: typeof FORMAT;
  version: typeof VERSION;
  role: JournalRoleRecord | null;
  decision: JournalDecision | null;
}

export type BeginResult = { started: true; decision: JournalDecision } | { started: false; unfinished: JournalDecision };

/** What finish() needs; a runner SequenceResult fits. */
export interface FinishInput {
  ok: boolean;
  error?: { code: string; step?: string; message: string; errorClass?: string | undefined; desc?: string | undefined };
}

export interface JournalOptions {
  fileName?: string;
  /** Wall clock for the record's timestamps. Default () => new Date(). */
  now?: () => Date;
  logger?: Logger;
}

const clone = <T>(v: T): T => structuredClone(v);

export class Journal {
  readonly path: string;
  private state: JournalFile;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly now: () => Date;
  private readonly log: Logger;

  private constructor(
    readonly dir: string,
    private readonly fileName: string,
    state: JournalFile,
    opts: JournalOptions,
  ) {
    this.path = join(dir, fileName);
    this.state = state;
    this.now = opts.now ?? (() => new Date());
    this.log = (opts.logger ?? silentLogger()).child({ component: 'failover-journal' });
  }

  /**
   * Reads (or starts) the journal in `dir`, creating `dir` if needed. Stray temp files of an
   * interrupted write are removed: the rename never happened, so the journal proper is current.
   * Throws JournalCorruptError or JournalIoError.
   */
  static async open(dir: string, opts: JournalOptions = {}): Promise<Journal> {
    const fileName = opts.fileName ?? JOURNAL_FILE_NAME;
    const path = join(dir, fileName);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new JournalIoError(path, `cannot create directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
    await removeStrayTemps(dir, fileName);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new JournalIoError(path, `cannot read: ${(err as Error).message}`, { cause: err });
    }
    const state: JournalFile = text === undefined ? { format: FORMAT, version: VERSION, role: null, decision: null } : parseJournal(path, text);
    const journal = new Journal(dir, fileName, state, opts);
    journal.log.debug({ path, decision: state.decision?.id, status: state.decision?.status, role: state.role?.role }, 'journal opened');
    return journal;
  }

  /** The latest decision (any status), or undefined. */
  current(): JournalDecision | undefined {
    return this.state.decision ? clone(this.state.decision) : undefined;
  }

  /** The latest decision when it is running or failed, i.e. must be resumed or abandoned first. */
  unfinished(): JournalDecision | undefined {
    const d = this.state.decision;
    return d && (d.status === 'running' || d.status === 'failed') ? clone(d) : undefined;
  }

  /** The node's role as last recorded (after a failover, or setRole()), or undefined. */
  role(): JournalRoleRecord | undefined {
    return this.state.role ? clone(this.state.role) : undefined;
  }

  /**
   * Records a new decision as running, unless one is unfinished: then nothing is written and that
   * one is returned, so the caller resumes it (resume(), then run with its completedSteps) rather
   * than start a second failover.
   */
  begin(input: DecisionInput): Promise<BeginResult> {
    return this.serial(async () => {
      const open = this.unfinished();
      if (open) return { started: false, unfinished: open };
      const decision: JournalDecision = {
        id: input.id,
        ...(input.epoch !== undefined && { epoch: input.epoch }),
        sequence: input.sequence,
        roleBefore: input.roleBefore,
        roleAfter: input.roleAfter,
        startedAt: this.now().toISOString(),
        completedSteps: [],
        status: 'running',
      };
      await this.commit({ ...this.state, decision });
      return { started: true, decision: clone(decision) };
    });
  }

  /** Makes a failed (or running) decision running again, keeping its completed steps. */
  resume(): Promise<JournalDecision> {
    return this.serial(async () => {
      const d = this.state.decision;
      if (!d || (d.status !== 'running' && d.status !== 'failed')) throw new JournalStateError('resume(): no unfinished failover decision in the journal');
      if (d.status === 'running') return clone(d);
      const { error: _error, endedAt: _endedAt, ...rest } = d;
      const decision: JournalDecision = { ...rest, status: 'running' };
      await this.commit({ ...this.state, decision });
      return clone(decision);
    });
  }

  /** Records a completed step of the running decision (idempotent). */
  stepDone(name: string): Promise<void> {
    return this.serial(async () => {
      const d = this.running('stepDone');
      if (d.completedSteps.includes(name)) return;
      await this.commit({ ...this.state, decision: { ...d, completedSteps: [...d.completedSteps, name] } });
    });
  }

  /**
   * Ends the running decision: finished when `result.ok`, with the node's role set to the
   * decision's roleAfter in the same atomic write; failed otherwise (role unchanged).
   */
  finish(result: FinishInput): Promise<JournalDecision> {
    return this.serial(async () => {
      const d = this.running('finish');
      const endedAt = this.now().toISOString();
      let decision: JournalDecision;
      let role = this.state.role;
      if (result.ok) {
        decision = { ...d, status: 'finished', endedAt };
        role = { role: d.roleAfter, since: endedAt, reason: `${d.sequence} ${d.id} finished` };
      } else {
        const e = result.error;
        const error: JournalError = e
          ? {
              code: e.code,
              message: e.message,
              ...(e.step !== undefined && { step: e.step }),
              ...(e.errorClass !== undefined && { errorClass: e.errorClass }),
              ...(e.desc !== undefined && { desc: e.desc }),
            }
          : { code: 'UNKNOWN', message: 'failed without an error record' };
        decision = { ...d, status: 'failed', endedAt, error };
      }
      await this.commit({ ...this.state, role, decision });
      return clone(decision);
    });
  }

  /** Gives up on an unfinished decision (an operator's call), so that begin() accepts a new one. */
  abandon(reason: string): Promise<JournalDecision> {
    return this.serial(async () => {
      const d = this.state.decision;
      if (!d || (d.status !== 'running' && d.status !== 'failed')) throw new JournalStateError('abandon(): no unfinished failover decision in the journal');
      const decision: JournalDecision = { ...d, status: 'abandoned', endedAt: this.now().toISOString(), abandonReason: reason };
      await this.commit({ ...this.state, decision });
      return clone(decision);
    });
  }

  /** Records the node's current role (e.g. an operator's reconfiguration after a resync). */
  setRole(role: JournalRole, reason: string): Promise<void> {
    return this.serial(async () => {
      await this.commit({ ...this.state, role: { role, since: this.now().toISOString(), reason } });
    });
  }

  private running(what: string): JournalDecision {
    const d = this.state.decision;
    if (!d || d.status !== 'running') {
      throw new JournalStateError(`${what}(): no running failover decision in the journal (latest: ${d ? `${d.id} ${d.status}` : 'none'})`);
    }
    return d;
  }

  /** Runs mutations one after another, so concurrent calls cannot interleave their writes. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Writes `next` atomically; the in-memory state changes only once it is on disk. */
  private async commit(next: JournalFile): Promise<void> {
    await writeAtomic(this.dir, this.fileName, `${JSON.stringify(next, null, 2)}\n`);
    this.state = next;
  }
}

async function writeAtomic(dir: string, fileName: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(dir, fileName, text);
  } catch (err) {
    throw new JournalIoError(join(dir, fileName), `cannot write: ${(err as Error).message}`, { cause: err });
  }
}

async function removeStrayTemps(dir: string, fileName: string): Promise<void> {
  try {
    await removeStrayTempFiles(dir, fileName);
  } catch (err) {
    throw new JournalIoError(join(dir, fileName), `cannot list ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

// ---- parsing: strict, because a misread journal could repeat a failover ----

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const ROLES: readonly string[] = ['primary', 'secondary'];
const STATUSES: readonly string[] = ['running', 'failed', 'finished', 'abandoned'];

function parseJournal(path: string, text: string): JournalFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new JournalCorruptError(path, text.trim() === '' ? 'the file is empty' : `not JSON: ${(err as Error).message}`, { cause: err });
  }
  const bad = (why: string) => new JournalCorruptError(path, why);
  if (!isObject(value)) throw bad('not a JSON object');
  if (value.format !== FORMAT) throw bad(`format is ${JSON.stringify(value.format)}, expected ${JSON.stringify(FORMAT)}`);
  if (value.version !== VERSION) throw bad(`version ${JSON.stringify(value.version)} is not supported (expected ${VERSION})`);
  return { format: FORMAT, version: VERSION, role: parseRole(value.role, bad), decision: parseDecision(value.decision, bad) };
}

function str(o: Record<string, unknown>, key: string, bad: (why: string) => Error, where: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw bad(`${where}.${key} is not a non-empty string`);
  return v;
}

function optStr(o: Record<string, unknown>, key: string, bad: (why: string) => Error, where: string): string | undefined {
  if (o[key] === undefined) return undefined;
  if (typeof o[key] !== 'string') throw bad(`${where}.${key} is not a string`);
  return o[key] as string;
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, allowed: readonly string[], bad: (why: string) => Error, where: string): T {
  const v = o[key];
  if (typeof v !== 'string' || !allowed.includes(v)) throw bad(`${where}.${key} is ${JSON.stringify(v)}, expected one of ${allowed.join(', ')}`);
  return v as T;
}

function parseRole(v: unknown, bad: (why: string) => Error): JournalRoleRecord | null {
  if (v === null) return null;
  if (!isObject(v)) throw bad('role is neither null nor an object');
  return { role: oneOf(v, 'role', ROLES, bad, 'role'), since: str(v, 'since', bad, 'role'), reason: str(v, 'reason', bad, 'role') };
}

function parseDecision(v: unknown, bad: (why: string) => Error): JournalDecision | null {
  if (v === null) return null;
  if (!isObject(v)) throw bad('decision is neither null nor an object');
  const w = 'decision';
  const steps = v.completedSteps;
  if (!Array.isArray(steps) || !steps.every((s): s is string => typeof s === 'string')) throw bad(`${w}.completedSteps is not a list of strings`);
  if (v.epoch !== undefined && !(typeof v.epoch === 'number' && Number.isFinite(v.epoch))) throw bad(`${w}.epoch is not a number`);
  const d: JournalDecision = {
    id: str(v, 'id', bad, w),
    sequence: str(v, 'sequence', bad, w),
    roleBefore: oneOf(v, 'roleBefore', ROLES, bad, w),
    roleAfter: oneOf(v, 'roleAfter', ROLES, bad, w),
    startedAt: str(v, 'startedAt', bad, w),
    completedSteps: [...steps],
    status: oneOf(v, 'status', STATUSES, bad, w),
  };
  if (v.epoch !== undefined) d.epoch = v.epoch as number;
  const endedAt = optStr(v, 'endedAt', bad, w);
  if (endedAt !== undefined) d.endedAt = endedAt;
  const abandonReason = optStr(v, 'abandonReason', bad, w);
  if (abandonReason !== undefined) d.abandonReason = abandonReason;
  if (v.error !== undefined) {
    if (!isObject(v.error)) throw bad(`${w}.error is not an object`);
    const e = v.error;
    const error: JournalError = { code: str(e, 'code', bad, `${w}.error`), message: str(e, 'message', bad, `${w}.error`) };
    for (const k of ['step', 'errorClass', 'desc'] as const) {
      const s = optStr(e, k, bad, `${w}.error`);
      if (s !== undefined) error[k] = s;
    }
    d.error = error;
  }
  if (d.status === 'failed' && !d.error) throw bad(`${w} is failed but has no error`);
  return d;
}
