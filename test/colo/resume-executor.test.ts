/**
 * ResumeExecutor against a simulated QEMU (resume-sim-qemu.ts) on a real unix socket, with a real
 * journal: the order of commands, the measurements, refusals before anything is sent, rollback
 * after each kind of failure (mirror error, a cancelled instead of completed mirror, a failed
 * migration, a timeout, a plain migration), a failing rollback, and recover() after a crash.
 */
import t, { type Test } from 'tap';
import { Journal } from '../../src/colo/journal.js';
import { isResumeDecision, ResumeExecutor, resumePreflight, runSecondaryPrepare, type ResumeExecutorOptions } from '../../src/colo/resume-executor.js';
import type { ResyncProgress, ResumeStepRecord } from '../../src/colo/resume-runner.js';
import { createLogger } from '../../src/log.js';
import { QmpClient } from '../../src/qmp/client.js';
import { FakeQmpServer, type FakeQmpConnection } from '../helpers/fake-qmp-server.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { SimQemu, type SimOptions } from './resume-sim-qemu.js';

const FAST = { resyncMs: 2000, coloMs: 2000, jobEndMs: 1000, rollbackWaitMs: 1000, progressPollMs: 10 };

async function setup(t: Test, sim: SimQemu, extra: Partial<ResumeExecutorOptions> = {}) {
  const dir = shortTempDir(t, 'rx-');
  const fake = await FakeQmpServer.start({ dir, onCommand: sim.onCommand });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, reconnect: false, commandTimeoutMs: 2000 });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const conn = await fake.nextConnection();
  const journal = await Journal.open(join(dir, 'state'));
  const exec = new ResumeExecutor({ qmp, journal, colo: {}, profile: 'auto', stepTimeoutMs: 1000, timeouts: FAST, ...extra });
  return { qmp, conn, journal, exec, dir };
}

function join(a: string, b: string): string {
  return `${a}/${b}`;
}

const sent = (conn: FakeQmpConnection) => conn.commands.map((c) => c.execute).filter((c) => !c.startsWith('query-') && c !== 'qom-list');
const MUTATING = ['drive-mirror', 'stop', 'block-job-cancel', 'human-monitor-command', 'x-blockdev-change', 'object-add', 'migrate', 'object-del', 'cont', 'migrate_cancel'];

/** Nothing of the resume left, guest running. */
function assertSolo(t: Test, sim: SimQemu): void {
  t.equal(sim.running, true, 'guest running');
  t.equal(sim.coloMode, 'none', 'COLO mode none');
  t.notOk(sim.nodes.has('replication0'), 'no replication node');
  t.same([...sim.objects].filter((o) => o !== 'rew0'), [], 'no proxy objects');
  t.equal(sim.jobs.size, 0, 'no block job');
  t.same([...sim.children], ['children.0'], 'quorum child removed');
}

t.test('success: documented order, journal finished, pause/resync/bytes measured, progress reported', async (t) => {
  const sim = new SimQemu();
  const progress: ResyncProgress[] = [];
  const records: ResumeStepRecord[] = [];
  const { conn, journal, exec } = await setup(t, sim, { onProgress: (p) => progress.push(p), onStep: (r) => void records.push(r) });
  const out = await exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2', id: 'r-1', epoch: 7 });
  t.equal(out.ok, true, out.error?.message ?? 'ok');
  t.same(sent(conn), [
    'drive-mirror', 'human-monitor-command', 'migrate-set-capabilities', 'migrate-set-parameters',
    'stop', 'block-job-cancel', 'x-blockdev-change',
    'object-add', 'object-add', 'object-add', 'object-add', 'object-add', 'migrate',
  ]);
  t.match(out, { sequence: 'primary-resume', rolledBack: false, recovered: false, bytes: 64 * 1024 * 1024 });
  t.ok((out.resyncMs ?? 0) > 0 && (out.pauseMs ?? 0) > 0 && (out.pauseByEventMs ?? 0) > 0, `measured resync ${out.resyncMs} pause ${out.pauseMs} / ${out.pauseByEventMs}`);
  t.equal(sim.coloMode, 'primary');
  t.match(journal.current(), { id: 'r-1', epoch: 7, sequence: 'primary-resume', status: 'finished', roleBefore: 'primary', roleAfter: 'primary' });
  t.same(journal.current()?.completedSteps, out.steps.map((s) => `${s.phase}/${s.name}`));
  t.ok(isResumeDecision(journal.current()));
  t.same(records.map((r) => r.name), out.steps.map((s) => s.name), 'onStep saw every step');
  t.ok(progress.some((p) => !p.ready && p.offset < p.len), 'progress while copying');
  t.match(progress.at(-1), { job: 'resync', ready: true, percent: 100, offset: 64 * 1024 * 1024 });
});

