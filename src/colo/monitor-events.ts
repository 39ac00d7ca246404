/**
 * What the COLO monitor (monitor.ts) reports about our QEMU, as typed events. Kept apart so the
 * metrics binding and the agent can depend on the shape without the implementation.
 */
import type { ColoModeName } from '../heartbeat/messages.js';

export interface ColoStatus {
  mode: ColoModeName;
  lastMode?: string;
  reason?: string;
}

export interface CheckpointEvent {
  /** `colo-start`: the STOP/RESUME pair that ends the migration into COLO, counted apart. */
  kind: 'checkpoint' | 'colo-start';
  /** RESUME's QEMU timestamp minus STOP's, ms. */
  pauseMs: number;
  /** QEMU's wall-clock timestamps (epoch ms) of the STOP and the RESUME. */
  stopAt: number;
  resumeAt: number;
}

export interface StallEvent {
  /** QEMU's timestamp (epoch ms) of the STOP that was never followed by RESUME. */
  stopAt: number;
  /** How long it has been stopped when declared stalled, ms (local monotonic measure). */
  stoppedForMs: number;
}

export interface ColoExitEvent {
  mode: string;
  reason: string;
  /** QEMU's timestamp, epoch ms. */
  at: number;
}

export interface ColoMonitorEvents {
  /** query-colo-status changed (mode unknown when QEMU cannot be asked). */
  change: [prev: ColoStatus, next: ColoStatus];
  checkpoint: [CheckpointEvent];
  /** A STOP in COLO mode with no RESUME for longer than the configured bound. */
  stalled: [StallEvent];
  /** The RESUME of a stalled checkpoint finally came (or COLO ended). */
  'stall-cleared': [{ stoppedForMs: number }];
  'colo-exit': [ColoExitEvent];
}
