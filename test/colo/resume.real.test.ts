/**
 * The resume sequences and ResumeExecutor against real QEMU COLO pairs (TCG, loopback).
 *
 * - After a primary failover: a fresh secondary on the secondary host, secondaryPrepare, the
 *   primary resume -> COLO again (modes primary/secondary, the disk's data on the new secondary);
 *   then that secondary dies and a second primary failover works.
 * - After a secondary failover: a fresh secondary on the PRIMARY host, the secondary resume with
 *   the filters before rew0 -> COLO with the roles swapped; then the new primary dies and the
 *   fresh secondary's failover works.
 * - Faults: the new secondary killed during drive-mirror, and right after `stop`; an agent
 *   "crash" mid-switch-over recovered by recover(): each time the primary ends running solo with
 *   nothing left over, the decision abandoned; then a resume with another fresh secondary works.
 */
import { execFile } from 'node:child_process';
import t, { type Test } from 'tap';
import { Journal } from '../../src/colo/journal.js';
import { resolveQemuProfile } from '../../src/colo/profile.js';
import { ResumeExecutor, runSecondaryPrepare, type ResumeExecutorOptions, type ResumeOutcome } from '../../src/colo/resume-executor.js';
import { runResumeSteps, type ResyncProgress } from '../../src/colo/resume-runner.js';
import { primaryResume, resumeProxyIds } from '../../src/colo/resume-sequences.js';
import { runSequence } from '../../src/colo/runner.js';
import { primaryFailover, secondaryFailover } from '../../src/colo/sequences.js';
import { startFreshSecondary, type ColoPair, type FreshSecondary } from '../../src/qemu/colo-launch.js';
import { secondaryNeedsXColo } from '../../src/qemu/colo-cmdline.js';
import { QmpClient } from '../../src/qmp/index.js';
import { listBlockNodes, listObjects, queryColoStatus, queryMigrate, queryStatus, startColoPairOrSkip } from '../helpers/colo-pair.js';
import { qemuAvailable, REAP_WITH_TEST } from '../helpers/qemu.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const avail = await qemuAvailable();
const skip = avail.ok ? false : avail.reason;
const MiB = 1024 * 1024;
const STEP_TIMEOUT_MS = 5000;
const TIMEOUTS = { resyncMs: 60_000, coloMs: 30_000, jobEndMs: 10_000, rollbackWaitMs: 10_000, progressPollMs: 100 };

async function connect(t: Test, address: string): Promise<QmpClient> {
  const qmp = new QmpClient({ address, reconnect: false, commandTimeoutMs: 10_000 });
  t.teardown(() => qmp.close());
  await qmp.connect();
  return qmp;
}

async function fresh(t: Test, pair: ColoPair, host: 'primary' | 'secondary'): Promise<{ side: FreshSecondary; qmp: QmpClient }> {
  const side = await startFreshSecondary({ pair, host, lifecycle: REAP_WITH_TEST });
  t.teardown(() => side.stop());
  return { side, qmp: await connect(t, side.agentQmpAddress) };
}

async function prepare(t: Test, pair: ColoPair, f: { side: FreshSecondary; qmp: QmpClient }): Promise<void> {
  const r = await runSecondaryPrepare({ qmp: f.qmp, colo: pair.colo, profile: 'auto', ownHost: f.side.host, stepTimeoutMs: STEP_TIMEOUT_MS });
  t.equal(r.ok, true, `secondaryPrepare: ${r.error?.message ?? 'ok'}`);
}

async function waitRunning(qmp: QmpClient, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if ((await queryStatus(qmp)).running) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** HMP qemu-io on the guest's disk: real data for the mirror to copy (its output goes to QEMU's stdout). */
async function fillDisk(qmp: QmpClient, disk: string, pattern: number, bytes: number): Promise<void> {
  await qmp.execute('human-monitor-command', { 'command-line': `qemu-io ${disk} "write -P 0x${pattern.toString(16)} 0 ${bytes}"` }, { timeoutMs: 60_000 });
}

