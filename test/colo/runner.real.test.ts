/**
 * The failover runner against real QEMU.
 *
 * Single QEMU (-S, no COLO): the secondary's and the primary's failover steps run for real, then a
 * second time, where every step must be recognised as already done. This proves on real QEMU the
 * error texts already-done.ts matches (object-del / chardev-remove / blockdev-del / HMP drive_del /
 * x-blockdev-change / nbd-server-stop of something missing, chardev-add of something present), the
 * chardev-add argument shape, and yank resolution (query-yank + block graph, out-of-band).
 * x-colo-lost-heartbeat cannot succeed outside COLO, so those runs skip it as a journal would.
 *
 * Real COLO pair (test/helpers/colo-pair.ts): both failovers after SIGKILLing the peer, driven by
 * the runner and recorded in a journal; the secondary one interrupted and resumed from the journal.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, ftruncateSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { isMissingError, missingText } from '../../src/colo/already-done.js';
import { Journal } from '../../src/colo/journal.js';
import { profileForVersion, resolveQemuProfile, type QemuProfile } from '../../src/colo/profile.js';
import { runSequence, type SequenceResult, type StepRecord } from '../../src/colo/runner.js';
import { primaryFailover, secondaryFailover, type ColoTopologyInput, type Sequence } from '../../src/colo/sequences.js';
import { QmpClient, QmpCommandError, type QmpCommandRecord } from '../../src/qmp/index.js';
import { listBlockNodes, listChardevs, listObjects, pickColoPorts, queryColoStatus, queryStatus, queryYank, startColoPairOrSkip } from '../helpers/colo-pair.js';
import { qemuAvailable, startQemu, type RunningQemu } from '../helpers/qemu.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const avail = await qemuAvailable();
const skip = avail.ok ? false : avail.reason;
const LOST_HEARTBEAT = ['x-colo-lost-heartbeat'];

async function connect(t: Test, q: RunningQemu): Promise<QmpClient> {
  const qmp = new QmpClient({ address: q.qmpAddresses[0] as string, reconnect: false, commandTimeoutMs: 10_000 });
  t.teardown(() => qmp.close());
  await qmp.connect();
  return qmp;
}

/** The QMP error of a command that must fail. */
async function qmpError(qmp: QmpClient, command: string, args?: Record<string, unknown>): Promise<QmpCommandError> {
  try {
    await qmp.execute(command, args);
  } catch (err) {
    if (err instanceof QmpCommandError) return err;
    throw err;
  }
  throw new Error(`${command} unexpectedly succeeded`);
}

const outcomes = (r: SequenceResult) => Object.fromEntries(r.steps.map((s) => [s.name, s.outcome]));
const why = (r: SequenceResult) => (r.error ? `${r.error.code} ${r.error.step}: ${r.error.message}` : 'ok');

