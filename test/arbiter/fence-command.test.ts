import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log.js';
import { FENCE_OUTPUT_LIMIT, fenceWithPolicy, runFenceCommand, type FenceResult } from '../../src/arbiter/fence-command.js';
import { FenceFailedError, FenceOptionsError } from '../../src/arbiter/fence-errors.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** Dead for our purposes: no such process, or a zombie (this machine's init does not reap orphans). */
function dead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

async function waitDead(pids: number[], ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pids.every(dead)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return pids.every(dead);
}

function pidsIn(file: string): number[] {
  return readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
}

/** Kills leftovers should a test fail half-way. */
function killAtTeardown(t: Test, file: string): void {
  t.teardown(() => {
    try {
      // Each pid, and the group of each (the shell's pid is its group's id).
      for (const p of pidsIn(file).flatMap((p) => [p, -p])) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    } catch {
      // no pid file
    }
  });
}

t.test('exit 0 is fenced', async (t) => {
  const r = await runFenceCommand({ command: 'echo powered off; exit 0', timeoutMs: 5000, env: {} });
  t.match(r, { ok: true, exitCode: 0, timedOut: false, output: 'powered off\n', outputTruncated: false });
  t.equal(r.signal, undefined);
  t.ok(r.durationMs >= 0);
});

t.test('a non-zero exit is not fenced, and the output of both streams is kept', async (t) => {
  const r = await runFenceCommand({ command: 'echo trying; echo "ipmi: no route" >&2; exit 3', timeoutMs: 5000, env: {} });
  t.match(r, { ok: false, exitCode: 3, timedOut: false });
  t.equal(r.output, 'trying\nipmi: no route\n');
});

t.test('the command sees the given variables and the agent environment', async (t) => {
  const r = await runFenceCommand({
    command: 'printf "%s|%s|%s|%s|" "$COLO_AGENT_PEER_NAME" "$COLO_AGENT_PEER_HOST" "$COLO_AGENT_EPOCH" "$COLO_AGENT_ACTION"; command -v sleep >/dev/null && echo path-ok',
    timeoutMs: 5000,
    env: { COLO_AGENT_PEER_NAME: 'node-b', COLO_AGENT_PEER_HOST: '10.0.0.2', COLO_AGENT_EPOCH: '7', COLO_AGENT_ACTION: 'takeover' },
  });
  t.equal(r.ok, true);
  t.equal(r.output, 'node-b|10.0.0.2|7|takeover|path-ok\n');
});

t.test('output keeps only its last 4 KiB', async (t) => {
  const r = await runFenceCommand({ command: "head -c 10000 /dev/zero | tr '\\0' a; echo; echo END", timeoutMs: 5000, env: {} });
  t.equal(r.ok, true);
  t.equal(Buffer.byteLength(r.output), FENCE_OUTPUT_LIMIT);
  t.equal(r.outputTruncated, true);
  t.ok(r.output.endsWith('a\nEND\n'), 'the end survives');
  t.match(r.output, /^a+\nEND\n$/);
});

t.test('a timeout kills the whole process group, grandchildren included', async (t) => {
  const dir = t.testdir();
  const pids = join(dir, 'pids');
  killAtTeardown(t, pids);
  const r = await runFenceCommand({
    command: `sleep 30 & echo $! >> ${pids}; sh -c 'sleep 30 & echo $! >> ${pids}; wait' & sleep 0.1; echo $$ >> ${pids}; wait`,
    timeoutMs: 500,
    killGraceMs: 500,
    env: {},
  });
  t.match(r, { ok: false, timedOut: true, signal: 'SIGTERM' });
  const started = pidsIn(pids);
  t.equal(started.length, 3, 'shell, its child and a grandchild wrote their pids');
  t.ok(await waitDead(started), 'none of them lingers');
});

t.test('a script that ignores SIGTERM gets SIGKILL after the grace', async (t) => {
  const dir = t.testdir();
  const pids = join(dir, 'pids');
  killAtTeardown(t, pids);
  // SIG_IGN is inherited: the background sleep ignores SIGTERM too.
  const r = await runFenceCommand({
    command: `trap '' TERM; sleep 30 & echo $! >> ${pids}; echo $$ >> ${pids}; wait`,
    timeoutMs: 300,
    killGraceMs: 200,
    env: {},
  });
  t.match(r, { ok: false, timedOut: true, signal: 'SIGKILL' });
  t.ok(await waitDead(pidsIn(pids)), 'shell and child are gone');
});

t.test('background jobs left by a finished command do not linger', async (t) => {
  const dir = t.testdir();
  const pids = join(dir, 'pids');
  killAtTeardown(t, pids);
  // The leftover also holds our stdout pipe: the result must not wait for it.
  const r = await runFenceCommand({ command: `sleep 30 & echo $! >> ${pids}; echo done`, timeoutMs: 10_000, env: {} });
  t.match(r, { ok: true, exitCode: 0, timedOut: false, output: 'done\n' });
  t.ok(await waitDead(pidsIn(pids)), 'the background sleep was killed');
});

