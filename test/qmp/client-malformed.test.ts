/**
 * Every kind of malformed input from the peer: the client reports a QmpProtocolError through
 * 'clientError' (never throws, never crashes), resets the connection, fails what was in flight
 * with QmpDisconnectedError, and is usable again after its reconnect.
 */
import t, { type Test } from 'tap';
import { QmpClient } from '../../src/qmp/client.js';
import { QmpDisconnectedError, QmpProtocolError, type QmpProtocolViolation } from '../../src/qmp/errors.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FAKE_VERSION, FakeQmpServer, type FakeQmpConnection, type ReceivedCommand } from '../helpers/fake-qmp-server.js';
import { nextClientEvent, waitForStatus } from '../helpers/qmp-wait.js';
import type { QmpStatusChange } from '../../src/qmp/events.js';
import { shortTempDir, type Teardownable } from '../helpers/short-temp-dir.js';

const GOOD_GREETING = { QMP: { version: FAKE_VERSION, capabilities: ['oob'] } };
const MAX_LINE = 1024;
const REDIAL_MS = 50;

async function setup(t: Teardownable, firstGreeting: object | string | null = GOOD_GREETING) {
  const clock = new FakeClock();
  const fake = await FakeQmpServer.start({
    dir: shortTempDir(t, 'qmp-'),
    greeting: (i) => (i === 0 ? firstGreeting : GOOD_GREETING),
    // From the second connection on, the server behaves: it answers every command.
    onCommand: (cmd, conn) => {
      if (conn.index > 0) conn.reply(cmd.id, { status: 'paused' });
    },
  });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({
    address: fake.address,
    clock,
    maxLineBytes: MAX_LINE,
    reconnect: { initialMs: REDIAL_MS, maxMs: REDIAL_MS, jitter: 0 },
  });
  t.teardown(() => qmp.close());
  return { clock, fake, qmp };
}

/** After the reset: redial on the backoff timer and prove the client works again. */
async function provesRecovery(t: Test, qmp: QmpClient, fake: FakeQmpServer, clock: FakeClock, reconnecting: Promise<QmpStatusChange>) {
  const change = await reconnecting;
  t.equal(change.delayMs, REDIAL_MS);
  clock.advance(REDIAL_MS);
  await fake.nextConnection();
  await waitForStatus(qmp, 'ready');
  t.same(await qmp.execute('query-status'), { status: 'paused' }, 'usable again after reconnect');
}

const afterReady: Array<{ name: string; violation: QmpProtocolViolation; act: (conn: FakeQmpConnection, cmd: ReceivedCommand) => void }> = [
  { name: 'non-JSON line', violation: 'bad-json', act: (c) => c.sendRaw('this is not json\r\n') },
  { name: 'reply to an id never sent', violation: 'unknown-id', act: (c) => c.reply(987654) },
  { name: 'reply with a foreign id type', violation: 'unknown-id', act: (c) => c.reply('someone-else') },
  { name: 'reply without id', violation: 'missing-id', act: (c) => c.send({ error: { class: 'GenericError', desc: 'JSON parse error' } }) },
  { name: 'line over maxLineBytes', violation: 'line-too-long', act: (c) => c.sendRaw(`{"return": "${'x'.repeat(2 * MAX_LINE)}"}\r\n`) },
  { name: 'endless line without newline', violation: 'line-too-long', act: (c) => c.sendRaw('x'.repeat(4 * MAX_LINE)) },
  { name: 'peer closes mid-line', violation: 'closed-mid-line', act: (c) => c.end('{"return": {}, "i') },
  { name: 'second greeting', violation: 'unexpected-message', act: (c) => c.send(GOOD_GREETING) },
  { name: 'unclassifiable message', violation: 'unexpected-message', act: (c) => c.send({ hello: 'world' }) },
  { name: 'JSON that is not an object', violation: 'unexpected-message', act: (c) => c.sendRaw('[1, 2, 3]\r\n') },
];

for (const { name, violation, act } of afterReady) {
  t.test(`${name} -> ${violation}, reset, in-flight fails, recovers`, async (t) => {
    const { clock, fake, qmp } = await setup(t);
    await qmp.connect();
    const conn = await fake.nextConnection();
    const inFlight = qmp.execute('query-status');
    const inFlightResult = inFlight.then(
      () => t.fail('should fail'),
      (e: unknown) => e,
    );
    const cmd = await conn.nextCommand();
    const reported = nextClientEvent(qmp, 'clientError');
    const reconnecting = waitForStatus(qmp, 'reconnecting');
    act(conn, cmd);

    const [err] = await reported;
    t.type(err, QmpProtocolError);
    t.equal(err.code, 'QMP_PROTOCOL');
    t.equal((err as QmpProtocolError).violation, violation);
    const lost = (await inFlightResult) as QmpDisconnectedError;
    t.type(lost, QmpDisconnectedError);
    t.equal(lost.code, 'QMP_DISCONNECTED');
    t.equal(lost.cause, err, 'the in-flight failure names the protocol error');
    await conn.closed; // the client dropped the connection
    await provesRecovery(t, qmp, fake, clock, reconnecting);
  });
}

const badGreetings: Array<{ name: string; greeting: object | string; violation: QmpProtocolViolation }> = [
  { name: 'garbage instead of a greeting', greeting: 'SSH-2.0-OpenSSH_9.2\r\n', violation: 'bad-greeting' },
  { name: 'greeting without version', greeting: { QMP: { capabilities: [] } }, violation: 'bad-greeting' },
  { name: 'a reply instead of a greeting', greeting: { return: {} }, violation: 'bad-greeting' },
  { name: 'greeting cut off by close', greeting: '{"QMP": {"version"', violation: 'closed-mid-line' },
];

for (const { name, greeting, violation } of badGreetings) {
  t.test(`${name} -> connect fails with ${violation}, then recovers`, async (t) => {
    const { clock, fake, qmp } = await setup(t, greeting);
    const reported = nextClientEvent(qmp, 'clientError');
    const reconnecting = waitForStatus(qmp, 'reconnecting');
    const attempt = qmp.connect();
    const conn = await fake.nextConnection();
    if (violation === 'closed-mid-line') conn.end();
    const err = (await attempt.then(
      () => t.fail('should fail'),
      (e: unknown) => e,
    )) as QmpProtocolError;
    t.type(err, QmpProtocolError);
    t.equal(err.violation, violation);
    t.equal((await reported)[0], err, 'also reported as clientError');
    await conn.closed;
    await provesRecovery(t, qmp, fake, clock, reconnecting);
  });
}

t.test('nobody listening for clientError is fine: nothing throws', async (t) => {
  const { clock, fake, qmp } = await setup(t);
  t.equal(qmp.listenerCount('clientError'), 0);
  await qmp.connect();
  const conn = await fake.nextConnection();
  const reconnecting = waitForStatus(qmp, 'reconnecting');
  conn.sendRaw('garbage\r\n');
  await conn.closed;
  await provesRecovery(t, qmp, fake, clock, reconnecting);
});