/** Reads the new secondary's export over NBD with the qemu-io tool and checks the pattern. */
function verifyExport(host: string, port: number, name: string, pattern: number, bytes: number): Promise<string> {
  return new Promise((resolve) =>
    execFile('qemu-io', ['-r', '-f', 'raw', '-c', `read -P 0x${pattern.toString(16)} 0 ${bytes}`, `nbd://${host}:${port}/${name}`], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve(`${err ? `error ${err.message} ` : ''}${stdout}${stderr}`.trim()),
    ),
  );
}

function executor(qmp: QmpClient, journal: Journal, pair: ColoPair, extra: Partial<ResumeExecutorOptions> = {}): ResumeExecutor {
  return new ResumeExecutor({ qmp, journal, colo: pair.colo, profile: 'auto', stepTimeoutMs: STEP_TIMEOUT_MS, timeouts: TIMEOUTS, ...extra });
}

const why = (o: ResumeOutcome) =>
  `${o.error ? `${o.error.code}: ${o.error.message}` : 'ok'}${o.rollbackError ? ` / rollback: ${o.rollbackError.message}` : ''}\n` +
  o.steps.map((s) => `  ${s.phase}/${s.name} ${s.outcome}${s.note ? ` (${s.note})` : ''} ${s.durationMs.toFixed(1)} ms`).join('\n');

const fmt = (ms: number | undefined) => (ms === undefined ? '-' : `${ms.toFixed(1)} ms`);

/** The primary runs solo, with nothing of a resume left over. */
async function assertSolo(t: Test, qmp: QmpClient, pair: ColoPair, what: string): Promise<void> {
  t.match(await queryStatus(qmp), { running: true }, `${what}: guest running`);
  t.match(await queryColoStatus(qmp), { mode: 'none' }, `${what}: COLO mode none`);
  t.notOk((await listBlockNodes(qmp)).some((n) => n['node-name'] === pair.colo.replicationNode), `${what}: no ${pair.colo.replicationNode}`);
  const objects = await listObjects(qmp);
  t.same(resumeProxyIds(pair.colo).filter((id) => objects.includes(id)), [], `${what}: no proxy objects`);
  t.same(await qmp.execute('query-block-jobs'), [], `${what}: no block job`);
}

async function primaryFailoverNow(t: Test, qmp: QmpClient, pair: ColoPair, dead: { kill(s: NodeJS.Signals): void; qemu: { exited: Promise<unknown> } }): Promise<void> {
  dead.kill('SIGKILL');
  await dead.qemu.exited;
  const r = await runSequence({ qmp, sequence: primaryFailover(pair.colo, resolveQemuProfile('auto', qmp.version)), stepTimeoutMs: STEP_TIMEOUT_MS });
  t.equal(r.ok, true, `primary failover: ${r.error?.message ?? 'ok'}`);
  t.ok(await waitRunning(qmp), 'running after the primary failover');
}

