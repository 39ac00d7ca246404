/**
 * QmpClient against a scripted QMP server on a real unix socket: negotiation, id correlation,
 * oob, events, command errors, timeouts with late replies, close().
 */
import t from 'tap';
import { QmpClient, type QmpClientOptions } from '../../src/qmp/client.js';
import {
  QmpClosedError,
  QmpCommandDroppedError,
  QmpCommandError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpOobUnavailableError,
  QmpTimeoutError,
} from '../../src/qmp/errors.js';
import type { QmpClientStatus, QmpCommandRecord, QmpEvent, QmpLateReply } from '../../src/qmp/events.js';
import { createLogger } from '../../src/log.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeQmpServer, type FakeQmpServerOptions } from '../helpers/fake-qmp-server.js';
import { nextClientEvent, waitForStatus } from '../helpers/qmp-wait.js';
import { shortTempDir, type Teardownable } from '../helpers/short-temp-dir.js';

async function setup(t: Teardownable, server: FakeQmpServerOptions = {}, client: Partial<QmpClientOptions> = {}) {
  const fake = await FakeQmpServer.start({ dir: shortTempDir(t, 'qmp-'), ...server });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, reconnect: false, ...client });
  t.teardown(() => qmp.close());
  return { fake, qmp };
}

t.test('greeting and capabilities negotiation, version exposed, status observable', async (t) => {
  const { fake, qmp } = await setup(t);
  const statuses: string[] = [];
  qmp.on('status', (c) => statuses.push(`${c.from}->${c.to}`));
  const ready = nextClientEvent(qmp, 'ready');
  t.equal(qmp.status, 'idle');
  t.equal(qmp.version, undefined);
  await qmp.connect();
  const conn = await fake.nextConnection();
  t.same(conn.capabilitiesEnabled, ['oob'], 'oob enabled because it was offered');
  t.same(qmp.version, { major: 7, minor: 2, micro: 22, package: 'fake' });
  t.same((await ready)[0], { version: qmp.version, capabilities: ['oob'], oob: true });
  t.equal(qmp.status, 'ready');
  t.same(statuses, ['idle->connecting', 'connecting->ready']);
  await qmp.connect(); // no-op when ready
  t.equal(fake.connections.length, 1);
});

t.test('without the oob capability: plain negotiation, and exec-oob refused clearly', async (t) => {
  const { fake, qmp } = await setup(t, { capabilities: [] });
  await qmp.connect();
  const conn = await fake.nextConnection();
  t.same(conn.capabilitiesEnabled, []);
  t.equal(qmp.sessionInfo?.oob, false);
  const records: QmpCommandRecord[] = [];
  qmp.on('command', (r) => records.push(r));
  await t.rejects(qmp.execute('yank', { instances: [] }, { oob: true }), QmpOobUnavailableError);
  t.equal(records[0]?.code, 'QMP_OOB_UNAVAILABLE');
  t.equal(conn.commands.length, 0, 'nothing was sent');
});

t.test('several commands in flight, replies out of order, each matched by id', async (t) => {
  const { fake, qmp } = await setup(t);
  await qmp.connect();
  const conn = await fake.nextConnection();
  const a = qmp.execute('query-status');
  const b = qmp.execute('x-colo-lost-heartbeat');
  const c = qmp.execute('query-name', undefined, { timeoutMs: 60_000 });
  const ca = await conn.nextCommand();
  const cb = await conn.nextCommand();
  const cc = await conn.nextCommand();
  t.same([ca.execute, cb.execute, cc.execute], ['query-status', 'x-colo-lost-heartbeat', 'query-name']);
  t.equal(new Set([ca.id, cb.id, cc.id]).size, 3, 'distinct ids');
  t.equal(qmp.inFlightCount, 3);
  conn.reply(cc.id, { name: 'vm1' });
  conn.error(cb.id, 'GenericError', 'VM is not in COLO mode');
  conn.reply(ca.id, { status: 'paused', running: false });
  t.same(await c, { name: 'vm1' });
  t.same(await a, { status: 'paused', running: false });
  const err = (await b.then(
    () => t.fail('should reject'),
    (e: unknown) => e,
  )) as QmpCommandError;
  t.type(err, QmpCommandError);
  t.equal(err.code, 'QMP_COMMAND_FAILED');
  t.equal(err.errorClass, 'GenericError');
  t.equal(err.desc, 'VM is not in COLO mode');
  t.equal(err.command, 'x-colo-lost-heartbeat');
  t.equal(qmp.inFlightCount, 0);
});

