/**
 * The last line of defence against leaked child processes: a tiny detached process that holds a
 * pipe from this process and SIGKILLs every pid it was given once that pipe closes (then removes
 * the dirs it was given). Signal
 * handlers and exit hooks cover normal ends; this covers the ones they cannot (this process
 * SIGKILLed, or a crash), so a test run or a demo leaves no QEMU behind.
 *
 * Opt-in, never implicit: a daemon that starts a QEMU it means to outlive it must not use it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

const SCRIPT = `
const pids = new Set();
const dirs = new Set();
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\n')) >= 0; buf = buf.slice(i + 1)) {
    const l = buf.slice(0, i);
    if (l.startsWith('-D')) dirs.delete(l.slice(2));
    else if (l.startsWith('D')) dirs.add(l.slice(1));
    else if (l.startsWith('-')) pids.delete(Number(l.slice(1)));
    else pids.add(Number(l));
  }
});
process.stdin.on('close', () => {
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
  // After the kills: a dir may hold sockets of the processes just killed.
  setTimeout(() => {
    for (const d of dirs) { try { require('node:fs').rmSync(d, { recursive: true, force: true }); } catch {} }
    process.exit(0);
  }, dirs.size ? 200 : 0);
});
`;

let reaper: ChildProcess | undefined;

function instance(): ChildProcess {
  if (!reaper) {
    reaper = spawn(process.execPath, ['-e', SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    // Neither the reaper nor its pipe may keep this process alive.
    reaper.unref();
    (reaper.stdin as Socket | null)?.unref();
    reaper.stdin?.on('error', () => undefined); // EPIPE if it died first
  }
  return reaper;
}

/** Kill `pid` if this process dies before calling release(pid). */
export function reapOnDeath(pid: number): void {
  instance().stdin?.write(`${pid}\n`);
}

export function release(pid: number): void {
  reaper?.stdin?.write(`-${pid}\n`);
}

/** Remove the dir `path` (recursively) if this process dies before calling keepDir(path). */
export function removeDirOnDeath(path: string): void {
  if (path.includes('\n')) throw new RangeError('a dir path for the reaper cannot contain a newline');
  instance().stdin?.write(`D${path}\n`);
}

export function keepDir(path: string): void {
  reaper?.stdin?.write(`-D${path}\n`);
}
