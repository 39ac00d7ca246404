/**
 * The configuration error: every problem found in one load, reported together.
 *
 * An operator fixing a config file should see all that is wrong in one run, not one problem per restart,
 * so the loader collects problems and throws one ConfigError at the end.
 */
import { ColoAgentError } from '../errors.js';

export const CONFIG_INVALID = 'CONFIG_INVALID';

export interface ConfigProblem {
  /** Dotted key ("heartbeat.intervalMs"); '' when the problem concerns a whole file or argument. */
  key: string;
  /** What is wrong, phrased to follow the key: 'must be an integer between 10 and 60000 (got "fast")'. */
  message: string;
  /** Where the offending value came from: a file path, "env NAME" or "--set"; absent for built-in defaults. */
  source?: string;
  /** 1-based line in `source` when that is a file and the line is known. */
  line?: number;
}

/** One line: `key: message [source:line]`, or `source:line: message` when no key applies. */
export function formatProblem(p: ConfigProblem): string {
  const where = p.source === undefined ? '' : p.line === undefined ? p.source : `${p.source}:${p.line}`;
  if (p.key === '') return where ? `${where}: ${p.message}` : p.message;
  return where ? `${p.key}: ${p.message} [${where}]` : `${p.key}: ${p.message}`;
}

export class ConfigError extends ColoAgentError {
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    // One line per problem and nothing else, so the CLI can print it under its own heading.
    super(CONFIG_INVALID, problems.map(formatProblem).join('\n'));
    this.problems = Object.freeze([...problems]);
  }
}
