/**
 * The agent's side of `arbiter.mode: witness`: heartbeat links to the witness (dial only, the
 * same key and protocol as the peer links), arbitration requests over them, and the lease.
 *
 * The lease: the witness renews the holder's lease on each heartbeat it receives from it (one
 * that says its QEMU is reachable), and grants the next epoch to the other node only once
 * leaseMs + a guard have passed since the last one. Here the lease ends leaseMs after the SEND
 * time of our newest heartbeat the witness acknowledged, a time no later than the witness's
 * receipt of it: so our lease always runs out before the witness may give the guest to the peer.
 * Only heartbeats that said "QEMU reachable" count, as only those renew it at the witness, and
 * only those sent after the witness told us we hold the epoch (it says so once that is on its
 * disk, and renews nothing before).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { HeartbeatLinks, type HeartbeatLinksOptions, type PeerMessageEvent } from '../heartbeat/links.js';
import type { HealthSummary } from '../heartbeat/messages.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import type { Arbiter, ArbiterEvents, ArbitrationRequest, ArbitrationResult } from './arbiter.js';
import { parseWitnessGrant, type WitnessStateBody, type WitnessVerdictBody } from './witness-protocol.js';

export interface WitnessClientOptions {
  nodeName: string;
  role: string;
  /** The witness's heartbeat listeners (HOST:PORT), one link each. */
  witness: string[];
  /** Source address for the links (our heartbeat.listen host), so the witness and firewalls see which node calls. */
  localAddress?: string;
  key?: Buffer;
  insecure?: boolean;
  intervalMs: number;
  /** The same health summary the peer gets: the witness renews the holder's lease from it. */
  summary: () => HealthSummary;
  epoch: () => number;
  /** Passed through to the links (frame and connection limits, timeouts, backoff). */
  links?: Partial<Pick<HeartbeatLinksOptions, 'helloTimeoutMs' | 'maxFrameBytes' | 'reconnectInitialMs' | 'reconnectMaxMs'>>;
  clock?: Clock;
  logger?: Logger;
}

interface Pending {
  resolve: (r: ArbitrationResult) => void;
  timer: TimerHandle;
  /** When we sent it: no later than the witness's receipt, so a lease counted from it ends first. */
  sentAt: number;
}

