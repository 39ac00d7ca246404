/**
 * Watching a real COLO pair's QEMUs with a ColoMonitor from before the migration into COLO, each
 * side through its first spare QMP socket (qmp2.sock) behind a recording tap, and saving those
 * sessions as transcripts for monitor.test.ts. Shared by monitor.real.test.ts (the test, which
 * records with COLO_RECORD_TRANSCRIPTS=1) and monitor-record.ts (the by-hand recorder).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { ColoMonitor } from '../../src/colo/monitor.js';
import type { CheckpointEvent, ColoExitEvent, StallEvent } from '../../src/colo/monitor-events.js';
import { QmpClient, type QmpEvent } from '../../src/qmp/index.js';
import { watchColoQemuSpawns, type SpawnedColoQemu } from '../helpers/colo-spawn-watch.js';
import { recordQmp, startColoPairOrSkip, type ColoPair, type ColoRole, type QmpRecorder } from '../helpers/colo-pair.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/qmp-transcripts/', import.meta.url));

/** The monitor's settings for a watch (also written into each transcript's meta). */
export interface WatchSettings {
  pollPeriodMs: number;
  stallAfterMs: number;
  commandTimeoutMs: number;
}

export interface Watch {
  role: ColoRole;
  pid: number;
  client: QmpClient;
  monitor: ColoMonitor;
  rec: QmpRecorder;
  pauses: CheckpointEvent[];
  stalls: StallEvent[];
  cleared: Array<{ stoppedForMs: number }>;
  exits: ColoExitEvent[];
  events: QmpEvent[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Once the pair's QEMU for a side is spawned (`spawned`), connect a monitored QmpClient to its first
 * spare QMP socket through a recording tap. `onReady` runs once the session is up.
 */
async function attachWhenSpawned(t: Test, s: WatchSettings, spawned: Promise<SpawnedColoQemu>, signal: AbortSignal, onReady?: (c: QmpClient) => Promise<void>): Promise<Watch> {
  const dir = shortTempDir(t, 'mon-');
  const found = await spawned;
  while (!existsSync(found.qmpPath)) {
    if (signal.aborted) throw new Error('gave up waiting for the QMP socket');
    await sleep(2);
  }
  const rec = await recordQmp(found.qmpPath, dir);
  // Redial quickly: the socket file can exist a moment before QEMU listens on it.
  const client = new QmpClient({ address: rec.address, commandTimeoutMs: s.commandTimeoutMs, reconnect: { initialMs: 10, maxMs: 100 } });
  const monitor = new ColoMonitor({ qmp: client, pollPeriodMs: s.pollPeriodMs, stallAfterMs: s.stallAfterMs });
  const w: Watch = { role: found.role, pid: found.pid, client, monitor, rec, pauses: [], stalls: [], cleared: [], exits: [], events: [] };
  monitor.on('checkpoint', (e) => w.pauses.push(e));
  monitor.on('stalled', (e) => w.stalls.push(e));
  monitor.on('stall-cleared', (e) => w.cleared.push(e));
  monitor.on('colo-exit', (e) => w.exits.push(e));
  client.on('event', (e) => w.events.push(e));
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

/** Start a pair while watching both sides from before the migration; undefined when skipped. */
export async function watchedPair(
  t: Test,
  s: WatchSettings,
  colo: { checkpointDelayMs?: number },
  onPrimaryReady?: (c: QmpClient) => Promise<void>,
): Promise<{ pair: ColoPair; primary: Watch; secondary: Watch } | undefined> {
  const ac = new AbortController();
  const spawned = watchColoQemuSpawns({ qmpSocket: 2, signal: ac.signal });
  const watches = Promise.all([attachWhenSpawned(t, s, spawned.primary, ac.signal, onPrimaryReady), attachWhenSpawned(t, s, spawned.secondary, ac.signal)]);
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

/**
 * Writes `w`'s session as test/fixtures/qmp-transcripts/monitor-<scenario>-<role>-qemu-<version>.jsonl
 * and its .meta.json (settings, `extra`, what the monitor concluded); returns the name.
 */
export function saveTranscript(pair: ColoPair, w: Watch, s: WatchSettings, recordedBy: string, scenario: string, extra: Record<string, unknown>): string {
  const v = pair.version;
  const name = `monitor-${scenario}-${w.role}-qemu-${v.major}.${v.minor}.${v.micro}`;
  w.rec.save(`${FIXTURES}${name}.jsonl`);
  const meta = {
    scenario,
    role: w.role,
    qemu: v,
    recordedBy,
    monitor: s,
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