t.test('arguments are sent; out-of-band commands use exec-oob', async (t) => {
  const { fake, qmp } = await setup(t);
  await qmp.connect();
  const conn = await fake.nextConnection();
  const p = qmp.execute('yank', { instances: [{ type: 'migration' }] }, { oob: true });
  const cmd = await conn.nextCommand();
  t.equal(cmd.oob, true);
  t.match(cmd.raw, /^\{"exec-oob":"yank"/);
  t.same(cmd.arguments, { instances: [{ type: 'migration' }] });
  conn.reply(cmd.id);
  t.same(await p, {});
  const q = qmp.execute('stop');
  const cmd2 = await conn.nextCommand();
  t.equal(cmd2.oob, false);
  t.notOk('arguments' in JSON.parse(cmd2.raw), 'no arguments member when none given');
  conn.reply(cmd2.id);
  await q;
});

t.test('events reach subscribers with QEMU timestamp and local receive time', async (t) => {
  const clock = new FakeClock(5000);
  const { fake, qmp } = await setup(t, {}, { clock });
  await qmp.connect();
  const conn = await fake.nextConnection();
  const events: QmpEvent[] = [];
  qmp.on('event', (e) => events.push(e));
  const stop = qmp.waitForEvent('STOP', { timeoutMs: 1000 });
  const coloExit = nextClientEvent(qmp, 'event', 2000, (e) => e.event === 'COLO_EXIT');
  clock.advance(250);
  conn.event('RESUME');
  conn.event('STOP', undefined, { seconds: 1_795_628_721, microseconds: 44_103 });
  conn.event('COLO_EXIT', { mode: 'secondary', reason: 'error' });
  const got = await stop;
  await coloExit;
  t.same(
    events.map((e) => e.event),
    ['RESUME', 'STOP', 'COLO_EXIT'],
  );
  t.same(got.timestamp, { seconds: 1_795_628_721, microseconds: 44_103 });
  t.equal(got.timestampMs, 1_795_628_721_044.103);
  t.equal(got.receivedAt, 5250, 'monotonic receive time from the client clock');
  t.same(got.data, {}, 'absent data becomes {}');
  t.same(events[2]?.data, { mode: 'secondary', reason: 'error' });
});

t.test('waitForEvent filters and times out with a QmpTimeoutError', async (t) => {
  const clock = new FakeClock();
  const { fake, qmp } = await setup(t, {}, { clock });
  await qmp.connect();
  const conn = await fake.nextConnection();
  const wanted = qmp.waitForEvent('BLOCK_JOB_READY', { timeoutMs: 500, filter: (e) => e.data.device === 'resync' });
  conn.event('BLOCK_JOB_READY', { device: 'other' });
  conn.event('BLOCK_JOB_READY', { device: 'resync' });
  t.equal((await wanted).data.device, 'resync');
  const never = qmp.waitForEvent('SHUTDOWN', { timeoutMs: 500 });
  clock.advance(500);
  await t.rejects(never, { code: 'QMP_TIMEOUT', operation: 'event SHUTDOWN' });
});

t.test('a timeout rejects, marks the connection unhealthy, and the late reply restores health quietly', async (t) => {
  const clock = new FakeClock();
  const { fake, qmp } = await setup(t, {}, { clock, commandTimeoutMs: 1000 });
  await qmp.connect();
  const conn = await fake.nextConnection();
  const records: QmpCommandRecord[] = [];
  const late: QmpLateReply[] = [];
  const clientErrors: Error[] = [];
  qmp.on('command', (r) => records.push(r));
  qmp.on('lateReply', (r) => late.push(r));
  qmp.on('clientError', (e) => clientErrors.push(e));
  const unhealthy = nextClientEvent(qmp, 'unhealthy');

  const slow = qmp.execute('query-status');
  const cmd = await conn.nextCommand();
  clock.advance(999);
  t.equal(qmp.status, 'ready', 'not yet');
  clock.advance(1);
  const err = (await slow.then(
    () => t.fail('should time out'),
    (e: unknown) => e,
  )) as QmpTimeoutError;
  t.type(err, QmpTimeoutError);
  t.equal(err.code, 'QMP_TIMEOUT');
  t.equal(err.operation, 'query-status');
  t.equal(err.timeoutMs, 1000);
  t.equal(qmp.status, 'unhealthy');
  t.equal((await unhealthy)[0], err);
  t.match(records, [{ command: 'query-status', ok: false, code: 'QMP_TIMEOUT', durationMs: 1000 }]);

  // While unhealthy, commands are still sent; an out-of-band reply alone does not prove the main loop runs.
  const oob = qmp.execute('yank', { instances: [] }, { oob: true, timeoutMs: 5000 });
  const oobCmd = await conn.nextCommand();
  conn.reply(oobCmd.id);
  await oob;
  t.equal(qmp.status, 'unhealthy', 'oob reply does not restore health');

  clock.advance(3000);
  const back = waitForStatus(qmp, 'ready');
  conn.reply(cmd.id, { status: 'running' });
  const change = await back;
  t.equal(change.from, 'unhealthy');
  t.match(late, [{ command: 'query-status', id: cmd.id, ok: true, elapsedMs: 4000 }]);
  t.same(clientErrors, [], 'a late reply is not a protocol error');
  t.equal(fake.connections.length, 1, 'connection kept');

  const next = qmp.execute('query-status');
  conn.reply((await conn.nextCommand()).id, { status: 'running' });
  t.same(await next, { status: 'running' });
});

t.test('COMMAND_DROPPED for one of our ids rejects that command', async (t) => {
  const { fake, qmp } = await setup(t);
  await qmp.connect();
  const conn = await fake.nextConnection();
  const p = qmp.execute('query-status');
  const cmd = await conn.nextCommand();
  conn.event('COMMAND_DROPPED', { id: cmd.id, reason: 'queue-full' });
  await t.rejects(p, QmpCommandDroppedError);
  await t.rejects(p, { code: 'QMP_COMMAND_DROPPED', reason: 'queue-full', command: 'query-status' });
});

t.test('command records carry duration, outcome and QEMU error class for metrics', async (t) => {
  const clock = new FakeClock();
  const { fake, qmp } = await setup(t, {}, { clock });
  await qmp.connect();
  const conn = await fake.nextConnection();
  const records: QmpCommandRecord[] = [];
  qmp.on('command', (r) => records.push(r));
  const ok = qmp.execute('query-status');
  const bad = qmp.execute('object-del', { id: 'comp0' });
  const c1 = await conn.nextCommand();
  const c2 = await conn.nextCommand();
  clock.advance(7);
  conn.reply(c1.id, {});
  conn.error(c2.id, 'DeviceNotFound', "object 'comp0' not found");
  await ok;
  await t.rejects(bad, QmpCommandError);
  t.same(records, [
    { command: 'query-status', id: c1.id, oob: false, durationMs: 7, ok: true },
    { command: 'object-del', id: c2.id, oob: false, durationMs: 7, ok: false, code: 'QMP_COMMAND_FAILED', errorClass: 'DeviceNotFound' },
  ]);
});

t.test('execute before connect or after close fails fast with a typed error', async (t) => {
  const { qmp } = await setup(t);
  await t.rejects(qmp.execute('query-status'), QmpDisconnectedError);
  await t.rejects(qmp.execute('query-status'), { message: /is idle/ });
  await t.rejects(qmp.execute(''), TypeError);
  await qmp.connect();
  await t.rejects(qmp.execute('query-status', undefined, { timeoutMs: 0 }), RangeError);
  await t.rejects(qmp.execute('x', { big: 1n } as unknown as Record<string, unknown>), TypeError);
  t.equal(qmp.inFlightCount, 0, 'unencodable arguments leave nothing behind');
  await qmp.close();
  await t.rejects(qmp.execute('query-status'), QmpClosedError);
  await t.rejects(qmp.connect(), QmpClosedError);
});

t.test('close() rejects in-flight commands, clears every timer and closes the socket', async (t) => {
  const clock = new FakeClock();
  const { fake, qmp } = await setup(t, {}, { clock, reconnect: { initialMs: 100, maxMs: 1000 } });
  await qmp.connect();
  const conn = await fake.nextConnection();
  const p1 = qmp.execute('query-status');
  const p2 = qmp.execute('cont');
  const readyWait = qmp.waitForEvent('RESUME', { timeoutMs: 10_000 });
  await conn.nextCommand();
  t.ok(clock.pendingCount >= 3, 'command timers and a waiter timer are running');
  const statuses: QmpClientStatus[] = [];
  qmp.on('status', (c) => statuses.push(c.to));
  const rejections = [t.rejects(p1, QmpClosedError), t.rejects(p2, QmpClosedError), t.rejects(readyWait, QmpClosedError)];
  await qmp.close();
  await Promise.all(rejections);
  await conn.closed;
  t.equal(clock.pendingCount, 0, 'no timer left, no redial scheduled');
  t.same(statuses, ['closed']);
  t.equal(qmp.status, 'closed');
  await qmp.close(); // idempotent
});

t.test('a listener that throws does not break the client', async (t) => {
  const { fake, qmp } = await setup(t);
  qmp.on('event', () => {
    throw new Error('buggy subscriber');
  });
  await qmp.connect();
  const conn = await fake.nextConnection();
  conn.event('STOP');
  const p = qmp.execute('query-status');
  conn.reply((await conn.nextCommand()).id, { ok: 1 });
  t.same(await p, { ok: 1 });
  t.equal(qmp.status, 'ready');
});

t.test('connect timeout when the socket accepts but QEMU never greets', async (t) => {
  const clock = new FakeClock();
  const { fake, qmp } = await setup(t, { greeting: null }, { clock, connectTimeoutMs: 2000 });
  const clientErrors: Error[] = [];
  qmp.on('clientError', (e) => clientErrors.push(e));
  const attempt = qmp.connect();
  const conn = await fake.nextConnection();
  await new Promise((r) => setTimeout(r, 20)); // let the client see its 'connect'
  clock.advance(2000);
  const err = (await attempt.then(
    () => t.fail('should fail'),
    (e: unknown) => e,
  )) as QmpConnectError;
  t.type(err, QmpConnectError);
  t.equal(err.code, 'QMP_CONNECT_FAILED');
  t.equal(err.timedOut, true);
  t.match(err.message, /no QMP greeting .* within 2000 ms .*another client/);
  t.equal(clientErrors[0], err);
  t.equal(qmp.status, 'disconnected');
  await conn.closed;
  t.equal(clock.pendingCount, 0);
});

t.test('connect to a socket nobody listens on fails with the socket error as cause', async (t) => {
  const dir = shortTempDir(t, 'qmp-');
  const qmp = new QmpClient({ address: `unix:${dir}/nothing.sock`, reconnect: false });
  t.teardown(() => qmp.close());
  const err = (await qmp.connect().then(
    () => t.fail('should fail'),
    (e: unknown) => e,
  )) as QmpConnectError;
  t.type(err, QmpConnectError);
  t.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  t.equal(qmp.status, 'disconnected');
});

t.test('capabilities refused by the server is a connect error carrying QEMU\'s error', async (t) => {
  const { fake, qmp } = await setup(t, { autoCapabilities: false, onCommand: (c, conn) => conn.error(c.id, 'GenericError', 'nope') });
  await t.rejects(qmp.connect(), { code: 'QMP_CONNECT_FAILED', message: /refused: GenericError: nope/ });
  t.type((await fake.nextConnection()).commands[0], Object);
});

t.test('works over TCP', async (t) => {
  const { fake, qmp } = await setup(t, { tcp: true, onCommand: (c, conn) => conn.reply(c.id, { status: 'prelaunch' }) });
  t.match(fake.address, /^tcp:127\.0\.0\.1:\d+$/);
  await qmp.connect();
  t.same(await qmp.execute('query-status'), { status: 'prelaunch' });
});

t.test('rejects nonsense options', async (t) => {
  t.throws(() => new QmpClient({ address: 'unix:/x', commandTimeoutMs: 0 }), RangeError);
  t.throws(() => new QmpClient({ address: 'unix:/x', connectTimeoutMs: -1 }), RangeError);
  t.throws(() => new QmpClient({ address: 'unix:/x', maxLineBytes: Number.NaN }), RangeError);
  t.throws(() => new QmpClient({ address: 'bogus' }), { code: 'QMP_BAD_ADDRESS' });
});

t.test('every status transition is logged, with component and address', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const { fake, qmp } = await setup(t, {}, { logger });
  const seen: string[] = [];
  qmp.on('status', (c) => seen.push(`QMP ${c.from} -> ${c.to}`));
  await qmp.connect();
  (await fake.nextConnection()).destroy();
  await waitForStatus(qmp, 'disconnected');
  await qmp.close();
  const logged = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('QMP ') && l.msg.includes(' -> '));
  t.same(
    logged.map((l) => l.msg),
    seen,
  );
  t.same(seen, ['QMP idle -> connecting', 'QMP connecting -> ready', 'QMP ready -> disconnected', 'QMP disconnected -> closed']);
  t.match(logged[2], { component: 'qmp', qmp: fake.address, level: 'warn', from: 'ready', to: 'disconnected' });
});
