/**
 * The last line of defence against leaked child processes: a tiny detached process that watches
 * this one and, once it is gone, SIGKILLs every pid it was given (then removes the dirs it was
 * given). Signal handlers and exit hooks cover normal ends; this covers the ones they cannot (this
 * process SIGKILLed, or a crash), so a test run or a demo leaves no QEMU behind.
 *
 * No pipe between the two: the list goes to a file (appended synchronously), and the reaper polls
 * its parent pid. A pipe kept open until exit, with writes in flight, once left a test process
 * spinning forever in Node's exit-time handle cleanup (100% CPU in Environment::CleanupHandles,
 * seen in gdb); with nothing but a file and an unref'd, stdio-less child there is nothing to clean.
 *
 * Opt-in, never implicit: a daemon that starts a QEMU it means to outlive it must not use it.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How often the reaper looks whether its parent is still there. */
const POLL_MS = 200;

const SCRIPT = `
const fs = require('node:fs');
const file = process.argv[1];
const parent = Number(process.argv[2]);
const timer = setInterval(() => {
  if (process.ppid === parent) return;
  clearInterval(timer);
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch {}
  const pids = new Set();
  const dirs = new Set();
  for (const l of text.split('\\n')) {
    if (l === '') continue;
    if (l.startsWith('-D')) dirs.delete(l.slice(2));
    else if (l.startsWith('D')) dirs.add(l.slice(1));
    else if (l.startsWith('-')) pids.delete(Number(l.slice(1)));
    else pids.add(Number(l));
  }
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
  // After the kills: a dir may hold sockets of the processes just killed.
  setTimeout(() => {
    for (const d of dirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch {} }
    try { fs.rmSync(file, { force: true }); } catch {}
    process.exit(0);
  }, dirs.size ? 200 : 0);
}, ${POLL_MS});
`;

let listFile: string | undefined;

function note(line: string): void {
  if (!listFile) {
    const file = join(tmpdir(), `colo-agent-reaper-${process.pid}.list`);
    appendFileSync(file, '', { mode: 0o600 });
    const child = spawn(process.execPath, ['-e', SCRIPT, file, String(process.pid)], { stdio: 'ignore', detached: true });
    // Nothing of it may keep this process alive, or be left to close at exit.
    child.unref();
    listFile = file;
  }
  appendFileSync(listFile, `${line}\n`);
}

/** Kill `pid` if this process dies before calling release(pid). */
export function reapOnDeath(pid: number): void {
  note(String(pid));
}

export function release(pid: number): void {
  if (listFile) note(`-${pid}`);
}

/** Remove the dir `path` (recursively) if this process dies before calling keepDir(path). */
export function removeDirOnDeath(path: string): void {
  if (path.includes('\n')) throw new RangeError('a dir path for the reaper cannot contain a newline');
  note(`D${path}`);
}

export function keepDir(path: string): void {
  if (listFile) note(`-D${path}`);
}
