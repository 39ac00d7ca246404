/**
 * Losing the connection, redialling with capped backoff, and shutting down cleanly at any point.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { QmpClient } from '../../src/qmp/client.js';
import { QmpClosedError, QmpConnectError, QmpDisconnectedError } from '../../src/qmp/errors.js';
import type { QmpCommandRecord, QmpStatusChange } from '../../src/qmp/events.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeQmpServer } from '../helpers/fake-qmp-server.js';
import { nextClientEvent, waitForStatus } from '../helpers/qmp-wait.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const answerAll = { onCommand: (c: { id: unknown }, conn: { reply(id: unknown, v: unknown): void }) => conn.reply(c.id, { status: 'paused' }) };

t.test('losing the connection fails in-flight commands and redials', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const clock = new FakeClock();
  const fake = await FakeQmpServer.start({ dir });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, clock, reconnect: { initialMs: 100, maxMs: 1000, jitter: 0 } });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const conn = await fake.nextConnection();
  const records: QmpCommandRecord[] = [];
  qmp.on('command', (r) => records.push(r));
  const a = qmp.execute('query-status').catch((e: unknown) => e);
  const b = qmp.execute('stop').catch((e: unknown) => e);
  await conn.nextCommand();
  await conn.nextCommand();
  const reconnecting = waitForStatus(qmp, 'reconnecting');
  conn.destroy(); // QEMU went away

  for (const p of [a, b]) {
    const err = (await p) as QmpDisconnectedError;
    t.type(err, QmpDisconnectedError);
    t.match(err.message, /lost before (query-status|stop) got its reply/);
  }
  t.match(records, [{ ok: false, code: 'QMP_DISCONNECTED' }, { ok: false, code: 'QMP_DISCONNECTED' }]);
  const change = await reconnecting;
  t.equal(change.from, 'ready');
  t.equal(change.delayMs, 100);
  await t.rejects(qmp.execute('query-status'), { code: 'QMP_DISCONNECTED', message: /is reconnecting/ });

  clock.advance(100);
  const conn2 = await fake.nextConnection();
  await waitForStatus(qmp, 'ready');
  const p = qmp.execute('query-status');
  conn2.reply((await conn2.nextCommand()).id, { status: 'running' });
  t.same(await p, { status: 'running' });
});

t.test('redial delays grow to the cap, then reset after a successful connect', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const path = join(dir, 'late.sock');
  const clock = new FakeClock();
  const qmp = new QmpClient({ address: `unix:${path}`, clock, reconnect: { initialMs: 100, maxMs: 400, jitter: 0 } });
  t.teardown(() => qmp.close());
  const delays: number[] = [];
  qmp.on('status', (c: QmpStatusChange) => {
    if (c.to === 'reconnecting' && c.delayMs !== undefined) delays.push(c.delayMs);
  });
  const failures: Error[] = [];
  qmp.on('clientError', (e) => failures.push(e));

  await t.rejects(qmp.connect(), QmpConnectError, 'first attempt reports its failure');
  for (let i = 0; i < 4; i++) {
    const next = nextClientEvent(qmp, 'status', 5000, (c) => c.to === 'reconnecting');
    clock.advance(delays[delays.length - 1] ?? 0);
    await next;
  }
  t.same(delays, [100, 200, 400, 400, 400]);
  t.equal(failures.length, 5);
  t.ok(failures.every((e) => e instanceof QmpConnectError));

  // QEMU finally starts: the next scheduled dial succeeds, and backoff starts small again.
  const fake = await FakeQmpServer.start({ path, ...answerAll });
  t.teardown(() => fake.close());
  const ready = waitForStatus(qmp, 'ready');
  clock.advance(400);
  await ready;
  t.same(await qmp.execute('query-status'), { status: 'paused' });
  const reconnecting = waitForStatus(qmp, 'reconnecting');
  (await fake.nextConnection()).destroy();
  t.equal((await reconnecting).delayMs, 100, 'backoff was reset by the successful session');
});

t.test('waitUntilReady waits through failed dials', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const path = join(dir, 'q.sock');
  const qmp = new QmpClient({ address: `unix:${path}`, reconnect: { initialMs: 20, maxMs: 50 } });
  t.teardown(() => qmp.close());
  qmp.connect().catch(() => undefined); // fails: nothing listens yet
  const ready = qmp.waitUntilReady(5000);
  await waitForStatus(qmp, 'reconnecting');
  const fake = await FakeQmpServer.start({ path, ...answerAll });
  t.teardown(() => fake.close());
  await ready;
  t.same(await qmp.execute('query-status'), { status: 'paused' });
});

t.test('with reconnect disabled a loss is final until connect() is called again', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const clock = new FakeClock();
  const fake = await FakeQmpServer.start({ dir, ...answerAll });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, clock, reconnect: false });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const waiting = qmp.waitUntilReady(60_000);
  t.resolves(waiting, 'already connected');
  const disconnected = waitForStatus(qmp, 'disconnected');
  (await fake.nextConnection()).destroy();
  const change = await disconnected;
  t.match(change.reason, /closed by QEMU|connection lost/);
  t.equal(clock.pendingCount, 0, 'no redial scheduled');
  await t.rejects(qmp.waitUntilReady(1000), QmpDisconnectedError, 'does not wait for a dial that will not come');
  await qmp.connect();
  t.same(await qmp.execute('query-status'), { status: 'paused' });
});

t.test('close() while waiting to redial cancels the redial', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const clock = new FakeClock();
  const qmp = new QmpClient({ address: `unix:${dir}/none.sock`, clock, reconnect: { initialMs: 1000, maxMs: 1000 } });
  const waiter = qmp.waitUntilReady(60_000);
  const waiterResult = waiter.catch((e: unknown) => e);
  await t.rejects(qmp.connect(), QmpConnectError);
  t.equal(qmp.status, 'reconnecting');
  await qmp.close();
  t.type(await waiterResult, QmpClosedError);
  t.equal(clock.pendingCount, 0);
  clock.advance(10_000);
  t.equal(qmp.status, 'closed', 'no dial after close');
});

t.test('close() during the handshake rejects connect() with QmpClosedError', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const fake = await FakeQmpServer.start({ dir, greeting: null });
  t.teardown(() => fake.close());
  const clock = new FakeClock();
  const qmp = new QmpClient({ address: fake.address, clock });
  const attempt = qmp.connect().catch((e: unknown) => e);
  const conn = await fake.nextConnection();
  await qmp.close();
  t.type(await attempt, QmpClosedError);
  await conn.closed;
  t.equal(clock.pendingCount, 0);
});

t.test('a process whose client is closed exits on its own, promptly', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const fake = await FakeQmpServer.start({ dir, ...answerAll });
  t.teardown(() => fake.close());
  const clientModule = fileURLToPath(new URL('../../src/qmp/client.ts', import.meta.url));
  const script = join(dir, 'child.mts'); // .mts: ESM (top-level await) outside the package
  // Real clock, reconnect on, a pending waitForEvent and a long command timeout: all must be cleared by close().
  writeFileSync(
    script,
    `import { QmpClient } from ${JSON.stringify(clientModule)};
const qmp = new QmpClient({ address: ${JSON.stringify(fake.address)}, commandTimeoutMs: 600000 });
await qmp.connect();
console.log(JSON.stringify(await qmp.execute('query-status')));
qmp.waitForEvent('NEVER', { timeoutMs: 600000 }).catch(() => undefined);
await qmp.close();
console.log('closed');
`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let errText = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (errText += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  t.teardown(() => {
    clearTimeout(killer);
    child.kill('SIGKILL');
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  t.equal(signal, null, `not killed by the watchdog (stderr: ${errText})`);
  t.equal(code, 0);
  t.equal(out, '{"status":"paused"}\nclosed\n');
});
