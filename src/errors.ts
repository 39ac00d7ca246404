/**
 * Base class for every error colo-agent raises on purpose.
 *
 * Like undici's errors, each subclass carries a stable `code` string that callers, logs and
 * metrics can match on; messages may change between releases, codes may not.
 */
export class ColoAgentError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** True when `err` is one of ours and carries the given code. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof ColoAgentError && err.code === code;
}
