/**
 * ColoMonitor unit tests: a real QmpClient on a real unix socket to the scripted fake QMP server,
 * the monitor on a FakeClock (polls and stall timers move only when the test advances time).
 *
 * Part 1 feeds hand-made event streams: checkpoint accounting, the colo-start pause, stalls with
 * exact timing, duplicate and out-of-order events, COLO_EXIT, poll failures, stop().
 *
 * Part 2 replays REAL transcripts (test/fixtures/qmp-transcripts/, recorded from QEMU 7.2.22 by
 * monitor.real.test.ts and colo-pair.test.ts, and from QEMU 11.1.3 with 20 ms polls by monitor-record.ts): QEMU's events at their recorded times, and the
 * recorded query-colo-status replies in order, each no earlier than it was recorded (a reply that
 * never came is never sent). Completed checkpoints are driven by transcripts because real QEMU 7.2
 * under TCG cannot be relied on to complete one here: the primary deadlocks at the end of its first
 * checkpoint in most runs (monitor-first-checkpoint-primary), only sometimes after completing one
 * or two (monitor-checkpoints-then-stall-primary, a recorded completed primary checkpoint). The
 * secondary's side of each checkpoint, the deadlocking one included, does complete. Streams of many
 * checkpoints are synthetic (part 1).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { COLO_MONITOR_ANOMALIES, COLO_MONITOR_DEFAULTS, ColoMonitor } from '../../src/colo/monitor.js';
import type { CheckpointEvent, ColoExitEvent, ColoStatus, StallEvent } from '../../src/colo/monitor-events.js';
import { QmpClient, type QmpTimestamp } from '../../src/qmp/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeQmpServer, type FakeQmpConnection, type ReceivedCommand } from '../helpers/fake-qmp-server.js';
import { nextClientEvent, waitForStatus } from '../helpers/qmp-wait.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/qmp-transcripts/', import.meta.url));
const NO_ANOMALIES = Object.fromEntries(COLO_MONITOR_ANOMALIES.map((k) => [k, 0]));

/** QEMU's stamp for BASE + ms (BASE: an arbitrary wall-clock epoch ms). */
const BASE = 1_700_000_000_000;
function stamp(ms: number): QmpTimestamp {
  const us = Math.round((BASE + ms) * 1000);
  return { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 };
}
const epochMs = (ms: number) => BASE + ms;

interface Observed {
  pauses: CheckpointEvent[];
  stalls: StallEvent[];
  cleared: Array<{ stoppedForMs: number }>;
  exits: ColoExitEvent[];
  changes: Array<[ColoStatus, ColoStatus]>;
}

function observe(monitor: ColoMonitor): Observed {
  const o: Observed = { pauses: [], stalls: [], cleared: [], exits: [], changes: [] };
  monitor.on('checkpoint', (e) => o.pauses.push(e));
  monitor.on('stalled', (e) => o.stalls.push(e));
  monitor.on('stall-cleared', (e) => o.cleared.push(e));
  monitor.on('colo-exit', (e) => o.exits.push(e));
  monitor.on('change', (prev, next) => o.changes.push([prev, next]));
  return o;
}

/**
 * Until the client has nothing in flight except what the server holds, for a few turns in a row
 * (a reply can make the monitor send a follow-up poll). Real time, bounded.
 */
async function settle(client: QmpClient, heldCount: () => number): Promise<void> {
  let stable = 0;
  const until = Date.now() + 3000;
  while (stable < 4) {
    await new Promise((r) => setImmediate(r));
    stable = client.inFlightCount === heldCount() ? stable + 1 : 0;
    if (Date.now() > until) throw new Error(`not settled: ${client.inFlightCount} in flight, ${heldCount()} held`);
  }
}

// ---- part 1: a scripted QEMU ----

interface Rig {
  clock: FakeClock;
  server: FakeQmpServer;
  conn: FakeQmpConnection;
  client: QmpClient;
  monitor: ColoMonitor;
  seen: Observed;
  /** What the fake QEMU answers to query-colo-status. */
  qemu: { mode: string; hold: boolean; error?: string };
  held: ReceivedCommand[];
  /** query-colo-status commands received so far. */
  queries(): number;
  /** Send an event stamped BASE + atMs; resolves once the monitor has seen it and its polls settled. */
  event(name: string, atMs: number, data?: Record<string, unknown>): Promise<void>;
  /** Answer the held query-colo-status commands with the current mode. */
  release(): Promise<void>;
  settle(): Promise<void>;
}

