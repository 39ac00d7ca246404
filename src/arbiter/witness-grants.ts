/**
 * The witness's decisions: who holds the current epoch, whose lease is alive, and which request
 * for the next epoch is granted. Pure logic on an injectable Clock; the witness server feeds it
 * heartbeats (seen) and requests (request) and persists its state through `persist`.
 *
 * Safety rules, each a guard against two primaries:
 * - Exactly one grant per epoch: a grant is epoch + 1 for one node, decided while no other grant
 *   is in flight, and it resolves only after persist() stored it (a crashed witness that restarts
 *   from its file never hands out the same epoch again).
 * - A lease is renewed only by a heartbeat from the holder, at the current epoch, reporting its
 *   QEMU reachable, once the holder is on disk (seen() says so: leaseRenewed). The witness answers
 *   "renewed" only then, so the agent-side lease (send time + leaseMs) always ends before the
 *   witness-side one (receipt time + leaseMs + guardMs).
 * - A node is given a lease (grant or renewal) only when no other node may still hold one: the
 *   holder's lease, and any other lease this witness renewed, must have run out or been released
 *   (its QEMU is gone). A witness that has just started cannot know which leases its previous
 *   incarnation renewed except for the holder in its file, so for everyone else it counts them as
 *   renewed at its start: nothing for them within leaseMs + guardMs of starting (this covers a
 *   holder it never heard from, one it forgot with its file, and one it only guessed since).
 * - While a grant to another node is in flight, the old holder's heartbeats renew nothing.
 */
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import type { ArbitrationAction } from './arbiter.js';
import { EpochInvalidError, WitnessGrantsOptionsError } from './errors.js';

/** What the witness persists: the current epoch and who holds it. */
export interface WitnessGrantsState {
  epoch: number;
  holder: string | undefined;
}

export interface WitnessGrantsOptions {
  /** The agents' lease (arbiter.leaseMs). */
  leaseMs: number;
  /** Extra wait on the witness side on top of leaseMs, for clock-rate drift and delays. */
  guardMs: number;
  /** With no known holder: how long to collect requests from the first before deciding. */
  bothAskWindowMs: number;
  /** The state from the witness's file (epoch 0, no holder when there is none). */
  initial: { epoch: number; holder?: string };
  /** Stores the state durably; every grant waits for it. Must not resolve before the data is on disk. */
  persist: (s: WitnessGrantsState) => Promise<void>;
  clock?: Clock;
  logger?: Logger;
}

/** What an agent's heartbeat tells the witness. */
export interface HeartbeatFacts {
  epoch: number;
  /** The agent's role token (`primary`, `secondary`). */
  role: string;
  qemuReachable: boolean;
}

export interface GrantRequest {
  action: ArbitrationAction;
  /** The requester's current epoch. */
  epoch: number;
  role: string;
}

export type Verdict =
  | { granted: true; epoch: number; holder: string }
  | {
      granted: false;
      reason: string;
      /** The witness's epoch when it said no. */
      epoch: number;
      /** True when asking again later may succeed (persist failed, shutting down). */
      retryable: boolean;
    };

export interface SeenResult {
  /** The witness's epoch and holder after the heartbeat: the ACK tells the agent. */
  epoch: number;
  holder: string | undefined;
  /** This heartbeat renewed the sender's lease: only then may its agent extend its own lease. */
  leaseRenewed: boolean;
}

export interface WitnessNodeSnapshot {
  node: string;
  lastSeenAgoMs: number | undefined;
  lastEpoch: number | undefined;
  lastRole: string | undefined;
  lastQemuReachable: boolean | undefined;
}

export interface WitnessGrantsSnapshot {
  epoch: number;
  holder: string | undefined;
  /** Witness-side lease left for the holder (leaseMs + guardMs from its last renewal); 0 once run out or released. */
  leaseRemainingMs: number | undefined;
  /** Nodes with a request waiting for a decision. */
  pending: string[];
  /** The node a grant is being persisted for. */
  granting: string | undefined;
  nodes: WitnessNodeSnapshot[];
}