t.test('primary resume after a real primary failover; then a second failover', { skip }, async (t) => {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return;
  const pq = await connect(t, pair.primary.agentQmpAddress);
  await primaryFailoverNow(t, pq, pair, pair.secondary);
  const size = pair.launch.diskSizeMb * MiB;
  await fillDisk(pq, pair.colo.disk, 0x5a, size);

  const f = await fresh(t, pair, 'secondary');
  t.equal(f.side.host, pair.colo.secondaryHost);
  await prepare(t, pair, f);
  const again = await runSecondaryPrepare({ qmp: f.qmp, colo: pair.colo, profile: 'auto', ownHost: f.side.host, stepTimeoutMs: STEP_TIMEOUT_MS });
  t.same(
    again.records.map((r) => [r.name, r.outcome]),
    [...(secondaryNeedsXColo(pair.version) ? [['migrate-set-capabilities', 'done']] : []), ['nbd-server-start', 'already-done'], ['nbd-server-add', 'already-done']],
    'a second secondaryPrepare: "NBD server already running" and "Block export id ... is already in use" are recognised',
  );

  const journal = await Journal.open(shortTempDir(t, 'rj-'));
  const progress: ResyncProgress[] = [];
  const out = await executor(pq, journal, pair, { onProgress: (p) => progress.push(p) }).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.secondaryHost });
  t.equal(out.ok, true, why(out));
  if (!out.ok) return;
  t.match(await queryColoStatus(pq), { mode: 'primary' });
  t.match(await queryColoStatus(f.qmp), { mode: 'secondary' });
  t.match(await queryStatus(pq), { running: true });
  t.match(await queryStatus(f.qmp), { running: true });
  t.match(await queryMigrate(pq), { status: 'colo' });
  t.equal(out.bytes, size, 'the mirror reported the whole disk');
  t.ok(progress.length > 0 && progress.at(-1)?.ready === true && progress.at(-1)?.percent === 100, 'progress reported up to 100 %');
  t.ok(out.pauseMs !== undefined && out.pauseMs > 0, 'pause measured');
  t.match(journal.current(), { sequence: 'primary-resume', status: 'finished' });
  t.ok(journal.current()?.completedSteps.includes('switchover/migrate'));
  const check = await verifyExport(f.side.host, pair.colo.nbdPort, pair.colo.nbdExport, 0x5a, size);
  t.match(check, /^read \d+\/\d+ bytes at offset 0/, `the new secondary's disk holds the primary's data: ${check.split('\n')[0]}`);
  t.notMatch(check, /Pattern verification failed/);
  t.comment(`primary resume, ${pair.launch.diskSizeMb} MiB disk of data: resync ${fmt(out.resyncMs)}, pause ${fmt(out.pauseMs)} (RESUME event: ${fmt(out.pauseByEventMs)}), total ${fmt(out.durationMs)}`);

  // The new secondary dies: a second primary failover on the resumed pair works.
  await primaryFailoverNow(t, pq, pair, f.side);
  t.match(await queryColoStatus(pq), { mode: 'none', 'last-mode': 'primary' });
  await assertSolo(t, pq, pair, 'after the second failover');
});

