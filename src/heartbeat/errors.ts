/**
 * Errors of the heartbeat room.
 *
 * Every way a peer's input is refused is a `FrameRejectedError` subclass with a stable `code` and a
 * `reason` from the small fixed set `REJECT_REASONS`, so that the reason can be a metric label
 * (bounded cardinality) and a log key. Messages never carry key bytes.
 */
import { ColoAgentError } from '../errors.js';

export const REJECT_REASONS = [
  'oversize', // length prefix above maxFrameBytes (refused before the body is buffered)
  'truncated', // the connection ended in the middle of a frame
  'bad-version', // version byte we do not speak
  'bad-mac', // HMAC does not verify (wrong key, corruption, frame from another connection)
  'auth-mismatch', // the peer runs insecure (all-zero key) while we have a key
  'malformed', // length below the minimum, bad JSON, missing/extra/ill-typed field
  'unknown-type', // authenticated frame with a type number we do not know
  'unexpected-message', // a known type at the wrong moment (HEARTBEAT before HELLO, second HELLO, ...)
  'replay', // sequence number already seen or older than the window, or a retired session
  'foreign-session', // session id differs from the one this connection's HELLO announced
  'self-connection', // we dialled ourselves (our own session id came back)
  'hello-timeout', // no complete handshake within helloTimeoutMs
  'rate-limit', // more frames per second than allowed on one connection
  'too-many-connections', // per-source-address or total connection cap reached
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];

/** `oversize` -> `ERR_HB_OVERSIZE`. */
export function rejectCode(reason: RejectReason): string {
  return `ERR_HB_${reason.toUpperCase().replace(/-/g, '_')}`;
}

/** Base of every refusal of peer input. */
export class FrameRejectedError extends ColoAgentError {
  readonly reason: RejectReason;

  constructor(reason: RejectReason, message: string, options?: { cause?: unknown }) {
    super(rejectCode(reason), message, options);
    this.reason = reason;
  }
}

export class OversizeFrameError extends FrameRejectedError {
  constructor(message: string) {
    super('oversize', message);
  }
}
export class TruncatedFrameError extends FrameRejectedError {
  constructor(message: string) {
    super('truncated', message);
  }
}
export class BadVersionError extends FrameRejectedError {
  constructor(message: string) {
    super('bad-version', message);
  }
}
export class BadMacError extends FrameRejectedError {
  constructor(message: string) {
    super('bad-mac', message);
  }
}
export class AuthMismatchError extends FrameRejectedError {
  constructor(message: string) {
    super('auth-mismatch', message);
  }
}
export class MalformedFrameError extends FrameRejectedError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('malformed', message, options);
  }
}
export class UnknownTypeError extends FrameRejectedError {
  constructor(message: string) {
    super('unknown-type', message);
  }
}
export class UnexpectedMessageError extends FrameRejectedError {
  constructor(message: string) {
    super('unexpected-message', message);
  }
}
export class ReplayError extends FrameRejectedError {
  constructor(message: string) {
    super('replay', message);
  }
}
export class ForeignSessionError extends FrameRejectedError {
  constructor(message: string) {
    super('foreign-session', message);
  }
}
export class SelfConnectionError extends FrameRejectedError {
  constructor(message: string) {
    super('self-connection', message);
  }
}
export class HelloTimeoutError extends FrameRejectedError {
  constructor(message: string) {
    super('hello-timeout', message);
  }
}
export class RateLimitError extends FrameRejectedError {
  constructor(message: string) {
    super('rate-limit', message);
  }
}
export class TooManyConnectionsError extends FrameRejectedError {
  constructor(message: string) {
    super('too-many-connections', message);
  }
}

/** Something we were asked to SEND is invalid: a bug on our side, never peer input. */
export class InvalidMessageError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_HB_INVALID_MESSAGE', message);
  }
}

/** Key file problems; `code` says which. The message names the path, never the key bytes. */
export type KeyFileErrorCode =
  | 'ERR_HB_KEY_MISSING'
  | 'ERR_HB_KEY_UNREADABLE'
  | 'ERR_HB_KEY_SHORT'
  | 'ERR_HB_KEY_WEAK'
  | 'ERR_HB_KEY_EXPOSED'
  | 'ERR_HB_KEY_EXISTS';

export class KeyFileError extends ColoAgentError {
  declare readonly code: KeyFileErrorCode;

  constructor(code: KeyFileErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** HeartbeatLinks options that cannot work (bad address, key and insecure both set, ...). */
export class HeartbeatOptionsError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_HB_OPTIONS', message);
  }
}
