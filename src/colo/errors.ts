/**
 * Errors of the COLO failover machinery. Codes are stable (see src/errors.ts); callers, logs and
 * metrics match on `code`, and on `errorClass` for what QEMU said, never on message text.
 */
import { ColoAgentError } from '../errors.js';

/** `qemu.profile` is neither `auto` nor MAJOR.MINOR[.MICRO], or `auto` was asked for without a greeting. */
export class ColoProfileError extends ColoAgentError {
  constructor(message: string) {
    super('COLO_BAD_PROFILE', message);
  }
}

/**
 * Why a failover step failed:
 * - COLO_STEP_FAILED: QEMU answered with an error (`errorClass`, `desc`), or a human-monitor-command
 *   printed an error (errorClass `HmpError`, `desc` = its output).
 * - COLO_STEP_TIMEOUT: no reply within the step's timeout (QEMU stuck, or blocked on the dead peer).
 * - COLO_STEP_DISCONNECTED: the QMP connection was not there or was lost before the reply; whether
 *   QEMU ran the command is unknown.
 * - COLO_STEP_ERROR: anything else (a bug on our side, e.g. arguments that cannot be encoded).
 */
export type ColoStepErrorCode = 'COLO_STEP_FAILED' | 'COLO_STEP_TIMEOUT' | 'COLO_STEP_DISCONNECTED' | 'COLO_STEP_ERROR';

export class ColoStepError extends ColoAgentError {
  declare readonly code: ColoStepErrorCode;
  /** The step's name in its sequence, e.g. "object-del comp0". */
  readonly step: string;
  /** The QMP command that failed (for the yank step: query-yank, x-debug-query-block-graph or yank). */
  readonly command: string;
  /** QEMU's error class when code is COLO_STEP_FAILED. */
  readonly errorClass: string | undefined;
  /** QEMU's description (or the HMP output) when code is COLO_STEP_FAILED. */
  readonly desc: string | undefined;

  constructor(
    code: ColoStepErrorCode,
    step: string,
    command: string,
    message: string,
    details: { errorClass?: string; desc?: string; cause?: unknown } = {},
  ) {
    super(code, `failover step "${step}" (${command}) failed: ${message}`, { cause: details.cause });
    this.step = step;
    this.command = command;
    this.errorClass = details.errorClass;
    this.desc = details.desc;
  }
}

/**
 * The journal file exists but cannot be trusted: not JSON, not our shape, or an unknown version.
 * The agent must then refuse to act automatically: guessing could run a failover twice.
 */
export class JournalCorruptError extends ColoAgentError {
  readonly path: string;

  constructor(path: string, why: string, options?: { cause?: unknown }) {
    super('COLO_JOURNAL_CORRUPT', `failover journal ${path} is unreadable (${why}); refusing to guess. Inspect it, then move it away to start afresh`, options);
    this.path = path;
  }
}

/** The journal could not be read or written (permissions, disk full, ...). */
export class JournalIoError extends ColoAgentError {
  readonly path: string;

  constructor(path: string, what: string, options?: { cause?: unknown }) {
    super('COLO_JOURNAL_IO', `failover journal ${path}: ${what}`, options);
    this.path = path;
  }
}

/** A journal call that makes no sense in the journal's state, e.g. stepDone() with no decision running. */
export class JournalStateError extends ColoAgentError {
  constructor(message: string) {
    super('COLO_JOURNAL_STATE', message);
  }
}

/**
 * A resume (continuous replication) cannot start on this node as it is, and nothing was sent:
 * - COLO_RESUME_BLOCKED: the journal holds an unfinished decision (a failover, or a resume the
 *   agent must first recover() from).
 * - COLO_RESUME_PRECONDITION: QEMU is not a primary running solo with nothing of a resume left
 *   over (COLO mode not none, guest not running, a resync job, the replication node or a proxy
 *   object already present, rew0 present or absent against the sequence), or QMP did not answer.
 */
export type ResumePreconditionCode = 'COLO_RESUME_BLOCKED' | 'COLO_RESUME_PRECONDITION';

export class ResumePreconditionError extends ColoAgentError {
  declare readonly code: ResumePreconditionCode;

  constructor(code: ResumePreconditionCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