async function rig(t: Test, opts: { mode?: string; pollPeriodMs?: number; stallAfterMs?: number; start?: boolean; hold?: boolean } = {}): Promise<Rig> {
  const dir = shortTempDir(t, 'cm-');
  const qemu: Rig['qemu'] = { mode: opts.mode ?? 'primary', hold: opts.hold ?? false };
  const held: ReceivedCommand[] = [];
  let queries = 0;
  const answer = (cmd: ReceivedCommand, conn: FakeQmpConnection) => {
    if (qemu.error) conn.error(cmd.id, 'GenericError', qemu.error);
    else conn.reply(cmd.id, { mode: qemu.mode, 'last-mode': 'none', reason: 'none' });
  };
  const server = await FakeQmpServer.start({
    dir,
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'query-colo-status') {
        conn.error(cmd.id, 'CommandNotFound', `The command ${cmd.execute} has not been found`);
        return;
      }
      queries++;
      if (qemu.hold) held.push(cmd);
      else answer(cmd, conn);
    },
  });
  t.teardown(() => server.close());
  // The client keeps real time (its command timeouts); the monitor runs on the fake clock.
  const client = new QmpClient({ address: server.address, reconnect: false, commandTimeoutMs: 5000 });
  t.teardown(() => client.close());
  await client.connect();
  const conn = await server.nextConnection();
  const clock = new FakeClock();
  const monitor = new ColoMonitor({ qmp: client, pollPeriodMs: opts.pollPeriodMs ?? 1000, stallAfterMs: opts.stallAfterMs ?? 5000, clock });
  t.teardown(() => monitor.stop());
  const seen = observe(monitor);
  const r: Rig = {
    clock,
    server,
    conn,
    client,
    monitor,
    seen,
    qemu,
    held,
    queries: () => queries,
    settle: () => settle(client, () => held.length),
    async event(name, atMs, data) {
      const ts = stamp(atMs);
      const got = nextClientEvent(client, 'event', 3000, (e) => e.event === name && e.timestamp.seconds === ts.seconds && e.timestamp.microseconds === ts.microseconds);
      conn.event(name, data, ts);
      await got;
      await r.settle();
    },
    async release() {
      for (const cmd of held.splice(0)) answer(cmd, conn);
      await r.settle();
    },
  };
  if (opts.start !== false) {
    monitor.start();
    await r.settle();
  }
  return r;
}

t.test('options are checked', async (t) => {
  const qmp = new QmpClient({ address: 'unix:/nonexistent/qmp.sock' });
  t.throws(() => new ColoMonitor({ qmp, pollPeriodMs: 0 }), RangeError);
  t.throws(() => new ColoMonitor({ qmp, pollPeriodMs: 1000, stallAfterMs: -1 }), RangeError);
  t.throws(() => new ColoMonitor({ qmp, pollPeriodMs: Number.NaN }), RangeError);
  t.equal(COLO_MONITOR_DEFAULTS.stallAfterMs, 5000);
  t.equal(new ColoMonitor({ qmp, pollPeriodMs: 1000 }).stalled, false);
});

t.test('polls like ColoStatusPoller: now at start, then every pollPeriodMs, emitting change', async (t) => {
  const r = await rig(t, { mode: 'none' });
  t.equal(r.queries(), 1, 'one poll at start');
  t.same(r.monitor.status, { mode: 'none', lastMode: 'none', reason: 'none' });
  t.same(r.seen.changes, [[{ mode: 'unknown' }, { mode: 'none', lastMode: 'none', reason: 'none' }]]);
  r.clock.advance(999);
  await r.settle();
  t.equal(r.queries(), 1, 'not before the period');
  r.clock.advance(1);
  await r.settle();
  t.equal(r.queries(), 2, 'one more after the period');
  r.qemu.mode = 'primary';
  r.clock.advance(1000);
  await r.settle();
  t.equal(r.monitor.status.mode, 'primary');
  t.equal(r.seen.changes.length, 2);
  t.equal(r.seen.changes[1]?.[1].mode, 'primary');
  t.equal(r.monitor.phase, 'entering', 'none then primary: the migration into COLO is under way');
});

t.test('poll failures report mode unknown and never throw', async (t) => {
  const r = await rig(t, { mode: 'primary' });
  t.equal(r.monitor.status.mode, 'primary');
  r.qemu.error = 'The command query-colo-status has not been found';
  t.same(await r.monitor.poll(), { mode: 'unknown' }, 'a QMP error: unknown');
  t.same(r.seen.changes.at(-1), [{ mode: 'primary', lastMode: 'none', reason: 'none' }, { mode: 'unknown' }]);
  t.equal(r.monitor.phase, 'inside', 'an unknown answer does not move the phase');
  r.qemu.error = undefined;
  r.qemu.mode = 'tertiary';
  t.match(await r.monitor.poll(), { mode: 'unknown' }, 'a mode we do not know: unknown');
  r.qemu.mode = 'primary';
  t.equal((await r.monitor.poll()).mode, 'primary');
  const lost = waitForStatus(r.client, 'disconnected');
  r.conn.destroy();
  await lost;
  await r.settle();
  t.equal(r.monitor.status.mode, 'unknown', 'QMP gone: unknown without being asked');
  t.equal(r.monitor.phase, 'unknown', 'events may be missed from here');
  t.same(await r.monitor.poll(), { mode: 'unknown' });
  await r.client.close();
  t.same(await r.monitor.poll(), { mode: 'unknown' }, 'closed client: still no throw');
});

t.test('poll() while a poll is in flight runs one more after it, shared by concurrent callers', async (t) => {
  const r = await rig(t, { mode: 'none', hold: true });
  t.equal(r.queries(), 1);
  const a = r.monitor.poll();
  const b = r.monitor.poll();
  await r.settle();
  t.equal(r.queries(), 1, 'the follow-up waits for the poll in flight');
  r.qemu.mode = 'secondary';
  await r.release();
  await r.release();
  t.equal(r.queries(), 2, 'one follow-up for both callers');
  t.equal((await a).mode, 'secondary');
  t.equal((await b).mode, 'secondary');
  t.equal(r.clock.pendingCount, 1, 'a single poll timer');
});

