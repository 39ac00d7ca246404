/**
 * Polls our QEMU's `query-colo-status` so the heartbeat can tell the peer what mode we are in.
 *
 * A poll that fails (QEMU gone, command timed out, QEMU too old for the command) reports mode
 * `unknown` rather than a stale answer: the peer must never believe we are replicating when we
 * cannot say. The later COLO monitor (checkpoints, stalls) grows from here.
 */
import { EventEmitter } from 'node:events';
import type { ColoModeName } from '../heartbeat/messages.js';
import { silentLogger, type Logger } from '../log.js';
import type { QmpClient } from '../qmp/index.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';

export interface ColoStatus {
  mode: ColoModeName;
  lastMode?: string;
  reason?: string;
}

export interface ColoStatusPollerOptions {
  qmp: QmpClient;
  periodMs: number;
  clock?: Clock;
  logger?: Logger;
}

const KNOWN_MODES: readonly string[] = ['none', 'primary', 'secondary'];

export class ColoStatusPoller extends EventEmitter<{ change: [ColoStatus, ColoStatus] }> {
  private current: ColoStatus = { mode: 'unknown' };
  private timer: TimerHandle | undefined;
  private stopped = false;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly opts: ColoStatusPollerOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'colo-status' });
  }

  get status(): ColoStatus {
    return this.current;
  }

  start(): void {
    this.stopped = false;
    void this.poll();
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One poll now; also what the timer runs. Never throws. */
  async poll(): Promise<ColoStatus> {
    this.clock.clearTimeout(this.timer);
    let next: ColoStatus = { mode: 'unknown' };
    const s = this.opts.qmp.status;
    if (s === 'ready' || s === 'unhealthy') {
      try {
        const r = await this.opts.qmp.execute<{ mode?: string; 'last-mode'?: string; reason?: string }>('query-colo-status');
        const mode = KNOWN_MODES.includes(r.mode ?? '') ? (r.mode as ColoModeName) : 'unknown';
        next = { mode, lastMode: r['last-mode'], reason: r.reason };
      } catch (err) {
        this.log.debug({ err }, 'query-colo-status failed');
      }
    }
    this.update(next);
    if (!this.stopped) this.timer = this.clock.setTimeout(() => void this.poll(), this.opts.periodMs);
    return next;
  }

  private update(next: ColoStatus): void {
    const prev = this.current;
    this.current = next;
    if (prev.mode !== next.mode || prev.lastMode !== next.lastMode || prev.reason !== next.reason) {
      this.log.info({ from: prev, to: next }, 'COLO status changed');
      this.emit('change', prev, next);
    }
  }
}
