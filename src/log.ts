/**
 * pino logging: JSON lines on stdout, one child logger per component.
 *
 * Secrets must never reach a log line. Config only holds paths to secrets, but anything that
 * could carry key material is redacted by name here as a second line of defence.
 */
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Field names whose values are replaced by "[redacted]" wherever they appear (2 levels deep). */
export const REDACTED_FIELDS = ['key', 'secret', 'password', 'token', 'hmacKey', 'authorization'];

const redactPaths = REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export interface LoggerOptions {
  level: LevelWithSilent;
  /** Defaults to stdout; tests pass a stream to capture lines. */
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid, ...opts.base },
      redact: { paths: redactPaths, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that drops everything: the default for library users and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
