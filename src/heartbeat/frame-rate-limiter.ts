/**
 * Token bucket counting frames on one connection: `ratePerSecond` sustained, bursts up to
 * `burst`. A peer (authenticated or not) that floods is dropped with reason `rate-limit`
 * rather than allowed to keep us busy with HMACs and events.
 */
import type { Clock } from '../util/clock.js';

export class FrameRateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private ratePerSecond: number,
    private burst: number,
    private readonly clock: Clock,
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError('rate limiter needs rate > 0 and burst >= 1');
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Spends one token; false when the bucket is empty (the frame is over the limit). */
  take(): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.ratePerSecond) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  update(ratePerSecond: number, burst: number): void {
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }
}
