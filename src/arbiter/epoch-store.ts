/**
 * This node's arbitration epoch on disk (`epoch.json` in node.stateDir), so that neither a grant
 * nor the knowledge of being stale is lost in a restart.
 *
 * Two numbers: `epoch`, the newest epoch this node was granted (or adopted when it rejoined), and
 * `newestSeen`, the newest epoch any message carried. newestSeen > epoch means the node is stale:
 * someone else was granted an epoch after ours, so this node must stay passive. Both only grow.
 *
 * Every change is written atomically (writeFileAtomic) before the call resolves; the in-memory
 * state changes only once the file is on disk. Calls are serialized, so writes never interleave.
 * A file that exists but cannot be read is an error (EpochCorruptError), never epoch 0.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../log.js';
import { removeStrayTempFiles, writeFileAtomic } from '../util/atomic-file.js';
import { EpochConflictError, EpochCorruptError, EpochInvalidError, EpochIoError, EpochRegressionError } from './errors.js';

export const EPOCH_FILE_NAME = 'epoch.json';
const VERSION = 1;

interface EpochFile {
  version: typeof VERSION;
  epoch: number;
  /** Who holds `epoch` (this node after a grant; the peer after a rejoin), when known. */
  holder?: string;
  newestSeen: number;
  /** Whose message carried newestSeen. */
  newestSeenFrom?: string;
  /** Wall-clock ISO time of the last change. */
  updatedAt: string;
  /** Why the last change happened, for the operator. */
  reason: string;
}

/** For status and metrics. */
export interface EpochSnapshot {
  path: string;
  epoch: number;
  holder: string | undefined;
  newestSeen: number;
  newestSeenFrom: string | undefined;
  stale: boolean;
  /** Undefined until the first write (a node that has never left epoch 0). */
  updatedAt: string | undefined;
  reason: string | undefined;
}

export interface EpochStoreOptions {
  fileName?: string;
  /** Wall clock for updatedAt. Default () => new Date(). */
  now?: () => Date;
  logger?: Logger;
}

export interface ObserveResult {
  /** newestSeen > epoch after the call. */
  stale: boolean;
  /** newestSeen went up (and was written). */
  changed: boolean;
}

export class EpochStore {
  readonly path: string;
  private state: EpochFile;
  /** Whether `state` came from (or went to) the file: false for a node still at the implicit epoch 0. */
  private onDisk: boolean;
  private queue: Promise<unknown> = Promise.resolve();
  /** Calls queued or running; observe() takes its no-write fast path only when this is 0. */
  private busy = 0;
  private readonly now: () => Date;
  private readonly log: Logger;

  private constructor(
    readonly dir: string,
    private readonly fileName: string,
    state: EpochFile,
    onDisk: boolean,
    opts: EpochStoreOptions,
  ) {
    this.path = join(dir, fileName);
    this.state = state;
    this.onDisk = onDisk;
    this.now = opts.now ?? (() => new Date());
    this.log = (opts.logger ?? silentLogger()).child({ component: 'epoch-store' });
  }

