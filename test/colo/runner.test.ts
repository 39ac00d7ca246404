/**
 * The failover runner against a scripted QMP server on a real unix socket: order, already-done
 * errors, a failing required step, a timeout, a disconnect, resume, and yank resolution.
 */
import t from 'tap';
import { ColoStepError } from '../../src/colo/errors.js';
import { profileForVersion } from '../../src/colo/profile.js';
import { runSequence, type StepRecord } from '../../src/colo/runner.js';
import { primaryFailover, secondaryFailover, type Sequence } from '../../src/colo/sequences.js';
import { QmpClient } from '../../src/qmp/client.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeQmpServer, type FakeQmpConnection, type FakeQmpServerOptions, type ReceivedCommand } from '../helpers/fake-qmp-server.js';
import { shortTempDir, type Teardownable } from '../helpers/short-temp-dir.js';

const P72 = profileForVersion({ major: 7, minor: 2, micro: 22 });

/** What the fake answers: a return value, a QMP error, or nothing at all. */
type Answer = { return: unknown } | { error: [string, string] } | 'silent' | 'disconnect';
type Script = Record<string, Answer | ((cmd: ReceivedCommand) => Answer)>;

const QUERY_YANK_PRIMARY = [
  { type: 'chardev', id: 'compat_monitor0' },
  { type: 'chardev', id: 'mirror0' },
  { type: 'chardev', id: 'compare0' },
  { 'node-name': '#block376', type: 'block-node' },
  { type: 'migration' },
];
const GRAPH = {
  nodes: [
    { name: 'replication0', type: 'block-driver', id: 3 },
    { name: '#block376', type: 'block-driver', id: 6 },
    { name: 'colo-disk0', type: 'block-backend', id: 1 },
  ],
  edges: [{ name: 'file', parent: 3, child: 6 }],
};

function answer(script: Script, cmd: ReceivedCommand, conn: FakeQmpConnection): void {
  const entry = script[cmd.execute];
  const a: Answer = typeof entry === 'function' ? entry(cmd) : entry ?? { return: {} };
  if (a === 'silent') return;
  if (a === 'disconnect') conn.destroy();
  else if ('error' in a) conn.error(cmd.id, a.error[0], a.error[1]);
  else conn.reply(cmd.id, a.return);
}

async function setup(t: Teardownable, script: Script, server: FakeQmpServerOptions = {}, clock?: FakeClock) {
  const fake = await FakeQmpServer.start({ dir: shortTempDir(t, 'run-'), onCommand: (cmd, conn) => answer(script, cmd, conn), ...server });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, reconnect: false, ...(clock && { clock }) });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const conn = await fake.nextConnection();
  return { fake, qmp, conn };
}

const sent = (conn: FakeQmpConnection) => conn.commands.map((c) => `${c.oob ? 'oob:' : ''}${c.execute}`);

t.test('happy path: primary failover in order, yank resolved and out-of-band, records and durations', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: QUERY_YANK_PRIMARY },
    'x-debug-query-block-graph': { return: GRAPH },
    'human-monitor-command': { return: '' },
  });
  const records: StepRecord[] = [];
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000, onStep: (r) => void records.push(r) });
  t.equal(result.ok, true);
  t.equal(result.error, undefined);
  t.same(sent(conn), [
    'oob:query-yank', 'x-debug-query-block-graph', 'oob:yank',
    'x-blockdev-change', 'human-monitor-command',
    'object-del', 'object-del', 'object-del', 'object-del', 'object-del',
    'x-colo-lost-heartbeat',
  ]);
  t.same(conn.commands.find((c) => c.execute === 'yank')?.arguments, {
    instances: [{ type: 'chardev', id: 'mirror0' }, { type: 'block-node', 'node-name': '#block376' }, { type: 'migration' }],
  }, 'only existing instances that lead to the peer; compare1 absent, compare0 and the monitor untouched');
  t.same(conn.commands.filter((c) => c.execute === 'object-del').map((c) => c.arguments?.id), ['comp0', 'iothread1', 'm0', 'redire0', 'redire1']);
  t.same(result.completed, primaryFailover({}, P72).steps.map((s) => s.name));
  t.same(result.skipped, []);
  t.same(result.alreadyDone, []);
  t.same(result.notRun, []);
  t.same(records.map((r) => [r.name, r.outcome]), result.completed.map((n) => [n, 'done']), 'onStep saw every step in order');
  t.same(records[0]?.yanked, [{ type: 'chardev', id: 'mirror0' }, { type: 'block-node', 'node-name': '#block376' }, { type: 'migration' }]);
  t.equal(records[0]?.oob, true);
  for (const r of result.steps) t.ok(r.durationMs >= 0 && Number.isFinite(r.durationMs), `${r.name} has a duration`);
  t.ok(result.durationMs >= Math.max(...result.steps.map((r) => r.durationMs)), 'total covers the steps');
});