export class WitnessClient extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly mode = 'witness' as const;
  readonly links: HeartbeatLinks;

  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly pending = new Map<string, Pending>();
  private state: (WitnessStateBody & { from: string; session: string }) | undefined;
  /** Send time of the newest acknowledged heartbeat that renews the lease. */
  private lastRenewSentAt: number | undefined;
  /** What the summary said at the latest heartbeat round. */
  private roundSaidReachable = false;
  /** Send times of recent rounds that said our QEMU is reachable: only their ACKs renew. */
  private readonly renewingRounds = new Set<number>();
  /** Since when (our clock) the witness has named us holder; undefined while it names another. */
  private holderSince: number | undefined;
  private wasReachable = false;

  constructor(private readonly opts: WitnessClientOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'witness-client' });
    this.links = new HeartbeatLinks({
      nodeName: opts.nodeName,
      role: opts.role,
      peers: opts.witness.map((address) => (opts.localAddress !== undefined ? { address, localAddress: opts.localAddress } : address)),
      ...(opts.key ? { key: opts.key } : { insecure: true }),
      intervalMs: opts.intervalMs,
      ...opts.links,
      summary: () => {
        const s = opts.summary();
        this.roundSaidReachable = s.qemuReachable;
        return s;
      },
      epoch: opts.epoch,
      clock: this.clock,
      logger: opts.logger ?? silentLogger(),
    });
    this.links.on('sent', (e) => {
      if (!this.roundSaidReachable) return;
      this.renewingRounds.add(e.sentAt);
      // ACKs come back within a few rounds or not at all.
      if (this.renewingRounds.size > 64) this.renewingRounds.delete(this.renewingRounds.values().next().value as number);
    });
    this.links.on('rtt', (e) => {
      if (this.holderSince === undefined || e.sentAt < this.holderSince || !this.renewingRounds.has(e.sentAt)) return;
      if (this.lastRenewSentAt === undefined || e.sentAt > this.lastRenewSentAt) this.lastRenewSentAt = e.sentAt;
    });
    this.links.on('message', (e) => this.onMessage(e));
    this.links.on('epoch', (e) => this.noteEpoch(e.epoch, undefined));
    this.links.on('link-up', () => this.updateReachable());
    this.links.on('link-down', () => this.updateReachable());
  }

  async start(): Promise<void> {
    await this.links.start();
    this.log.info({ witness: this.opts.witness }, 'dialling the witness');
  }

  async close(): Promise<void> {
    for (const [id, p] of this.pending) {
      this.clock.clearTimeout(p.timer);
      p.resolve({ granted: false, retryable: true, reason: 'the agent is stopping' });
      this.pending.delete(id);
    }
    await this.links.close({ goodbye: 'planned stop' });
  }

  reachable(): boolean {
    return this.links.links().some((l) => l.state === 'established');
  }

  /** The witness's last word on epoch and holder, for status. */
  view(): { epoch: number; holder?: string; leaseMs: number } | undefined {
    return this.state && { epoch: this.state.witnessEpoch, ...(this.state.holder !== undefined && { holder: this.state.holder }), leaseMs: this.state.leaseMs };
  }

  leaseRemainingMs(): number | undefined {
    const s = this.state;
    // A newer epoch held by us is our own grant in flight: the witness announces it before its
    // verdict reaches us and we persist it. It is ours; counting it as no lease would pause the
    // guest of the primary that was just told to continue.
    if (!s || s.holder !== this.opts.nodeName || s.witnessEpoch < this.opts.epoch()) return undefined;
    if (this.lastRenewSentAt === undefined) return 0;
    return Math.max(0, this.lastRenewSentAt + s.leaseMs - this.clock.now());
  }

  request(req: ArbitrationRequest, opts: { timeoutMs: number }): Promise<ArbitrationResult> {
    const requestId = randomBytes(8).toString('hex');
    return new Promise((resolve) => {
      let sent = 0;
      const sentAt = this.clock.now();
      try {
        sent = this.links.send('arbitration-request', { requestId, action: req.action });
      } catch (err) {
        resolve({ granted: false, retryable: true, reason: `cannot send the request: ${(err as Error).message}` });
        return;
      }
      if (sent === 0) {
        resolve({ granted: false, retryable: true, reason: 'the witness is unreachable (no heartbeat link up)' });
        return;
      }
      this.log.info({ requestId, action: req.action, epoch: req.epoch, links: sent }, 'asked the witness');
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(requestId);
        resolve({ granted: false, retryable: true, reason: `no verdict from the witness within ${opts.timeoutMs} ms` });
      }, opts.timeoutMs);
      this.pending.set(requestId, { resolve, timer, sentAt });
    });
  }

  private onMessage(e: PeerMessageEvent): void {
    if (e.type !== 'arbitration-grant') return;
    let body;
    try {
      body = parseWitnessGrant(e.body);
    } catch (err) {
      this.log.warn({ link: e.link, err: (err as Error).message }, 'ignored a malformed message from the witness');
      return;
    }
    if (body.kind === 'state') {
      const before = this.state;
      // Links can deliver an older announcement after a newer one (two links, a redial): within one
      // witness session the epoch only grows, and a late {older epoch, holder us} must not count
      // as a lease (leaseRemainingMs takes a newer epoch held by us as our grant in flight).
      if (before && before.session === e.peerSession && body.witnessEpoch < before.witnessEpoch) return;
      this.state = { ...body, from: e.peerName, session: e.peerSession };
      const ours = body.holder === this.opts.nodeName;
      if (!ours) {
        this.holderSince = undefined;
        this.lastRenewSentAt = undefined;
      } else if (this.holderSince === undefined || before?.witnessEpoch !== body.witnessEpoch) {
        // Beats sent from now on reach the witness after it stored us as holder: they renew.
        this.holderSince = this.clock.now();
      }
      if (before?.holder !== body.holder || before?.witnessEpoch !== body.witnessEpoch) {
        this.log.info({ witness: e.peerName, epoch: body.witnessEpoch, holder: body.holder, leaseMs: body.leaseMs }, 'witness view');
      }
      this.noteEpoch(body.witnessEpoch, body.holder);
      return;
    }
    this.onVerdict(body, e.peerName);
  }

  private onVerdict(v: WitnessVerdictBody, from: string): void {
    const p = this.pending.get(v.requestId);
    if (!p) return; // timed out already, or a duplicate over a second link
    this.pending.delete(v.requestId);
    this.clock.clearTimeout(p.timer);
    if (v.granted) {
      // We hold the lease from now on: the witness renewed it when it granted, after we sent.
      this.lastRenewSentAt = Math.max(this.lastRenewSentAt ?? -Infinity, p.sentAt);
      this.holderSince = Math.min(this.holderSince ?? p.sentAt, p.sentAt);
      if (this.state) this.state = { ...this.state, witnessEpoch: v.newEpoch, holder: v.holder };
      p.resolve({ granted: true, epoch: v.newEpoch, by: from });
    } else {
      this.noteEpoch(v.witnessEpoch, undefined);
      p.resolve({ granted: false, reason: v.reason, retryable: v.retryable, epoch: v.witnessEpoch });
    }
  }

  private lastEpochSeen = -1;

  private noteEpoch(epoch: number, holder: string | undefined): void {
    if (epoch <= this.lastEpochSeen) return;
    this.lastEpochSeen = epoch;
    this.emit('epoch', { epoch, ...(holder !== undefined && { holder }) });
  }

  private updateReachable(): void {
    const now = this.reachable();
    if (now === this.wasReachable) return;
    this.wasReachable = now;
    this.log.info({ reachable: now }, now ? 'witness reachable' : 'witness unreachable');
    this.emit('reachable', now);
  }
}
