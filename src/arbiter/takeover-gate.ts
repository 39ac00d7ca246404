/**
 * What a takeover must get through after the takeover rule said "act" and before the failover
 * sequence runs, in this order (cheapest and most local first, irreversible last):
 *
 * 1. stale epoch: a node that has seen a newer epoch never acts (another node holds the guest);
 * 2. gateways (arbiter.gateways): a node that reaches none of its clients' network is the one
 *    cut off: it must not take the guest (keepalived's track_script, Pacemaker's ping resource);
 * 3. the arbiter's grant of the next epoch, persisted before anything else happens, so a crash
 *    after the grant cannot lead to acting under the old epoch or being granted twice;
 * 4. fencing the peer (failover.fenceCommand), only once the grant is ours: fencing a healthy
 *    peer that still holds the lease would take the guest down on both sides.
 */
import { EventEmitter } from 'node:events';
import type { HostPort } from '../heartbeat/address.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock } from '../util/clock.js';
import type { Arbiter, ArbitrationAction } from './arbiter.js';
import type { EpochStore } from './epoch-store.js';
import { fenceWithPolicy, runFenceCommand, type FencePolicy } from './fence-command.js';
import { checkGateways, type GatewayCheckResult } from './gateway-check.js';

export interface TakeoverGateOptions {
  nodeName: string;
  arbiter: Arbiter;
  epochs: EpochStore;
  gateways: HostPort[];
  gatewayTimeoutMs: number;
  requestTimeoutMs: number;
  fence: { command: string; timeoutMs: number; policy: FencePolicy; maxWaitMs: number };
  /** The peer, for the fence command's environment. */
  peer: () => { name: string | undefined; host: string };
  clock?: Clock;
  logger?: Logger;
}

export type GateStep = 'stale' | 'gateway' | 'arbiter' | 'fence';

export type GateResult =
  | { pass: true; epoch: number; by: string; fenced: boolean }
  | {
      pass: false;
      step: GateStep;
      reason: string;
      /** Asking again later may pass (arbiter unreachable, holder alive, gateways down). */
      retry: boolean;
    };

export interface ArbitrationEvent {
  action: ArbitrationAction;
  result: 'granted' | 'denied' | 'unavailable';
  epoch?: number;
  reason?: string;
}

export interface FenceEvent {
  ok: boolean;
  attempts: number;
  elapsedMs: number;
}

export class TakeoverGate extends EventEmitter<{ arbitration: [ArbitrationEvent]; fence: [FenceEvent]; gateways: [GatewayCheckResult] }> {
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly opts: TakeoverGateOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'takeover-gate' });
  }

  /** `fenceRequired`: the takeover is only safe once the peer is fenced (a frozen host that may thaw). */
  async pass(action: ArbitrationAction, opts: { fenceRequired?: boolean } = {}): Promise<GateResult> {
    const { epochs, arbiter } = this.opts;
    if (epochs.stale) {
      return { pass: false, step: 'stale', retry: false, reason: `our epoch ${epochs.epoch} is stale (epoch ${epochs.newestSeen} exists): another node holds the guest` };
    }
    if (opts.fenceRequired && this.opts.fence.command === '') {
      return { pass: false, step: 'fence', retry: false, reason: 'this takeover needs the peer fenced first and failover.fenceCommand is empty' };
    }

    if (this.opts.gateways.length > 0) {
      const g = await checkGateways({ targets: this.opts.gateways, timeoutMs: this.opts.gatewayTimeoutMs, need: 'any', clock: this.clock });
      this.emit('gateways', g);
      if (!g.ok) {
        return { pass: false, step: 'gateway', retry: true, reason: `no gateway answers (${g.results.map((r) => `${r.target}: ${r.error ?? 'no answer'}`).join(', ')}): we are the node cut off` };
      }
    }

    const epoch = epochs.epoch;
    const verdict = await arbiter.request({ action, epoch }, { timeoutMs: this.opts.requestTimeoutMs });
    if (!verdict.granted) {
      this.emit('arbitration', { action, result: verdict.retryable ? 'unavailable' : 'denied', ...(verdict.epoch !== undefined && { epoch: verdict.epoch }), reason: verdict.reason });
      if (verdict.epoch !== undefined && verdict.epoch > epoch) await epochs.observe(verdict.epoch, `${arbiter.mode} arbiter`);
      const stale = epochs.stale;
      return { pass: false, step: stale ? 'stale' : 'arbiter', retry: !stale, reason: `the ${arbiter.mode} arbiter did not grant epoch ${epoch + 1}: ${verdict.reason}` };
    }
    // Persist first: from here on this node holds the guest, also after a crash.
    await epochs.adopt(verdict.epoch, { holder: this.opts.nodeName, reason: `${action} granted by ${verdict.by}` });
    this.emit('arbitration', { action, result: 'granted', epoch: verdict.epoch });
    this.log.warn({ action, epoch: verdict.epoch, by: verdict.by }, 'arbiter granted the takeover');

    const fenced = await this.fencePeer(action, verdict.epoch);
    if (fenced === false) {
      return { pass: false, step: 'fence', retry: false, reason: 'fencing the peer failed (failover.fenceCommand): takeover aborted, never run unfenced' };
    }
    return { pass: true, epoch: verdict.epoch, by: verdict.by, fenced: fenced === true };
  }

  /** undefined when no fence command is configured. */
  private async fencePeer(action: ArbitrationAction, epoch: number): Promise<boolean | undefined> {
    const f = this.opts.fence;
    if (f.command === '') return undefined;
    const peer = this.opts.peer();
    const env = {
      COLO_AGENT_PEER_NAME: peer.name ?? '',
      COLO_AGENT_PEER_HOST: peer.host,
      COLO_AGENT_EPOCH: String(epoch),
      COLO_AGENT_ACTION: action,
    };
    const logger = this.opts.logger ?? silentLogger();
    const outcome = await fenceWithPolicy({
      run: () => runFenceCommand({ command: f.command, timeoutMs: f.timeoutMs, env, clock: this.clock, logger }),
      policy: f.policy,
      retryInitialMs: 500,
      retryMaxMs: 5000,
      maxWaitMs: f.maxWaitMs,
      clock: this.clock,
      logger,
    });
    this.emit('fence', { ok: outcome.ok, attempts: outcome.attempts, elapsedMs: outcome.elapsedMs });
    const last = outcome.last;
    const fields = { peer: peer.name, attempts: outcome.attempts, exitCode: last.exitCode, timedOut: last.timedOut, output: last.output.slice(-500) };
    if (outcome.ok) this.log.warn(fields, 'peer fenced');
    else this.log.error(fields, 'fencing the peer FAILED');
    return outcome.ok;
  }
}
