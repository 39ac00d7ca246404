/**
 * The QMP events of one operation, kept from its start: a wait step must see an event that
 * arrived before the step began (BLOCK_JOB_READY can come right behind drive-mirror's reply,
 * BLOCK_JOB_COMPLETED before block-job-cancel's). Events carry a sequence number, so a step can
 * ask for "since the command that triggered me", and waiters can sleep until the next event.
 */
import type { QmpClient, QmpEvent } from '../qmp/index.js';
import type { Clock } from '../util/clock.js';

export type EventSource = Pick<QmpClient, 'on' | 'off'>;

export interface LoggedEvent extends QmpEvent {
  seq: number;
}

/** Only what the resume machinery reads: everything else (JOB_STATUS_CHANGE, ...) is dropped. */
const KEPT = new Set(['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED', 'BLOCK_JOB_ERROR', 'STOP', 'RESUME', 'COLO_EXIT', 'MIGRATION']);
const MAX_EVENTS = 10_000;

export class QmpEventLog {
  private readonly events: LoggedEvent[] = [];
  private seq = 0;
  private wakers = new Set<() => void>();
  private readonly onEvent = (ev: QmpEvent) => {
    if (!KEPT.has(ev.event)) return;
    this.events.push({ ...ev, seq: ++this.seq });
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    const wake = [...this.wakers];
    this.wakers.clear();
    for (const w of wake) w();
  };

  constructor(private readonly source: EventSource) {
    source.on('event', this.onEvent);
  }

  /** The sequence number of the latest event (0: none yet): pass it to since() later. */
  mark(): number {
    return this.seq;
  }

  /** Events after `mark`, oldest first. */
  since(mark: number): LoggedEvent[] {
    return this.events.filter((e) => e.seq > mark);
  }

  /** Resolves at the next kept event or after `ms`, whichever comes first; leaves nothing behind. */
  sleep(ms: number, clock: Clock): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clock.clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = clock.setTimeout(done, Math.max(0, ms));
      this.wakers.add(done);
    });
  }

  /** Stop listening; pending sleeps resolve. */
  close(): void {
    this.source.off('event', this.onEvent);
    const wake = [...this.wakers];
    this.wakers.clear();
    for (const w of wake) w();
  }
}