t.test('refused before anything is sent: not solo, wrong sequence, unfinished decision', async (t) => {
  const inColo = new SimQemu({ objects: ['comp0', 'm0'] });
  inColo.coloMode = 'primary';
  const a = await setup(t, inColo);
  const o1 = await a.exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2' });
  t.match(o1, { ok: false, rolledBack: false, steps: [], error: { code: 'COLO_RESUME_PRECONDITION' } });
  t.equal(o1.error?.message, 'not ready for primary-resume: COLO mode is primary, not none; proxy objects present: comp0, m0');
  t.same(sent(a.conn).filter((c) => MUTATING.includes(c)), [], 'nothing mutating sent');
  t.equal(a.journal.current(), undefined, 'nothing journalled');

  const secondary = new SimQemu({ objects: ['rew0'] });
  const b = await setup(t, secondary);
  t.same(await resumePreflight(b.qmp, {}, 'secondary-resume', 1000), [], 'ready for the secondary resume');
  t.match(await resumePreflight(b.qmp, {}, 'primary-resume', 1000), [/rew0 is present/]);
  const plain = new SimQemu();
  plain.running = false;
  plain.status = 'paused';
  const c = await setup(t, plain);
  t.match(await resumePreflight(c.qmp, {}, 'secondary-resume', 1000), [/the guest is paused, not running/, /rew0 is missing/]);

  const d = await setup(t, new SimQemu());
  await d.journal.begin({ id: 'f-1', sequence: 'secondary-failover', roleBefore: 'secondary', roleAfter: 'primary' });
  const o2 = await d.exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2' });
  t.match(o2.error, { code: 'COLO_RESUME_BLOCKED', message: /unfinished secondary-failover/ });
  t.same(sent(d.conn), []);
  t.equal(await d.exec.recover(), undefined, 'recover() leaves failover decisions alone');
  t.match(d.journal.current(), { id: 'f-1', status: 'running' });
});

const failures: Array<[string, SimOptions, RegExp, boolean]> = [
  ['the mirror fails (new secondary died during the resync)', { mirror: 'error' }, /wait-job-ready resync.*BlockJobError/, false],
  ['the mirror ends CANCELLED instead of COMPLETED (no synchronised copy)', { cancelEnds: 'cancelled' }, /wait-job-gone resync.*BlockJobCancelled/, true],
  ['the mirror ends with an error after stop', { cancelEnds: 'error' }, /wait-job-gone resync.*BlockJobError/, true],
  ['the migration fails', { migrate: 'fail' }, /wait-colo.*MigrationFailed: migration failed: Connection refused/, true],
  ['a plain migration instead of COLO', { migrate: 'plain' }, /PlainMigration/, true],
  ['the migration hangs (timeout)', { migrate: 'hang' }, /wait-colo.*not within/, true],
  ['never ready (timeout)', { mirror: 'hang' }, /wait-job-ready resync.*not within/, false],
  ['drive_add fails', { override: { 'human-monitor-command': (c) => (String(c.arguments?.['command-line']).startsWith('drive_add') ? { return: "Failed to connect to '127.0.0.2:9999': Connection refused\r\n" } : undefined) } }, /drive_add.*HMP said: Failed to connect/, false],
];

for (const [what, opts, error, paused] of failures) {
  t.test(`rolled back and abandoned when ${what}`, async (t) => {
    const sim = new SimQemu(opts);
    const { journal, exec } = await setup(t, sim, { timeouts: { ...FAST, resyncMs: 300, coloMs: 300 } });
    const out = await exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2' });
    t.match(out, { ok: false, rolledBack: true, recovered: false });
    t.match(out.error?.message, error);
    t.equal(out.rollbackError, undefined);
    t.match(journal.current(), { status: 'abandoned', abandonReason: /^rolled back: (prepare|switchover) step/ });
    t.equal(journal.unfinished(), undefined, 'the agent is not stuck with an unfinished decision');
    if (paused) t.ok((out.pauseMs ?? 0) > 0, 'the pause ended by the rollback is measured');
    else t.equal(out.pauseMs, undefined, 'never paused');
    t.ok(out.steps.some((s) => s.phase === 'rollback' && s.name === 'cont-if-paused' && s.outcome === (paused ? 'done' : 'already-done')));
    assertSolo(t, sim);
  });
}

t.test('a failing rollback finishes the decision as failed (operator needed)', async (t) => {
  const sim = new SimQemu({ migrate: 'fail', override: { cont: { error: ['GenericError', 'cont refused by the test'] } } });
  const { journal, exec } = await setup(t, sim, { timeouts: { ...FAST, rollbackWaitMs: 200 } });
  const out = await exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2' });
  t.match(out, { ok: false, rolledBack: false, error: { message: /MigrationFailed/ }, rollbackError: { step: 'cont-if-paused', code: 'COLO_STEP_TIMEOUT' } });
  t.match(out.rollbackError?.message, /cont said GenericError: cont refused by the test/);
  t.match(journal.current(), { status: 'failed', error: { step: 'rollback/cont-if-paused', message: /rollback failed .* after: .*MigrationFailed/ } });
  t.ok(out.steps.filter((s) => s.phase === 'rollback').every((s) => s.outcome !== 'failed' || s.name === 'cont-if-paused'), 'every other undo step still ran');
  t.equal(sim.running, false, 'the guest is still paused: that is why an operator is needed');
});

