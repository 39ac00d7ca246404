/**
 * The witness (`node.role: witness`, `arbiter.mode: witness`): a third colo-agent, usually on a
 * third host, that runs no QEMU and only arbitrates. Both agents heartbeat to it over the same
 * authenticated protocol; it grants each new epoch to exactly one of them (WitnessGrants decides,
 * this file only carries messages) and persists its epoch and holder before answering, so a
 * restarted witness never grants the same epoch twice.
 */
import { EventEmitter } from 'node:events';
import { HeartbeatLinks, type HeartbeatEvent, type HeartbeatLinksOptions, type PeerMessageEvent } from '../heartbeat/links.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock } from '../util/clock.js';
import { EpochStore } from './epoch-store.js';
import { WitnessGrants } from './witness-grants.js';
import type { ArbitrationAction } from './arbiter.js';
import { parseArbitrationRequest, type WitnessGrantBody, type WitnessStateBody } from './witness-protocol.js';

export interface WitnessServerOptions {
  nodeName: string;
  listen: string[];
  key?: Buffer;
  insecure?: boolean;
  intervalMs: number;
  stateDir: string;
  leaseMs: number;
  bothAskWindowMs: number;
  links?: Partial<Pick<HeartbeatLinksOptions, 'helloTimeoutMs' | 'maxFrameBytes' | 'maxConnectionsPerSource' | 'reconnectInitialMs' | 'reconnectMaxMs'>>;
  clock?: Clock;
  logger?: Logger;
}

/**
 * How long after the holder's lease the witness still waits before granting to the other node:
 * room for the old holder to notice its lease is gone and stop its guest (one QMP command).
 */
export function leaseGuardMs(leaseMs: number): number {
  return Math.max(100, Math.round(leaseMs / 5));
}

export interface WitnessVerdictEvent {
  node: string;
  action: ArbitrationAction;
  granted: boolean;
  /** For a denial: asking again later may succeed. */
  retryable: boolean;
  epoch: number;
  reason?: string;
}

export class WitnessServer extends EventEmitter<{ verdict: [WitnessVerdictEvent] }> {
  readonly links: HeartbeatLinks;
  private grants: WitnessGrants | undefined;
  private store: EpochStore | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly logger: Logger;
  /** Each agent's role as its last heartbeat said. */
  private readonly roles = new Map<string, string>();

  constructor(private readonly opts: WitnessServerOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger();
    this.log = this.logger.child({ component: 'witness' });
    this.links = new HeartbeatLinks({
      nodeName: opts.nodeName,
      role: 'witness',
      listen: opts.listen,
      ...(opts.key ? { key: opts.key } : { insecure: true }),
      intervalMs: opts.intervalMs,
      ...opts.links,
      summary: () => ({ role: 'witness', coloMode: 'none', qemuReachable: false, agentState: 'witness' }),
      epoch: () => this.grants?.snapshot().epoch ?? 0,
      clock: this.clock,
      logger: this.logger,
    });
  }

  async start(): Promise<void> {
    const store = await EpochStore.open(this.opts.stateDir, { logger: this.logger });
    this.store = store;
    this.grants = new WitnessGrants({
      leaseMs: this.opts.leaseMs,
      guardMs: leaseGuardMs(this.opts.leaseMs),
      bothAskWindowMs: this.opts.bothAskWindowMs,
      initial: { epoch: store.epoch, ...(store.holder !== undefined && { holder: store.holder }) },
      persist: async (s) => {
        await store.recordWitnessState(s, s.holder === undefined ? 'holder released' : `held by ${s.holder}`);
        // Announced from what was stored: the grants commit their own state after this resolves.
        this.links.send('arbitration-grant', { ...this.stateBody(s) });
      },
      clock: this.clock,
      logger: this.logger,
    });
    this.links.on('heartbeat', (e) => this.onHeartbeat(e));
    this.links.on('message', (e) => this.onMessage(e));
    this.links.on('link-up', (e) => this.sendState(e.peerName));
    await this.links.start();
    this.log.info({ listen: this.links.listenAddresses(), epoch: store.epoch, holder: store.holder, leaseMs: this.opts.leaseMs }, 'witness listening');
  }

  private closed = false;

  async close(reason = 'planned stop'): Promise<void> {
    this.closed = true;
    this.grants?.close();
    await this.links.close({ goodbye: reason });
  }

  /** For /healthz (the unhealthy states are the agent's: stopping, stopped). */
  get state(): string {
    return this.closed ? 'stopped' : this.grants ? 'witness' : 'starting';
  }

  status() {
    const g = this.grants?.snapshot();
    return {
      node: this.opts.nodeName,
      role: 'witness',
      state: this.state,
      epoch: g?.epoch ?? 0,
      holder: g?.holder,
      leaseRemainingMs: g?.leaseRemainingMs,
      pending: g?.pending ?? [],
      links: this.links.links().map((l) => ({ link: l.link, peer: l.peerName, state: l.state, rttMs: l.rttMs })),
    };
  }

  private onHeartbeat(e: HeartbeatEvent): void {
    this.roles.set(e.peerName, e.summary.role);
    this.grants?.seen(e.peerName, { epoch: e.epoch, role: e.summary.role, qemuReachable: e.summary.qemuReachable });
  }

  private onMessage(e: PeerMessageEvent): void {
    if (e.type !== 'arbitration-request' || !this.grants) return;
    let req;
    try {
      req = parseArbitrationRequest(e.body);
    } catch (err) {
      this.log.warn({ link: e.link, peer: e.peerName, err: (err as Error).message }, 'ignored a malformed arbitration request');
      return;
    }
    const role = this.roles.get(e.peerName) ?? 'unknown';
    void this.grants.request(e.peerName, { action: req.action, epoch: e.epoch, role }).then((v) => {
      const reply: WitnessGrantBody = v.granted
        ? { kind: 'verdict', requestId: req.requestId, granted: true, newEpoch: v.epoch, holder: v.holder }
        : { kind: 'verdict', requestId: req.requestId, granted: false, reason: v.reason.slice(0, 300), retryable: v.retryable, witnessEpoch: v.epoch };
      this.emit('verdict', { node: e.peerName, action: req.action, granted: v.granted, retryable: !v.granted && v.retryable, epoch: v.epoch, ...(!v.granted && { reason: v.reason }) });
      this.log[v.granted ? 'warn' : 'info']({ node: e.peerName, action: req.action, granted: v.granted, epoch: v.epoch, ...(!v.granted && { reason: v.reason }) }, 'arbitration verdict');
      this.links.sendTo(e.peerName, 'arbitration-grant', { ...reply });
    });
  }

  private stateBody(g: { epoch: number; holder?: string | undefined } = this.grants!.snapshot()): WitnessStateBody {
    return { kind: 'state', witnessEpoch: g.epoch, ...(g.holder !== undefined && { holder: g.holder }), leaseMs: this.opts.leaseMs };
  }

  private sendState(peer: string): void {
    if (this.grants) this.links.sendTo(peer, 'arbitration-grant', { ...this.stateBody() });
  }
}
