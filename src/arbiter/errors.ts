/**
 * Errors of the arbitration state (epoch store, witness grants). Codes are stable (see
 * src/errors.ts); callers, logs and metrics match on `code`, never on message text.
 */
import { ColoAgentError } from '../errors.js';

/**
 * The epoch file exists but cannot be trusted: not JSON, not our shape, an unknown version. Never
 * read as epoch 0: that would make a stale node (one that has seen a newer epoch) eligible to act
 * as primary again.
 */
export class EpochCorruptError extends ColoAgentError {
  readonly path: string;

  constructor(path: string, why: string, options?: { cause?: unknown }) {
    super(
      'ERR_EPOCH_CORRUPT',
      `epoch file ${path} is unreadable (${why}); refusing to start from a guessed epoch, which could let a stale node act as primary. ` +
        'Inspect it and repair it by hand ({"version":1,"epoch":N,"newestSeen":M,...} with N and M at least the highest epoch either node has used), ' +
        'or restore it from the peer; delete it only if this node is known to be out of date and will be re-synced as secondary',
      options,
    );
    this.path = path;
  }
}

/** The epoch file could not be read or written (permissions, disk full, ...). */
export class EpochIoError extends ColoAgentError {
  readonly path: string;

  constructor(path: string, what: string, options?: { cause?: unknown }) {
    super('ERR_EPOCH_IO', `epoch file ${path}: ${what}`, options);
    this.path = path;
  }
}

/** An epoch would go backwards (adopting a lower epoch than ours, clearing staleness below the newest seen). */
export class EpochRegressionError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_EPOCH_REGRESSION', message);
  }
}

/** Re-adopting our current epoch for a different holder: an epoch belongs to exactly one node. */
export class EpochConflictError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_EPOCH_CONFLICT', message);
  }
}

/** An epoch argument that is not an integer in 0..MAX_SAFE_INTEGER (a bug in the caller). */
export class EpochInvalidError extends ColoAgentError {
  constructor(what: string, value: unknown) {
    super('ERR_EPOCH_INVALID', `${what} must be an integer >= 0, got ${JSON.stringify(value)}`);
  }
}

/** WitnessGrants options that can never work (a lease that is not > 0, a negative window, ...). */
export class WitnessGrantsOptionsError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_WITNESS_GRANTS_OPTIONS', message);
  }
}