t.test('already gone: onMissing done counts QEMU\'s not-found errors and HMP output as done', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: [] },
    'x-blockdev-change': { error: ['GenericError', "Node 'colo-disk0' does not have child 'children.1'"] },
    'human-monitor-command': { return: "Device 'replication0' not found\r\n" },
    'object-del': (cmd) => (cmd.arguments?.id === 'comp0' ? { error: ['GenericError', "object 'comp0' not found"] } : cmd.arguments?.id === 'm0' ? { error: ['DeviceNotFound', "object 'm0' not found"] } : { return: {} }),
  });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(result.ok, true);
  t.same(result.alreadyDone, ['x-blockdev-change', 'drive_del', 'object-del comp0', 'object-del m0']);
  t.equal(result.completed.length, 9);
  t.same(result.steps[0]?.yanked, [], 'nothing listed, nothing yanked');
  t.notOk(sent(conn).includes('oob:yank'), 'no yank command when no instance applies (an empty one would be pointless)');
  t.notOk(sent(conn).includes('x-debug-query-block-graph'), 'no graph query without a listed block node');
});

t.test('a required step failing stops the sequence with a typed error', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: [] },
    'object-del': (cmd) => (cmd.arguments?.id === 'm0' ? { error: ['GenericError', "object 'm0' is in use"] } : { return: {} }),
  });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(result.ok, false);
  t.type(result.error, ColoStepError);
  t.match(result.error, { code: 'COLO_STEP_FAILED', step: 'object-del m0', command: 'object-del', errorClass: 'GenericError', desc: "object 'm0' is in use" });
  t.same(result.notRun, ['object-del redire0', 'object-del redire1', 'x-colo-lost-heartbeat']);
  t.same(result.completed, ['yank', 'x-blockdev-change', 'drive_del', 'object-del comp0', 'object-del iothread1']);
  t.equal(result.steps.at(-1)?.outcome, 'failed');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(conn.commands.filter((c) => c.execute === 'object-del').length, 3, 'nothing sent after the failure');
  t.notOk(sent(conn).includes('x-colo-lost-heartbeat'));
});

t.test('HMP printing an error is a failure with class HmpError; lost-heartbeat outside COLO is a failure', async (t) => {
  const { qmp } = await setup(t, {
    'query-yank': { return: [] },
    'human-monitor-command': { return: 'Node replication0 is in use\r\n' },
  });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.match(result.error, { code: 'COLO_STEP_FAILED', step: 'drive_del', errorClass: 'HmpError', desc: 'Node replication0 is in use' });

  const { qmp: qmp2 } = await setup(t, { 'query-yank': { return: [] }, 'x-colo-lost-heartbeat': { error: ['GenericError', 'VM is not in COLO mode'] } });
  const r2 = await runSequence({ qmp: qmp2, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.match(r2.error, { code: 'COLO_STEP_FAILED', step: 'x-colo-lost-heartbeat', desc: 'VM is not in COLO mode' }, 'never counted as already done');
});

t.test('a step that never gets a reply times out: failed result, not a hang or a throw', async (t) => {
  const clock = new FakeClock();
  const { qmp, conn } = await setup(t, { 'query-yank': { return: [] }, 'object-del': (c) => (c.arguments?.id === 'iothread1' ? 'silent' : { return: {} }) }, {}, clock);
  const running = runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 2000, clock });
  for (;;) {
    const cmd = await conn.nextCommand();
    if (cmd.execute === 'object-del' && cmd.arguments?.id === 'iothread1') break;
  }
  clock.advance(1999);
  t.equal(qmp.inFlightCount, 1, 'still waiting just before the timeout');
  clock.advance(1);
  const result = await running;
  t.equal(result.ok, false);
  t.match(result.error, { code: 'COLO_STEP_TIMEOUT', step: 'object-del iothread1', command: 'object-del' });
  t.equal(result.steps.at(-1)?.durationMs, 2000, 'the duration is measured on the given clock');
  t.same(result.notRun, ['object-del m0', 'object-del redire0', 'object-del redire1', 'x-colo-lost-heartbeat']);
});

