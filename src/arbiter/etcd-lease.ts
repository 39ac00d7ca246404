/**
 * One etcd lease of ours, kept alive by us, with the time our side may rely on it.
 *
 * Why our own ticker around etcd3's `Lease.keepaliveOnce()` instead of its automatic keepalive:
 * the agent-side lease end must be (send time of the newest *answered* keepalive) + TTL, and the
 * automatic loop does not say which request an answer belongs to. keepaliveOnce() opens a stream
 * per request, so each answer pairs with the send time we noted just before it. Ticks do not wait
 * for each other: a hung request cannot hold back the next one.
 *
 * Why send time + TTL is safe: etcd renews the lease when the request *arrives*, always at or
 * after we sent it, and sets the expiry to arrival + TTL on its own clock. Our end is therefore
 * never later than etcd's, so the holder key (bound to this lease) outlives our belief in it, and
 * nobody can take over (which needs the key gone) while we still think we hold it. The granted
 * TTL is read from each answer; until the first one we use the TTL we asked for, which etcd never
 * shortens (it only raises it to its minimum).
 */
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';
import type { Logger } from '../log.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { boundedCall, errorReason } from './etcd-call.js';

export interface EtcdLeaseKeeperOptions {
  client: Etcd3;
  /** The TTL we ask for, whole seconds >= 1. */
  ttlSeconds: number;
  clock: Clock;
  /** Upper bound for one grant or keepalive call. */
  callTimeoutMs: number;
  logger: Logger;
  /** Every call's outcome (undefined = answered), for the arbiter's reachability. */
  onCall?: (err?: unknown) => void;
  /** etcd says the lease is gone (expired or revoked): our side ends at once. */
  onLost?: (keeper: EtcdLeaseKeeper, reason: string) => void;
}

export class EtcdLeaseKeeper {
  /** Our side's end of the lease, on the Clock. */
  private end: number;
  private ttlSeconds: number;
  private lostReason: string | undefined;
  private stopped = false;
  private timer: TimerHandle | undefined;

  private constructor(
    private readonly opts: EtcdLeaseKeeperOptions,
    private readonly lease: Lease,
    /** etcd's lease ID (int64 as a decimal string). */
    readonly id: string,
    grantSentAt: number,
  ) {
    this.ttlSeconds = opts.ttlSeconds;
    // etcd starts the TTL when the grant arrives, after we sent it: this end is never late.
    this.end = grantSentAt + opts.ttlSeconds * 1000;
  }

  /** Asks etcd for a new lease and starts keeping it alive. Rejects when etcd does not grant in time. */
  static async grant(opts: EtcdLeaseKeeperOptions, timeoutMs: number): Promise<EtcdLeaseKeeper> {
    const sentAt = opts.clock.now();
    const lease = opts.client.lease(opts.ttlSeconds, { autoKeepAlive: false, deadline: new Date(Date.now() + timeoutMs) });
    let id: string;
    try {
      id = await boundedCall(opts.clock, timeoutMs, 'lease grant', () => lease.grant());
      opts.onCall?.();
    } catch (err) {
      // A grant that lands after we gave up has no key and no keepalive: it simply runs out.
      lease.release();
      opts.onCall?.(err);
      throw err;
    }
    const keeper = new EtcdLeaseKeeper(opts, lease, id, sentAt);
    keeper.schedule(keeper.intervalMs());
    return keeper;
  }

  /** Milliseconds until our side's end of the lease, 0 once passed or lost. */
  remainingMs(): number {
    return Math.max(0, this.end - this.opts.clock.now());
  }

  /** Our side's end of the lease on the Clock. */
  get endMs(): number {
    return this.end;
  }

  /** The TTL etcd granted, as of its last answer (the requested one before any). */
  get grantedTtlSeconds(): number {
    return this.ttlSeconds;
  }

  /** etcd said the lease is gone, or the holder key no longer carries it. */
  get lost(): boolean {
    return this.lostReason !== undefined;
  }

  /** Usable for a new grant: neither lost nor stopped. */
  get alive(): boolean {
    return !this.lost && !this.stopped;
  }

  /**
   * We learned the lease no longer protects us (etcd said so, or the holder key is gone or bound
   * to another lease): our side ends now, whatever time was left.
   */
  markLost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    this.end = Math.min(this.end, this.opts.clock.now());
    this.halt();
    this.opts.logger.warn({ leaseId: this.id, reason }, 'etcd lease lost');
    this.opts.onLost?.(this, reason);
  }

  /**
   * Stops the keepalives and lets the lease run out by itself. Never revokes: revoking would
   * delete the holder key at once and let the peer take over while our guest may still run
   * (a planned agent stop leaves the guest running).
   */
  stop(): void {
    this.stopped = true;
    this.halt();
  }

  private halt(): void {
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.lease.release();
  }

  /** Same pace as etcd's Go client: three keepalives per TTL. */
  private intervalMs(): number {
    return Math.max(100, Math.floor((this.ttlSeconds * 1000) / 3));
  }

  private schedule(ms: number): void {
    if (this.stopped || this.lost) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      this.keepaliveOnce();
      this.schedule(this.intervalMs());
    }, ms);
  }

  private keepaliveOnce(): void {
    const sentAt = this.opts.clock.now();
    // An answer later than one TTL cannot extend anything (sentAt + TTL has passed): give up on it.
    const timeoutMs = Math.min(this.opts.callTimeoutMs, this.ttlSeconds * 1000);
    boundedCall(this.opts.clock, timeoutMs, 'lease keepalive', (deadline) => this.lease.keepaliveOnce({ deadline })).then(
      (res) => {
        if (this.stopped || this.lost) return;
        this.opts.onCall?.();
        const ttl = Number(res.TTL);
        if (!(ttl > 0)) {
          this.markLost('etcd reports the lease expired');
          return;
        }
        this.ttlSeconds = ttl;
        this.end = Math.max(this.end, sentAt + ttl * 1000);
      },
      (err: unknown) => {
        if (this.stopped || this.lost) return;
        if (err instanceof EtcdLeaseInvalidError) {
          this.opts.onCall?.();
          this.markLost('etcd reports the lease expired or revoked');
          return;
        }
        this.opts.onCall?.(err);
        this.opts.logger.debug({ leaseId: this.id, err: errorReason(err) }, 'etcd lease keepalive failed');
      },
    );
  }
}
