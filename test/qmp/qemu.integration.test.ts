/**
 * QmpClient against real qemu-system-x86_64 (TCG, paused with -S). Skipped, with the reason, when
 * QEMU is not installed. Nothing here assumes a QEMU version: what differs between releases is
 * matched loosely or read from the greeting.
 */
import { join } from 'node:path';
import t from 'tap';
import { QmpClient, type QmpClientOptions } from '../../src/qmp/client.js';
import { QmpCommandError, QmpConnectError, QmpDisconnectedError, QmpTimeoutError } from '../../src/qmp/errors.js';
import type { QmpEvent, QmpLateReply } from '../../src/qmp/events.js';
import { formatQemuVersion } from '../../src/qmp/version.js';
import { qemuAvailable, startQemu } from '../helpers/qemu.js';
import { nextClientEvent, waitForStatus } from '../helpers/qmp-wait.js';
import { shortTempDir, type Teardownable } from '../helpers/short-temp-dir.js';

const avail = await qemuAvailable();
// Each test carries the reason as its skip message when QEMU is missing.
const skip = avail.ok ? false : `needs QEMU: ${avail.reason}`;
t.comment(avail.ok ? `using ${avail.binary} ${avail.version}` : `skipping: ${skip}`);

interface QueryStatus {
  status: string;
  running: boolean;
}

function client(t: Teardownable, address: string, opts: Partial<QmpClientOptions> = {}): QmpClient {
  const c = new QmpClient({ address, reconnect: false, connectTimeoutMs: 5000, commandTimeoutMs: 5000, ...opts });
  t.teardown(() => c.close());
  return c;
}

t.test('greeting, version and query-status of a paused QEMU', { skip }, async (t) => {
  const q = await startQemu({ t });
  const qmp = client(t, q.qmpAddresses[0] ?? '');
  await qmp.connect();
  const v = qmp.version;
  t.ok(v, 'version from the greeting');
  if (avail.ok && v) t.equal(formatQemuVersion(v), avail.version, 'greeting agrees with --version');
  t.equal(qmp.sessionInfo?.oob, true, 'oob offered and enabled');
  const st = await qmp.execute<QueryStatus>('query-status');
  t.match(st.status, /^(prelaunch|paused)$/, `status under -S (${st.status})`);
  t.equal(st.running, false);
});

t.test('cont then stop produce RESUME and STOP events with timestamps', { skip }, async (t) => {
  const q = await startQemu({ t });
  const qmp = client(t, q.qmpAddresses[0] ?? '');
  await qmp.connect();
  const events: QmpEvent[] = [];
  qmp.on('event', (e) => events.push(e));
  const resume = qmp.waitForEvent('RESUME');
  const before = Date.now();
  await qmp.execute('cont');
  const r = await resume;
  const stop = qmp.waitForEvent('STOP');
  await qmp.execute('stop');
  const s = await stop;
  t.same(
    events.map((e) => e.event),
    ['RESUME', 'STOP'],
  );
  for (const e of [r, s]) {
    t.ok(Number.isInteger(e.timestamp.seconds) && Number.isInteger(e.timestamp.microseconds), 'QEMU timestamp parts');
    // QEMU stamps with the host's wall clock: same host, so it is near our Date.now().
    t.ok(Math.abs(e.timestampMs - before) < 60_000, `timestampMs ${e.timestampMs} near ${before}`);
    t.ok(e.receivedAt > 0 && e.receivedAt <= performance.now(), 'monotonic receive time');
  }
  t.ok(s.timestampMs >= r.timestampMs, 'STOP not stamped before RESUME');
  t.ok(s.receivedAt >= r.receivedAt);
  t.equal((await qmp.execute<QueryStatus>('query-status')).status, 'paused');
});

t.test('x-colo-lost-heartbeat outside COLO is a GenericError command error', { skip }, async (t) => {
  const q = await startQemu({ t });
  const qmp = client(t, q.qmpAddresses[0] ?? '');
  await qmp.connect();
  const err = (await qmp.execute('x-colo-lost-heartbeat').then(
    () => t.fail('should fail outside COLO'),
    (e: unknown) => e,
  )) as QmpCommandError;
  t.type(err, QmpCommandError);
  t.equal(err.code, 'QMP_COMMAND_FAILED');
  t.equal(err.errorClass, 'GenericError');
  // QEMU >= 8.0: "VM is not in COLO mode"; 7.2 still says "The feature 'colo' is not enabled".
  t.match(err.desc, /not in COLO mode|feature 'colo' is not enabled/i, `desc: ${err.desc}`);
  t.equal(qmp.status, 'ready', 'a command error leaves the session healthy');
});

t.test('out-of-band: yank runs via exec-oob; a non-oob command is refused by QEMU', { skip }, async (t) => {
  const q = await startQemu({ t });
  const qmp = client(t, q.qmpAddresses[0] ?? '');
  await qmp.connect();
  t.same(await qmp.execute('yank', { instances: [] }, { oob: true }), {});
  await t.rejects(qmp.execute('query-status', undefined, { oob: true }), { code: 'QMP_COMMAND_FAILED', errorClass: 'GenericError' });
  t.equal((await qmp.execute<QueryStatus>('query-status')).running, false, 'session still fine');
});

