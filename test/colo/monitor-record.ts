/**
 * Records what a real COLO pair's QEMUs emit and answer around the migration into COLO, with
 * query-colo-status polled every RECORD_POLL_MS (20 ms) by a ColoMonitor, into
 * test/fixtures/qmp-transcripts/monitor-<scenario>-<role>-qemu-<version>.jsonl (+ .meta.json), the
 * format of monitor.real.test.ts's recordings; monitor.test.ts replays them. Not a test (no
 * assertions, not in tap's include): run it by hand, one QEMU at a time, e.g.
 *
 *   COLO_TEST_QEMU=/var/cache/colo-agent-test/qemu-11/bin/qemu-system-x86_64 npx tap test/colo/monitor-record.ts
 *
 * Scenarios: `colo-start` (x-checkpoint-delay 600000, the primary runs its guest) and
 * `first-checkpoint` (x-checkpoint-delay 1000, the primary started with -S as the harness
 * does; recorded until the secondary completed a few checkpoints, then the primary is killed and
 * the secondary's COLO_EXIT recorded). A primary that deadlocks (7.2 under TCG) is killed as well.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { ColoMonitor } from '../../src/colo/monitor.js';
import type { CheckpointEvent } from '../../src/colo/monitor-events.js';
import { QmpClient } from '../../src/qmp/index.js';
import { coloSupport } from '../helpers/colo-cmdline.js';
import { watchColoQemuSpawns, type SpawnedColoQemu } from '../helpers/colo-spawn-watch.js';
import { recordQmp, startColoPairOrSkip, type ColoPair, type ColoRole, type QmpRecorder } from '../helpers/colo-pair.js';
import { qemuAvailable } from '../helpers/qemu.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/qmp-transcripts/', import.meta.url));
const RECORD_POLL_MS = 20;
const COMMAND_TIMEOUT_MS = 500;
const STALL_AFTER_MS = 1000;

const avail = await qemuAvailable();
const support = avail.ok ? coloSupport(avail) : avail;
const skip = support.ok ? false : support.reason;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Watch {
  role: ColoRole;
  client: QmpClient;
  monitor: ColoMonitor;
  rec: QmpRecorder;
  pauses: CheckpointEvent[];
}

async function attach(t: Test, spawned: Promise<SpawnedColoQemu>, signal: AbortSignal, onReady?: (c: QmpClient) => Promise<void>): Promise<Watch> {
  const dir = shortTempDir(t, 'rec-');
  const found = await spawned;
  while (!existsSync(found.qmpPath)) {
    if (signal.aborted) throw new Error('gave up waiting for the QMP socket');
    await sleep(2);
  }
  const rec = await recordQmp(found.qmpPath, dir);
  const client = new QmpClient({ address: rec.address, commandTimeoutMs: COMMAND_TIMEOUT_MS, reconnect: { initialMs: 10, maxMs: 100 } });
  const monitor = new ColoMonitor({ qmp: client, pollPeriodMs: RECORD_POLL_MS, stallAfterMs: STALL_AFTER_MS });
  const w: Watch = { role: found.role, client, monitor, rec, pauses: [] };
  monitor.on('checkpoint', (e) => w.pauses.push(e));
  t.teardown(async () => {
    monitor.stop();
    await client.close();
    await rec.close();
  });
  monitor.start();
  client.connect().catch(() => undefined);
  await client.waitUntilReady(10_000);
  await onReady?.(client);
  return w;
}

async function watchedPair(t: Test, colo: { checkpointDelayMs?: number }, onPrimaryReady?: (c: QmpClient) => Promise<void>) {
  const ac = new AbortController();
  const spawned = watchColoQemuSpawns({ qmpSocket: 2, signal: ac.signal });
  const watches = Promise.all([attach(t, spawned.primary, ac.signal, onPrimaryReady), attach(t, spawned.secondary, ac.signal)]);
  watches.catch(() => undefined);
  let pair: ColoPair | undefined;
  try {
    pair = await startColoPairOrSkip(t, { colo });
  } finally {
    if (!pair) ac.abort();
  }
  if (!pair) return undefined;
  const [primary, secondary] = await watches;
  return { pair, primary, secondary };
}

function save(pair: ColoPair, w: Watch, scenario: string, extra: Record<string, unknown>): string {
  const v = pair.version;
  const name = `monitor-${scenario}-${w.role}-qemu-${v.major}.${v.minor}.${v.micro}`;
  w.rec.save(`${FIXTURES}${name}.jsonl`);
  const meta = {
    scenario,
    role: w.role,
    qemu: v,
    recordedBy: `test/colo/monitor-record.ts (colo-pair harness, -accel tcg, loopback; query-colo-status every ${RECORD_POLL_MS} ms)`,
    monitor: { pollPeriodMs: RECORD_POLL_MS, stallAfterMs: STALL_AFTER_MS, commandTimeoutMs: COMMAND_TIMEOUT_MS },
    ...extra,
    outcome: {
      coloStarts: w.monitor.coloStarts,
      checkpoints: w.monitor.checkpoints,
      stalls: w.monitor.stalls,
      pauses: w.pauses,
      anomalies: w.monitor.anomalies,
    },
    format: '{dir: out (client to QEMU) | in (QEMU to client), t: ms since the recorder started, msg: the QMP JSON line}',
  };
  writeFileSync(`${FIXTURES}${name}.meta.json`, `${JSON.stringify(meta, null, 2)}\n`);
  return name;
}

t.test('record: colo-start, x-checkpoint-delay 600000, primary running its guest', { skip }, async (t) => {
  const w = await watchedPair(t, {}, async (c) => {
    await c.execute('cont');
  });
  if (!w) return;
  await sleep(1500);
  for (const side of [w.primary, w.secondary]) t.comment(`saved ${save(w.pair, side, 'colo-start', { checkpointDelayMs: w.pair.colo.checkpointDelayMs, primaryGuestRunning: true })}`);
  t.pass('recorded');
});

t.test('record: first checkpoints, x-checkpoint-delay 1000', { skip }, async (t) => {
  const w = await watchedPair(t, { checkpointDelayMs: 1000 });
  if (!w) return;
  const until = Date.now() + 6000;
  // Until the secondary saw a STOP/RESUME pair after the first 1 s, or the primary stalled.
  while (Date.now() < until && w.secondary.rec.entries.filter((e) => (e.msg as { event?: string }).event === 'RESUME').length < 3 && !w.primary.monitor.stalled) await sleep(50);
  await sleep(300);
  const stalled = w.primary.monitor.stalled;
  const completed = w.primary.monitor.checkpoints;
  w.pair.primary.kill('SIGKILL');
  await w.pair.primary.qemu.exited;
  const exitUntil = Date.now() + 3000;
  while (Date.now() < exitUntil && !w.secondary.rec.entries.some((e) => (e.msg as { event?: string }).event === 'COLO_EXIT')) await sleep(20);
  await sleep(200);
  const extra = { checkpointDelayMs: 1000, primaryGuestRunning: false, primaryKilledAfterStall: stalled, primaryCompletedCheckpoints: completed };
  for (const side of [w.primary, w.secondary]) t.comment(`saved ${save(w.pair, side, 'first-checkpoint', extra)}`);
  t.pass('recorded');
});
