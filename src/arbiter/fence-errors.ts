/**
 * Errors of the fencing helpers (fence command, gateway check, self-fence). Codes are stable (see
 * src/errors.ts); callers, logs and metrics match on `code`, never on message text.
 *
 * The helpers themselves report what happened as results and never throw for anything a fence
 * script, the network or a process does; FenceOptionsError is the one error they raise, for
 * options that can never work (a bug in the caller). The other classes are for the agent: it
 * throws or logs them when it gives up a takeover because of a helper's result, so that the
 * reason carries a code like every other failure.
 */
import { ColoAgentError } from '../errors.js';

/** Options that can never work: an empty fence command, a timeout that is not > 0, a port out of range. */
export class FenceOptionsError extends ColoAgentError {
  constructor(message: string) {
    super('FENCE_BAD_OPTIONS', message);
  }
}

/** What a fence attempt left for the error: kept small and free of env values. */
export interface FenceFailureDetails {
  attempts: number;
  exitCode?: number;
  signal?: string;
  timedOut: boolean;
  /** The fence command's last output (at most 4 KiB). */
  output: string;
  /** Why it could not run at all (spawn error), or that waiting was aborted. */
  error?: string;
}

/** The peer could not be fenced: the takeover must not go on (fencing is the proof the peer is off). */
export class FenceFailedError extends ColoAgentError {
  readonly details: FenceFailureDetails;

  constructor(details: FenceFailureDetails) {
    const how = details.timedOut
      ? 'timed out'
      : details.error !== undefined
        ? details.error
        : details.signal !== undefined
          ? `killed by ${details.signal}`
          : `exit code ${details.exitCode ?? '?'}`;
    super('FENCE_FAILED', `fencing the peer failed after ${details.attempts} attempt(s): ${how}`);
    this.details = details;
  }
}

/** Too few of arbiter.gateways answered: this node may be the one cut off, so it must not take over. */
export class GatewaysUnreachableError extends ColoAgentError {
  readonly results: ReadonlyArray<{ target: string; reachable: boolean; error?: string }>;

  constructor(need: 'any' | 'all', results: ReadonlyArray<{ target: string; reachable: boolean; error?: string }>) {
    const down = results.filter((r) => !r.reachable).map((r) => `${r.target} (${r.error ?? 'unreachable'})`);
    super('GATEWAYS_UNREACHABLE', `gateway check failed (need ${need}): ${down.join(', ')}`);
    this.results = results;
  }
}

/** Our hung QEMU could not be killed (permission, uninterruptible sleep): the peer must not be told to take over. */
export class SelfFenceError extends ColoAgentError {
  readonly pid: number | undefined;

  constructor(pid: number | undefined, why: string) {
    super('SELF_FENCE_FAILED', `could not kill our QEMU${pid === undefined ? '' : ` (pid ${pid})`}: ${why}`);
    this.pid = pid;
  }
}
