/**
 * `arbiter.mode: none`: no third party. Every request is granted the next epoch at once, so the
 * agent behaves as the documented manual procedure would (and as before arbitration existed):
 * unsafe against partitions, which the agent logs at start. Epochs still help after the fact: a
 * node that comes back and hears a higher epoch from its peer stays passive.
 */
import { EventEmitter } from 'node:events';
import type { Arbiter, ArbiterEvents, ArbitrationRequest, ArbitrationResult } from './arbiter.js';

export class NoneArbiter extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly mode = 'none' as const;

  async start(): Promise<void> {}
  async close(): Promise<void> {}

  request(req: ArbitrationRequest): Promise<ArbitrationResult> {
    return Promise.resolve({ granted: true, epoch: req.epoch + 1, by: 'none (no arbiter)' });
  }

  leaseRemainingMs(): undefined {
    return undefined;
  }

  reachable(): boolean {
    return true;
  }
}
