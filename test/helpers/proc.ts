/**
 * Reading processes out of Linux's /proc (proc(5)): CPU time and resident memory for the
 * benchmarks, our own child processes with their command lines, and whether a pid still exists.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second, the unit of utime and stime in /proc/PID/stat. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * The fields of /proc/PID/stat after the command name, which is in parentheses and may contain
 * spaces: [0] is field 3 of proc(5) (state), [1] field 4 (ppid), [11] field 14 (utime), ...
 * Throws when the process is gone.
 */
function statFieldsAfterName(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a process, in seconds. Throws when the process is gone. */
export function cpuSeconds(pid: number): number {
  const rest = statFieldsAfterName(pid);
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK; // fields 14 and 15 of proc(5)
}

/** VmRSS of a process in MB, or undefined when it is gone (or has no VmRSS line). */
export function rssMb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface ChildProcessInfo {
  pid: number;
  /** The command line, split at its NULs (argv[0] first). */
  args: string[];
}

/** This process's children as /proc shows them now (also those a helper spawned without telling us). */
export function childProcesses(): ChildProcessInfo[] {
  const out: ChildProcessInfo[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(statFieldsAfterName(d)[1]);
      if (ppid === process.pid) out.push({ pid: Number(d), args: readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0') });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** Whether a process with this pid exists (signal 0 probes without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
