/**
 * The `etcd` arbiter: epochs and the holder's lease live in an etcd cluster the pair shares.
 *
 * Two keys under the pair's prefix (etcd-keys.ts): the epoch record {epoch, holder}, never bound
 * to a lease, and the holder key, bound to the holder's lease so that etcd deletes it by itself
 * once the holder stops renewing. Every write is one transaction whose compares say "the record
 * and the holder key are exactly as we just read them" (their mod revisions, 0 = absent): etcd
 * applies transactions one at a time, so of two nodes that read the same state and both ask,
 * exactly one commits and the other's compare fails. That is the whole race story.
 *
 * A grant of epoch E+1 to node N needs, in that one transaction:
 * - the record still at epoch E (nobody was granted since we read it), and
 * - the holder key absent (no node's lease is alive: the old holder's etcd lease has expired) or
 *   the holder key N's own (N is the holder: nobody else can hold it meanwhile).
 * and it writes the record {E+1, N} and the holder key bound to N's live lease. So the holder key,
 * when present, always names the record's holder. Both actions follow this one rule: a
 * 'continue' by the holder passes because the key is its own; a 'takeover' by the other node
 * passes only once the key is gone, and waits for that (watch + re-reads) until its timeout.
 * A request from an epoch below the record's is stale: a firm no, except when the record names
 * the asker at exactly its epoch + 1, which is the asker's own earlier grant whose answer was lost
 * (a timeout after the write): that grant is reported again, and to nobody else.
 *
 * Why a takeover never overlaps a running holder: the taker needs the holder key absent, which
 * happens only when etcd expires the holder's lease (we never revoke), at etcd's receipt time of
 * the holder's last keepalive + TTL or later. The holder's own side ends at the *send* time of its
 * last answered keepalive + TTL (etcd-lease.ts), which is earlier; the agent stops a peerless
 * primary's guest at that end. A holder that learns its lease is gone (etcd says so, or the holder
 * key vanished or carries another lease) ends its side at once.
 *
 * A primary whose lease was lost (an etcd outage longer than the TTL) takes the holder key again
 * at the same epoch if the record still names it and nobody else holds the key: the same
 * compare-and-write, so it races safely with a peer's takeover.
 */
import { EventEmitter } from 'node:events';
import { EtcdLeaseInvalidError, type Etcd3, type IKeyValue, type IRequestOp, type Watcher } from 'etcd3';
import { silentLogger, type Logger } from '../log.js';
import { Backoff } from '../util/backoff.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import type { Arbiter, ArbiterEvents, ArbitrationRequest, ArbitrationResult } from './arbiter.js';
import { boundedCall, errorReason, pause } from './etcd-call.js';
import { createEtcdClient } from './etcd-client.js';
import { EtcdArbiterClosedError, EtcdArbiterOptionsError, EtcdEpochRecordInvalidError } from './etcd-errors.js';
import { decodeEpochRecord, encodeEpochRecord, etcdPairKeys, type EpochRecord, type EtcdPairKeys } from './etcd-keys.js';
import { EtcdLeaseKeeper } from './etcd-lease.js';

export { EtcdArbiterClosedError, EtcdArbiterOptionsError, EtcdCallTimeoutError, EtcdEpochRecordInvalidError } from './etcd-errors.js';

