/**
 * The process-wide safety net of the helpers that start processes (QEMUs, agents, proxies): a
 * synchronous cleanup that runs when the test process exits, and when it is told to end by
 * SIGINT, SIGTERM or SIGHUP. On a signal the handler steps aside and re-raises it, so the signal
 * then does what it would have done without us (the default action, or the handlers tap installs).
 *
 * A SIGKILL runs nothing: reaper.ts covers that case for QEMUs, and agents exit with their stdin.
 */

export type EndSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';
/** Why a cleanup runs: the process is exiting, or it received one of these signals. */
export type EndCause = 'exit' | EndSignal;

const END_SIGNALS: readonly EndSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const installed = new Set<(cause: EndCause) => void>();

/**
 * Run `cleanup` on exit and on SIGINT/SIGTERM/SIGHUP (then re-raise the signal). It must be
 * synchronous (an 'exit' handler cannot wait) and safe to run twice: a signal whose re-raise tap
 * catches is followed by the exit. Registering the same function again does nothing, so callers
 * may call this on every start instead of keeping an "installed" flag.
 */
export function onProcessEnd(cleanup: (cause: EndCause) => void): void {
  if (installed.has(cleanup)) return;
  installed.add(cleanup);
  process.once('exit', () => cleanup('exit'));
  for (const sig of END_SIGNALS) {
    const onSignal = () => {
      cleanup(sig);
      // Step aside and re-raise, so the signal does what it would have done without us.
      process.off(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
