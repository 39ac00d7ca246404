/**
 * A real QEMU COLO pair on loopback for e2e tests: the launcher of src/qemu/colo-launch.ts (the
 * documented topology, primary on 127.0.0.1 and secondary on 127.0.0.2, every port picked free per
 * pair so tap can run pair tests in parallel) plus the tests' safety net.
 *
 * startColoPair() returns `{ ok: false, reason }` (never throws) when this QEMU cannot do COLO, so
 * tests skip with that reason (startColoPairOrSkip). Any other failure throws a ColoPairStartError
 * whose message carries the step and both QEMUs' stderr tails.
 *
 * Nothing outlives a test: pair.stop() (also registered on `t` teardown) SIGKILLs both QEMUs and
 * removes both temp dirs, a failed bring-up cleans up what it started, a process-wide net does
 * the same on exit or on SIGINT/SIGTERM/SIGHUP, and the reaper covers a SIGKILLed test process.
 *
 * Also here: the query helpers (src/qemu/colo-queries.ts, re-exported) and a QMP transcript
 * recorder (a unix socket tap) whose JSONL output a QMP simulator replays.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  killAllColoPairsNow,
  startColoPair as coreStartColoPair,
  type ColoPair,
  type ColoPairResult,
  type StartColoPairOptions as CoreStartColoPairOptions,
} from '../../src/qemu/colo-launch.js';
import { killAllQemusNow } from '../../src/qemu/qemu-process.js';
import { onProcessEnd } from './exit-hooks.js';
import { DEFAULT_QEMU_BINARY, REAP_WITH_TEST } from './qemu.js';
import type { Teardownable } from './short-temp-dir.js';

export {
  ColoPairStartError,
  pickColoPorts,
  type ColoPair,
  type ColoPairResult,
  type ColoPairTimings,
  type ColoRole,
  type ColoSide,
} from '../../src/qemu/colo-launch.js';
export * from '../../src/qemu/colo-queries.js';

export interface StartColoPairOptions extends Omit<CoreStartColoPairOptions, 'lifecycle'> {
  /** Stop the pair at this test's teardown. */
  t?: Teardownable;
}

/** Start the documented COLO pair (see src/qemu/colo-launch.ts); with `t`, it is stopped at teardown. */
export async function startColoPair(opts: StartColoPairOptions = {}): Promise<ColoPairResult> {
  onProcessEnd(killAllColoPairsNow);
  onProcessEnd(killAllQemusNow);
  const { t, ...rest } = opts;
  const r = await coreStartColoPair({ ...rest, binary: rest.binary ?? DEFAULT_QEMU_BINARY, lifecycle: REAP_WITH_TEST });
  if (r.ok) t?.teardown(() => r.pair.stop());
  return r;
}

/** The part of a tap Test the skip helper needs: teardown, and a skipped assertion carrying the reason. */
export interface SkippableTest extends Teardownable {
  pass(message: string, extra: { skip: string }): unknown;
}

/**
 * Start a pair, or mark the test skipped with the reason (a `# SKIP reason` line) when this QEMU
 * cannot do COLO. Returns undefined after skipping; stops the pair at t's teardown.
 */
export async function startColoPairOrSkip(t: SkippableTest, opts: Omit<StartColoPairOptions, 't'> = {}): Promise<ColoPair | undefined> {
  const r = await startColoPair({ ...opts, t });
  if (r.ok) return r.pair;
  t.pass('COLO pair', { skip: r.reason });
  return undefined;
}

// ---- QMP transcript recorder ----

/** One line of a transcript: `out` = client to QEMU, `in` = QEMU to client; t = ms since the recorder started. */
export interface QmpTranscriptEntry {
  dir: 'out' | 'in';
  t: number;
  msg: unknown;
}

export interface QmpRecorder {
  /** Connect a QmpClient here instead of to QEMU's socket. */
  readonly address: string;
  readonly entries: readonly QmpTranscriptEntry[];
  /** ms since the recorder started: the `t` an entry written now would get (for marking test actions). */
  elapsed(): number;
  /** Entries as JSONL (one object per line, trailing newline). */
  toJsonl(): string;
  /** Write the JSONL to `file`, creating its directory. */
  save(file: string): void;
  /** Stop listening and cut the proxied connection. */
  close(): Promise<void>;
}

let recorderSeq = 0;

/**
 * A transparent unix-socket tap in front of QEMU's QMP socket `upstreamPath`: bytes pass
 * unchanged, and every complete line each way is recorded with its time. One client at a time,
 * like QMP itself. The recorder listens in `dir` (keep it short: unix paths are limited to 107 bytes).
 */
export async function recordQmp(upstreamPath: string, dir: string): Promise<QmpRecorder> {
  const t0 = performance.now();
  const entries: QmpTranscriptEntry[] = [];
  const elapsed = () => Math.round((performance.now() - t0) * 1000) / 1000;
  const path = join(dir, `rec${++recorderSeq}.sock`);
  const sockets = new Set<net.Socket>();
  const record = (direction: 'out' | 'in') => {
    let buf = '';
    return (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          msg = line;
        }
        entries.push({ dir: direction, t: elapsed(), msg });
      }
    };
  };
  const server = net.createServer((client) => {
    if (sockets.size > 0) {
      client.destroy();
      return;
    }
    const upstream = net.createConnection({ path: upstreamPath });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => undefined);
    }
    const outRec = record('out');
    client.on('data', (d: Buffer) => {
      outRec(d);
      upstream.write(d);
    });
    const inRec = record('in');
    upstream.on('data', (d: Buffer) => {
      inRec(d);
      client.write(d);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  const toJsonl = () => entries.map((e) => JSON.stringify(e)).join('\n') + (entries.length ? '\n' : '');
  return {
    address: `unix:${path}`,
    entries,
    elapsed,
    toJsonl,
    save(file) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, toJsonl());
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