  /**
   * Reads the epoch file in `dir` (creating `dir` if needed); a missing file is epoch 0 with
   * nothing seen. Throws EpochCorruptError or EpochIoError.
   */
  static async open(dir: string, opts: EpochStoreOptions = {}): Promise<EpochStore> {
    const fileName = opts.fileName ?? EPOCH_FILE_NAME;
    const path = join(dir, fileName);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await removeStrayTempFiles(dir, fileName);
    } catch (err) {
      throw new EpochIoError(path, `cannot prepare directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new EpochIoError(path, `cannot read: ${(err as Error).message}`, { cause: err });
    }
    const state: EpochFile = text === undefined ? { version: VERSION, epoch: 0, newestSeen: 0, updatedAt: '', reason: '' } : parseEpochFile(path, text);
    const store = new EpochStore(dir, fileName, state, text !== undefined, opts);
    const fields = { path, epoch: state.epoch, newestSeen: state.newestSeen, holder: state.holder };
    if (store.stale) store.log.warn({ ...fields, newestSeenFrom: state.newestSeenFrom }, 'epoch store opened: this node is stale (a newer epoch was seen), it stays passive');
    else store.log.debug(fields, 'epoch store opened');
    return store;
  }

  get epoch(): number {
    return this.state.epoch;
  }

  get newestSeen(): number {
    return this.state.newestSeen;
  }

  /** Someone was granted an epoch after ours: this node must not act as primary by itself. */
  get stale(): boolean {
    return this.state.newestSeen > this.state.epoch;
  }

  get holder(): string | undefined {
    return this.state.holder;
  }

  snapshot(): EpochSnapshot {
    const s = this.state;
    return {
      path: this.path,
      epoch: s.epoch,
      holder: s.holder,
      newestSeen: s.newestSeen,
      newestSeenFrom: s.newestSeenFrom,
      stale: this.stale,
      updatedAt: this.onDisk ? s.updatedAt : undefined,
      reason: this.onDisk ? s.reason : undefined,
    };
  }

  /**
   * Records that we were granted `epoch` (persisted before this resolves). Re-adopting the
   * current epoch is a no-op unless it names the holder for the first time; a lower epoch throws
   * EpochRegressionError, the current one for another holder EpochConflictError.
   */
  adopt(epoch: number, opts: { holder?: string; reason: string }): Promise<void> {
    return this.serial(async () => {
      checkEpoch('adopt(): epoch', epoch);
      const s = this.state;
      if (epoch < s.epoch) throw new EpochRegressionError(`cannot adopt epoch ${epoch}: this node is already at epoch ${s.epoch} (${this.path})`);
      if (epoch === s.epoch) {
        if (opts.holder === undefined || opts.holder === s.holder) return;
        if (s.holder !== undefined) throw new EpochConflictError(`cannot adopt epoch ${epoch} for ${opts.holder}: it is held by ${s.holder} (${this.path})`);
      }
      const next: EpochFile = { ...withoutHolder(s), epoch, newestSeen: Math.max(s.newestSeen, epoch), updatedAt: this.stamp(), reason: opts.reason };
      if (opts.holder !== undefined) next.holder = opts.holder;
      if (next.newestSeen === epoch && s.newestSeen < epoch) delete next.newestSeenFrom;
      await this.commit(next);
      const log = { epoch, previous: s.epoch, holder: opts.holder, reason: opts.reason };
      if (this.stale) this.log.warn({ ...log, newestSeen: next.newestSeen }, 'adopted an epoch that is already superseded: still stale');
      else this.log.info(log, 'adopted epoch');
    });
  }

  /**
   * A message from `from` carried `epoch`. Raises (and persists) newestSeen when it is higher,
   * so that staleness survives a restart. Writes nothing, and costs no I/O, when the epoch is
   * not news: it runs for every heartbeat.
   */
  observe(epoch: number, from: string): Promise<ObserveResult> {
    if (!isEpoch(epoch)) return Promise.reject(new EpochInvalidError('observe(): epoch', epoch));
    // Fast path: newestSeen only grows, so an epoch at or below it can never change anything.
    // Only when idle, so that the stale flag returned reflects every call made before this one.
    if (this.busy === 0 && epoch <= this.state.newestSeen) return Promise.resolve({ stale: this.stale, changed: false });
    return this.serial(async () => {
      const s = this.state;
      if (epoch <= s.newestSeen) return { stale: this.stale, changed: false };
      await this.commit({ ...s, newestSeen: epoch, newestSeenFrom: from, updatedAt: this.stamp(), reason: `epoch ${epoch} seen from ${from}` });
      const log = { epoch: s.epoch, newestSeen: epoch, from, previousNewestSeen: s.newestSeen };
      if (this.stale) this.log.warn(log, 'a newer epoch was seen: this node is stale and stays passive');
      else this.log.info(log, 'newest seen epoch raised');
      return { stale: this.stale, changed: true };
    });
  }

  /**
   * Ends staleness when this node rejoins (as secondary) at the current holder's epoch:
   * epoch = newestSeen = adoptEpoch. Throws EpochRegressionError when adoptEpoch is below the
   * newest epoch seen (the node would still be stale) or below our own epoch.
   */
  clearStale(opts: { adoptEpoch: number; holder?: string; reason: string }): Promise<void> {
    return this.serial(async () => {
      checkEpoch('clearStale(): adoptEpoch', opts.adoptEpoch);
      const s = this.state;
      const e = opts.adoptEpoch;
      if (e < s.newestSeen || e < s.epoch) {
        throw new EpochRegressionError(`cannot clear staleness at epoch ${e}: this node is at epoch ${s.epoch} and has seen epoch ${s.newestSeen} (${this.path})`);
      }
      const next: EpochFile = { ...withoutHolder(s), epoch: e, newestSeen: e, updatedAt: this.stamp(), reason: opts.reason };
      if (opts.holder !== undefined) next.holder = opts.holder;
      if (e > s.newestSeen) delete next.newestSeenFrom;
      await this.commit(next);
      this.log.info({ epoch: e, previous: s.epoch, previousNewestSeen: s.newestSeen, holder: opts.holder, reason: opts.reason }, 'staleness cleared');
    });
  }

  /**
   * The witness's record: it stores exactly what its grants decided (WitnessGrants orders and
   * checks every change), including "same epoch, holder released or renamed", which adopt()
   * refuses for an agent. Never lowers the epoch.
   */
  recordWitnessState(state: { epoch: number; holder: string | undefined }, reason: string): Promise<void> {
    return this.serial(async () => {
      checkEpoch('recordWitnessState(): epoch', state.epoch);
      const s = this.state;
      if (state.epoch < s.epoch) throw new EpochRegressionError(`cannot record epoch ${state.epoch}: the witness is at epoch ${s.epoch} (${this.path})`);
      if (state.epoch === s.epoch && state.holder === s.holder && this.onDisk) return;
      const next: EpochFile = { ...withoutHolder(s), epoch: state.epoch, newestSeen: Math.max(s.newestSeen, state.epoch), updatedAt: this.stamp(), reason };
      if (state.holder !== undefined) next.holder = state.holder;
      await this.commit(next);
    });
  }

  private stamp(): string {
    return this.now().toISOString();
  }

  /** Runs mutations one after another, so concurrent calls cannot interleave their writes. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    const next = this.queue.then(fn, fn).finally(() => {
      this.busy--;
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Writes `next` atomically; the in-memory state changes only once it is on disk. */
  private async commit(next: EpochFile): Promise<void> {
    try {
      await writeFileAtomic(this.dir, this.fileName, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    } catch (err) {
      throw new EpochIoError(this.path, `cannot write: ${(err as Error).message}`, { cause: err });
    }
    this.state = next;
    this.onDisk = true;
  }
}

function withoutHolder(s: EpochFile): EpochFile {
  const { holder: _holder, ...rest } = s;
  return rest;
}

function checkEpoch(what: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new EpochInvalidError(what, v);
}

// ---- parsing: strict, because a misread epoch could un-stale a stale node ----

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isEpoch = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parseEpochFile(path: string, text: string): EpochFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new EpochCorruptError(path, text.trim() === '' ? 'the file is empty' : `not JSON: ${(err as Error).message}`, { cause: err });
  }
  const bad = (why: string) => new EpochCorruptError(path, why);
  if (!isObject(value)) throw bad('not a JSON object');
  if (value.version !== VERSION) throw bad(`version ${JSON.stringify(value.version)} is not supported (expected ${VERSION})`);
  if (!isEpoch(value.epoch)) throw bad(`epoch is ${JSON.stringify(value.epoch)}, expected an integer >= 0`);
  if (!isEpoch(value.newestSeen)) throw bad(`newestSeen is ${JSON.stringify(value.newestSeen)}, expected an integer >= 0`);
  if (value.newestSeen < value.epoch) throw bad(`newestSeen ${value.newestSeen} is below epoch ${value.epoch}`);
  for (const k of ['holder', 'newestSeenFrom'] as const) {
    if (value[k] !== undefined && (typeof value[k] !== 'string' || value[k] === '')) throw bad(`${k} is not a non-empty string`);
  }
  for (const k of ['updatedAt', 'reason'] as const) {
    if (typeof value[k] !== 'string') throw bad(`${k} is not a string`);
  }
  const f: EpochFile = { version: VERSION, epoch: value.epoch, newestSeen: value.newestSeen, updatedAt: value.updatedAt as string, reason: value.reason as string };
  if (value.holder !== undefined) f.holder = value.holder as string;
  if (value.newestSeenFrom !== undefined) f.newestSeenFrom = value.newestSeenFrom as string;
  return f;
}