t.test('the colo-start pause (STOP at migration completion, RESUME at COLO start) is not a checkpoint', async (t) => {
  const r = await rig(t, { mode: 'none' });
  t.equal(r.monitor.phase, 'outside');
  await r.event('STOP', 0);
  t.notOk(r.monitor.inProgress, 'a STOP outside COLO is not a checkpoint');
  r.qemu.mode = 'primary';
  r.clock.advance(1000);
  await r.settle();
  t.equal(r.monitor.phase, 'entering');
  await r.event('RESUME', 68.25);
  t.same(r.seen.pauses, [{ kind: 'colo-start', pauseMs: 68.25, stopAt: epochMs(0), resumeAt: epochMs(68.25) }]);
  t.equal(r.monitor.coloStarts, 1);
  t.equal(r.monitor.checkpoints, 0);
  t.equal(r.monitor.lastCheckpointAt, undefined);
  t.equal(r.monitor.phase, 'inside');
  // The first real checkpoint afterwards is one.
  await r.event('STOP', 20_000);
  t.ok(r.monitor.inProgress);
  await r.event('RESUME', 20_050);
  t.equal(r.monitor.checkpoints, 1);
  t.equal(r.seen.pauses[1]?.kind, 'checkpoint');
  t.same(r.monitor.anomalies, NO_ANOMALIES);
});

t.test('colo-start decided by the poll sent after the RESUME when the RESUME comes first', async (t) => {
  const r = await rig(t, { mode: 'none' });
  await r.event('STOP', 0);
  r.qemu.mode = 'primary';
  const before = r.queries();
  await r.event('RESUME', 40);
  t.equal(r.queries(), before + 1, 'the RESUME triggered a poll at once');
  t.same(r.seen.pauses, [{ kind: 'colo-start', pauseMs: 40, stopAt: epochMs(0), resumeAt: epochMs(40) }]);
  t.equal(r.monitor.phase, 'inside');
});

t.test('a RESUME alone at COLO start (secondary, or a primary started with -S): colo-start with pause 0', async (t) => {
  const r = await rig(t, { mode: 'none' });
  r.qemu.mode = 'secondary';
  await r.event('RESUME', 5);
  t.same(r.seen.pauses, [{ kind: 'colo-start', pauseMs: 0, stopAt: epochMs(5), resumeAt: epochMs(5) }]);
  t.equal(r.monitor.checkpoints, 0);
  t.same(r.monitor.anomalies, NO_ANOMALIES, 'a lone RESUME outside COLO is normal');
});

t.test('pauses outside COLO (cont of a -S VM, an operator stop/cont) are nothing', async (t) => {
  const r = await rig(t, { mode: 'none' });
  await r.event('RESUME', 0);
  await r.event('STOP', 100);
  r.clock.advance(60_000);
  await r.settle();
  t.notOk(r.monitor.stalled, 'no stall outside COLO');
  await r.event('RESUME', 60_100);
  t.same(r.seen.pauses, []);
  t.same(r.seen.stalls, []);
  t.same(r.monitor.anomalies, NO_ANOMALIES);
  t.equal(r.monitor.phase, 'outside');
});

t.test('a STOP before the RESUME is classified means that RESUME was not the colo-start', async (t) => {
  const r = await rig(t, { mode: 'none' });
  r.qemu.hold = true;
  await r.event('RESUME', 0); // `cont`; its poll is held
  await r.event('STOP', 10); // migration completion
  r.qemu.hold = false;
  r.qemu.mode = 'primary';
  await r.release();
  t.same(r.seen.pauses, [], 'the cont RESUME is dropped');
  await r.event('RESUME', 70);
  t.same(r.seen.pauses, [{ kind: 'colo-start', pauseMs: 60, stopAt: epochMs(10), resumeAt: epochMs(70) }]);
});

t.test('attached to a QEMU already in COLO: the next pair is a checkpoint', async (t) => {
  const r = await rig(t, { mode: 'secondary' });
  t.equal(r.monitor.phase, 'inside');
  await r.event('STOP', 0);
  await r.event('RESUME', 31.5);
  t.same(r.seen.pauses, [{ kind: 'checkpoint', pauseMs: 31.5, stopAt: epochMs(0), resumeAt: epochMs(31.5) }]);
});

t.test('attached between the COLO mode and the colo-start RESUME (QEMU 11.1): the lone RESUME is the colo-start', async (t) => {
  // Measured on 11.1.3: the secondary answers mode secondary (runstate still inmigrate) ~8 ms
  // before its colo-start RESUME, the primary answers primary (finish-migrate) ~40 ms before its own.
  t.test('secondary', async (t) => {
    const r = await rig(t, { mode: 'secondary' });
    t.equal(r.monitor.phase, 'inside');
    await r.event('RESUME', 7);
    t.same(r.seen.pauses, [{ kind: 'colo-start', pauseMs: 0, stopAt: epochMs(7), resumeAt: epochMs(7) }]);
    t.equal(r.monitor.coloStarts, 1);
    t.same(r.monitor.anomalies, NO_ANOMALIES);
    await r.event('STOP', 1000);
    await r.event('RESUME', 1050);
    t.same(r.seen.pauses.map((p) => p.kind), ['colo-start', 'checkpoint'], 'then checkpoints');
    await r.event('RESUME', 1100);
    t.equal(r.monitor.coloStarts, 1, 'only the first lone RESUME');
    t.equal(r.monitor.anomalies['resume-without-stop'], 1);
  });
  t.test('a STOP first: the usual attach to a QEMU already in COLO', async (t) => {
    const r = await rig(t, { mode: 'primary' });
    await r.event('STOP', 0);
    await r.event('RESUME', 40);
    await r.event('RESUME', 80);
    t.same(r.seen.pauses.map((p) => p.kind), ['checkpoint']);
    t.equal(r.monitor.coloStarts, 0);
    t.equal(r.monitor.anomalies['resume-without-stop'], 1);
  });
});

