/**
 * The resume runner's own rules against the simulated QEMU: stop at a required failure or (the
 * rollback) go on, HMP output, a job that vanishes, hook errors, duplicate names, the yank of the
 * mirror's NBD target found through the block graph (graph as real QEMU 7.2.22 printed it).
 */
import t, { type Test } from 'tap';
import { jobTargetNodes, runResumeSteps } from '../../src/colo/resume-runner.js';
import type { ResumeStep } from '../../src/colo/resume-sequences.js';
import { QmpClient } from '../../src/qmp/client.js';
import { FakeQmpServer, type FakeQmpConnection } from '../helpers/fake-qmp-server.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { SimQemu, type SimOptions } from './resume-sim-qemu.js';

async function setup(t: Test, opts: SimOptions = {}): Promise<{ qmp: QmpClient; conn: FakeQmpConnection; sim: SimQemu }> {
  const sim = new SimQemu(opts);
  const fake = await FakeQmpServer.start({ dir: shortTempDir(t, 'rr-'), onCommand: sim.onCommand });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, reconnect: false });
  t.teardown(() => qmp.close());
  await qmp.connect();
  return { qmp, conn: await fake.nextConnection(), sim };
}

const del = (id: string, onMissing: 'done' | 'fail' = 'done'): ResumeStep => ({ kind: 'command', name: `object-del ${id}`, command: 'object-del', args: { id }, target: { kind: 'object', id }, onMissing });

/** x-debug-query-block-graph during drive-mirror, as QEMU 7.2.22 returned it. */
const MIRROR_GRAPH = {
  nodes: [
    { name: '#block625', type: 'block-driver', id: 2 },
    { name: '#block503', type: 'block-driver', id: 4 },
    { name: '#block453', type: 'block-driver', id: 9 },
    { name: '#block293', type: 'block-driver', id: 7 },
    { name: '#block142', type: 'block-driver', id: 8 },
    { name: '#block063', type: 'block-driver', id: 6 },
    { name: 'resync', type: 'block-job', id: 5 },
    { name: '', type: 'block-backend', id: 3 },
    { name: 'colo-disk0', type: 'block-backend', id: 1 },
  ],
  edges: [[2, 'backing', 6], [4, 'file', 9], [7, 'file', 8], [6, 'children.0', 7], [5, 'main node', 2], [5, 'source', 6], [5, 'target', 4], [3, 'root', 4], [1, 'root', 2]].map(
    ([parent, name, child]) => ({ parent, name, child }),
  ),
};

t.test('jobTargetNodes: the mirror job\'s target, never its source', async (t) => {
  t.same(jobTargetNodes(MIRROR_GRAPH, ['resync']), ['#block503']);
  t.same(jobTargetNodes(MIRROR_GRAPH, ['other']), []);
  t.same(jobTargetNodes({ nope: 1 }, ['resync']), []);
});

t.test('yank in a rollback: the NBD node below the job target (query-yank listed #block453)', async (t) => {
  const { qmp, conn } = await setup(t, {
    override: {
      'query-yank': { return: [{ type: 'chardev', id: 'mirror0' }, { type: 'block-node', 'node-name': '#block453' }, { type: 'block-node', 'node-name': '#block142' }] },
      'x-debug-query-block-graph': { return: MIRROR_GRAPH },
    },
  });
  const r = await runResumeSteps({
    qmp,
    phase: 'rollback',
    steps: [{ kind: 'yank', name: 'yank', targets: [{ type: 'migration' }, { type: 'block-node', under: 'replication0' }], jobTargets: ['resync'] }],
    stepTimeoutMs: 1000,
  });
  t.equal(r.ok, true, r.error?.message ?? 'ok');
  t.same(r.records[0]?.yanked, [{ type: 'block-node', 'node-name': '#block453' }], 'the target\'s NBD client only: not the disk\'s own nodes, not the chardevs');
  t.same(conn.commands.map((c) => `${c.oob ? 'oob:' : ''}${c.execute}`), ['oob:query-yank', 'x-debug-query-block-graph', 'oob:yank']);
});

