/**
 * What a QmpClient reports to its subscribers: its status, QEMU's events, and one record per
 * finished command (for metrics). Kept apart from the client so that consumers (the COLO
 * controller, metrics) can import the types without the implementation.
 */
import type { QmpError, QmpTimeoutError } from './errors.js';
import type { QmpTimestamp } from './messages.js';
import type { QemuVersion } from './version.js';

/**
 * idle: created, connect() not called yet.
 * connecting: dialling, waiting for the greeting or the capabilities reply.
 * ready: commands can be sent and replies come back.
 * unhealthy: connected, but a command timed out and no in-band reply has arrived since
 *   (QEMU stopped, or its main loop is stuck as in QEMU 7.2's COLO checkpoint deadlock).
 *   Commands may still be sent; a reply brings the status back to ready.
 * reconnecting: the connection was lost or a dial failed; the next dial is scheduled.
 * disconnected: lost, and reconnecting is disabled (connect() may be called again).
 * closed: close() was called; final.
 */
export type QmpClientStatus = 'idle' | 'connecting' | 'ready' | 'unhealthy' | 'reconnecting' | 'disconnected' | 'closed';

export interface QmpStatusChange {
  from: QmpClientStatus;
  to: QmpClientStatus;
  /** Human-readable cause, also logged. */
  reason: string;
  /** The error behind the change, when there is one. */
  error?: Error;
  /** For `reconnecting`: how long until the next dial. */
  delayMs?: number;
  /** Clock.now() at the change. */
  at: number;
}

export interface QmpReadyInfo {
  version: QemuVersion;
  capabilities: string[];
  oob: boolean;
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's own wall-clock stamp. */
  timestamp: QmpTimestamp;
  /** The same as epoch milliseconds (fractional). */
  timestampMs: number;
  /** Our monotonic Clock.now() when the bytes arrived. */
  receivedAt: number;
}

/** One per command that finished in any way: the hook for duration and error metrics. */
export interface QmpCommandRecord {
  command: string;
  id: number;
  oob: boolean;
  durationMs: number;
  ok: boolean;
  /** Our error code when !ok: QMP_COMMAND_FAILED, QMP_TIMEOUT, QMP_DISCONNECTED, QMP_CLOSED, ... */
  code?: string;
  /** QEMU's error class when code is QMP_COMMAND_FAILED, e.g. GenericError. */
  errorClass?: string;
}

/** A reply that arrived after its command had already timed out (and been rejected). */
export interface QmpLateReply {
  command: string;
  id: number;
  oob: boolean;
  /** From sending the command until the late reply arrived. */
  elapsedMs: number;
  ok: boolean;
}

/**
 * None of these is named 'error': EventEmitter throws an 'error' event nobody listens to, and a
 * misbehaving QEMU must never take the agent down.
 */
export interface QmpClientEvents {
  status: [QmpStatusChange];
  /** A new session is up (after every successful (re)connect). */
  ready: [QmpReadyInfo];
  event: [QmpEvent];
  command: [QmpCommandRecord];
  lateReply: [QmpLateReply];
  /** A command timed out on a ready connection, which is now unhealthy. */
  unhealthy: [QmpTimeoutError];
  /** Protocol violations (the connection is reset) and failed dials/handshakes. Never thrown. */
  clientError: [QmpError];
}