t.test('a pause seen before any poll answered, then COLO: unclassified, not counted', async (t) => {
  const r = await rig(t, { mode: 'primary', hold: true });
  t.equal(r.monitor.phase, 'unknown');
  await r.event('STOP', 0);
  await r.event('RESUME', 50);
  r.qemu.hold = false;
  await r.release();
  t.same(r.seen.pauses, []);
  t.equal(r.monitor.anomalies['unclassified-pause'], 1);
  t.equal(r.monitor.phase, 'inside');
  await r.event('STOP', 1000);
  await r.event('RESUME', 1010);
  t.equal(r.monitor.checkpoints, 1, 'later pairs are checkpoints');
});

t.test('many checkpoints: counted, pause from QEMU stamps, last checkpoint time', async (t) => {
  const r = await rig(t, { mode: 'primary' });
  let at = 0;
  let total = 0;
  for (let i = 0; i < 60; i++) {
    const pause = 10 + (i % 7) * 3.125;
    await r.event('STOP', at);
    await r.event('RESUME', at + pause);
    total += pause;
    at += 200;
  }
  t.equal(r.monitor.checkpoints, 60);
  t.equal(r.seen.pauses.length, 60);
  t.ok(r.seen.pauses.every((p) => p.kind === 'checkpoint'));
  t.equal(r.seen.pauses.reduce((s, p) => s + p.pauseMs, 0), total, 'pauses exact to the microsecond');
  const last = r.seen.pauses.at(-1);
  t.equal(r.monitor.lastCheckpointAt, last?.resumeAt);
  t.equal(r.monitor.lastPauseMs, last?.pauseMs);
  t.equal(r.monitor.coloStarts, 0);
  t.notOk(r.monitor.inProgress);
  t.same(r.monitor.anomalies, NO_ANOMALIES);
});

t.test('the pause is QEMU time, not our arrival time', async (t) => {
  const r = await rig(t, { mode: 'primary', stallAfterMs: 60_000 });
  await r.event('STOP', 0);
  r.clock.advance(3000); // the RESUME reaches us 3 s later (a busy agent, a slow socket)
  await r.event('RESUME', 42.5);
  t.equal(r.seen.pauses[0]?.pauseMs, 42.5);
});

t.test('a checkpoint stopped for stallAfterMs is stalled: exactly then, once, cleared by the late RESUME', async (t) => {
  const r = await rig(t, { mode: 'primary', stallAfterMs: 5000 });
  await r.event('STOP', 0);
  t.ok(r.monitor.inProgress);
  r.clock.advance(4999);
  await r.settle();
  t.notOk(r.monitor.stalled, 'not before stallAfterMs');
  t.same(r.seen.stalls, []);
  r.clock.advance(1);
  t.ok(r.monitor.stalled, 'at stallAfterMs');
  t.same(r.seen.stalls, [{ stopAt: epochMs(0), stoppedForMs: 5000 }]);
  t.equal(r.monitor.stalls, 1);
  await r.settle();
  r.clock.advance(20_000);
  await r.settle();
  t.equal(r.seen.stalls.length, 1, 'emitted once');
  t.ok(r.monitor.inProgress);
  await r.event('RESUME', 25_010);
  t.same(r.seen.cleared, [{ stoppedForMs: 25_000 }]);
  t.notOk(r.monitor.stalled);
  t.equal(r.monitor.stalls, 1, 'the count stays');
  t.same(r.seen.pauses, [{ kind: 'checkpoint', pauseMs: 25_010, stopAt: epochMs(0), resumeAt: epochMs(25_010) }], 'it did complete: counted');
  await r.event('STOP', 30_000);
  r.clock.advance(5000);
  t.equal(r.monitor.stalls, 2, 'a new stall is a new count');
});

t.test('a stall ends when COLO ends: COLO_EXIT, a poll answering none, the QMP connection lost', async (t) => {
  t.test('COLO_EXIT', async (t) => {
    const r = await rig(t, { mode: 'primary', stallAfterMs: 1000 });
    await r.event('STOP', 0);
    r.clock.advance(1500);
    t.ok(r.monitor.stalled);
    await r.event('COLO_EXIT', 1600, { mode: 'primary', reason: 'error' });
    t.same(r.seen.cleared, [{ stoppedForMs: 1500 }]);
    t.notOk(r.monitor.stalled);
    t.notOk(r.monitor.inProgress);
  });
  t.test('mode none', async (t) => {
    const r = await rig(t, { mode: 'primary', stallAfterMs: 1000 });
    await r.event('STOP', 0);
    r.clock.advance(1000);
    t.ok(r.monitor.stalled);
    r.qemu.mode = 'none';
    await r.monitor.poll();
    t.equal(r.seen.cleared.length, 1);
    t.notOk(r.monitor.stalled);
    await r.event('RESUME', 2000);
    t.same(r.seen.pauses, [], 'the RESUME after COLO ended is no checkpoint');
    t.same(r.monitor.anomalies, NO_ANOMALIES);
  });
  t.test('QMP lost', async (t) => {
    const r = await rig(t, { mode: 'primary', stallAfterMs: 1000 });
    await r.event('STOP', 0);
    r.clock.advance(1200);
    t.ok(r.monitor.stalled);
    const lost = waitForStatus(r.client, 'disconnected');
    r.conn.destroy();
    await lost;
    await r.settle();
    t.same(r.seen.cleared, [{ stoppedForMs: 1200 }]);
    t.notOk(r.monitor.stalled);
    t.equal(r.monitor.status.mode, 'unknown');
    t.equal(r.clock.pendingCount, 1, 'only the poll timer left (no stall timer)');
  });
});

