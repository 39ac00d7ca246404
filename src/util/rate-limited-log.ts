/**
 * Log lines that an attacker or a broken peer can trigger at will (rejected frames, failed
 * dials) go through this: at most one line per key per interval, and the next line that gets
 * through says how many were suppressed meanwhile. Keys must come from a small fixed set
 * (e.g. a rejection reason), since one entry is kept per key.
 */
import type { Logger } from '../log.js';
import { systemClock, type Clock } from './clock.js';

export type RateLimitedLevel = 'error' | 'warn' | 'info' | 'debug';

export interface RateLimitedLogOptions {
  /** Default 10 000 ms. */
  intervalMs?: number;
  clock?: Clock;
}

export class RateLimitedLog {
  private readonly intervalMs: number;
  private readonly clock: Clock;
  private readonly state = new Map<string, { lastAt: number; suppressed: number }>();

  constructor(private readonly logger: Logger, opts: RateLimitedLogOptions = {}) {
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.clock = opts.clock ?? systemClock;
  }

  /** Logs unless `key` logged within the interval; returns whether a line was written. */
  log(level: RateLimitedLevel, key: string, fields: Record<string, unknown>, msg: string): boolean {
    const now = this.clock.now();
    const s = this.state.get(key);
    if (s !== undefined && now - s.lastAt < this.intervalMs) {
      s.suppressed++;
      return false;
    }
    const suppressed = s?.suppressed ?? 0;
    this.state.set(key, { lastAt: now, suppressed: 0 });
    this.logger[level](suppressed > 0 ? { ...fields, suppressed } : fields, msg);
    return true;
  }

  warn(key: string, fields: Record<string, unknown>, msg: string): boolean {
    return this.log('warn', key, fields, msg);
  }
}