t.test('a frozen QEMU (SIGSTOP) times the command out; after SIGCONT the late reply restores health', { skip }, async (t) => {
  const q = await startQemu({ t });
  const qmp = client(t, q.qmpAddresses[0] ?? '');
  await qmp.connect();
  const late = nextClientEvent(qmp, 'lateReply', 10_000);
  q.kill('SIGSTOP');
  const err = (await qmp.execute('query-status', undefined, { timeoutMs: 300 }).then(
    () => t.fail('a stopped QEMU cannot answer'),
    (e: unknown) => e,
  )) as QmpTimeoutError;
  t.type(err, QmpTimeoutError);
  t.equal(err.operation, 'query-status');
  t.equal(qmp.status, 'unhealthy');
  const healthy = waitForStatus(qmp, 'ready', 10_000);
  q.kill('SIGCONT');
  const [lr] = (await late) as [QmpLateReply];
  t.equal(lr.command, 'query-status');
  t.ok(lr.elapsedMs >= 300);
  await healthy;
  t.match(await qmp.execute<QueryStatus>('query-status'), { running: false });
});

t.test('connecting to a frozen QEMU times out instead of hanging', { skip }, async (t) => {
  const q = await startQemu({ t });
  q.kill('SIGSTOP');
  const qmp = client(t, q.qmpAddresses[0] ?? '', { connectTimeoutMs: 300 });
  const err = (await qmp.connect().then(
    () => t.fail('no greeting from a stopped QEMU'),
    (e: unknown) => e,
  )) as QmpConnectError;
  t.type(err, QmpConnectError);
  // Either the greeting never came within the budget, or the frozen QEMU's accept queue was
  // already full and the kernel refused the connect with EAGAIN: both fail fast, neither hangs.
  t.ok(err.timedOut || /EAGAIN/.test(err.message), `fails fast: ${err.message}`);
  q.kill('SIGCONT');
  // A fresh client with an ordinary budget: the thawed QEMU first works through the abandoned connection.
  const again = client(t, q.qmpAddresses[0] ?? '');
  await again.connect();
  t.match(await again.execute<QueryStatus>('query-status'), { running: false }, 'works once thawed');
});

t.test('QEMU killed: in-flight command fails, client reconnects to a new QEMU on the same socket path', { skip }, async (t) => {
  const dir = shortTempDir(t, 'qi-');
  const path = join(dir, 'agent.sock');
  const first = await startQemu({ t, dir, qmpPaths: [path], name: 'first' });
  const qmp = client(t, `unix:${path}`, { reconnect: { initialMs: 50, maxMs: 200 } });
  await qmp.connect();
  t.same(await qmp.execute('query-name'), { name: 'first' });

  first.kill('SIGSTOP'); // so the command is surely still in flight when the process dies
  const inFlight = qmp.execute('query-status', undefined, { timeoutMs: 10_000 }).catch((e: unknown) => e);
  const lost = waitForStatus(qmp, 'reconnecting');
  first.kill('SIGKILL');
  t.type(await inFlight, QmpDisconnectedError, 'in-flight command rejected with a disconnected error');
  await lost;
  await first.exited;

  const second = await startQemu({ t, dir, qmpPaths: [path], name: 'second' });
  await qmp.waitUntilReady(10_000);
  t.same(await qmp.execute('query-name'), { name: 'second' }, 'talking to the new QEMU');
  await second.stop();
});

t.test('over TCP', { skip }, async (t) => {
  const q = await startQemu({ t, qmpSockets: 0, qmpTcp: 1 });
  const address = q.qmpAddresses[0] ?? '';
  t.match(address, /^tcp:127\.0\.0\.1:\d+$/);
  const qmp = client(t, address);
  await qmp.connect();
  t.ok(qmp.version);
  t.match(await qmp.execute<QueryStatus>('query-status'), { running: false });
});

t.test('one client per QMP socket: a second socket serves a second client', { skip }, async (t) => {
  const q = await startQemu({ t, qmpSockets: 2 });
  const agent = client(t, q.qmpAddresses[0] ?? '');
  const operator = client(t, q.qmpAddresses[1] ?? '');
  await Promise.all([agent.connect(), operator.connect()]);
  const [a, b] = await Promise.all([agent.execute<QueryStatus>('query-status'), operator.execute<QueryStatus>('query-status')]);
  t.equal(a.status, b.status);
  // A second client on a busy socket sits in the kernel backlog and never gets a greeting.
  const intruder = client(t, q.qmpAddresses[0] ?? '', { connectTimeoutMs: 300 });
  await t.rejects(intruder.connect(), { code: 'QMP_CONNECT_FAILED', message: /another client holds this single-client QMP socket/ });
});