t.test('no stall timer outside COLO or while entering it', async (t) => {
  const r = await rig(t, { mode: 'none', stallAfterMs: 1000 });
  await r.event('STOP', 0);
  r.qemu.mode = 'primary';
  await r.monitor.poll();
  t.equal(r.monitor.phase, 'entering');
  r.clock.advance(10_000); // the secondary loading a large VM's RAM
  await r.settle();
  t.notOk(r.monitor.stalled);
  t.same(r.seen.stalls, []);
});

t.test('duplicate events (same event, same timestamp) are ignored and counted', async (t) => {
  const r = await rig(t, { mode: 'primary' });
  await r.event('STOP', 0);
  await r.event('STOP', 0);
  await r.event('RESUME', 30);
  await r.event('RESUME', 30);
  t.same(r.seen.pauses.map((p) => p.pauseMs), [30]);
  t.equal(r.monitor.checkpoints, 1);
  t.equal(r.monitor.anomalies.duplicate, 2);
  t.equal(r.monitor.anomalies['resume-without-stop'], 0, 'the duplicate RESUME is not a RESUME without STOP');
  await r.event('COLO_EXIT', 40, { mode: 'primary', reason: 'request' });
  await r.event('COLO_EXIT', 40, { mode: 'primary', reason: 'request' });
  t.equal(r.seen.exits.length, 1, 'one colo-exit');
  t.equal(r.monitor.anomalies.duplicate, 3);
});

t.test('out-of-order events give no bogus pause', async (t) => {
  t.test('RESUME with no STOP', async (t) => {
    const r = await rig(t, { mode: 'primary' });
    await r.event('STOP', 0);
    await r.event('RESUME', 50);
    await r.event('RESUME', 100);
    t.same(r.seen.pauses.map((p) => p.kind), ['checkpoint']);
    t.equal(r.monitor.anomalies['resume-without-stop'], 1);
  });
  t.test('STOP while stopped: the newer STOP starts the pause', async (t) => {
    const r = await rig(t, { mode: 'primary', stallAfterMs: 1000 });
    await r.event('STOP', 0);
    r.clock.advance(1000);
    t.ok(r.monitor.stalled);
    await r.event('STOP', 5000);
    t.equal(r.monitor.anomalies['stop-while-stopped'], 1);
    t.equal(r.seen.cleared.length, 1, 'the VM ran in between: the stall is over');
    t.notOk(r.monitor.stalled);
    r.clock.advance(999);
    t.notOk(r.monitor.stalled, 'a fresh stall timer from the new STOP');
    await r.event('RESUME', 5020);
    t.same(r.seen.pauses.map((p) => [p.kind, p.pauseMs]), [['checkpoint', 20]]);
  });
  t.test('RESUME stamped before its STOP', async (t) => {
    const r = await rig(t, { mode: 'primary', stallAfterMs: 1000 });
    await r.event('STOP', 100);
    await r.event('RESUME', 90);
    t.same(r.seen.pauses, []);
    t.equal(r.monitor.anomalies['resume-before-stop'], 1);
    t.notOk(r.monitor.inProgress, 'the VM runs');
    r.clock.advance(5000);
    t.notOk(r.monitor.stalled, 'and the stall timer is gone');
    await r.event('STOP', 200);
    await r.event('RESUME', 210);
    t.equal(r.monitor.checkpoints, 1, 'normal pairs afterwards still count');
  });
  t.test('anomalies is a copy', async (t) => {
    const r = await rig(t, { mode: 'primary' });
    const a = r.monitor.anomalies as Record<string, number>;
    a.duplicate = 99;
    t.equal(r.monitor.anomalies.duplicate, 0);
  });
});

t.test('COLO_EXIT: colo-exit event, an immediate poll, the failover pause is no checkpoint', async (t) => {
  const r = await rig(t, { mode: 'secondary' });
  await r.event('STOP', 0);
  const before = r.queries();
  await r.event('COLO_EXIT', 0.2, { mode: 'secondary', reason: 'error' });
  t.same(r.seen.exits, [{ mode: 'secondary', reason: 'error', at: epochMs(0.2) }]);
  t.equal(r.queries(), before + 1, 'polled at once, without the clock moving');
  t.equal(r.monitor.phase, 'exited');
  t.notOk(r.monitor.inProgress);
  // Observed on 7.2: after COLO_EXIT reason error the secondary keeps reporting mode secondary.
  t.equal(r.monitor.status.mode, 'secondary');
  await r.event('RESUME', 1);
  // x-colo-lost-heartbeat: its own STOP/RESUME, then mode none.
  await r.event('STOP', 500);
  r.qemu.mode = 'none';
  await r.event('RESUME', 530);
  t.same(r.seen.pauses, [], 'no pause counted');
  t.same(r.monitor.anomalies, NO_ANOMALIES);
  t.equal(r.monitor.phase, 'outside', 'the RESUME made it poll: mode none');
  await r.event('COLO_EXIT', 600, {});
  t.same(r.seen.exits[1], { mode: 'unknown', reason: 'unknown', at: epochMs(600) }, 'missing fields are reported as unknown');
});

t.test('a listener that throws does not break the monitor', async (t) => {
  const r = await rig(t, { mode: 'primary', stallAfterMs: 1000 });
  r.monitor.on('checkpoint', () => {
    throw new Error('listener bug');
  });
  r.monitor.on('stalled', () => {
    throw new Error('listener bug');
  });
  await r.event('STOP', 0);
  r.clock.advance(1000);
  t.ok(r.monitor.stalled);
  await r.event('RESUME', 10);
  await r.event('STOP', 100);
  await r.event('RESUME', 110);
  t.equal(r.monitor.checkpoints, 2);
});

