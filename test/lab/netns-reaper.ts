/**
 * The lab's part of the reaper (src/util/reaper.ts kills the QEMUs a test process started when it
 * dies; this deletes the namespaces): a tiny detached `sh` that waits until the test process is
 * gone, even by SIGKILL, then kills every process left in the lab's namespaces, deletes them (their
 * veths and nft tables go with them), the root ends of the control veths and the lab's slot file.
 * A lab destroyed normally cancels it (SIGKILL by its pid).
 *
 * Like src/util/reaper.ts it polls its parent instead of holding a pipe, and keeps no stdio: it
 * must never keep the test process alive or be left for it to close.
 */
import { spawn } from 'node:child_process';

/** Shell-quote one word. */
function q(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * A POSIX sh script that kills every process in `namespaces` (until none is left, 5 s at most),
 * then deletes the namespaces and the root-namespace interfaces `rootIfs`. Errors are ignored: it
 * runs on leftovers that may be half gone.
 */
export function cleanupScript(namespaces: readonly string[], rootIfs: readonly string[]): string {
  const ns = namespaces.map(q).join(' ');
  return [
    `for n in ${ns}; do`,
    '  i=0',
    '  while [ $i -lt 50 ]; do',
    '    pids=$(ip netns pids "$n" 2>/dev/null)',
    '    [ -z "$pids" ] && break',
    '    kill -9 $pids 2>/dev/null; kill -CONT $pids 2>/dev/null',
    '    i=$((i+1)); sleep 0.1',
    '  done',
    '  ip netns del "$n" 2>/dev/null',
    'done',
    ...rootIfs.map((i) => `ip link del ${q(i)} 2>/dev/null`),
    'true',
  ].join('\n');
}

export interface NetnsReaper {
  /** The lab was cleaned up normally: the watcher is not needed any more. */
  cancel(): void;
}

/** Start the watcher for one lab; `slotFile` is removed after the cleanup. */
export function startNetnsReaper(namespaces: readonly string[], rootIfs: readonly string[], slotFile: string): NetnsReaper {
  const script = [
    // $1: the pid to watch. Field 4 of /proc/$$/stat is this shell's parent: it changes once that dies.
    'while read -r _ _ _ ppid _ < /proc/$$/stat && [ "$ppid" = "$1" ]; do sleep 0.2; done',
    cleanupScript(namespaces, rootIfs),
    `rm -f ${q(slotFile)}`,
  ].join('\n');
  const child = spawn('sh', ['-c', script, 'colo-lab-reaper', String(process.pid)], { stdio: 'ignore', detached: true });
  child.unref();
  return {
    cancel: () => {
      try {
        if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    },
  };
}