t.test('secondary resume after a real secondary failover: roles swapped, filters before rew0; then the new primary dies', { skip }, async (t) => {
  const pair = await startColoPairOrSkip(t, { diskSizeMb: 256 });
  if (!pair) return;
  const np = await connect(t, pair.secondary.agentQmpAddress);
  pair.primary.kill('SIGKILL');
  await pair.primary.qemu.exited;
  const profile = resolveQemuProfile('auto', np.version);
  const sf = await runSequence({ qmp: np, sequence: secondaryFailover(pair.colo, profile, { proxyListenHost: pair.colo.secondaryHost }), stepTimeoutMs: STEP_TIMEOUT_MS });
  t.equal(sf.ok, true, `secondary failover: ${sf.error?.message ?? 'ok'}`);
  t.ok(await waitRunning(np), 'the former secondary runs');
  const size = 256 * MiB;
  await fillDisk(np, pair.colo.disk, 0xa5, size);

  const f = await fresh(t, pair, 'primary');
  t.equal(f.side.host, pair.colo.primaryHost, 'the new secondary runs on the old primary host');
  await prepare(t, pair, f);
  const journal = await Journal.open(shortTempDir(t, 'rs-'));
  const wrong = await executor(np, journal, pair).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.primaryHost });
  t.match(wrong, { ok: false, rolledBack: false, error: { code: 'COLO_RESUME_PRECONDITION' }, steps: [] }, 'primary-resume refused on a former secondary (rew0 present)');
  t.match(wrong.error?.message, /rew0 is present/);
  t.equal(journal.current(), undefined, 'nothing journalled for a refused resume');

  const out = await executor(np, journal, pair).run({ sequence: 'secondary-resume', reason: 'test', peerHost: pair.colo.primaryHost });
  t.equal(out.ok, true, why(out));
  if (!out.ok) return;
  t.match(await queryColoStatus(np), { mode: 'primary' }, 'the former secondary is the primary');
  t.match(await queryColoStatus(f.qmp), { mode: 'secondary' }, 'the new QEMU on the old primary host is the secondary');
  t.match(await queryStatus(f.qmp), { running: true });
  const net = await np.execute<string>('human-monitor-command', { 'command-line': 'info network' });
  const order = [...net.matchAll(/^\s+- (\S+): type=/gm)].map((m) => m[1]);
  t.same(order, [pair.colo.ids.m0, pair.colo.ids.redire0, pair.colo.ids.redire1, pair.colo.ids.rew0], `filters inserted before rew0 (info network: ${order.join(', ')})`);
  const check = await verifyExport(f.side.host, pair.colo.nbdPort, pair.colo.nbdExport, 0xa5, size);
  t.match(check, /^read \d+\/\d+ bytes at offset 0/, `data on the new secondary: ${check.split('\n')[0]}`);
  t.comment(`secondary resume, 256 MiB disk of data: resync ${fmt(out.resyncMs)}, pause ${fmt(out.pauseMs)} (RESUME event: ${fmt(out.pauseByEventMs)}), total ${fmt(out.durationMs)}`);

  // The new primary (the former secondary) dies: the fresh secondary takes over.
  pair.secondary.kill('SIGKILL');
  await pair.secondary.qemu.exited;
  const sf2 = await runSequence({ qmp: f.qmp, sequence: secondaryFailover(pair.colo, resolveQemuProfile('auto', f.qmp.version), { proxyListenHost: f.side.host }), stepTimeoutMs: STEP_TIMEOUT_MS });
  t.equal(sf2.ok, true, `secondary failover of the fresh secondary: ${sf2.error?.message ?? 'ok'}`);
  t.ok(await waitRunning(f.qmp), 'the fresh secondary runs the guest');
  t.match(await queryColoStatus(f.qmp), { mode: 'none', 'last-mode': 'secondary' });
});