t.test('stop() clears every timer and listener it added; start() resumes', async (t) => {
  const r = await rig(t, { mode: 'primary', start: false });
  const listeners = () => [r.client.listenerCount('event'), r.client.listenerCount('status')];
  const base = listeners();
  r.monitor.start();
  r.monitor.start();
  await r.settle();
  t.equal(r.queries(), 1, 'start() is idempotent');
  t.same(listeners(), [base[0]! + 1, base[1]! + 1]);
  await r.event('STOP', 0);
  t.equal(r.clock.pendingCount, 2, 'poll timer and stall timer');
  r.monitor.stop();
  t.equal(r.clock.pendingCount, 0);
  t.same(listeners(), base);
  await r.event('RESUME', 10);
  t.equal(r.monitor.checkpoints, 0, 'events are not listened to once stopped');

  r.qemu.hold = true;
  r.monitor.start();
  await r.settle();
  r.monitor.stop();
  await r.release();
  t.equal(r.clock.pendingCount, 0, 'a poll finishing after stop() arms no timer');
  t.same(listeners(), base);
});

// ---- part 2: replaying real transcripts ----

interface Entry {
  dir: 'in' | 'out';
  t: number;
  msg: Record<string, unknown>;
}

interface Meta {
  monitor?: { pollPeriodMs: number; stallAfterMs: number; commandTimeoutMs: number };
}

function loadTranscript(name: string): { entries: Entry[]; meta: Meta } {
  const entries = readFileSync(`${FIXTURES}${name}.jsonl`, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Entry);
  const metaFile = `${FIXTURES}${name}.meta.json`;
  const meta = existsSync(metaFile) ? (JSON.parse(readFileSync(metaFile, 'utf8')) as Meta) : {};
  return { entries, meta };
}

const isEvent = (e: Entry) => e.dir === 'in' && typeof e.msg.event === 'string';
const stampMs = (e: Entry) => {
  const ts = e.msg.timestamp as QmpTimestamp;
  return ts.seconds * 1000 + ts.microseconds / 1000;
};

/**
 * Replay a transcript into a monitor: QEMU's events at their recorded times (the monitor's
 * FakeClock follows the transcript's clock), and to the monitor's n-th query-colo-status the
 * recorded n-th reply, not before it was recorded; a query QEMU never answered is never answered
 * (the client's command timeout runs on the same FakeClock). Queries beyond the recorded ones get
 * the last reply, or none if QEMU had stopped answering.
 */
async function replay(t: Test, name: string) {
  const { entries, meta } = loadTranscript(name);
  const settings = meta.monitor ?? { pollPeriodMs: 200, stallAfterMs: 1000, commandTimeoutMs: 500 };
  const ids = entries.filter((e) => e.dir === 'out' && e.msg.execute === 'query-colo-status').map((e) => e.msg.id);
  const replies = ids.map((id) => entries.find((e) => e.dir === 'in' && e.msg.id === id && !('event' in e.msg)));
  const available = replies.map(() => false);
  const heldById = new Map<number, { cmd: ReceivedCommand; conn: FakeQmpConnection }>();
  /** Client ids of held commands the client still waits for (a timeout ends the wait). */
  const heldInFlight = new Set<unknown>();
  const hold = (n: number, cmd: ReceivedCommand, conn: FakeQmpConnection) => {
    heldById.set(n, { cmd, conn });
    heldInFlight.add(cmd.id);
  };
  let received = 0;
  const send = (n: number, cmd: ReceivedCommand, conn: FakeQmpConnection) => {
    const rec = replies[n] as Entry;
    conn.send({ ...rec.msg, id: cmd.id });
  };
  const greeting = entries[0]?.msg;
  const dir = shortTempDir(t, 'cr-');
  const server = await FakeQmpServer.start({
    dir,
    greeting,
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'query-colo-status') {
        conn.error(cmd.id, 'CommandNotFound', `not in the replay: ${cmd.execute}`);
        return;
      }
      const n = received++;
      const last = replies.length - 1;
      if (n < replies.length && available[n]) send(n, cmd, conn);
      else if (n < replies.length) hold(n, cmd, conn);
      else if (replies[last] && available[last]) send(last, cmd, conn);
      else hold(n, cmd, conn);
    },
  });
  t.teardown(() => server.close());
  const clock = new FakeClock();
  const client = new QmpClient({ address: server.address, reconnect: false, commandTimeoutMs: settings.commandTimeoutMs, clock });
  t.teardown(() => client.close());
  client.on('command', (rec) => heldInFlight.delete(rec.id));
  const monitor = new ColoMonitor({ qmp: client, pollPeriodMs: settings.pollPeriodMs, stallAfterMs: settings.stallAfterMs, clock });
  t.teardown(() => monitor.stop());
  const seen = observe(monitor);
  // As recorded: the monitor starts, then the client connects.
  monitor.start();
  await client.connect();
  const conn = await server.nextConnection();
  const idle = () => settle(client, () => heldInFlight.size);
  await idle();

  let now = entries[0]?.t ?? 0;
  const advanceTo = async (target: number) => {
    while (now < target) {
      const step = Math.min(target - now, settings.pollPeriodMs / 4);
      now += step;
      clock.advance(step);
      await idle();
    }
  };
  for (const e of entries) {
    if (e.dir !== 'in') continue;
    const n = ids.indexOf(e.msg.id);
    if (!isEvent(e) && n < 0) continue; // greeting, replies to other commands
    await advanceTo(e.t);
    if (isEvent(e)) {
      const got = nextClientEvent(client, 'event', 3000, (ev) => ev.event === e.msg.event && ev.timestampMs === stampMs(e));
      conn.send(e.msg);
      await got;
    } else {
      available[n] = true;
      const h = heldById.get(n);
      if (h) {
        heldById.delete(n);
        send(n, h.cmd, h.conn);
      }
    }
    await idle();
  }
  await advanceTo((entries.at(-1)?.t ?? now) + settings.pollPeriodMs);
  const events = entries.filter(isEvent);
  return { monitor, seen, events, settings };
}

