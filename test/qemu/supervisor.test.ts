/**
 * QemuSupervisor with real child processes. The "QEMU" is a copy of /bin/sleep named
 * qemu-system-fake: `[fake, '30']` runs, `[fake, '0']` exits 0, `[fake, 'x']` prints an error and
 * exits 1, and a signal kills it. Every process a test launches is killed in its teardown.
 */
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { readLaunchRecord } from '../../src/qemu/launch-record.js';
import { readProc } from '../../src/util/proc.js';
import { QemuSupervisor, type QemuSupervisorEvents, type QemuSupervisorOptions } from '../../src/qemu/supervisor.js';
import { QemuLaunchError, QemuSupervisorOptionsError } from '../../src/qemu/supervisor-errors.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';


/** A fresh state dir and fake QEMU binary; every pid launched is killed (with its group) at teardown. */
function setup(t: Test): { stateDir: string; fake: string; pids: number[]; make: (o: Partial<QemuSupervisorOptions>) => QemuSupervisor } {
  const pids: number[] = [];
  const sups: QemuSupervisor[] = [];
  // Registered before t.testdir(), so it runs before the directory is removed.
  t.teardown(async () => {
    for (const s of sups) await s.stop();
    for (const pid of pids) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
  });
  const dir = t.testdir({ state: {}, bin: {} });
  const fake = join(dir, 'bin', 'qemu-system-fake');
  copyFileSync('/bin/sleep', fake);
  chmodSync(fake, 0o755);
  const stateDir = join(dir, 'state');
  const make = (o: Partial<QemuSupervisorOptions>): QemuSupervisor => {
    const s = new QemuSupervisor({ command: [fake, '30'], stateDir, restartDelayMs: 10, pollMs: 50, ...o });
    s.on('launched', (e) => pids.push(e.pid));
    s.on('adopted', (e) => pids.push(e.pid));
    sups.push(s);
    return s;
  };
  return { stateDir, fake, pids, make };
}