export interface EtcdArbiterOptions {
  /** etcd client URLs, `http://host:port` (or https). */
  endpoints: string[];
  /** The pair's key prefix, e.g. `/colo-agent/<pair-name>`; both nodes of a pair use the same one. */
  prefix: string;
  /** This node's name: unique within the pair, it is what the keys record. */
  nodeName: string;
  /** The lease TTL we ask etcd for, whole seconds >= 1; etcd may raise it (to about 2 s by default). */
  leaseTtlSeconds: number;
  /** We run the guest now: only then do we take (or take back) the holder key by ourselves. */
  isPrimary: () => boolean;
  /** Our persisted epoch. */
  epoch: () => number;
  /** Upper bound for one background etcd call (poll, lease grant, keepalive, start). */
  dialTimeoutMs: number;
  /** How often the keys are read when nothing else happens. Default: min(1000, TTL / 2). */
  pollIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/** The two keys as one read saw them. */
interface Snapshot {
  /** etcd's revision when the read ran. */
  revision: number;
  record?: EpochRecord & { modRevision: string };
  holder?: { value: string; lease: string; modRevision: string };
}

/** While a takeover waits for the holder's lease to run out, look again at least this often. */
const HOLDER_RECHECK_MS = 250;
/** Below this much time left, a request stops asking and answers with what it knows. */
const MIN_CALL_BUDGET_MS = 20;

export class EtcdArbiter extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly mode = 'etcd' as const;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly keys: EtcdPairKeys;
  private readonly by: string;
  private readonly pollIntervalMs: number;
  private client: Etcd3 | undefined;
  private watcher: Watcher | undefined;
  private watchRetryTimer: TimerHandle | undefined;
  private pollTimer: TimerHandle | undefined;
  private closed = false;
  private isReachable = false;
  /** The highest epoch etcd has shown us (starts at ours): 'epoch' fires above it. */
  private seenEpoch = -1;
  /**
   * The lease the holder key was last bound to by us, kept after it is lost (its end then says 0)
   * until etcd shows another node holding a later epoch: only then do we hold nothing at all.
   */
  private holderLease: EtcdLeaseKeeper | undefined;
  /** The epoch at which we hold (or last held) the key. */
  private heldEpoch = -1;
  /** etcd revision of our write that bound the holder key to holderLease; older views are ignored. */
  private holdRevision = 0;
  /** Every lease we made, so close() can stop their keepalives. */
  private readonly leases = new Set<EtcdLeaseKeeper>();
  /** request() and the primary's holder upkeep run one at a time. */
  private tail: Promise<unknown> = Promise.resolve();
  private requestsInFlight = 0;
  /** Why the primary's upkeep last declined to take the holder key (logged once per reason). */
  private lastRefusal: string | undefined;
  /** Woken by every watch event and by close(): a waiting takeover looks again at once. */
  private readonly changeListeners = new Set<() => void>();

