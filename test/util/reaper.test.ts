/**
 * The reaper on real processes: a helper process registers a sleeper and a dir, then is SIGKILLed
 * (no exit hook runs); the reaper must kill the sleeper and remove the dir. A released pid and a
 * kept dir are left alone. And a process that used the reaper exits promptly on its own.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const REAPER = fileURLToPath(new URL('../../src/util/reaper.ts', import.meta.url));

/** Alive and not a zombie (an orphan killed here stays a zombie: PID 1 may not reap it). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/** A process that spawns two sleepers, registers both, releases one, and prints their pids. */
function helperScript(dirs: { reaped: string; kept: string }, exitAfter: boolean): string {
  return `
import { spawn } from 'node:child_process';
import { reapOnDeath, release, removeDirOnDeath, keepDir } from ${JSON.stringify(REAPER)};
const a = spawn('sleep', ['60'], { stdio: 'ignore', detached: true });
const b = spawn('sleep', ['60'], { stdio: 'ignore', detached: true });
a.unref(); b.unref();
reapOnDeath(a.pid); reapOnDeath(b.pid); release(b.pid);
removeDirOnDeath(${JSON.stringify(dirs.reaped)}); removeDirOnDeath(${JSON.stringify(dirs.kept)}); keepDir(${JSON.stringify(dirs.kept)});
console.log(JSON.stringify({ reaped: a.pid, released: b.pid }));
${exitAfter ? '' : 'setInterval(() => {}, 1000);'}
`;
}

function runHelper(t: Test, dir: string, exitAfter: boolean) {
  const dirs = { reaped: join(dir, 'reaped'), kept: join(dir, 'kept') };
  mkdirSync(dirs.reaped);
  mkdirSync(dirs.kept);
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', helperScript(dirs, exitAfter)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pids = new Promise<{ reaped: number; released: number }>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { reaped: number; released: number });
    });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGKILL');
    const p = await pids.catch(() => undefined);
    for (const pid of p ? [p.reaped, p.released] : []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  return { child, pids, exited, dirs };
}

t.test('the helper SIGKILLed: its registered sleeper is killed and its dir removed; released ones stay', async (t) => {
  const h = runHelper(t, t.testdir(), false);
  const { reaped, released } = await h.pids;
  t.ok(running(reaped) && running(released), 'both sleepers run');
  h.child.kill('SIGKILL');
  await h.exited;
  t.ok(await until(() => !running(reaped), 5000), 'the registered sleeper is killed once its registrant is gone');
  t.ok(await until(() => !existsSync(h.dirs.reaped), 5000), 'the registered dir is removed');
  t.ok(running(released), 'the released sleeper is left alone');
  t.ok(existsSync(h.dirs.kept), 'the kept dir is left alone');
});

t.test('a process that used the reaper exits by itself, promptly (nothing of the reaper keeps it)', async (t) => {
  const h = runHelper(t, t.testdir(), true);
  const { reaped } = await h.pids;
  let timer: NodeJS.Timeout | undefined;
  const exitedInTime = await Promise.race([h.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 10_000)))]);
  clearTimeout(timer);
  t.ok(exitedInTime, 'the helper exited on its own');
  // Its normal exit ran no hook: the reaper is what kills what it left.
  t.ok(await until(() => !running(reaped), 5000), 'and the reaper then killed what it registered');
});