/** The next `name` event, or a rejection after timeoutMs (so a missing event fails, not hangs). */
function next<K extends keyof QemuSupervisorEvents>(s: QemuSupervisor, name: K, timeoutMs = 10_000): Promise<QemuSupervisorEvents[K][0]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.off(name, on as never);
      reject(new Error(`no ${String(name)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e: QemuSupervisorEvents[K][0]): void => {
      clearTimeout(timer);
      resolve(e);
    };
    s.once(name, on as never);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Collects every event of one kind. */
function collect<K extends keyof QemuSupervisorEvents>(s: QemuSupervisor, name: K): QemuSupervisorEvents[K][0][] {
  const list: QemuSupervisorEvents[K][0][] = [];
  s.on(name, ((e: QemuSupervisorEvents[K][0]) => list.push(e)) as never);
  return list;
}

t.test('options are checked', async (t) => {
  const ok = { command: ['/usr/bin/qemu-system-x86_64', '-incoming', 'defer'], stateDir: '/var/lib/colo-agent' };
  t.throws(() => new QemuSupervisor({ ...ok, command: [] }), QemuSupervisorOptionsError);
  t.throws(() => new QemuSupervisor({ ...ok, command: ['qemu', ''] }), { code: 'QEMU_SUPERVISOR_OPTIONS' });
  t.throws(() => new QemuSupervisor({ ...ok, stateDir: 'state' }), /absolute/);
  t.throws(() => new QemuSupervisor({ ...ok, restart: 'sometimes' as never }), /restart must be/);
  t.throws(() => new QemuSupervisor({ ...ok, maxRestarts: -1 }), /maxRestarts/);
  t.throws(() => new QemuSupervisor({ ...ok, pollMs: 0 }), /pollMs/);
  t.throws(() => new QemuSupervisor({ ...ok, qmp: 'unix:/x.sock,server=on' }), /QEMU -qmp argument/);
  t.doesNotThrow(() => new QemuSupervisor({ ...ok, restartDelayMs: 0, qmp: 'tcp:127.0.0.1:4444' }));
});

t.test('launches a detached QEMU in its own session, remembers it, and launches only one', async (t) => {
  const { stateDir, fake, make } = setup(t);
  const s = make({});
  const launched = collect(s, 'launched');
  const [a, b] = await Promise.all([s.ensureRunning('first start'), s.ensureRunning('same moment')]);
  t.match(a, { launched: true, outcome: 'launched' });
  t.match(b, { launched: false, outcome: 'running', pid: a.pid }, 'a concurrent call sees the same QEMU');
  t.equal(launched.length, 1);
  t.match(launched[0], { pid: a.pid, attempt: 1, reason: 'first start', restart: false });

  const pid = a.pid!;
  const proc = await readProc(pid);
  const self = await readProc(process.pid);
  t.ok(proc && self);
  t.equal(proc!.pgid, pid, 'leads its own process group');
  t.equal(proc!.sid, pid, 'leads its own session (setsid)');
  t.not(proc!.pgid, self!.pgid, 'not in our process group');
  t.same(proc!.argv, [fake, '30']);

  await sleep(50); // the record is written right after the launch
  const record = await readLaunchRecord(stateDir);
  t.match(record, { pid, startTime: proc!.startTime, argv: [fake, '30'], agentPid: process.pid });
  t.match(s.status(), { pid, running: true, adopted: false, launches: 1, restartsInWindow: 0, gaveUp: false, logFile: join(stateDir, 'qemu.log') });
  t.match(await s.ensureRunning('again'), { launched: false, outcome: 'running', pid });
  t.match(readFileSync(join(stateDir, 'qemu.log'), 'utf8'), /colo-agent \(pid \d+\) launches the secondary QEMU \(first start\)/);
});

t.test('stop() without kill leaves QEMU running; a new supervisor adopts it and notices its exit', async (t) => {
  const { stateDir, make } = setup(t);
  const first = make({});
  const { pid } = await first.ensureRunning('start');
  await sleep(50);
  await first.stop();
  t.match(await first.ensureRunning('after stop'), { launched: false, outcome: 'stopped' });
  await sleep(200);
  t.ok(await readProc(pid!), 'still running after the supervisor stopped');
  t.ok(existsSync(join(stateDir, 'qemu-launch.json')), 'its record stays for the next agent run');

  // The "restarted agent".
  const second = make({ restart: 'no' });
  const launched = collect(second, 'launched');
  const adopted = next(second, 'adopted');
  t.match(await second.ensureRunning('agent restarted'), { launched: false, outcome: 'adopted', pid });
  t.match(await adopted, { pid, agentPid: process.pid });
  t.match(second.status(), { pid, running: true, adopted: true, launches: 0 });
  t.match(await second.ensureRunning('again'), { launched: false, outcome: 'running', pid });

  const exited = next(second, 'exited');
  process.kill(pid!, 'SIGKILL');
  const e = await exited;
  t.match(e, { pid, code: null, signal: null, adopted: true, failed: true }, 'an adopted QEMU\'s exit status is unknown');
  t.notOk('restartInMs' in e, 'restart no: not restarted');
  t.equal(launched.length, 0, 'never launched a second QEMU');
  t.match(second.status(), { running: false, lastExit: { pid, code: null, signal: null } });
  await sleep(50);
  t.notOk(existsSync(join(stateDir, 'qemu-launch.json')), 'the record of a QEMU that exited is removed');
});

t.test('an adopted QEMU that exits is restarted per policy', async (t) => {
  const { make } = setup(t);
  const first = make({});
  const { pid } = await first.ensureRunning('start');
  await sleep(50);
  await first.stop();

  const second = make({ restart: 'on-failure' });
  t.equal(await second.adopt(), pid, 'adopt() at agent start');
  const relaunched = next(second, 'launched');
  process.kill(pid!, 'SIGTERM');
  const l = await relaunched;
  t.match(l, { restart: true, attempt: 1, reason: 'restart after exit' });
  t.not(l.pid, pid);
});

t.test('a stale record (pid gone, or reused by another process) is not adopted', async (t) => {
  const { stateDir, make } = setup(t);
  const self = (await readProc(process.pid))!;
  // Our own pid with its real start time, but not a QEMU command line: a reused pid.
  writeFileSync(join(stateDir, 'qemu-launch.json'), JSON.stringify({ pid: process.pid, startTime: self.startTime, argv: ['/usr/bin/qemu-system-x86_64'], launchedAt: Date.now(), agentPid: 1 }));
  const s = make({});
  t.equal(await s.adopt(), undefined, 'the pid is not a QEMU');
  t.match(await s.ensureRunning('start'), { launched: true, outcome: 'launched' });
  await s.stop({ kill: true });

  // A record whose start time does not match (the pid was reused after a reboot, say).
  const fresh = make({});
  const { pid } = await fresh.ensureRunning('start');
  await sleep(50);
  await fresh.stop();
  const record = (await readLaunchRecord(stateDir))!;
  writeFileSync(join(stateDir, 'qemu-launch.json'), JSON.stringify({ ...record, startTime: '1' }));
  const third = make({});
  t.equal(await third.adopt(), undefined, 'start time differs: another process');
  process.kill(pid!, 'SIGKILL');
});

t.test('exit codes and output: restart no reports the exit, the log file holds QEMU\'s output', async (t) => {
  const { stateDir, fake, make } = setup(t);
  const s = make({ command: [fake, 'x'], restart: 'no' });
  const exited = next(s, 'exited');
  const r = await s.ensureRunning('start');
  t.match(r, { launched: true });
  const e = await exited;
  t.match(e, { pid: r.pid, code: 1, signal: null, adopted: false, failed: true });
  t.notOk('restartInMs' in e);
  t.match(s.status(), { running: false, restartPending: false, lastExit: { code: 1 } });
  const log = readFileSync(join(stateDir, 'qemu.log'), 'utf8');
  t.match(log, /launches the secondary QEMU \(start\)/, 'the agent\'s header');
  t.match(log, /invalid time interval/, 'the program\'s own stderr');
  t.match(log, new RegExp(`QEMU pid ${r.pid} exited: exit code 1`), 'the agent\'s exit note');
});

t.test('on-failure: exit 0 is not restarted, a non-zero exit and a signal are', async (t) => {
  const { fake, make } = setup(t);
  const clean = make({ command: [fake, '0'] });
  const cleanExit = next(clean, 'exited');
  await clean.ensureRunning('start');
  const e0 = await cleanExit;
  t.match(e0, { code: 0, signal: null, failed: false });
  t.notOk('restartInMs' in e0);
  await sleep(100);
  t.equal(clean.status().launches, 1, 'not restarted');

  const failing = make({ command: [fake, '30'] });
  const { pid } = await failing.ensureRunning('start');
  const killed = next(failing, 'exited');
  const relaunch = next(failing, 'launched');
  process.kill(pid!, 'SIGTERM');
  t.match(await killed, { pid, code: null, signal: 'SIGTERM', failed: true, restartInMs: 10 });
  t.match(await relaunch, { restart: true, attempt: 2 });
  t.match(failing.status(), { running: true, launches: 2, restartsInWindow: 1 });
});

t.test('always: even a clean exit is restarted', async (t) => {
  const { fake, make } = setup(t);
  const s = make({ command: [fake, '0'], restart: 'always', maxRestarts: 1 });
  const exits = collect(s, 'exited');
  const gaveUp = next(s, 'gave-up');
  await s.ensureRunning('start');
  t.match(await gaveUp, { restarts: 1 });
  t.equal(exits.length, 2);
  t.match(exits[0], { code: 0, failed: false, restartInMs: 10 });
  t.notOk('restartInMs' in exits[1]!, 'the budget is spent');
});

t.test('at most maxRestarts restarts per window, then it gives up until reset()', async (t) => {
  const { fake, make } = setup(t);
  const s = make({ command: [fake, 'x'], maxRestarts: 2 });
  const launched = collect(s, 'launched');
  const gaveUp = next(s, 'gave-up');
  await s.ensureRunning('start');
  t.match(await gaveUp, { restarts: 2, windowMs: 600_000 });
  t.same(launched.map((l) => [l.attempt, l.restart]), [[1, false], [2, true], [3, true]]);
  t.match(s.status(), { running: false, gaveUp: true, launches: 3, restartsInWindow: 2, restartPending: false });
  t.match(await s.ensureRunning('asked again'), { launched: false, outcome: 'gave-up' }, 'an explicit call does not bypass the budget');
  s.reset();
  const again = next(s, 'gave-up');
  t.match(await s.ensureRunning('after reset'), { launched: true });
  await again;
  t.equal(launched.length, 6);
});

t.test('the window slides: restarts older than restartWindowMs no longer count', async (t) => {
  const { make } = setup(t);
  const clock = new FakeClock();
  const s = make({ clock, maxRestarts: 1, restartWindowMs: 1000, restartDelayMs: 100 });
  const gaveUps = collect(s, 'gave-up');

  const killAndRestart = async (advanceBefore: number): Promise<number> => {
    const pid = s.status().pid!;
    clock.advance(advanceBefore);
    const exited = next(s, 'exited');
    process.kill(pid, 'SIGKILL');
    const e = await exited;
    t.equal(e.restartInMs, 100, `restart scheduled at ${clock.now()}`);
    const launched = next(s, 'launched');
    clock.advance(100);
    return (await launched).pid;
  };

  await s.ensureRunning('start'); // launch at t=1000
  await killAndRestart(0); // second launch at t=1100: 1 restart in the window, the budget is spent now
  await killAndRestart(2000); // at t=3100 both have left the window: restarted at t=3200
  await killAndRestart(0); // restarted at t=3300: spent again
  const exited = next(s, 'exited');
  const gaveUp = next(s, 'gave-up');
  process.kill(s.status().pid!, 'SIGKILL'); // two launches within 1000 ms: spent
  t.notOk('restartInMs' in (await exited));
  t.match(await gaveUp, { restarts: 1, windowMs: 1000 });
  t.equal(gaveUps.length, 1);
});

t.test('stop({kill: true}) kills QEMU and its record; no events follow', async (t) => {
  const { stateDir, make } = setup(t);
  const s = make({});
  const { pid } = await s.ensureRunning('start');
  await sleep(50);
  const exits = collect(s, 'exited');
  await s.stop({ kill: true });
  t.equal(await readProc(pid!), undefined, 'gone');
  t.notOk(existsSync(join(stateDir, 'qemu-launch.json')));
  await sleep(100);
  t.equal(exits.length, 0);
  t.match(s.status(), { running: false, stopped: true });
  await s.stop({ kill: true }); // idempotent
});

t.test('no launch while something answers on the QMP address (a QEMU someone else started)', async (t) => {
  const { make } = setup(t);
  const path = join(shortTempDir(t, 'qmp-'), 'qmp.sock');
  const server = net.createServer((c) => c.destroy());
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const s = make({ qmp: `unix:${path}` });
  const skipped = collect(s, 'launch-skipped');
  t.match(await s.ensureRunning('start'), { launched: false, outcome: 'qmp-in-use' });
  t.match(skipped, [{ restart: false, reason: /something answers on unix:/ }]);
  t.equal(s.status().launches, 0);
  await new Promise<void>((r) => server.close(() => r()));
  t.match(await s.ensureRunning('start'), { launched: true }, 'a stale socket file (nobody listening) does not count');
});

t.test('a program that cannot be started is a QemuLaunchError', async (t) => {
  const { stateDir, make } = setup(t);
  const s = make({ command: [join(stateDir, 'no-such-qemu'), '-incoming', 'defer'] });
  await t.rejects(s.ensureRunning('start'), QemuLaunchError);
  await t.rejects(s.ensureRunning('start'), { code: 'QEMU_LAUNCH_FAILED', message: /is not an executable file/ });
  t.match(s.status(), { running: false, launches: 0 });
});

t.test('the log size is checked while QEMU runs, and no timer outlives an exit or stop()', async (t) => {
  const { stateDir, fake, make } = setup(t);
  const clock = new FakeClock();
  const s = make({ clock, logMaxBytes: 10, logCheckMs: 5000, restart: 'no' });
  const { pid } = await s.ensureRunning('start');
  await sleep(50);
  t.equal(clock.pendingCount, 1, 'one timer: the log size check (our own child needs no polling)');
  clock.advance(5000);
  await sleep(50);
  t.match(readFileSync(join(stateDir, 'qemu.log.1'), 'utf8'), /launches the secondary QEMU \(start\)/, 'over the cap: rotated');
  t.equal(readFileSync(join(stateDir, 'qemu.log'), 'utf8'), '');
  t.equal(clock.pendingCount, 1, 'checked again later');
  await s.stop();
  t.equal(clock.pendingCount, 0, 'stop() clears it');
  process.kill(pid!, 'SIGKILL');
  while (await readProc(pid!)) await sleep(10);

  const quick = make({ clock, command: [fake, 'x'], restart: 'no' });
  const exited = next(quick, 'exited');
  t.match(await quick.ensureRunning('start'), { outcome: 'launched' });
  await exited;
  await sleep(50);
  t.equal(clock.pendingCount, 0, 'a QEMU that exited at once leaves no timer behind');
});

t.test('mayRestart refusing: the restart the policy wanted is deferred, and the next ensureRunning() makes it', async (t) => {
  const { fake, make } = setup(t);
  let refusal: string | undefined = 'this node is primary';
  const s = make({ command: [fake, '30'], mayRestart: () => refusal });
  const skipped = collect(s, 'launch-skipped');
  const { pid } = await s.ensureRunning('start');
  const exited = next(s, 'exited');
  process.kill(pid!, 'SIGKILL');
  t.match(await exited, { failed: true, restartInMs: 10 });
  await sleep(150);
  t.match(s.status(), { running: false, launches: 1, restartDeferred: true, restartPending: false }, 'nothing launched while refused');
  t.match(skipped, [{ reason: 'this node is primary', restart: true }]);
  refusal = undefined;
  const r = await s.ensureRunning('the node is secondary again');
  t.match(r, { launched: true, outcome: 'launched' });
  t.match(s.status(), { running: true, launches: 2, restartDeferred: false });
});