function sparseFile(path: string, bytes: number): string {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
  return path;
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createConnection({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

t.test('secondary failover steps on a single real QEMU: done, then all already done', { skip }, async (t) => {
  const ports = await pickColoPorts();
  const profile = profileForVersion(avail.ok ? avail : { major: 0, minor: 0, micro: 0 });
  const reconnect = profile.chardevReconnectKey === 'reconnect' ? 'reconnect=1' : 'reconnect-ms=1000';
  // red0/red1 point at ports nobody listens on (the dead primary); reconnect keeps startup happy.
  const q = await startQemu({
    t,
    extraArgs: [
      '-netdev', 'user,id=hn0',
      '-device', 'rtl8139,id=e0,netdev=hn0,romfile=',
      '-chardev', `socket,id=red0,host=127.0.0.1,port=${ports.nbdPort},${reconnect}`,
      '-chardev', `socket,id=red1,host=127.0.0.1,port=${ports.migrationPort},${reconnect}`,
      '-object', 'filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0',
      '-object', 'filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1',
      '-object', 'filter-rewriter,id=rew0,netdev=hn0,queue=all',
    ],
  });
  const qmp = await connect(t, q);
  const colo: ColoTopologyInput = { mirrorPort: ports.mirrorPort, compare1Port: ports.compare1Port, compare0Port: ports.compare0Port, compareOutPort: ports.compareOutPort };
  const live = resolveQemuProfile('auto', qmp.version);
  const sequence = secondaryFailover(colo, live);

  const first = await runSequence({ qmp, sequence, stepTimeoutMs: 5000, alreadyDone: LOST_HEARTBEAT });
  t.equal(first.ok, true, why(first));
  t.same(outcomes(first), {
    yank: 'done',
    'nbd-server-stop': 'already-done',
    'x-colo-lost-heartbeat': 'skipped',
    'object-del f2': 'done',
    'object-del f1': 'done',
    'chardev-remove red1': 'done',
    'chardev-remove red0': 'done',
    'chardev-add mirror0': 'done',
    'chardev-add compare1': 'done',
    'chardev-add compare0': 'done',
    'chardev-add compare0-0': 'done',
    'chardev-add compare_out': 'done',
    'chardev-add compare_out0': 'done',
  }, 'nbd-server-stop: "NBD server not running" counts as done');
  t.same(first.steps[0]?.yanked?.map((i) => JSON.stringify(i)).sort(), ['{"type":"chardev","id":"red0"}', '{"type":"chardev","id":"red1"}'], 'the chardevs to the peer, and nothing else');
  t.equal(first.steps[0]?.oob, true, 'real QEMU took query-yank and yank out-of-band');
  const objects = await listObjects(qmp);
  t.notOk(objects.includes('f1') || objects.includes('f2'), 'filters gone');
  t.ok(objects.includes('rew0'), 'rew0 stays');
  const chardevs = await listChardevs(qmp);
  for (const id of ['mirror0', 'compare1', 'compare0', 'compare0-0', 'compare_out', 'compare_out0']) t.ok(chardevs.includes(id), `${id} added`);
  t.notOk(chardevs.includes('red0') || chardevs.includes('red1'), 'red0/red1 gone');

  // The same sequence again, as after an agent crash that lost the journal's last entries.
  const second = await runSequence({ qmp, sequence, stepTimeoutMs: 5000, alreadyDone: LOST_HEARTBEAT });
  t.equal(second.ok, true, why(second));
  t.same(second.steps[0]?.yanked, [], 'red0/red1 are gone, so nothing to yank (and no failing yank)');
  t.same(second.alreadyDone, sequence.steps.map((s) => s.name).filter((n) => n !== 'yank' && n !== 'x-colo-lost-heartbeat'),
    'object-del / chardev-remove of missing ids and chardev-add of present ones are recognised on real QEMU');

  // Outside COLO, x-colo-lost-heartbeat fails and is not mistaken for done.
  const lost = await runSequence({ qmp, sequence: { ...sequence, steps: sequence.steps.filter((s) => s.name === 'x-colo-lost-heartbeat') }, stepTimeoutMs: 5000 });
  t.equal(lost.ok, false);
  t.match(lost.error, { code: 'COLO_STEP_FAILED', step: 'x-colo-lost-heartbeat', errorClass: 'GenericError' });
  t.comment(`x-colo-lost-heartbeat outside COLO: ${lost.error?.desc}`);
});

t.test('primary failover steps on a single real QEMU with an NBD client: done, then already done; blockdev-del too', { skip }, async (t) => {
  const dir = shortTempDir(t, 'pf-');
  const ports = await pickColoPorts();
  const exportFile = sparseFile(join(dir, 'secondary.raw'), 4 << 20);
  const diskFile = sparseFile(join(dir, 'primary.raw'), 4 << 20);
  // qemu-nbd stands in for the secondary's NBD export parent0.
  const nbd = spawn('qemu-nbd', ['-f', 'raw', '-x', 'parent0', '-b', '127.0.0.1', '-p', String(ports.nbdPort), '-t', '-e', '4', exportFile], { stdio: 'ignore' });
  const nbdFailed = new Promise<Error>((resolve) => nbd.once('error', resolve));
  t.teardown(() => {
    nbd.kill('SIGKILL');
  });
  const started = await Promise.race([waitForPort(ports.nbdPort).then(() => undefined), nbdFailed]);
  if (started instanceof Error) {
    t.pass('qemu-nbd', { skip: `qemu-nbd cannot run (${started.message}); install it with: apt-get install qemu-utils` });
    return;
  }
  const p = ports;
  const q = await startQemu({
    t,
    extraArgs: [
      '-netdev', 'user,id=hn0',
      '-device', 'rtl8139,id=e0,netdev=hn0,romfile=',
      '-chardev', `socket,id=mirror0,host=127.0.0.1,port=${p.mirrorPort},server=on,wait=off`,
      '-chardev', `socket,id=compare1,host=127.0.0.1,port=${p.compare1Port},server=on,wait=off`,
      '-chardev', `socket,id=compare0,host=127.0.0.1,port=${p.compare0Port},server=on,wait=off`,
      '-chardev', `socket,id=compare0-0,host=127.0.0.1,port=${p.compare0Port}`,
      '-chardev', `socket,id=compare_out,host=127.0.0.1,port=${p.compareOutPort},server=on,wait=off`,
      '-chardev', `socket,id=compare_out0,host=127.0.0.1,port=${p.compareOutPort}`,
      '-object', 'filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0',
      '-object', 'filter-redirector,netdev=hn0,id=redire0,queue=rx,indev=compare_out',
      '-object', 'filter-redirector,netdev=hn0,id=redire1,queue=rx,outdev=compare0',
      '-object', 'iothread,id=iothread1',
      '-object', 'colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1',
      '-drive', `if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,vote-threshold=1,children.0.file.filename=${diskFile},children.0.driver=raw`,
    ],
  });
  const qmp = await connect(t, q);
  const attach = async () => {
    const out = await qmp.execute('human-monitor-command', {
      'command-line': `drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,file.host=127.0.0.1,file.port=${p.nbdPort},file.export=parent0,node-name=replication0`,
    });
    t.equal(out, '', 'drive_add replication0');
    await qmp.execute('x-blockdev-change', { parent: 'colo-disk0', node: 'replication0' });
  };
  await attach();
  const nbdNodes = (await queryYank(qmp)).filter((i) => i.type === 'block-node');
  t.equal(nbdNodes.length, 1, 'query-yank lists the NBD client node');

  const live = resolveQemuProfile('auto', qmp.version);
  const sequence = primaryFailover({}, live);
  const first = await runSequence({ qmp, sequence, stepTimeoutMs: 5000, alreadyDone: LOST_HEARTBEAT });
  t.equal(first.ok, true, why(first));
  t.same(first.completed, sequence.steps.map((s) => s.name).filter((n) => n !== 'x-colo-lost-heartbeat'));
  t.same(first.alreadyDone, []);
  const yanked = first.steps[0]?.yanked ?? [];
  t.same(yanked.filter((i) => i.type === 'block-node'), nbdNodes, 'the NBD node under replication0, found through the block graph');
  t.same(yanked.filter((i) => i.type === 'chardev').map((i) => ('id' in i ? i.id : '')).sort(), ['compare1', 'mirror0'], 'only the chardevs to the peer');
  t.notOk((await listBlockNodes(qmp)).some((n) => n['node-name'] === 'replication0'), 'replication0 gone');
  const objects = await listObjects(qmp);
  for (const id of ['comp0', 'iothread1', 'm0', 'redire0', 'redire1']) t.notOk(objects.includes(id), `${id} gone`);

  const second = await runSequence({ qmp, sequence, stepTimeoutMs: 5000, alreadyDone: LOST_HEARTBEAT });
  t.equal(second.ok, true, why(second));
  t.same(second.alreadyDone, ['x-blockdev-change', 'drive_del', 'object-del comp0', 'object-del iothread1', 'object-del m0', 'object-del redire0', 'object-del redire1'],
    'x-blockdev-change of a missing child, HMP drive_del of a missing node and object-del of missing ids are recognised on real QEMU');

  // The blockdev-del form, on a freshly attached node.
  await attach();
  const bd = primaryFailover({}, resolveQemuProfile('auto', qmp.version, { nbdNodeRemoval: 'blockdev-del' }));
  const third = await runSequence({ qmp, sequence: bd, stepTimeoutMs: 5000, alreadyDone: LOST_HEARTBEAT });
  t.equal(third.ok, true, why(third));
  t.match(outcomes(third), { 'x-blockdev-change': 'done', 'blockdev-del': 'done' });
  const fourth = await runSequence({ qmp, sequence: bd, stepTimeoutMs: 5000, alreadyDone: LOST_HEARTBEAT });
  t.match(outcomes(fourth), { 'x-blockdev-change': 'already-done', 'blockdev-del': 'already-done' }, 'blockdev-del of a missing node is recognised');

  // And the texts themselves, straight from QEMU.
  const texts: Array<[string, Record<string, unknown>, Parameters<typeof missingText>[0]]> = [
    ['object-del', { id: 'no-such-obj' }, { kind: 'object', id: 'no-such-obj' }],
    ['chardev-remove', { id: 'no-such-chr' }, { kind: 'chardev', id: 'no-such-chr' }],
    ['blockdev-del', { 'node-name': 'no-such-node' }, { kind: 'block-node', id: 'no-such-node' }],
    ['x-blockdev-change', { parent: 'colo-disk0', child: 'children.9' }, { kind: 'quorum-child', parent: 'colo-disk0', child: 'children.9' }],
    ['nbd-server-stop', {}, { kind: 'nbd-server' }],
  ];
  for (const [command, args, target] of texts) {
    const err = await qmpError(qmp, command, args);
    t.equal(err.desc, missingText(target), `${command}: ${err.errorClass} "${err.desc}"`);
  }
  const hmpReply = await qmp.execute<string>('human-monitor-command', { 'command-line': 'drive_del no-such-drive' });
  t.ok(isMissingError({ kind: 'hmp-drive', id: 'no-such-drive' }, undefined, hmpReply), `HMP drive_del of a missing drive: ${JSON.stringify(hmpReply)}`);
});

// ---- a real COLO pair ----

function journalHook(journal: Journal) {
  return async (r: StepRecord) => {
    if (r.outcome === 'done' || r.outcome === 'already-done') await journal.stepDone(r.name);
  };
}

function countCommands(qmp: QmpClient): Map<string, number> {
  const counts = new Map<string, number>();
  qmp.on('command', (r: QmpCommandRecord) => counts.set(r.command, (counts.get(r.command) ?? 0) + 1));
  return counts;
}

t.test('real COLO pair: primary failover through runner and journal after the secondary was SIGKILLed', { skip }, async (t) => {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return;
  const qmp = new QmpClient({ address: pair.primary.agentQmpAddress, reconnect: false, commandTimeoutMs: 5000 });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const profile: QemuProfile = resolveQemuProfile('auto', qmp.version);
  const journal = await Journal.open(shortTempDir(t, 'jp-'));

  pair.secondary.kill('SIGKILL');
  await pair.secondary.qemu.exited;
  const sequence: Sequence = primaryFailover(pair.colo, profile);
  t.equal((await journal.begin({ id: 'p-1', sequence: sequence.name, roleBefore: 'primary', roleAfter: 'primary' })).started, true);
  const result = await runSequence({ qmp, sequence, stepTimeoutMs: 5000, onStep: journalHook(journal) });
  await journal.finish(result);
  t.equal(result.ok, true, `${why(result)}\n${pair.diagnostics()}`);
  if (!result.ok) return;
  const yanked = result.steps[0]?.yanked ?? [];
  t.ok(yanked.some((i) => i.type === 'migration'), 'the migration stream was yanked');
  t.ok(yanked.some((i) => i.type === 'block-node'), 'the NBD client node was yanked');
  t.same(await queryColoStatus(qmp), { mode: 'none', 'last-mode': 'primary', reason: 'request' });
  t.match(await queryStatus(qmp), { running: true, status: 'running' });
  t.match(journal.current(), { status: 'finished', completedSteps: sequence.steps.map((s) => s.name) });
  t.equal(journal.role()?.role, 'primary');
  t.comment(`primary failover: ${result.steps.map((s) => `${s.name} ${s.durationMs.toFixed(1)} ms`).join(', ')}; total ${result.durationMs.toFixed(1)} ms`);
});

t.test('real COLO pair: secondary failover interrupted mid-way, resumed from the journal without repeating steps', { skip }, async (t) => {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return;
  const stateDir = shortTempDir(t, 'js-');
  const qmp = new QmpClient({ address: pair.secondary.agentQmpAddress, reconnect: false, commandTimeoutMs: 5000 });
  t.teardown(() => qmp.close());
  await qmp.connect();
  const counts = countCommands(qmp);
  const sequence = secondaryFailover(pair.colo, resolveQemuProfile('auto', qmp.version));

  pair.primary.kill('SIGKILL');
  await pair.primary.qemu.exited;

  // First agent: begins, and "crashes" after five steps (it simply stops; the journal has them).
  const j1 = await Journal.open(stateDir);
  await j1.begin({ id: 's-1', sequence: sequence.name, roleBefore: 'secondary', roleAfter: 'primary' });
  const partial = await runSequence({ qmp, sequence: { ...sequence, steps: sequence.steps.slice(0, 5) }, stepTimeoutMs: 5000, onStep: journalHook(j1) });
  t.equal(partial.ok, true, why(partial));

  // Second agent: the trigger fires again; the journal says resume.
  const j2 = await Journal.open(stateDir);
  const b = await j2.begin({ id: 's-2', sequence: sequence.name, roleBefore: 'secondary', roleAfter: 'primary' });
  t.equal(b.started, false, 'no second decision while s-1 is unfinished');
  const decision = await j2.resume();
  t.same(decision.completedSteps, sequence.steps.slice(0, 5).map((s) => s.name));
  const result = await runSequence({ qmp, sequence, stepTimeoutMs: 5000, alreadyDone: decision.completedSteps, onStep: journalHook(j2) });
  await j2.finish(result);
  t.equal(result.ok, true, `${why(result)}\n${pair.diagnostics()}`);
  t.same(result.skipped, decision.completedSteps);
  t.equal(counts.get('x-colo-lost-heartbeat'), 1, 'x-colo-lost-heartbeat sent exactly once across both runs');
  t.equal(counts.get('nbd-server-stop'), 1);
  t.same(await queryColoStatus(qmp), { mode: 'none', 'last-mode': 'secondary', reason: 'request' });
  t.match(await queryStatus(qmp), { running: true, status: 'running' });
  const chardevs = await listChardevs(qmp);
  const { ids } = pair.colo;
  for (const id of [ids.mirror0, ids.compare1, ids.compare0, ids.compare0_0, ids.compare_out, ids.compare_out0]) t.ok(chardevs.includes(id), `${id} added`);
  const reopened = await Journal.open(stateDir);
  t.match(reopened.current(), { id: 's-1', status: 'finished', completedSteps: sequence.steps.map((s) => s.name) });
  t.equal(reopened.role()?.role, 'primary', 'the former secondary is recorded as primary');
});
