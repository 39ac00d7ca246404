/** Errors of the metrics room. */
import { ColoAgentError } from '../errors.js';

/** metrics.listen (or another server option) cannot work. */
export class MetricsOptionsError extends ColoAgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_METRICS_OPTIONS', message, options);
  }
}

/** The metrics server could not bind its address (in use, not ours, permission). */
export class MetricsListenError extends ColoAgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_METRICS_LISTEN', message, options);
  }
}