interface NodeInfo {
  lastSeenAt?: number;
  lastEpoch?: number;
  lastRole?: string;
  lastQemuReachable?: boolean;
  /** Last lease renewal (heartbeat receipt or grant). Undefined: counts from the witness's start. */
  renewedAt?: number;
  /** Its last heartbeat said its QEMU is gone: no lease to wait for. */
  released: boolean;
}

type Resolve = (v: Verdict) => void;

interface PendingRequest {
  node: string;
  action: ArbitrationAction;
  epoch: number;
  at: number;
  seq: number;
  waiters: Resolve[];
}

interface Granting {
  node: string;
  /** The request's epoch, so that a repeated request joins this grant. */
  reqEpoch: number;
  base: WitnessGrantsState;
  next: WitnessGrantsState & { holder: string };
  waiters: Resolve[];
}

const isEpoch = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export class WitnessGrants {
  private epoch: number;
  private holder: string | undefined;
  /** The last state persist() stored: leases are renewed only for a holder on disk. */
  private durable: WitnessGrantsState;
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly pending = new Map<string, PendingRequest>();
  private granting: Granting | undefined;
  private seq = 0;
  private timer: TimerHandle | undefined;
  private closed = false;
  private persistChain: Promise<void> = Promise.resolve();
  private backgroundPersists = 0;
  private readonly startedAt: number;
  /** The holder named in the witness's file at start. */
  private readonly trustedHolder: string | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly leaseMs: number;
  private readonly guardMs: number;
  private readonly windowMs: number;
  private readonly persistFn: (s: WitnessGrantsState) => Promise<void>;

  constructor(opts: WitnessGrantsOptions) {
    const num = (name: string, v: number, min: number, strict: boolean) => {
      if (typeof v !== 'number' || !Number.isFinite(v) || (strict ? v <= min : v < min)) {
        throw new WitnessGrantsOptionsError(`${name} must be a finite number ${strict ? '>' : '>='} ${min}, got ${String(v)}`);
      }
    };
    num('leaseMs', opts.leaseMs, 0, true);
    num('guardMs', opts.guardMs, 0, false);
    num('bothAskWindowMs', opts.bothAskWindowMs, 0, false);
    if (!isEpoch(opts.initial?.epoch)) throw new WitnessGrantsOptionsError(`initial.epoch must be an integer >= 0, got ${String(opts.initial?.epoch)}`);
    if (opts.initial.holder !== undefined && (typeof opts.initial.holder !== 'string' || opts.initial.holder === '')) {
      throw new WitnessGrantsOptionsError('initial.holder must be a non-empty string when given');
    }
    if (typeof opts.persist !== 'function') throw new WitnessGrantsOptionsError('persist must be a function');
    this.leaseMs = opts.leaseMs;
    this.guardMs = opts.guardMs;
    this.windowMs = opts.bothAskWindowMs;
    this.persistFn = opts.persist;
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'witness-grants' });
    this.epoch = opts.initial.epoch;
    this.holder = opts.initial.holder;
    this.durable = { epoch: this.epoch, holder: this.holder };
    this.startedAt = this.clock.now();
    this.trustedHolder = opts.initial.holder;
  }

  /**
   * A valid heartbeat from `node`. Learns a higher epoch (the witness lost its state), makes the
   * configured primary the holder at a holder-less epoch, and renews or releases the holder's
   * lease; a renewal denies every pending request of another node.
   */
  seen(node: string, hb: HeartbeatFacts): SeenResult {
    if (!isEpoch(hb.epoch)) throw new EpochInvalidError(`heartbeat epoch from ${node}`, hb.epoch);
    if (this.closed) return { epoch: this.epoch, holder: this.holder, leaseRenewed: false };
    const at = this.clock.now();
    const info = this.info(node);
    info.lastSeenAt = at;
    info.lastEpoch = hb.epoch;
    info.lastRole = hb.role;
    info.lastQemuReachable = hb.qemuReachable;
    // A node whose QEMU is gone runs no guest, whatever its epoch: it has no lease to wait for.
    const wasReleased = info.released;
    info.released = !hb.qemuReachable;

    if (hb.epoch > this.epoch) {
      this.adopt(hb.epoch, hb.role === 'primary' ? node : undefined, `heartbeat from ${node}`);
    } else if (hb.epoch === this.epoch && this.holder === undefined && hb.role === 'primary' && !this.granting) {
      this.holder = node;
      this.log.info({ node, epoch: this.epoch }, 'holder bootstrapped: the primary at a holder-less epoch holds it');
    }

    let leaseRenewed = false;
    if (node === this.holder) {
      if (!hb.qemuReachable) {
        if (!wasReleased) this.log.info({ node, epoch: this.epoch }, 'the holder reports its QEMU gone: its lease is released');
      } else if (this.mayRenew(node, hb.epoch)) {
        info.renewedAt = at;
        leaseRenewed = true;
        for (const p of [...this.pending.values()]) {
          if (p.node !== node) this.deny(p, `${node} is alive and holds the lease`, false);
        }
      }
    }
    this.ensureDurable();
    this.evaluate();
    return { epoch: this.epoch, holder: this.holder, leaseRenewed };
  }

  /**
   * `node` asks for the next epoch. Resolves with the verdict; a grant resolves only once
   * persisted. A second request from a node while one is pending joins it. Rejects only for an
   * epoch that is not an integer >= 0 (the wire decoder never lets one through).
   */
  request(node: string, req: GrantRequest): Promise<Verdict> {
    if (!isEpoch(req.epoch)) return Promise.reject(new EpochInvalidError(`request epoch from ${node}`, req.epoch));
    return new Promise<Verdict>((resolve) => {
      if (this.closed) {
        this.logDeny(node, 'the witness is shutting down', true);
        resolve({ granted: false, reason: 'the witness is shutting down', epoch: this.epoch, retryable: true });
        return;
      }
      const g = this.granting;
      if (g && g.node === node && g.reqEpoch === req.epoch) {
        g.waiters.push(resolve);
        return;
      }
      if (req.epoch > this.epoch) this.adopt(req.epoch, undefined, `request from ${node}`);
      if (!this.isCurrent(node, req.epoch)) {
        const reason = `stale epoch: ${node} asked at epoch ${req.epoch}, the witness is at epoch ${this.epoch}`;
        this.logDeny(node, reason, false);
        resolve({ granted: false, reason, epoch: this.epoch, retryable: false });
        return;
      }
      const existing = this.pending.get(node);
      if (existing) {
        existing.waiters.push(resolve);
        return;
      }
      this.pending.set(node, { node, action: req.action, epoch: req.epoch, at: this.clock.now(), seq: ++this.seq, waiters: [resolve] });
      this.log.info({ node, action: req.action, epoch: req.epoch, holder: this.holder }, 'grant requested');
      this.evaluate();
    });
  }

  snapshot(): WitnessGrantsSnapshot {
    const now = this.clock.now();
    let leaseRemainingMs: number | undefined;
    if (this.holder !== undefined) {
      const end = this.leaseEnd(this.holder);
      leaseRemainingMs = end === undefined ? 0 : Math.max(0, end - now);
    }
    return {
      epoch: this.epoch,
      holder: this.holder,
      leaseRemainingMs,
      pending: [...this.pending.values()].sort((a, b) => a.seq - b.seq).map((p) => p.node),
      granting: this.granting?.node,
      nodes: [...this.nodes.entries()].map(([node, i]) => ({
        node,
        lastSeenAgoMs: i.lastSeenAt === undefined ? undefined : now - i.lastSeenAt,
        lastEpoch: i.lastEpoch,
        lastRole: i.lastRole,
        lastQemuReachable: i.lastQemuReachable,
      })),
    };
  }

  /**
   * Stops deciding: clears the timer, denies pending requests (retryable) and later ones. A grant
   * already being persisted still completes; resolves once every persist has settled.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      for (const p of [...this.pending.values()]) this.deny(p, 'the witness is shutting down', true);
    }
    await this.persistChain;
  }

  // ---- decisions ----

  /** Decides whatever can be decided now, or arms the timer for when it can. */
  private evaluate(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || this.granting) return;
    for (const p of [...this.pending.values()]) {
      if (!this.isCurrent(p.node, p.epoch)) this.deny(p, `stale epoch: ${p.node} asked at epoch ${p.epoch}, the witness is now at epoch ${this.epoch}`, false);
    }
    const waiting = [...this.pending.values()].sort((a, b) => a.seq - b.seq);
    const first = waiting[0];
    if (!first) return;
    const now = this.clock.now();
    const h = this.holder;

    const own = h === undefined ? undefined : this.pending.get(h);
    let pick: PendingRequest;
    let due: number;
    let why: string;
    if (own) {
      pick = own;
      due = this.freeAt(own.node);
      why = `${own.node} holds epoch ${this.epoch}`;
    } else if (h === undefined) {
      pick = waiting.find((p) => p.action === 'continue') ?? first;
      due = Math.max(first.at + this.windowMs, this.freeAt(pick.node));
      why = `no node holds epoch ${this.epoch}${pick.action === 'continue' ? ` and ${pick.node} is the primary` : ''}`;
    } else {
      pick = first;
      due = this.freeAt(pick.node);
      why = this.nodes.get(h)?.released ? `${h} reports its QEMU gone` : `${h}'s lease ran out`;
    }
    if (now >= due) return this.startGrant(pick, why);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.evaluate();
    }, due - now);
  }

  /** Persists epoch + 1 for `p.node`, then answers; nothing else is granted meanwhile. */
  private startGrant(p: PendingRequest, why: string): void {
    this.pending.delete(p.node);
    const base = { epoch: this.epoch, holder: this.holder };
    const g: Granting = { node: p.node, reqEpoch: p.epoch, base, next: { epoch: this.epoch + 1, holder: p.node }, waiters: p.waiters };
    this.granting = g;
    this.queuePersist(g.next).then(
      () => this.finishGrant(g, p.action, why),
      (err: unknown) => {
        this.granting = undefined;
        const reason = `cannot persist the grant of epoch ${g.next.epoch} to ${g.node}: ${(err as Error)?.message ?? String(err)}`;
        this.log.error({ node: g.node, epoch: g.next.epoch, err }, 'grant not persisted: denied, state unchanged');
        this.answer(g.node, g.waiters, { granted: false, reason, epoch: this.epoch, retryable: true });
        this.ensureDurable();
        this.evaluate();
      },
    );
  }

  private finishGrant(g: Granting, action: ArbitrationAction, why: string): void {
    this.granting = undefined;
    this.durable = { ...g.next };
    if (this.epoch !== g.base.epoch || this.holder !== g.base.holder) {
      // A higher epoch was learnt while persisting (the later persist of it overwrites ours).
      this.answer(g.node, g.waiters, { granted: false, reason: `stale epoch: the witness moved to epoch ${this.epoch} while granting`, epoch: this.epoch, retryable: false });
    } else {
      this.epoch = g.next.epoch;
      this.holder = g.node;
      const info = this.info(g.node);
      info.renewedAt = this.clock.now();
      info.released = false;
      this.log.info({ node: g.node, epoch: this.epoch, action, reason: why }, 'epoch granted');
      this.answer(g.node, g.waiters, { granted: true, epoch: this.epoch, holder: g.node });
      for (const p of [...this.pending.values()]) {
        if (p.node !== g.node) this.deny(p, `${g.node} was granted epoch ${this.epoch}`, false);
      }
    }
    this.ensureDurable();
    this.evaluate();
  }

  /** Learns a higher epoch than ours: the witness lost (part of) its state. */
  private adopt(epoch: number, holder: string | undefined, from: string): void {
    this.log.warn({ epoch, previous: this.epoch, holder, from }, 'adopting a higher epoch than the witness knew');
    this.epoch = epoch;
    this.holder = holder;
    this.ensureDurable();
  }

  // ---- leases ----

  /** Whether a heartbeat from the holder at `epoch` renews its lease now. */
  private mayRenew(node: string, epoch: number): boolean {
    if (epoch !== this.epoch) return false;
    if (this.durable.epoch !== this.epoch || this.durable.holder !== node) return false;
    if (this.granting && this.granting.node !== node) return false;
    return this.clock.now() >= this.freeAt(node);
  }

  /**
   * When `node`'s witness-side lease ends; undefined when released (its QEMU is gone). A holder
   * heard alive counts as renewed even while renewals are held back (start-up window, holder not
   * yet on disk): its agent may count its own lease from those heartbeats, and in any case a
   * holder that is plainly alive must not lose its guest to a lucky request at the window's end.
   */
  private leaseEnd(node: string): number | undefined {
    const i = this.nodes.get(node);
    if (i?.released) return undefined;
    const alive = i?.lastQemuReachable && i.lastSeenAt !== undefined ? i.lastSeenAt : -Infinity;
    return Math.max(i?.renewedAt ?? this.startedAt, alive) + this.leaseMs + this.guardMs;
  }

  /**
   * The earliest time `node` may be given a lease (a grant or a renewal): once no other node may
   * still hold one. That is every lease this witness renewed for another node (normally only the
   * old holder's; after adopting a higher epoch, possibly the previous holder's too), and, unless
   * `node` is the holder named in the witness's file, every lease a previous incarnation may have
   * renewed: those are unknown, so they count as renewed at this start. The file is trusted here
   * because a witness renews only the holder it has stored.
   */
  private freeAt(node: string): number {
    let t = node === this.trustedHolder ? -Infinity : this.startedAt + this.leaseMs + this.guardMs;
    for (const [other, i] of this.nodes) {
      if (other !== node && !i.released && i.renewedAt !== undefined) t = Math.max(t, i.renewedAt + this.leaseMs + this.guardMs);
    }
    if (this.holder !== undefined && this.holder !== node) t = Math.max(t, this.leaseEnd(this.holder) ?? -Infinity);
    return t;
  }

  /**
   * A request at the witness's epoch; or the holder asking one epoch below: its grant was stored
   * but the answer was lost (witness crash), so it never adopted it. Granting it the next epoch is
   * safe (nobody else has the current one) and avoids a holder stuck as "stale" for good.
   */
  private isCurrent(node: string, epoch: number): boolean {
    return epoch === this.epoch || (node === this.holder && epoch === this.epoch - 1);
  }

  // ---- persistence and answers ----

  /** persist() calls run one after another, in order, so a later state never lands before an earlier. */
  private queuePersist(s: WitnessGrantsState): Promise<void> {
    const state = { ...s };
    const p = this.persistChain.then(() => this.persistFn(state));
    this.persistChain = p.catch(() => undefined);
    return p;
  }

  /** Stores a state learnt from heartbeats or requests (not a grant); retried on the next heartbeat if it fails. */
  private ensureDurable(): void {
    // During a grant, its completion calls this again; after close(), nothing more is written.
    if (this.closed || this.granting || this.backgroundPersists > 0) return;
    if (this.durable.epoch === this.epoch && this.durable.holder === this.holder) return;
    const s = { epoch: this.epoch, holder: this.holder };
    this.backgroundPersists++;
    this.queuePersist(s).then(
      () => {
        this.backgroundPersists--;
        this.durable = s;
        this.ensureDurable();
      },
      (err: unknown) => {
        this.backgroundPersists--;
        this.log.warn({ err, epoch: s.epoch, holder: s.holder }, 'cannot persist the witness state; retrying on the next heartbeat');
      },
    );
  }

  private deny(p: PendingRequest, reason: string, retryable: boolean): void {
    this.pending.delete(p.node);
    this.answer(p.node, p.waiters, { granted: false, reason, epoch: this.epoch, retryable });
  }

  private answer(node: string, waiters: Resolve[], v: Verdict): void {
    if (!v.granted) this.logDeny(node, v.reason, v.retryable);
    for (const w of waiters) w(v);
  }

  private logDeny(node: string, reason: string, retryable: boolean): void {
    this.log.warn({ node, epoch: this.epoch, holder: this.holder, retryable, reason }, 'grant denied');
  }

  private info(node: string): NodeInfo {
    let i = this.nodes.get(node);
    if (!i) {
      i = { released: false };
      this.nodes.set(node, i);
    }
    return i;
  }
}