t.test('a required failure stops the part; continueOnFailure runs every step and reports the first failure', async (t) => {
  const { qmp, conn } = await setup(t, { objects: ['b'] });
  const steps = [del('a', 'fail'), del('b'), del('c')];
  const stop = await runResumeSteps({ qmp, phase: 'switchover', steps, stepTimeoutMs: 1000 });
  t.match(stop, { ok: false, error: { step: 'object-del a', errorClass: 'GenericError', desc: "object 'a' not found" }, notRun: ['object-del b', 'object-del c'] });
  t.equal(conn.commands.length, 1);
  const all = await runResumeSteps({ qmp, phase: 'rollback', steps, stepTimeoutMs: 1000, continueOnFailure: true });
  t.match(all, { ok: false, error: { step: 'object-del a' }, notRun: [] });
  t.same(all.records.map((r) => r.outcome), ['failed', 'done', 'already-done']);
  t.same(all.failures.map((e) => e.step), ['object-del a']);
  t.match(all.records[2], { note: "object 'c' not found" });
});

t.test('HMP: "" and "OK" are success, other output a failure unless it is the missing text', async (t) => {
  let out = 'OK\r\n';
  const { qmp } = await setup(t, { override: { 'human-monitor-command': () => ({ return: out }) } });
  const step: ResumeStep = { kind: 'command', name: 'drive_del', command: 'human-monitor-command', args: { 'command-line': 'drive_del replication0' }, hmp: true, target: { kind: 'hmp-drive', id: 'replication0' }, onMissing: 'done' };
  t.match((await runResumeSteps({ qmp, phase: 'rollback', steps: [step], stepTimeoutMs: 1000 })).records[0], { outcome: 'done' });
  out = "Device 'replication0' not found\r\n";
  t.match((await runResumeSteps({ qmp, phase: 'rollback', steps: [step], stepTimeoutMs: 1000 })).records[0], { outcome: 'already-done' });
  out = 'Something else\r\n';
  t.match((await runResumeSteps({ qmp, phase: 'rollback', steps: [step], stepTimeoutMs: 1000 })).records[0], { outcome: 'failed', error: { errorClass: 'HmpError', desc: 'Something else' } });
});

t.test('wait-job-ready: a job that vanishes without an event fails at once', async (t) => {
  const { qmp } = await setup(t, { mirror: 'hang', override: { 'query-block-jobs': { return: [] } } });
  const r = await runResumeSteps({
    qmp,
    phase: 'prepare',
    steps: [
      { kind: 'command', name: 'drive-mirror', command: 'drive-mirror', args: { 'job-id': 'resync' } },
      { kind: 'wait-job-ready', name: 'wait', job: 'resync', timeoutMs: 5000, pollMs: 10 },
    ],
    stepTimeoutMs: 1000,
  });
  t.match(r, { ok: false, error: { step: 'wait', errorClass: 'BlockJobVanished' } });
});

t.test('hook errors are recorded, the part goes on; duplicate names are refused', async (t) => {
  const { qmp } = await setup(t, { objects: ['x', 'y'] });
  const r = await runResumeSteps({
    qmp,
    phase: 'rollback',
    steps: [del('x'), del('y')],
    stepTimeoutMs: 1000,
    onStep: () => {
      throw new Error('journal full');
    },
  });
  t.equal(r.ok, true);
  t.same(r.hookErrors.map((h) => h.step), ['object-del x', 'object-del y']);
  const dup = await runResumeSteps({ qmp, phase: 'rollback', steps: [del('x'), del('x')], stepTimeoutMs: 1000 });
  t.match(dup, { ok: false, error: { code: 'COLO_STEP_ERROR' }, records: [] });
});

t.test('cancel-migration and leave-colo only act when needed', async (t) => {
  const { qmp, sim, conn } = await setup(t, { migrate: 'hang' });
  const steps: ResumeStep[] = [
    { kind: 'cancel-migration', name: 'cancel', timeoutMs: 1000 },
    { kind: 'leave-colo', name: 'leave', timeoutMs: 1000 },
  ];
  const idle = await runResumeSteps({ qmp, phase: 'rollback', steps, stepTimeoutMs: 1000 });
  t.same(idle.records.map((r) => r.outcome), ['already-done', 'already-done']);
  sim.migration = 'active';
  sim.coloMode = 'primary';
  const busy = await runResumeSteps({ qmp, phase: 'rollback', steps, stepTimeoutMs: 1000 });
  t.same(busy.records.map((r) => `${r.outcome} ${r.note}`), ['done migration cancelled', 'done left COLO']);
  t.equal(sim.coloMode, 'none');
  t.same(conn.commands.map((c) => c.execute).filter((c) => !c.startsWith('query-')), ['migrate_cancel', 'x-colo-lost-heartbeat']);
});