t.test('replay: a pair coming up (QEMU 7.2.22)', async (t) => {
  t.test('primary running its guest: STOP at migration completion, RESUME at COLO start', async (t) => {
    const { monitor, seen, events } = await replay(t, 'monitor-colo-start-primary-qemu-7.2.22');
    const stop = events.filter((e) => e.msg.event === 'STOP').at(-1) as Entry;
    const resume = events.filter((e) => e.msg.event === 'RESUME').at(-1) as Entry;
    t.same(events.map((e) => e.msg.event), ['RESUME', 'STOP', 'RESUME'], 'the recording: cont, then the colo-start pair');
    t.equal(seen.pauses.length, 1);
    t.match(seen.pauses[0], { kind: 'colo-start', stopAt: stampMs(stop), resumeAt: stampMs(resume) });
    const ts = (e: Entry) => e.msg.timestamp as QmpTimestamp;
    const exact = (ts(resume).seconds - ts(stop).seconds) * 1000 + (ts(resume).microseconds - ts(stop).microseconds) / 1000;
    t.equal(seen.pauses[0]?.pauseMs, exact, `pause ${exact} ms from QEMU's stamps`);
    t.equal(monitor.checkpoints, 0);
    t.equal(monitor.status.mode, 'primary');
    t.equal(monitor.phase, 'inside');
    t.notOk(monitor.stalled);
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
  t.test('secondary: a RESUME alone', async (t) => {
    const { monitor, seen, events } = await replay(t, 'monitor-colo-start-secondary-qemu-7.2.22');
    t.same(events.map((e) => e.msg.event), ['RESUME']);
    t.same(seen.pauses, [{ kind: 'colo-start', pauseMs: 0, stopAt: stampMs(events[0] as Entry), resumeAt: stampMs(events[0] as Entry) }]);
    t.equal(monitor.checkpoints, 0);
    t.equal(monitor.status.mode, 'secondary');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
});

t.test('replay: the first checkpoint with x-checkpoint-delay 1000 (QEMU 7.2.22 under TCG)', async (t) => {
  t.test('primary: STOP, no RESUME, QMP silent: stalled', async (t) => {
    const { monitor, seen, events, settings } = await replay(t, 'monitor-first-checkpoint-primary-qemu-7.2.22');
    t.same(events.map((e) => e.msg.event), ['RESUME', 'STOP'], 'colo-start RESUME (-S primary), then the STOP that never ends');
    const stop = events[1] as Entry;
    t.same(seen.pauses.map((p) => p.kind), ['colo-start']);
    t.equal(monitor.checkpoints, 0, 'no checkpoint completed');
    t.ok(monitor.stalled, 'stalled');
    t.equal(seen.stalls.length, 1, 'emitted once');
    t.same(seen.stalls[0], { stopAt: stampMs(stop), stoppedForMs: settings.stallAfterMs });
    t.ok(monitor.inProgress);
    t.same(seen.cleared, []);
    t.equal(monitor.status.mode, 'unknown', 'its query-colo-status polls time out');
    t.equal(monitor.phase, 'inside');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
  t.test("secondary: the same checkpoint completes on its side, then COLO_EXIT when the primary is killed", async (t) => {
    const { monitor, seen, events } = await replay(t, 'monitor-first-checkpoint-secondary-qemu-7.2.22');
    t.same(events.map((e) => e.msg.event), ['RESUME', 'STOP', 'RESUME', 'COLO_EXIT']);
    const [, stop, resume, exit] = events as [Entry, Entry, Entry, Entry];
    t.same(seen.pauses.map((p) => p.kind), ['colo-start', 'checkpoint']);
    t.match(seen.pauses[1], { stopAt: stampMs(stop), resumeAt: stampMs(resume) });
    t.ok((seen.pauses[1]?.pauseMs ?? 0) > 0, `a completed checkpoint: ${seen.pauses[1]?.pauseMs} ms`);
    t.equal(monitor.checkpoints, 1);
    t.equal(monitor.lastCheckpointAt, stampMs(resume));
    t.equal(monitor.stalls, 0);
    t.same(seen.exits, [{ mode: 'secondary', reason: 'error', at: stampMs(exit) }]);
    t.equal(monitor.phase, 'exited');
    t.equal(monitor.status.mode, 'secondary', 'still reports mode secondary after COLO_EXIT (7.2)');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
});

t.test('replay: checkpoints that complete, then the deadlock at a later one (QEMU 7.2.22 under TCG)', async (t) => {
  t.test('primary: a completed checkpoint, then stalled', async (t) => {
    const { monitor, seen, events, settings } = await replay(t, 'monitor-checkpoints-then-stall-primary-qemu-7.2.22');
    t.same(events.map((e) => e.msg.event), ['RESUME', 'STOP', 'RESUME', 'STOP']);
    const [, stop1, resume1, stop2] = events as [Entry, Entry, Entry, Entry];
    t.same(seen.pauses.map((p) => p.kind), ['colo-start', 'checkpoint']);
    t.match(seen.pauses[1], { stopAt: stampMs(stop1), resumeAt: stampMs(resume1) });
    t.ok((seen.pauses[1]?.pauseMs ?? 0) > 0, `the primary's completed checkpoint: ${seen.pauses[1]?.pauseMs} ms`);
    t.equal(monitor.checkpoints, 1);
    t.equal(monitor.lastCheckpointAt, stampMs(resume1));
    t.same(seen.stalls, [{ stopAt: stampMs(stop2), stoppedForMs: settings.stallAfterMs }], 'the next one stalls, once');
    t.ok(monitor.stalled);
    t.ok(monitor.inProgress);
    t.equal(monitor.status.mode, 'unknown');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
  t.test('secondary: every checkpoint completes, then COLO_EXIT', async (t) => {
    const { monitor, seen, events } = await replay(t, 'monitor-checkpoints-then-stall-secondary-qemu-7.2.22');
    t.same(events.map((e) => e.msg.event), ['RESUME', 'STOP', 'RESUME', 'STOP', 'RESUME', 'COLO_EXIT']);
    t.same(seen.pauses.map((p) => p.kind), ['colo-start', 'checkpoint', 'checkpoint']);
    t.equal(monitor.checkpoints, 2);
    t.same(
      seen.pauses.slice(1).map((p) => [p.stopAt, p.resumeAt]),
      [
        [stampMs(events[1] as Entry), stampMs(events[2] as Entry)],
        [stampMs(events[3] as Entry), stampMs(events[4] as Entry)],
      ],
    );
    t.equal(monitor.stalls, 0);
    t.equal(seen.exits.length, 1);
    t.equal(monitor.phase, 'exited');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
});

t.test('replay: failover transcripts (colo-pair.test.ts): the failover pause is no checkpoint', async (t) => {
  for (const name of ['primary-failover', 'primary-failover-yank', 'secondary-failover', 'secondary-failover-yank']) {
    t.test(name, async (t) => {
      const { monitor, seen, events } = await replay(t, `${name}-qemu-7.2.22`);
      const exit = events.find((e) => e.msg.event === 'COLO_EXIT') as Entry;
      t.equal(seen.exits.length, 1, 'one colo-exit');
      t.match(seen.exits[0], { ...(exit.msg.data as object), at: stampMs(exit) });
      t.same(seen.pauses, [], 'no checkpoint, no colo-start');
      t.equal(monitor.stalls, 0);
      t.notOk(monitor.inProgress);
      t.same(monitor.anomalies, NO_ANOMALIES);
    });
  }
});

t.test('replay: QEMU 11.1.3, query-colo-status every 20 ms (test/colo/monitor-record.ts)', async (t) => {
  t.test('colo-start, primary running its guest: mode primary before the STOP/RESUME pair ends', async (t) => {
    const { monitor, seen, events } = await replay(t, 'monitor-colo-start-primary-qemu-11.1.3');
    t.same(events.map((e) => e.msg.event), ['RESUME', 'STOP', 'RESUME']);
    const [, stop, resume] = events as [Entry, Entry, Entry];
    t.same(seen.pauses.map((p) => p.kind), ['colo-start']);
    t.match(seen.pauses[0], { stopAt: stampMs(stop), resumeAt: stampMs(resume) });
    t.equal(monitor.coloStarts, 1);
    t.equal(monitor.checkpoints, 0);
    t.equal(monitor.phase, 'inside');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
  t.test('colo-start, secondary: a RESUME alone', async (t) => {
    const { monitor, seen, events } = await replay(t, 'monitor-colo-start-secondary-qemu-11.1.3');
    t.same(events.map((e) => e.msg.event), ['RESUME']);
    t.same(seen.pauses, [{ kind: 'colo-start', pauseMs: 0, stopAt: stampMs(events[0] as Entry), resumeAt: stampMs(events[0] as Entry) }]);
    t.equal(monitor.checkpoints, 0);
    t.equal(monitor.status.mode, 'secondary');
    t.same(monitor.anomalies, NO_ANOMALIES);
  });
  for (const role of ['primary', 'secondary'] as const) {
    t.test(`x-checkpoint-delay 1000, ${role}: checkpoints complete (no deadlock on 11.1), counted once each`, async (t) => {
      const { monitor, seen, events } = await replay(t, `monitor-first-checkpoint-${role}-qemu-11.1.3`);
      const names = events.map((e) => e.msg.event);
      t.same(names.filter((n) => n !== 'COLO_EXIT'), ['RESUME', 'STOP', 'RESUME', 'STOP', 'RESUME']);
      t.same(seen.pauses.map((p) => p.kind), ['colo-start', 'checkpoint', 'checkpoint']);
      t.same(
        seen.pauses.slice(1).map((p) => [p.stopAt, p.resumeAt]),
        [
          [stampMs(events[1] as Entry), stampMs(events[2] as Entry)],
          [stampMs(events[3] as Entry), stampMs(events[4] as Entry)],
        ],
      );
      t.equal(monitor.coloStarts, 1);
      t.equal(monitor.checkpoints, 2);
      t.equal(monitor.stalls, 0);
      if (role === 'secondary') {
        t.equal(names.at(-1), 'COLO_EXIT', 'the primary killed: COLO_EXIT');
        t.equal(monitor.phase, 'exited');
      }
      t.same(monitor.anomalies, NO_ANOMALIES);
    });
  }
});