t.test('a per-step timeout overrides stepTimeoutMs', async (t) => {
  const clock = new FakeClock();
  const { qmp, conn } = await setup(t, { 'nbd-server-stop': 'silent' }, {}, clock);
  const sequence: Sequence = { name: 'secondary-failover', roleBefore: 'secondary', roleAfter: 'primary', steps: [{ kind: 'command', name: 'nbd-server-stop', command: 'nbd-server-stop', timeoutMs: 300 }] };
  const running = runSequence({ qmp, sequence, stepTimeoutMs: 60_000, clock });
  await conn.nextCommand();
  clock.advance(300);
  t.match((await running).error, { code: 'COLO_STEP_TIMEOUT' });
});

t.test('the QMP connection dropping mid-sequence is a failed result', async (t) => {
  const { qmp } = await setup(t, { 'query-yank': { return: [] }, 'object-del': (c) => (c.arguments?.id === 'm0' ? 'disconnect' : { return: {} }) });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(result.ok, false);
  t.match(result.error, { code: 'COLO_STEP_DISCONNECTED', step: 'object-del m0' });
  // A client that is not connected at all: the first required step fails the same way.
  const again = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000, alreadyDone: ['yank'] });
  t.match(again.error, { code: 'COLO_STEP_DISCONNECTED', step: 'x-blockdev-change' });
});

t.test('resume: steps in alreadyDone are skipped, not sent', async (t) => {
  const { qmp, conn } = await setup(t, { 'query-yank': { return: [] } });
  const done = new Set(['yank', 'x-blockdev-change', 'drive_del', 'object-del comp0']);
  const records: StepRecord[] = [];
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000, alreadyDone: done, onStep: (r) => void records.push(r) });
  t.equal(result.ok, true);
  t.same(result.skipped, [...done]);
  t.same(result.completed, ['object-del iothread1', 'object-del m0', 'object-del redire0', 'object-del redire1', 'x-colo-lost-heartbeat']);
  t.same(sent(conn), ['object-del', 'object-del', 'object-del', 'object-del', 'x-colo-lost-heartbeat']);
  t.equal(conn.commands[0]?.arguments?.id, 'iothread1');
  t.same(records.slice(0, 4).map((r) => [r.outcome, r.durationMs]), [['skipped', 0], ['skipped', 0], ['skipped', 0], ['skipped', 0]]);
});

t.test('secondary: yank intersects with query-yank, out-of-band; in-band without oob', async (t) => {
  const script: Script = {
    'query-yank': { return: [{ type: 'chardev', id: 'compat_monitor0' }, { type: 'migration' }, { type: 'chardev', id: 'red0' }, { type: 'block-node', 'node-name': 'nbd-x' }] },
    'chardev-add': (c) => (c.arguments?.id === 'compare1' ? { error: ['GenericError', "Chardev with id 'compare1' already exists"] } : { return: {} }),
  };
  const { qmp, conn } = await setup(t, script);
  const result = await runSequence({ qmp, sequence: secondaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(result.ok, true);
  const yank = conn.commands.find((c) => c.execute === 'yank');
  t.equal(yank?.oob, true, 'yank sent with exec-oob');
  t.equal(conn.commands[0]?.oob, true, 'query-yank too (allow-oob)');
  t.same(yank?.arguments, { instances: [{ type: 'migration' }, { type: 'chardev', id: 'red0' }] }, 'red1 is not listed, so not named; no block node on the secondary');
  t.notOk(sent(conn).includes('x-debug-query-block-graph'));
  t.same(result.alreadyDone, ['chardev-add compare1'], 'chardev-add of an existing chardev counts as done');
  t.equal(sent(conn).filter((c) => c === 'chardev-add').length, 6);

  const { qmp: plain, conn: conn2 } = await setup(t, script, { capabilities: [] });
  t.equal(plain.sessionInfo?.oob, false);
  const r2 = await runSequence({ qmp: plain, sequence: secondaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(r2.ok, true);
  t.same(sent(conn2).slice(0, 2), ['query-yank', 'yank'], 'in-band when oob was not negotiated');
  t.equal(r2.steps[0]?.oob, false);
});

t.test('a failing yank is recorded but does not stop the failover (it is optional)', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: [{ type: 'migration' }] },
    yank: { error: ['DeviceNotFound', 'Instance not found'] },
  });
  const result = await runSequence({ qmp, sequence: secondaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(result.ok, true);
  t.match(result.steps[0], { name: 'yank', outcome: 'failed', optional: true, error: { code: 'COLO_STEP_FAILED', command: 'yank', errorClass: 'DeviceNotFound' } });
  t.notOk(result.completed.includes('yank'), 'not completed, so a resumed run tries it again');
  t.equal(conn.commands.at(-1)?.execute, 'chardev-add');
});

t.test('an onStep hook that throws is reported, and the sequence goes on', async (t) => {
  const { qmp } = await setup(t, { 'query-yank': { return: [] } });
  const result = await runSequence({
    qmp,
    sequence: primaryFailover({}, P72),
    stepTimeoutMs: 5000,
    onStep: async (r) => {
      if (r.name === 'drive_del') throw new Error('disk full');
    },
  });
  t.equal(result.ok, true);
  t.equal(result.hookErrors.length, 1);
  t.equal(result.hookErrors[0]?.step, 'drive_del');
  t.equal(result.completed.length, 9);
});

t.test('duplicate step names are refused before anything is sent', async (t) => {
  const { qmp, conn } = await setup(t, {});
  const step = { kind: 'command', name: 'x', command: 'object-del', args: { id: 'a' } } as const;
  const result = await runSequence({ qmp, sequence: { name: 'primary-failover', roleBefore: 'primary', roleAfter: 'primary', steps: [step, step] }, stepTimeoutMs: 5000 });
  t.equal(result.ok, false);
  t.match(result.error, { code: 'COLO_STEP_ERROR', step: 'x' });
  await new Promise((r) => setTimeout(r, 30));
  t.equal(conn.commands.length, 0);
});

t.test('the block graph query failing: the other instances are still yanked, no block node on a guess', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: QUERY_YANK_PRIMARY },
    'x-debug-query-block-graph': { error: ['CommandNotFound', "The command x-debug-query-block-graph has not been found"] },
    'human-monitor-command': { return: '' },
  });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 5000 });
  t.equal(result.ok, true);
  t.same(conn.commands.find((c) => c.execute === 'yank')?.arguments, { instances: [{ type: 'chardev', id: 'mirror0' }, { type: 'migration' }] });
  t.match(result.steps[0], { outcome: 'done', note: /x-debug-query-block-graph failed .*CommandNotFound.*no block node yanked/ });
});

