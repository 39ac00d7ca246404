/**
 * The last line of defence against leaked QEMUs: a tiny detached process that holds a pipe from
 * the test process and SIGKILLs every pid it was given once that pipe closes. Signal handlers
 * and exit hooks cover normal ends; this covers the ones they cannot (the test process SIGKILLed
 * by a timeout, or a crash), so no test run leaves QEMU behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

const SCRIPT = `
const pids = new Set();
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\n')) >= 0; buf = buf.slice(i + 1)) {
    const l = buf.slice(0, i);
    if (l.startsWith('-')) pids.delete(Number(l.slice(1)));
    else pids.add(Number(l));
  }
});
process.stdin.on('close', () => {
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
  process.exit(0);
});
`;

let reaper: ChildProcess | undefined;

function instance(): ChildProcess {
  if (!reaper) {
    reaper = spawn(process.execPath, ['-e', SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    // Neither the reaper nor its pipe may keep the test process alive.
    reaper.unref();
    (reaper.stdin as Socket | null)?.unref();
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
