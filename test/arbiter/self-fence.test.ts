import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hungQemuVerdict, selfFenceQemu } from '../../src/arbiter/self-fence.js';
import { SelfFenceError } from '../../src/arbiter/fence-errors.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

/** Gone for our purposes: no such process, or a zombie. */
function dead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

/** Starts a process whose argv[0] is `name` in a temp dir: a copy of `binary`. */
function start(t: Test, binary: string, name: string, args: string[], stdin: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  const dir = shortTempDir(t, 'self-fence-');
  const exe = join(dir, name);
  copyFileSync(binary, exe);
  const child = spawn(exe, args, { stdio: [stdin, 'ignore', 'ignore'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  return child;
}

const fakeQemu = (t: Test) => start(t, '/bin/sleep', 'qemu-system-fake', ['60']);

/** Waits until the process has its own cmdline (spawn returns before exec). */
async function execed(child: ChildProcess, name: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      if (readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes(name)) return;
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`${name} did not start`);
}

t.test('a QEMU named by its pid file is killed with SIGKILL', async (t) => {
  const q = fakeQemu(t);
  await execed(q, 'qemu-system-fake');
  const pidFile = join(shortTempDir(t, 'self-fence-'), 'qemu.pid');
  writeFileSync(pidFile, `${q.pid}\n`); // what QEMU's -pidfile writes
  const exited = new Promise<NodeJS.Signals | null>((r) => q.once('exit', (_c, s) => r(s)));
  const r = await selfFenceQemu({ pidFile, graceMs: 5000 });
  t.same(r, { killed: true, pid: q.pid, how: 'SIGKILL' });
  t.equal(await exited, 'SIGKILL');
  t.ok(dead(q.pid!));
});

t.test('a pid given directly, with termFirst, goes on SIGTERM', async (t) => {
  const q = fakeQemu(t);
  await execed(q, 'qemu-system-fake');
  const r = await selfFenceQemu({ pid: q.pid!, graceMs: 5000, termFirst: true });
  t.same(r, { killed: true, pid: q.pid, how: 'SIGTERM' });
});

t.test('termFirst falls back to SIGKILL when SIGTERM is ignored', async (t) => {
  // A shell renamed qemu-*, ignoring SIGTERM and blocked reading a pipe nobody writes to.
  const q = start(t, '/bin/sh', 'qemu-system-stuck', ['-c', "trap '' TERM; read x"], 'pipe');
  await execed(q, 'qemu-system-stuck');
  await new Promise((r) => setTimeout(r, 100)); // let the trap be set
  const r = await selfFenceQemu({ pid: q.pid!, graceMs: 300, termFirst: true });
  t.same(r, { killed: true, pid: q.pid, how: 'SIGKILL' });
});

t.test('a stale pid file pointing at another process is refused', async (t) => {
  const other = start(t, '/bin/sleep', 'sleep', ['60']);
  await execed(other, 'sleep');
  const pidFile = join(shortTempDir(t, 'self-fence-'), 'qemu.pid');
  writeFileSync(pidFile, `${other.pid}\n`);
  const r = await selfFenceQemu({ pidFile, graceMs: 1000 });
  t.match(r, { killed: false, pid: other.pid, how: 'not-qemu', error: /not a QEMU process.*sleep/ });
  t.notOk(dead(other.pid!), 'the unrelated process lives');
  // An argument that mentions qemu does not make a process QEMU.
  const liar = start(t, '/bin/sh', 'sh', ['-c', 'read x', 'qemu-system-x86_64', '-pidfile', '/run/qemu.pid'], 'pipe');
  await execed(liar, 'qemu-system-x86_64');
  t.match(await selfFenceQemu({ pid: liar.pid!, graceMs: 1000 }), { killed: false, how: 'not-qemu' });
  t.notOk(dead(liar.pid!));
});

t.test('no pid to go by', async (t) => {
  const dir = t.testdir();
  t.match(await selfFenceQemu({ pidFile: join(dir, 'missing.pid'), graceMs: 100 }), { killed: false, how: 'no-pid', error: /ENOENT/ });
  writeFileSync(join(dir, 'junk.pid'), 'qemu\n');
  t.match(await selfFenceQemu({ pidFile: join(dir, 'junk.pid'), graceMs: 100 }), { killed: false, how: 'no-pid', error: /holds no pid/ });
  writeFileSync(join(dir, 'one.pid'), '1\n');
  t.match(await selfFenceQemu({ pidFile: join(dir, 'one.pid'), graceMs: 100 }), { killed: false, how: 'no-pid', error: /not a pid we may kill/ });
  t.match(await selfFenceQemu({ pid: process.pid, graceMs: 100 }), { killed: false, how: 'no-pid' });
  t.match(await selfFenceQemu({ graceMs: 100 }), { killed: false, how: 'no-pid', error: /neither/ });
});

t.test('an already-dead QEMU is gone, not killed', async (t) => {
  const q = fakeQemu(t);
  await execed(q, 'qemu-system-fake');
  const exited = new Promise((r) => q.once('exit', r));
  q.kill('SIGKILL');
  await exited;
  t.same(await selfFenceQemu({ pid: q.pid!, graceMs: 100 }), { killed: false, pid: q.pid, how: 'gone' });
});

t.test('SelfFenceError carries a code', async (t) => {
  const e = new SelfFenceError(1234, 'still exists');
  t.equal(e.code, 'SELF_FENCE_FAILED');
  t.equal(e.pid, 1234);
  t.match(e.message, /pid 1234.*still exists/);
});

t.test('hungQemuVerdict', async (t) => {
  const hungAfterMs = 10_000;
  t.match(hungQemuVerdict({ qmpStatus: 'ready', hungAfterMs }), { hung: false, reason: /answers/ });
  t.match(hungQemuVerdict({ qmpStatus: 'unhealthy', unhealthyForMs: 9_999, hungAfterMs }), { hung: false, reason: /under/ });
  t.match(hungQemuVerdict({ qmpStatus: 'unhealthy', unhealthyForMs: 10_000, hungAfterMs }), { hung: true, reason: /QMP has not answered for 10000 ms/ });
  t.match(hungQemuVerdict({ qmpStatus: 'unhealthy', unhealthyForMs: 50, checkpointStalledForMs: 12_000, hungAfterMs }), {
    hung: true,
    reason: /checkpoint stalled.*not answering/,
  });
  t.match(hungQemuVerdict({ qmpStatus: 'unhealthy', unhealthyForMs: 50, checkpointStalledForMs: 5_000, hungAfterMs }), { hung: false });
  t.match(hungQemuVerdict({ qmpStatus: 'ready', checkpointStalledForMs: 60_000, hungAfterMs }), { hung: false, reason: /QMP answers: waiting on the peer/ });
  for (const qmpStatus of ['reconnecting', 'disconnected', 'connecting', 'idle', 'closed'] as const) {
    t.match(hungQemuVerdict({ qmpStatus, checkpointStalledForMs: 60_000, unhealthyForMs: 60_000, hungAfterMs }), { hung: false, reason: /no evidence/ }, qmpStatus);
  }
  t.throws(() => hungQemuVerdict({ qmpStatus: 'ready', hungAfterMs: 0 }), { code: 'FENCE_BAD_OPTIONS' });
});