t.test('the block graph query getting no answer (main loop stuck): the graph taken before names the NBD node', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: QUERY_YANK_PRIMARY },
    'x-debug-query-block-graph': 'silent',
    'human-monitor-command': { return: '' },
  });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 200, cachedBlockGraph: () => GRAPH });
  t.equal(result.ok, true);
  t.same(
    conn.commands.find((c) => c.execute === 'yank')?.arguments,
    { instances: [{ type: 'chardev', id: 'mirror0' }, { type: 'block-node', 'node-name': '#block376' }, { type: 'migration' }] },
    'the NBD node is yanked with the others',
  );
  t.match(result.steps[0], { outcome: 'done', note: /x-debug-query-block-graph failed .*no reply.*used the block graph taken before/ });
});

t.test('no cached graph either: the other instances are yanked, no block node', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: QUERY_YANK_PRIMARY },
    'x-debug-query-block-graph': 'silent',
    'human-monitor-command': { return: '' },
  });
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 200, cachedBlockGraph: () => undefined });
  t.equal(result.ok, true);
  t.same(conn.commands.find((c) => c.execute === 'yank')?.arguments, { instances: [{ type: 'chardev', id: 'mirror0' }, { type: 'migration' }] });
  t.match(result.steps[0], { note: /no block node yanked/ });
});

t.test('QMP already unhealthy (a command went unanswered): the graph taken before is used at once', async (t) => {
  const { qmp, conn } = await setup(t, {
    'query-yank': { return: QUERY_YANK_PRIMARY },
    'query-status': 'silent',
    'human-monitor-command': { return: '' },
  });
  await t.rejects(qmp.execute('query-status', undefined, { timeoutMs: 50 }), 'a command times out first');
  t.equal(qmp.status, 'unhealthy');
  const result = await runSequence({ qmp, sequence: primaryFailover({}, P72), stepTimeoutMs: 2000, cachedBlockGraph: () => GRAPH });
  t.equal(result.ok, true);
  t.notOk(sent(conn).includes('x-debug-query-block-graph'), 'no in-band graph query that would wait its whole timeout');
  t.match(conn.commands.find((c) => c.execute === 'yank')?.arguments, { instances: [{}, { type: 'block-node', 'node-name': '#block376' }, {}] });
  t.match(result.steps[0], { note: /QMP unhealthy: used the block graph taken before/ });
});
