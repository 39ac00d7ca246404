/**
 * What every arbiter (witness, etcd, none) offers the agent: a grant of a new epoch before a
 * takeover or a solo continuation, and a lease that tells a primary whether it may keep running
 * while it cannot see its peer.
 *
 * Epochs: an integer that only grows, persisted by each agent (EpochStore) and carried in every
 * heartbeat message. Epoch 0 is the pair as configured. Each grant is epoch + 1 for exactly one
 * node: the one allowed to run the guest from then on. A node that sees a higher epoch than its
 * own is stale: it stays passive and never acts as primary by itself.
 *
 * Leases: the current holder (the primary at the current epoch) keeps its lease by talking to the
 * arbiter. The arbiter grants the next epoch to the other node only after the holder's lease has
 * run out, and a holder that can reach neither its peer nor the arbiter stops its guest when its
 * lease runs out, measured so that it always stops before the arbiter can grant (see leaseMs).
 */
import type { EventEmitter } from 'node:events';

export type ArbitrationAction =
  /** The secondary wants to become primary (secondary failover). */
  | 'takeover'
  /** The primary wants to go on without its secondary (primary failover). */
  | 'continue';

export interface ArbitrationRequest {
  action: ArbitrationAction;
  /** The requester's current epoch: a request from a stale epoch is denied. */
  epoch: number;
}

export type ArbitrationResult =
  | {
      granted: true;
      /** The new epoch, ours from now on: persist it before acting. */
      epoch: number;
      /** Who answered, for logs (the witness's node name, the etcd endpoint). */
      by: string;
    }
  | {
      granted: false;
      /** For logs and status: why not (another node holds the lease, stale epoch, arbiter unreachable, ...). */
      reason: string;
      /** The arbiter's current epoch when it said so; higher than ours means we are stale. */
      epoch?: number;
      /** True when asking again later may succeed (arbiter unreachable, timeout); false for a firm no. */
      retryable: boolean;
    };

export interface EpochSeenEvent {
  /** An epoch higher than the one the arbiter last reported. */
  epoch: number;
  /** The node that holds it, when known. */
  holder?: string;
}

export type ArbiterEvents = {
  /** The arbiter reports a newer epoch than before (someone else may have been granted). */
  epoch: [EpochSeenEvent];
  /** Reachability of the arbiter changed. */
  reachable: [boolean];
};

export interface Arbiter extends EventEmitter<ArbiterEvents> {
  readonly mode: 'none' | 'witness' | 'etcd';
  start(): Promise<void>;
  close(): Promise<void>;
  /** Asks for the next epoch. Never rejects: failures are `granted: false` with a reason. */
  request(req: ArbitrationRequest, opts: { timeoutMs: number }): Promise<ArbitrationResult>;
  /**
   * Milliseconds left on this node's lease as the current holder: undefined when this node holds
   * none (or the mode has no leases), 0 once it has run out.
   */
  leaseRemainingMs(): number | undefined;
  /** The arbiter answered recently. */
  reachable(): boolean;
}