  constructor(private readonly opts: EtcdArbiterOptions) {
    super();
    validateOptions(opts);
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'etcd-arbiter' });
    this.keys = etcdPairKeys(opts.prefix);
    this.by = `etcd ${opts.endpoints.join(',')}`;
    this.pollIntervalMs = opts.pollIntervalMs ?? Math.min(1000, (opts.leaseTtlSeconds * 1000) / 2);
  }

  /**
   * Connects, watches the pair's keys and, as the primary at the record's epoch (or the
   * configured primary before any record exists), takes the holder key. Resolves even when etcd
   * cannot be reached: reachable() stays false and the poll keeps trying.
   */
  async start(): Promise<void> {
    if (this.client || this.closed) return;
    this.client = createEtcdClient(this.opts.endpoints);
    this.seenEpoch = this.opts.epoch();
    this.startWatch();
    await this.tick();
    this.schedulePoll();
  }

  /**
   * Stops the keepalives WITHOUT revoking the lease: a planned agent stop leaves the guest
   * running, and revoking would delete the holder key at once and let the peer take over a guest
   * that still runs. The lease runs out by itself after its TTL.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clock.clearTimeout(this.pollTimer);
    this.clock.clearTimeout(this.watchRetryTimer);
    this.wakeWaiters();
    for (const lease of this.leases) lease.stop();
    this.leases.clear();
    const watcher = this.watcher;
    this.watcher = undefined;
    // Cancel before closing the client: a watch left attached would redial forever.
    if (watcher) await boundedCall(this.clock, this.opts.dialTimeoutMs, 'watch cancel', () => watcher.cancel()).catch(() => undefined);
    this.client?.close();
    this.setReachable(false);
  }

  async request(req: ArbitrationRequest, opts: { timeoutMs: number }): Promise<ArbitrationResult> {
    const deadline = this.clock.now() + opts.timeoutMs;
    if (!this.client || this.closed) return { granted: false, retryable: true, reason: 'the etcd arbiter is not running' };
    this.requestsInFlight++;
    try {
      // Queued behind another request, we still answer by our own deadline.
      const queued = this.serial(() => this.arbitrate(req, deadline));
      let timer: TimerHandle | undefined;
      const late = new Promise<ArbitrationResult>((resolve) => {
        timer = this.clock.setTimeout(
          () => resolve({ granted: false, retryable: true, reason: `no answer within ${opts.timeoutMs} ms (another arbitration was under way)` }),
          Math.max(0, deadline - this.clock.now()) + 50,
        );
      });
      const result = await Promise.race([queued, late]);
      this.clock.clearTimeout(timer);
      this.log.info({ action: req.action, epoch: req.epoch, result }, result.granted ? 'etcd granted an epoch' : 'etcd denied');
      return result;
    } catch (err) {
      // arbitrate() answers every failure itself; this only guards the promise that never rejects.
      return { granted: false, retryable: true, reason: errorReason(err) };
    } finally {
      this.requestsInFlight--;
    }
  }

  leaseRemainingMs(): number | undefined {
    return this.holderLease?.remainingMs();
  }

  reachable(): boolean {
    return this.isReachable;
  }

  /**
   * One arbitration, retried until `deadline` while etcd fails or the state moves under us.
   * Never throws.
   */
  private async arbitrate(req: ArbitrationRequest, deadline: number): Promise<ArbitrationResult> {
    const me = this.opts.nodeName;
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000 });
    /** A lease made for this request; bound to the holder key only if we win. */
    let fresh: EtcdLeaseKeeper | undefined;
    let lastError: unknown;
    let waitingOn: string | undefined;
    let arbiterEpoch: number | undefined;
    try {
      for (;;) {
        const left = deadline - this.clock.now();
        if (this.closed) return { granted: false, retryable: true, reason: new EtcdArbiterClosedError().message };
        // A call with a few ms left can only time out and hide the last real answer.
        if (left < MIN_CALL_BUDGET_MS) break;
        try {
          const snap = await this.read(left);
          this.observe(snap);
          lastError = undefined;
          const rec = snap.record;
          const recEpoch = rec?.epoch ?? 0;
          arbiterEpoch = recEpoch;
          // Our own earlier attempt committed but its answer was lost (an etcd error or a
          // timeout after the write): etcd already gave us req.epoch + 1, so we re-bind the holder
          // key to a live lease of ours and report that grant. Nobody else can have moved past it:
          // any other node asking at req.epoch is stale against the record.
          const ownEarlierGrant = rec !== undefined && rec.holder === me && rec.epoch === req.epoch + 1;
          if (!ownEarlierGrant && recEpoch > req.epoch) {
            return {
              granted: false,
              retryable: false,
              epoch: recEpoch,
              reason: `stale epoch ${req.epoch}: etcd is at epoch ${recEpoch}${rec ? ` (held by ${rec.holder})` : ''}`,
            };
          }
          if (!ownEarlierGrant && recEpoch < req.epoch) {
            return {
              granted: false,
              retryable: false,
              epoch: recEpoch,
              reason: `etcd's epoch record (${recEpoch}) is behind our epoch ${req.epoch}: were the etcd keys under ${this.keys.dir} lost or deleted?`,
            };
          }
          if (snap.holder && snap.holder.value !== me) {
            // Another node's lease is alive. Its holder key vanishes when etcd expires that lease;
            // look again on the next watch event or shortly, until our deadline.
            waitingOn = snap.holder.value;
            await this.waitForChange(Math.min(HOLDER_RECHECK_MS, deadline - this.clock.now()));
            continue;
          }
          waitingOn = undefined;
          // The holder key is absent or ours: we may bind it to a live lease of ours.
          let lease = this.holderLease?.alive ? this.holderLease : fresh?.alive ? fresh : undefined;
          if (!lease) {
            fresh = await this.newLease(deadline - this.clock.now());
            lease = fresh;
          }
          const newEpoch = ownEarlierGrant ? rec.epoch : req.epoch + 1;
          const puts = [this.putHolder(lease.id)];
          if (!ownEarlierGrant) puts.unshift(this.putRecord({ epoch: newEpoch, holder: me }));
          const committed = await this.commit(snap, puts, deadline - this.clock.now(), `${req.action} txn`);
          if (committed.succeeded) {
            this.becomeHolder(lease, newEpoch, committed.revision);
            if (lease === fresh) fresh = undefined;
            return { granted: true, epoch: newEpoch, by: this.by };
          }
          // The record or the holder key changed between our read and our write: read again.
        } catch (err) {
          if (this.closed) return { granted: false, retryable: true, reason: new EtcdArbiterClosedError().message };
          if (err instanceof EtcdEpochRecordInvalidError) return { granted: false, retryable: true, reason: err.message };
          lastError = err;
          this.noteFailure(err);
          if (err instanceof EtcdLeaseInvalidError) {
            // The lease we tried to bind is gone at etcd: drop it, a new one comes next round.
            if (fresh && !this.holderLease?.alive) fresh.markLost('etcd no longer knows it');
            else this.holderLease?.markLost('etcd no longer knows it');
            fresh = undefined;
          }
          await pause(this.clock, Math.min(backoff.next(), Math.max(0, deadline - this.clock.now())));
        }
      }
      // The last thing etcd told us wins: another node holds the key (then maybe etcd went quiet).
      if (waitingOn !== undefined) {
        const then = lastError !== undefined ? ` (then etcd did not answer: ${errorReason(lastError)})` : '';
        return { granted: false, retryable: true, reason: `${waitingOn} holds the lease${then}`, ...(arbiterEpoch !== undefined && { epoch: arbiterEpoch }) };
      }
      if (lastError !== undefined) return { granted: false, retryable: true, reason: `etcd unreachable: ${errorReason(lastError)}` };
      return { granted: false, retryable: true, reason: 'no decision before the deadline (the keys kept changing)' };
    } finally {
      // A lease we did not bind just runs out (its keepalives stop). Not revoked: if an earlier
      // attempt of ours committed without us hearing, the holder key may be bound to it.
      if (fresh) {
        fresh.stop();
        this.leases.delete(fresh);
      }
    }
  }

  /**
   * The primary's upkeep: when we run the guest, the record names us at our epoch (or there is no
   * record and we are at epoch 0, the pair as configured) and nobody else holds the key, bind the
   * holder key to a lease of ours. Same compare-and-write as a grant, so a racing takeover by the
   * peer and this cannot both win; the epoch does not change.
   */
  private async ensureHolder(): Promise<void> {
    if (this.closed || !this.opts.isPrimary() || this.holderLease?.alive) return;
    const me = this.opts.nodeName;
    const ours = this.opts.epoch();
    const snap = await this.read(this.opts.dialTimeoutMs);
    this.observe(snap);
    const rec = snap.record;
    const mayHold = rec ? rec.epoch === ours && rec.holder === me : ours === 0;
    if (!mayHold || (snap.holder && snap.holder.value !== me)) {
      // Runs every poll while this lasts: say it once per distinct state.
      const why = rec ? `etcd's record names ${rec.holder} at epoch ${rec.epoch}, we are at epoch ${ours}` : `etcd has no epoch record but we are at epoch ${ours}`;
      if (why !== this.lastRefusal) this.log.warn({ ours, record: rec, holder: snap.holder?.value }, `primary without a lease: ${why}`);
      this.lastRefusal = why;
      return;
    }
    this.lastRefusal = undefined;
    const lease = await this.newLease(this.opts.dialTimeoutMs);
    let bound = false;
    try {
      const puts = [this.putHolder(lease.id)];
      if (!rec) puts.unshift(this.putRecord({ epoch: ours, holder: me }));
      const committed = await this.commit(snap, puts, this.opts.dialTimeoutMs, 'holder txn');
      if (committed.succeeded && !this.closed) {
        this.becomeHolder(lease, ours, committed.revision);
        bound = true;
        this.log.info({ epoch: ours, leaseId: lease.id }, rec ? 'took the holder key back' : 'took the holder key (first record)');
      }
    } finally {
      if (!bound) {
        lease.stop();
        this.leases.delete(lease);
      }
    }
  }

  private becomeHolder(lease: EtcdLeaseKeeper, epoch: number, revision: number): void {
    if (this.holderLease && this.holderLease !== lease) {
      this.holderLease.stop();
      this.leases.delete(this.holderLease);
    }
    this.holderLease = lease;
    this.heldEpoch = epoch;
    this.holdRevision = Math.max(this.holdRevision, revision);
    // Our own grant is no news: only epochs above it fire 'epoch'.
    if (epoch > this.seenEpoch) this.seenEpoch = epoch;
  }

  private async newLease(timeoutMs: number): Promise<EtcdLeaseKeeper> {
    const client = this.requireClient();
    const lease = await EtcdLeaseKeeper.grant(
      {
        client,
        ttlSeconds: this.opts.leaseTtlSeconds,
        clock: this.clock,
        callTimeoutMs: this.opts.dialTimeoutMs,
        logger: this.log,
        onCall: (err) => (err === undefined ? this.setReachable(true) : this.noteFailure(err)),
      },
      Math.min(timeoutMs, this.opts.dialTimeoutMs),
    );
    if (this.closed) {
      lease.stop();
      throw new EtcdArbiterClosedError();
    }
    this.leases.add(lease);
    return lease;
  }

  /** One consistent read of both keys (a range over the prefix: one revision). */
  private async read(timeoutMs: number): Promise<Snapshot> {
    const client = this.requireClient();
    const res = await boundedCall(this.clock, timeoutMs, 'read', (deadline) => client.getAll().prefix(this.keys.dir).options({ deadline }).exec());
    this.setReachable(true);
    const snap: Snapshot = { revision: Number(res.header.revision) };
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      if (key === this.keys.epoch) snap.record = { ...decodeEpochRecord(key, kv.value.toString()), modRevision: kv.mod_revision };
      else if (key === this.keys.holder) snap.holder = { value: kv.value.toString(), lease: kv.lease, modRevision: kv.mod_revision };
    }
    return snap;
  }

  /** Writes `puts` only if both keys are still as `snap` saw them (mod revision 0 = absent). */
  private async commit(snap: Snapshot, puts: IRequestOp[], timeoutMs: number, what: string): Promise<{ succeeded: boolean; revision: number }> {
    const client = this.requireClient();
    const compare = [
      { key: Buffer.from(this.keys.epoch), target: 'Mod' as const, result: 'Equal' as const, mod_revision: snap.record?.modRevision ?? '0' },
      { key: Buffer.from(this.keys.holder), target: 'Mod' as const, result: 'Equal' as const, mod_revision: snap.holder?.modRevision ?? '0' },
    ];
    const res = await boundedCall(this.clock, timeoutMs, what, (deadline) => client.kv.txn({ compare, success: puts, failure: [] }, { deadline }));
    this.setReachable(true);
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  private putRecord(record: EpochRecord): IRequestOp {
    // No lease: the record must survive every holder.
    return { request_put: { key: Buffer.from(this.keys.epoch), value: Buffer.from(encodeEpochRecord(record)) } };
  }

  private putHolder(leaseId: string): IRequestOp {
    return { request_put: { key: Buffer.from(this.keys.holder), value: Buffer.from(this.opts.nodeName), lease: leaseId } };
  }

  /** What a read tells us beyond the request at hand: new epochs, and whether we still hold. */
  private observe(snap: Snapshot): void {
    if (snap.record) this.observeRecord(snap.record);
    this.observeHolder(snap.holder, snap.revision);
  }

  private observeRecord(rec: EpochRecord): void {
    if (rec.epoch > this.seenEpoch) {
      this.seenEpoch = rec.epoch;
      this.log.info({ epoch: rec.epoch, holder: rec.holder }, 'etcd shows a newer epoch');
      this.safeEmit('epoch', { epoch: rec.epoch, holder: rec.holder });
    }
    if (this.holderLease && rec.holder !== this.opts.nodeName && rec.epoch > this.heldEpoch) {
      // Another node was granted after us, which needed our holder key gone: we hold nothing.
      this.holderLease.markLost(`${rec.holder} holds epoch ${rec.epoch}`);
      this.holderLease.stop();
      this.leases.delete(this.holderLease);
      this.holderLease = undefined;
    }
  }

  /** The holder key as etcd had it at `revision`. */
  private observeHolder(holder: { lease: string } | undefined, revision: number): void {
    const lease = this.holderLease;
    // Views older than our binding write do not show it yet: they prove nothing.
    if (!lease?.alive || revision < this.holdRevision) return;
    if (!holder) lease.markLost('the holder key is gone');
    else if (holder.lease !== lease.id) lease.markLost(`the holder key is bound to another lease (${holder.lease})`);
  }

  private onWatched(kv: IKeyValue, deleted: boolean): void {
    try {
      const key = kv.key.toString();
      const revision = Number(kv.mod_revision);
      if (key === this.keys.epoch && !deleted) this.observeRecord(decodeEpochRecord(key, kv.value.toString()));
      else if (key === this.keys.holder) this.observeHolder(deleted ? undefined : { lease: kv.lease }, revision);
    } catch (err) {
      this.log.warn({ err: errorReason(err) }, 'ignoring a watch event');
    }
    this.wakeWaiters();
  }

  /**
   * The watch makes epochs and a vanishing holder key visible at once; the poll covers what a
   * watch can miss (events while it reconnects, a silently stuck stream).
   */
  private startWatch(): void {
    if (this.closed || !this.client) return;
    const watcher = this.client.watch().prefix(this.keys.dir).watcher();
    this.watcher = watcher;
    watcher
      .on('connected', () => this.setReachable(true))
      .on('disconnected', (err) => this.noteFailure(err))
      .on('put', (kv) => this.onWatched(kv, false))
      .on('delete', (kv) => this.onWatched(kv, true))
      .on('error', (err) => {
        // etcd cancelled the watch (compaction, ...): etcd3 dropped it, so we make a new one.
        this.log.warn({ err: errorReason(err) }, 'etcd watch cancelled; watching again');
        if (this.watcher !== watcher) return;
        this.watcher = undefined;
        this.watchRetryTimer = this.clock.setTimeout(() => this.startWatch(), 1000);
      });
  }

  private schedulePoll(): void {
    if (this.closed) return;
    this.pollTimer = this.clock.setTimeout(() => {
      void this.tick().finally(() => this.schedulePoll());
    }, this.pollIntervalMs);
  }

  /** The poll: read both keys; as the primary without a live lease, take the holder key again. */
  private async tick(): Promise<void> {
    try {
      this.observe(await this.read(this.opts.dialTimeoutMs));
    } catch (err) {
      if (this.closed) return;
      this.noteFailure(err);
      this.log.debug({ err: errorReason(err) }, 'etcd poll failed');
    }
    // A request under way owns the lease state; the next tick will do.
    if (this.closed || this.requestsInFlight > 0 || !this.opts.isPrimary() || this.holderLease?.alive) return;
    try {
      await this.serial(() => this.ensureHolder());
    } catch (err) {
      if (this.closed) return;
      this.noteFailure(err);
      // Unreachability is logged once by setReachable(); the poll retries.
      this.log.debug({ err: errorReason(err) }, 'could not take the holder key');
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private waitForChange(ms: number): Promise<void> {
    return pause(this.clock, ms, (resume) => {
      this.changeListeners.add(resume);
      return () => this.changeListeners.delete(resume);
    });
  }

  private wakeWaiters(): void {
    for (const resume of [...this.changeListeners]) resume();
  }

  /** An error that says etcd did not answer (not one where it answered "no"). */
  private noteFailure(err: unknown): void {
    if (err instanceof EtcdLeaseInvalidError || err instanceof EtcdEpochRecordInvalidError) {
      this.setReachable(true);
      return;
    }
    this.setReachable(false);
  }

  private setReachable(now: boolean): void {
    if (this.closed && now) return;
    if (now === this.isReachable) return;
    this.isReachable = now;
    this.log.info({ reachable: now }, now ? 'etcd reachable' : 'etcd unreachable');
    this.safeEmit('reachable', now);
  }

  private safeEmit<K extends keyof ArbiterEvents>(event: K, ...args: ArbiterEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: ArbiterEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ event, err: errorReason(err) }, 'an arbiter event listener threw');
    }
  }

  private requireClient(): Etcd3 {
    if (!this.client || this.closed) throw new EtcdArbiterClosedError();
    return this.client;
  }
}