t.test('options that can never work are rejected with a code', async (t) => {
  await t.rejects(runFenceCommand({ command: '  ', timeoutMs: 1000, env: {} }), { code: 'FENCE_BAD_OPTIONS' });
  await t.rejects(runFenceCommand({ command: 'true', timeoutMs: 0, env: {} }), FenceOptionsError);
  await t.rejects(runFenceCommand({ command: 'true', timeoutMs: 1000, env: { 'BAD-NAME': 'x' } }), { code: 'FENCE_BAD_OPTIONS' });
  const err = await runFenceCommand({ command: 'true', timeoutMs: 1000, env: { SECRET: 'hunter2\0' } }).catch((e: unknown) => e);
  t.type(err, FenceOptionsError);
  t.notMatch((err as Error).message, /hunter2/, 'the value is not in the message');
});

t.test('wait policy: retries until the command succeeds', async (t) => {
  const dir = t.testdir();
  const counter = join(dir, 'count');
  // Fails twice, succeeds on the third attempt.
  const command = `n=$(cat ${counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${counter}; echo attempt $n; [ "$n" -ge 3 ]`;
  const lines: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  });
  const env = { COLO_AGENT_FENCE_TOKEN: 'do-not-log-me' };
  const r = await fenceWithPolicy({
    run: () => runFenceCommand({ command, timeoutMs: 5000, env }),
    policy: 'wait',
    retryInitialMs: 10,
    retryMaxMs: 20,
    maxWaitMs: 30_000,
    logger,
  });
  t.match(r, { ok: true, attempts: 3, aborted: false, last: { ok: true, exitCode: 0, output: 'attempt 3\n' } });
  t.equal(readFileSync(counter, 'utf8').trim(), '3');
  const attempts = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.attempt !== undefined);
  t.same(attempts.map((l) => l.attempt), [1, 2, 3], 'each attempt is logged');
  t.same(attempts.map((l) => l.output), ['attempt 1\n', 'attempt 2\n', 'attempt 3\n'], 'with its output');
  t.notOk(lines.some((l) => l.includes('do-not-log-me')), 'env values never reach the log');
  t.notOk(lines.some((l) => l.includes(counter)), 'nor the command line');
});

const failing = (n: { count: number }) => async (): Promise<FenceResult> => {
  n.count++;
  return { ok: false, exitCode: 1, timedOut: false, durationMs: 1, output: 'no', outputTruncated: false };
};

t.test('abort policy: one attempt decides', async (t) => {
  const n = { count: 0 };
  const r = await fenceWithPolicy({ run: failing(n), policy: 'abort', retryInitialMs: 10, retryMaxMs: 20, maxWaitMs: 10_000 });
  t.match(r, { ok: false, attempts: 1, aborted: false, last: { exitCode: 1 } });
  t.equal(n.count, 1);
  const err = new FenceFailedError({ attempts: r.attempts, ...r.last });
  t.equal(err.code, 'FENCE_FAILED');
  t.match(err.message, /1 attempt\(s\): exit code 1/);
});

t.test('wait policy: gives up once maxWaitMs has passed', async (t) => {
  const clock = new FakeClock();
  const n = { count: 0 };
  const done = fenceWithPolicy({ run: failing(n), policy: 'wait', retryInitialMs: 100, retryMaxMs: 400, maxWaitMs: 1000, clock, random: () => 0.5 });
  let settled = false;
  void done.then(() => (settled = true));
  // Backoff without jitter: 100, 200, 400 (= 700 ms); the next 400 would end past 1000 ms.
  for (let i = 0; i < 20 && !settled; i++) {
    await new Promise((r) => setImmediate(r));
    clock.advance(50);
  }
  const r = await done;
  t.match(r, { ok: false, attempts: 4, aborted: false });
  t.equal(n.count, 4);
  t.ok(r.elapsedMs < 1000);
  t.equal(clock.pendingCount, 0, 'no timer left behind');
});

t.test('wait policy: the abort signal stops the waiting', async (t) => {
  const clock = new FakeClock();
  const n = { count: 0 };
  const ac = new AbortController();
  const done = fenceWithPolicy({ run: failing(n), policy: 'wait', retryInitialMs: 10_000, retryMaxMs: 10_000, maxWaitMs: 600_000, clock, signal: ac.signal });
  while (clock.pendingCount === 0) await new Promise((r) => setImmediate(r));
  ac.abort();
  const r = await done;
  t.match(r, { ok: false, attempts: 1, aborted: true });
  t.equal(n.count, 1, 'no attempt after the abort');
  t.equal(clock.pendingCount, 0, 'the retry timer is cleared');

  const before = await fenceWithPolicy({ run: failing(n), policy: 'wait', retryInitialMs: 10, retryMaxMs: 10, maxWaitMs: 100, clock, signal: AbortSignal.abort() });
  t.match(before, { ok: false, attempts: 0, aborted: true, last: { error: /aborted/ } });
  t.equal(n.count, 1, 'an already-aborted signal runs nothing');
});

t.test('bad policy options are rejected', async (t) => {
  const n = { count: 0 };
  await t.rejects(fenceWithPolicy({ run: failing(n), policy: 'maybe' as 'wait', retryInitialMs: 10, retryMaxMs: 20, maxWaitMs: 100 }), { code: 'FENCE_BAD_OPTIONS' });
  await t.rejects(fenceWithPolicy({ run: failing(n), policy: 'wait', retryInitialMs: 30, retryMaxMs: 20, maxWaitMs: 100 }), { code: 'FENCE_BAD_OPTIONS' });
  t.equal(n.count, 0);
});