t.test('QMP lost mid-switch-over: rollback cannot run, decision failed; recover() on a new connection rolls back', async (t) => {
  const sim = new SimQemu({ override: { 'x-blockdev-change': 'disconnect' } });
  const { journal, exec, dir } = await setup(t, sim);
  const out = await exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2' });
  t.match(out, { ok: false, rolledBack: false, error: { code: 'COLO_STEP_DISCONNECTED' } });
  t.match(journal.current(), { status: 'failed' });
  t.equal(sim.running, false);

  // The agent restarts: a new client, the same journal directory.
  delete sim.opts.override;
  const fake = await FakeQmpServer.start({ dir: shortTempDir(t, 'rx2-'), onCommand: sim.onCommand });
  t.teardown(() => fake.close());
  const qmp = new QmpClient({ address: fake.address, reconnect: false });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const j2 = await Journal.open(join(dir, 'state'));
  const rec = await new ResumeExecutor({ qmp, journal: j2, colo: {}, profile: 'auto', stepTimeoutMs: 1000, timeouts: FAST }).recover();
  t.match(rec, { ok: false, recovered: true, rolledBack: true, sequence: 'primary-resume' });
  t.match(j2.current(), { status: 'abandoned', abandonReason: /agent restart \(decision was failed\)/ });
  assertSolo(t, sim);
});

t.test('recover(): a half switch-over is rolled back; keepCompleted keeps a resume that had finished', async (t) => {
  const half = new SimQemu();
  half.running = false;
  half.status = 'paused';
  for (const o of ['m0', 'redire0', 'comp0', 'iothread1']) half.objects.add(o);
  half.nodes.add('replication0');
  half.children.add('children.1');
  const a = await setup(t, half);
  await a.journal.begin({ id: 'crashed', sequence: 'secondary-resume', roleBefore: 'primary', roleAfter: 'primary' });
  const rec = await a.exec.recover({ keepCompleted: true });
  t.match(rec, { recovered: true, rolledBack: true, sequence: 'secondary-resume' });
  assertSolo(t, half);
  t.match(a.journal.current(), { status: 'abandoned' });

  const done = new SimQemu();
  done.coloMode = 'primary';
  done.migration = 'colo';
  const b = await setup(t, done);
  await b.journal.begin({ id: 'almost', sequence: 'primary-resume', roleBefore: 'primary', roleAfter: 'primary' });
  const kept = await b.exec.recover({ keepCompleted: true });
  t.match(kept, { ok: true, recovered: true, rolledBack: false });
  t.match(b.journal.current(), { id: 'almost', status: 'finished' });
  t.same(sent(b.conn), [], 'nothing undone');
});

t.test('runSecondaryPrepare: idempotent on the new secondary', async (t) => {
  const sim = new SimQemu();
  const { qmp, conn } = await setup(t, sim);
  const first = await runSecondaryPrepare({ qmp, colo: {}, profile: 'auto', ownHost: '127.0.0.2', stepTimeoutMs: 1000 });
  t.equal(first.ok, true);
  const second = await runSecondaryPrepare({ qmp, colo: {}, profile: '8.1', ownHost: '127.0.0.2', stepTimeoutMs: 1000 });
  t.equal(second.ok, true);
  t.same(second.records.map((r) => `${r.name}:${r.outcome}`), ['migrate-set-capabilities:done', 'nbd-server-start:already-done', 'nbd-server-add:already-done']);
  t.same(conn.commands.map((c) => c.execute), ['nbd-server-start', 'nbd-server-add', 'migrate-set-capabilities', 'nbd-server-start', 'nbd-server-add']);
  const bad = await runSecondaryPrepare({ qmp, colo: {}, profile: 'seven', ownHost: '127.0.0.2', stepTimeoutMs: 1000 });
  t.match(bad, { ok: false, error: { code: 'COLO_STEP_ERROR' } });
});

t.test('every log line names its component once (pino keeps duplicate keys: a child of a child named twice)', async (t) => {
  const sim = new SimQemu();
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const { exec } = await setup(t, sim, { logger });
  const out = await exec.run({ sequence: 'primary-resume', reason: 'test', peerHost: '127.0.0.2' });
  t.equal(out.ok, true, out.error?.message ?? 'ok');
  t.ok(lines.length > 5, `${lines.length} lines`);
  for (const l of lines) t.equal(l.match(/"component":/g)?.length ?? 0, 1, l.slice(0, 160));
  t.ok(lines.some((l) => l.includes('"component":"colo-resume"')), "the runner's step lines");
});
