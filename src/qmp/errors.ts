/**
 * Errors the QMP client raises. Every one has a stable `code` (see src/errors.ts); callers and
 * metrics match on codes and on QmpCommandError.errorClass, never on message text.
 */
import { ColoAgentError } from '../errors.js';

/** Common parent so callers can tell "anything from the QMP layer" with one instanceof. */
export abstract class QmpError extends ColoAgentError {}

/** A QMP address string that is neither `unix:PATH` nor `tcp:HOST:PORT`. */
export class QmpAddressError extends QmpError {
  readonly input: string;

  constructor(input: string, why: string) {
    super('QMP_BAD_ADDRESS', `invalid QMP address ${JSON.stringify(input)}: ${why} (expected unix:PATH or tcp:HOST:PORT)`);
    this.input = input;
  }
}

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends QmpError {
  readonly command: string;
  /** QEMU's error class, e.g. GenericError, CommandNotFound, DeviceNotFound. */
  readonly errorClass: string;
  /** QEMU's human-readable description, e.g. "VM is not in COLO mode". */
  readonly desc: string;

  constructor(command: string, errorClass: string, desc: string) {
    super('QMP_COMMAND_FAILED', `QMP command ${command} failed: ${errorClass}: ${desc}`);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/**
 * Something did not happen in time: a command's reply (`operation` is the command name), or
 * waitUntilReady / waitForEvent. A command timeout also marks the connection unhealthy.
 */
export class QmpTimeoutError extends QmpError {
  readonly operation: string;
  readonly timeoutMs: number;

  constructor(operation: string, timeoutMs: number, message?: string) {
    super('QMP_TIMEOUT', message ?? `QMP command ${operation} got no reply within ${timeoutMs} ms`);
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }
}

/** The connection is not there (yet, or any more); `cause` says why when known. */
export class QmpDisconnectedError extends QmpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QMP_DISCONNECTED', message, options);
  }
}

/** close() was called on the client: nothing more will be sent or received. */
export class QmpClosedError extends QmpError {
  constructor(message = 'QMP client closed') {
    super('QMP_CLOSED', message);
  }
}

/** Dialling, the greeting or capabilities negotiation failed or timed out. */
export class QmpConnectError extends QmpError {
  readonly address: string;
  readonly timedOut: boolean;

  constructor(address: string, message: string, options?: { cause?: unknown; timedOut?: boolean }) {
    super('QMP_CONNECT_FAILED', `cannot connect to QMP ${address}: ${message}`, options);
    this.address = address;
    this.timedOut = options?.timedOut ?? false;
  }
}

/** What exactly broke the protocol; part of the stable surface like `code`. */
export type QmpProtocolViolation =
  | 'bad-json'
  | 'line-too-long'
  | 'bad-greeting'
  | 'unknown-id'
  | 'missing-id'
  | 'unexpected-message'
  | 'closed-mid-line';

/**
 * The peer said something a QEMU monitor never says. The connection is reset (the stream can no
 * longer be trusted to line up replies with commands) and the reconnect policy applies.
 */
export class QmpProtocolError extends QmpError {
  readonly violation: QmpProtocolViolation;

  constructor(violation: QmpProtocolViolation, message: string) {
    super('QMP_PROTOCOL', `QMP protocol error (${violation}): ${message}`);
    this.violation = violation;
  }
}

/** exec-oob was asked for but the greeting did not offer (so we did not enable) the oob capability. */
export class QmpOobUnavailableError extends QmpError {
  constructor(command: string) {
    super('QMP_OOB_UNAVAILABLE', `cannot run ${command} out-of-band: this QEMU did not offer the oob capability`);
  }
}

/** QEMU's COMMAND_DROPPED event named one of our commands (its request queue was full). */
export class QmpCommandDroppedError extends QmpError {
  readonly command: string;
  readonly reason: string;

  constructor(command: string, reason: string) {
    super('QMP_COMMAND_DROPPED', `QEMU dropped QMP command ${command}: ${reason}`);
    this.command = command;
    this.reason = reason;
  }
}