function validateOptions(o: EtcdArbiterOptions): void {
  if (!Array.isArray(o.endpoints) || o.endpoints.length === 0) throw new EtcdArbiterOptionsError('etcd needs at least one endpoint');
  for (const e of o.endpoints) {
    if (!/^https?:\/\/[^/]+/.test(e)) throw new EtcdArbiterOptionsError(`etcd endpoint ${JSON.stringify(e)} is not http(s)://host:port`);
  }
  const httpsCount = o.endpoints.filter((e) => e.startsWith('https:')).length;
  if (httpsCount !== 0 && httpsCount !== o.endpoints.length) throw new EtcdArbiterOptionsError('etcd endpoints mix http and https');
  if (typeof o.prefix !== 'string' || o.prefix.replace(/\/+$/, '') === '') throw new EtcdArbiterOptionsError('the etcd prefix must not be empty');
  if (typeof o.nodeName !== 'string' || o.nodeName === '') throw new EtcdArbiterOptionsError('nodeName must not be empty');
  if (!Number.isInteger(o.leaseTtlSeconds) || o.leaseTtlSeconds < 1) {
    throw new EtcdArbiterOptionsError(`leaseTtlSeconds must be an integer >= 1, got ${o.leaseTtlSeconds}`);
  }
  if (!(o.dialTimeoutMs > 0)) throw new EtcdArbiterOptionsError(`dialTimeoutMs must be > 0, got ${o.dialTimeoutMs}`);
  if (o.pollIntervalMs !== undefined && !(o.pollIntervalMs > 0)) throw new EtcdArbiterOptionsError(`pollIntervalMs must be > 0, got ${o.pollIntervalMs}`);
}
