/**
 * The /healthz rule, and the event-loop lag it looks at.
 *
 * Healthy (200) unless:
 * - the agent is in state failed (a failover failed: an operator must look), stopping or stopped
 *   (it no longer protects anything); or
 * - the event loop was late by more than maxEventLoopLagMs at its last sample: heartbeats are sent
 *   from this loop, so a loop that stalls that long makes the peer believe we are dead.
 * Every other state is healthy, including peer-down, qemu-lost and solo: those are the agent doing
 * its job and reporting a problem elsewhere, and restarting the agent would not fix them.
 */
import type { AgentState } from '../agent.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';

export const UNHEALTHY_STATES: readonly AgentState[] = ['failed', 'stopping', 'stopped'];
const UNHEALTHY: ReadonlySet<string> = new Set(UNHEALTHY_STATES);
export const DEFAULT_MAX_EVENT_LOOP_LAG_MS = 1000;

export interface HealthReport {
  ok: boolean;
  /** The agent's state (or the witness's). */
  state: string;
  /** How late the last event-loop sample fired, ms. */
  eventLoopLagMs: number;
  /** Why it is not ok (empty when ok). */
  problems: string[];
}

export function healthVerdict(state: string, eventLoopLagMs: number, maxEventLoopLagMs = DEFAULT_MAX_EVENT_LOOP_LAG_MS): HealthReport {
  const problems: string[] = [];
  if (UNHEALTHY.has(state)) problems.push(`agent state is ${state}`);
  if (eventLoopLagMs > maxEventLoopLagMs) problems.push(`event loop ${Math.round(eventLoopLagMs)} ms late (limit ${maxEventLoopLagMs} ms)`);
  return { ok: problems.length === 0, state, eventLoopLagMs: Math.round(eventLoopLagMs * 1000) / 1000, problems };
}

/**
 * Samples event-loop lag: a timer every periodMs notes how much later than due it fired. Only the
 * last sample counts, so one stall shows on the next /healthz and clears a period later.
 */
export class EventLoopLag {
  private timer: TimerHandle | undefined;
  private due = 0;
  private last = 0;
  private readonly clock: Clock;

  constructor(private readonly opts: { periodMs?: number; clock?: Clock } = {}) {
    this.clock = opts.clock ?? systemClock;
  }

  /** Lateness of the last sample, ms (0 before the first). */
  get lagMs(): number {
    return this.last;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.schedule();
  }

  stop(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    const period = this.opts.periodMs ?? 500;
    this.due = this.clock.now() + period;
    this.timer = this.clock.setTimeout(() => {
      this.last = Math.max(0, this.clock.now() - this.due);
      this.schedule();
    }, period);
  }
}
