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
import t, { type Test } from 'tap';
import type { QmpClient } from '../../src/qmp/index.js';
import { coloSupport } from '../helpers/colo-cmdline.js';
import type { ColoPair } from '../helpers/colo-pair.js';
import { qemuAvailable } from '../helpers/qemu.js';
import { saveTranscript, watchedPair as watchPair, type Watch, type WatchSettings } from './monitor-watch.js';

const RECORD_POLL_MS = 20;
const COMMAND_TIMEOUT_MS = 500;
const STALL_AFTER_MS = 1000;

const avail = await qemuAvailable();
const support = avail.ok ? coloSupport(avail) : avail;
const skip = support.ok ? false : support.reason;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SETTINGS: WatchSettings = { pollPeriodMs: RECORD_POLL_MS, stallAfterMs: STALL_AFTER_MS, commandTimeoutMs: COMMAND_TIMEOUT_MS };
const RECORDED_BY = `test/colo/monitor-record.ts (colo-pair harness, -accel tcg, loopback; query-colo-status every ${RECORD_POLL_MS} ms)`;

const watchedPair = (t: Test, colo: { checkpointDelayMs?: number }, onPrimaryReady?: (c: QmpClient) => Promise<void>) => watchPair(t, SETTINGS, colo, onPrimaryReady);
const save = (pair: ColoPair, w: Watch, scenario: string, extra: Record<string, unknown>): string => saveTranscript(pair, w, SETTINGS, RECORDED_BY, scenario, extra);

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
