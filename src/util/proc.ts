/**
 * What /proc says about a process, for the two places that must tell a live process from a dead
 * one before they signal it: the self-fence of a hung QEMU and the qemu.launch supervisor.
 *
 * A zombie (state Z or X: dead, not yet reaped) counts as gone: here PID 1 may never reap an
 * orphan, and a zombie holds no socket or lock any more.
 */
import { readFile } from 'node:fs/promises';
import type { Clock } from './clock.js';

export interface ProcInfo {
  /** State letter of /proc/PID/stat (R, S, D, T, ...); never Z or X. */
  state: string;
  /** Field 22 of /proc/PID/stat: clock ticks since boot, fixed for the life of the process. */
  startTime: string;
  pgid: number;
  sid: number;
  /** /proc/PID/cmdline; empty when unreadable. */
  argv: string[];
}

/** What /proc says about a live process; undefined when it does not exist or is a zombie. */
export async function readProc(pid: number): Promise<ProcInfo | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may contain anything: the fields follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0] ?? '';
  if (state === 'Z' || state === 'X' || state === '') return undefined;
  let argv: string[] = [];
  try {
    argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    if (argv.at(-1) === '') argv.pop();
  } catch {
    // gone in between, or unreadable: an empty command line matches nothing
  }
  return { state, pgid: Number(fields[2]), sid: Number(fields[3]), startTime: fields[19] ?? '', argv };
}

/**
 * Polls /proc every pollMs until the process is gone or `ms` has passed. `same` says whether a
 * live process is still the one waited for (a reused pid is another process: gone). Resolves
 * undefined once it is gone, else its last ProcInfo.
 */
export async function waitProcGone(
  pid: number,
  ms: number,
  opts: { clock: Clock; pollMs: number; same?: (info: ProcInfo) => boolean },
): Promise<ProcInfo | undefined> {
  const deadline = opts.clock.now() + ms;
  for (;;) {
    const info = await readProc(pid);
    if (!info || (opts.same && !opts.same(info))) return undefined;
    if (opts.clock.now() >= deadline) return info;
    await new Promise<void>((resolve) => opts.clock.setTimeout(resolve, Math.min(opts.pollMs, Math.max(0, deadline - opts.clock.now()))));
  }
}