t.test('new secondary killed during drive-mirror, after stop, and an agent crash mid-switch-over: rolled back each time; then a resume works', { skip }, async (t) => {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return;
  const pq = await connect(t, pair.primary.agentQmpAddress);
  const journal = await Journal.open(shortTempDir(t, 'rf-'));

  const inColo = await executor(pq, journal, pair).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.secondaryHost });
  t.match(inColo.error, { code: 'COLO_RESUME_PRECONDITION' }, 'refused while the pair is in COLO');
  t.match(inColo.error?.message, /COLO mode is primary.*proxy objects present: comp0, iothread1, m0, redire0, redire1/);

  await primaryFailoverNow(t, pq, pair, pair.secondary);
  const size = pair.launch.diskSizeMb * MiB;
  await fillDisk(pq, pair.colo.disk, 0x3c, size);

  // 1. Killed during drive-mirror: limited to 16 MiB/s, killed at the first progress report.
  const f1 = await fresh(t, pair, 'secondary');
  await prepare(t, pair, f1);
  let killedAt: ResyncProgress | undefined;
  const o1 = await executor(pq, journal, pair, {
    resyncSpeed: 16 * MiB,
    onProgress: (p) => {
      if (killedAt || p.ready) return;
      killedAt = p;
      f1.side.kill('SIGKILL');
    },
  }).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.secondaryHost });
  t.ok(killedAt && !killedAt.ready, `killed during the mirror at ${killedAt?.offset}/${killedAt?.len}`);
  t.match(o1, { ok: false, rolledBack: true, error: { step: 'wait-job-ready resync' } }, why(o1));
  t.equal(o1.pauseMs, undefined, 'never paused');
  t.match(journal.current(), { status: 'abandoned', abandonReason: /^rolled back: prepare step "wait-job-ready resync" failed/ });
  t.comment(`killed during drive-mirror: ${o1.error?.message}`);
  await assertSolo(t, pq, pair, 'after the kill during drive-mirror');

  // 2. Killed right after `stop`.
  const f2 = await fresh(t, pair, 'secondary');
  await prepare(t, pair, f2);
  const o2 = await executor(pq, journal, pair, {
    onStep: async (r) => {
      if (r.phase === 'switchover' && r.name === 'stop') {
        f2.side.kill('SIGKILL');
        await f2.side.qemu.exited;
      }
    },
  }).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.secondaryHost });
  t.match(o2, { ok: false, rolledBack: true }, why(o2));
  t.equal(o2.error && 'step' in o2.error ? o2.steps.find((s) => s.outcome === 'failed')?.phase : undefined, 'switchover', 'failed in the switch-over');
  t.ok(o2.steps.some((s) => s.phase === 'rollback' && s.name === 'cont-if-paused' && s.outcome === 'done'), 'the rollback continued the paused guest');
  t.ok(o2.pauseMs !== undefined && o2.pauseMs > 0, 'pause measured until the rollback resumed the guest');
  t.match(journal.current(), { status: 'abandoned' });
  t.comment(`killed after stop: ${o2.error?.message}; guest paused ${fmt(o2.pauseMs)}`);
  await assertSolo(t, pq, pair, 'after the kill after stop');

  // 3. The agent "crashes" half-way through the switch-over (guest paused, node and objects added);
  //    the next agent's recover() rolls it back.
  const f3 = await fresh(t, pair, 'secondary');
  await prepare(t, pair, f3);
  const seq = primaryResume(pair.colo, resolveQemuProfile('auto', pq.version), { peerHost: pair.colo.secondaryHost, timeouts: TIMEOUTS });
  await journal.begin({ id: 'crashed', sequence: seq.name, roleBefore: 'primary', roleAfter: 'primary' });
  const p = await runResumeSteps({ qmp: pq, phase: 'prepare', steps: seq.prepare, stepTimeoutMs: STEP_TIMEOUT_MS });
  const upTo = seq.switchover.findIndex((s) => s.name === `object-add ${pair.colo.ids.comp0}`);
  const s = await runResumeSteps({ qmp: pq, phase: 'switchover', steps: seq.switchover.slice(0, upTo + 1), stepTimeoutMs: STEP_TIMEOUT_MS });
  t.ok(p.ok && s.ok, `half a switch-over done: ${s.error?.message ?? 'ok'}`);
  t.match(await queryStatus(pq), { running: false }, 'the guest is paused mid-switch-over');
  const blocked = await executor(pq, journal, pair).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.secondaryHost });
  t.match(blocked.error, { code: 'COLO_RESUME_BLOCKED' }, 'no new resume while one is unfinished');
  const rec = await executor(pq, journal, pair).recover();
  t.match(rec, { ok: false, recovered: true, rolledBack: true }, rec ? why(rec) : 'no outcome');
  t.match(journal.current(), { id: 'crashed', status: 'abandoned', abandonReason: /agent restart/ });
  await assertSolo(t, pq, pair, 'after recover()');
  t.equal(await executor(pq, journal, pair).recover(), undefined, 'nothing left to recover');
  await f3.side.stop();

  // 4. A later resume with another fresh secondary succeeds.
  const f4 = await fresh(t, pair, 'secondary');
  await prepare(t, pair, f4);
  const o4 = await executor(pq, journal, pair).run({ sequence: 'primary-resume', reason: 'test', peerHost: pair.colo.secondaryHost });
  t.equal(o4.ok, true, why(o4));
  t.match(await queryColoStatus(pq), { mode: 'primary' });
  t.match(await queryColoStatus(f4.qmp), { mode: 'secondary' });
  t.comment(`resume after three failed attempts: resync ${fmt(o4.resyncMs)}, pause ${fmt(o4.pauseMs)}`);
});
