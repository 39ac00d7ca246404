/**
 * The entry and exit of a benchmark script (`npm run bench:NAME`): run main(), and whatever way it
 * ends (done, failed, skipped, Ctrl-C), kill every child it started (agents, proxies, CPU hogs)
 * before exiting with a code that says which. QEMUs are killed by the pair harness's own exit hook.
 */
import { killAllChildren } from '../helpers/agent-process.js';

/** Progress and diagnostics go to stderr; stdout carries only the report. */
export const progress = (s: string): void => void process.stderr.write(`${s}\n`);

/** Thrown when the benchmark cannot run here (e.g. this QEMU cannot do COLO): reported as skipped, exit code 0. */
export class BenchSkipError extends Error {}

/**
 * Runs `main` as benchmark `name` ("bench:detect"): exit 0 when it resolves or skips, 1 when it
 * fails, 130 on SIGINT (after printing `interrupted`, which says what is being killed).
 */
export function runBench(name: string, main: () => Promise<void>, interrupted: string): void {
  process.once('SIGINT', () => {
    progress(interrupted);
    killAllChildren();
    process.exit(130);
  });
  main().then(
    () => {
      killAllChildren();
      process.exit(0);
    },
    (err: unknown) => {
      killAllChildren();
      if (err instanceof BenchSkipError) {
        progress(`${name} skipped: ${err.message}`);
        process.exit(0);
      }
      progress(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exit(1);
    },
  );
}
