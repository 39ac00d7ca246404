/**
 * The COLO pair harness against real QEMU: the documented pair comes up (also two at once), a
 * failed bring-up leaves nothing behind, and both documented failover sequences (facts §2) run
 * on a pair whose peer was SIGKILLed, with and without yanking the dead peer's connections first.
 *
 * The failover runs are recorded through a QMP tap. With COLO_RECORD_TRANSCRIPTS=1 they are
 * written to test/fixtures/qmp-transcripts/<scenario>-qemu-<version>.jsonl (plus .meta.json
 * with the kill and sequence times) for the QMP simulator; otherwise they are only checked.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import t, { type Test } from 'tap';
import { QmpClient, type QmpEvent } from '../../src/qmp/index.js';
import { chardevReconnectOption, coloSupport, DOCUMENTED_COLO, secondaryNeedsXColo } from './colo-cmdline.js';
import {
  ColoPairStartError,
  listBlockNodes,
  listChardevs,
  listObjects,
  queryColoStatus,
  queryMigrate,
  queryStatus,
  queryYank,
  recordQmp,
  startColoPair,
  startColoPairOrSkip,
  type ColoPair,
  type ColoRole,
  type QmpTranscriptEntry,
} from './colo-pair.js';
import { qemuAvailable } from './qemu.js';
import { processAlive } from './proc.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/qmp-transcripts/', import.meta.url));
const RECORD = process.env.COLO_RECORD_TRANSCRIPTS === '1';

const v = (major: number, minor: number, micro: number) => ({ major, minor, micro, package: '' });

t.test('version decisions (facts §4)', async (t) => {
  t.ok(coloSupport(v(7, 2, 22)).ok, '7.2.22 can');
  t.ok(coloSupport(v(10, 0, 7)).ok, '10.0.7 has the fix');
  t.ok(coloSupport(v(10, 2, 0)).ok, '10.2 is past the regression');
  for (const bad of [v(10, 0, 0), v(10, 0, 2), v(10, 0, 6), v(10, 1, 0), v(10, 1, 3)]) {
    const r = coloSupport(bad);
    t.notOk(r.ok, `${bad.major}.${bad.minor}.${bad.micro} cannot`);
    if (!r.ok) t.match(r.reason, /regression.*fixed in 10\.0\.7/);
  }
  t.notOk(coloSupport(v(5, 2, 0)).ok, 'older than 6.0');
  t.notOk(secondaryNeedsXColo(v(8, 0, 5)));
  t.ok(secondaryNeedsXColo(v(8, 1, 0)));
  t.equal(chardevReconnectOption(v(9, 1, 2), 1), 'reconnect=1');
  t.equal(chardevReconnectOption(v(9, 2, 0), 1), 'reconnect-ms=1000');
});

t.test('startColoPairOrSkip marks the test skipped with the reason when QEMU cannot run', async (t) => {
  const skipped: Array<{ message: string; skip: string }> = [];
  const fakeT = { teardown: (fn: () => unknown) => t.teardown(fn), pass: (message: string, extra: { skip: string }) => skipped.push({ message, ...extra }) };
  const pair = await startColoPairOrSkip(fakeT, { binary: 'qemu-system-nonexistent-arch' });
  t.equal(pair, undefined);
  t.equal(skipped.length, 1);
  t.match(skipped[0]?.skip, /not found in PATH.*apt-get install/);
});

const avail = await qemuAvailable();
const support = avail.ok ? coloSupport(avail) : avail;
const skip = support.ok ? false : support.reason;

t.test('a missing qemu-img is a skip reason, not a failure', { skip }, async (t) => {
  const r = await startColoPair({ t, qemuImg: 'qemu-img-nonexistent' });
  t.equal(r.ok, false);
  if (!r.ok) t.match(r.reason, /qemu-img-nonexistent not found.*qemu-utils/);
});

t.test('a pair comes up in COLO, with the documented names, and stop() leaves no process or dir', { skip }, async (t) => {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return;
  const { primary, secondary, colo } = pair;
  t.comment(`QEMU ${pair.version.major}.${pair.version.minor}.${pair.version.micro}; bring-up ${JSON.stringify(roundAll(pair.timings))}`);
  t.match(await queryColoStatus(primary), { mode: 'primary' });
  t.match(await queryColoStatus(secondary), { mode: 'secondary' });
  t.match(await queryMigrate(primary), { status: 'colo' });
  t.match(await queryMigrate(secondary), { status: 'colo' });
  t.match(await queryStatus(primary), { running: true, status: 'running' });
  t.match(await queryStatus(secondary), { running: true, status: 'running' });

  const ids = colo.ids;
  const pObjects = await listObjects(primary);
  for (const id of [ids.comp0, ids.iothread1, ids.m0, ids.redire0, ids.redire1]) t.ok(pObjects.includes(id), `primary has object ${id}`);
  const pChardevs = await listChardevs(primary);
  for (const id of [ids.mirror0, ids.compare1, ids.compare0, ids.compare0_0, ids.compare_out, ids.compare_out0]) t.ok(pChardevs.includes(id), `primary has chardev ${id}`);
  t.ok((await listBlockNodes(primary)).some((n) => n['node-name'] === colo.replicationNode && n.drv === 'replication'), 'primary has replication0');
  const sObjects = await listObjects(secondary);
  for (const id of [ids.f1, ids.f2, ids.rew0]) t.ok(sObjects.includes(id), `secondary has object ${id}`);
  const sChardevs = await listChardevs(secondary);
  for (const id of [ids.red0, ids.red1]) t.ok(sChardevs.includes(id), `secondary has chardev ${id}`);

  t.same(Object.keys(colo.ids), Object.keys(DOCUMENTED_COLO.ids), 'colo section has the agent config shape');
  const ports = Object.values(pair.ports);
  t.equal(new Set(ports).size, 6, 'six distinct ports');
  t.ok(primary.qmpAddresses.length >= 2 && secondary.qmpAddresses.length >= 2, 'two or more QMP sockets per side');
  t.not(primary.agentQmpAddress, primary.harnessQmpAddress);

  const pids = [primary.pid, secondary.pid];
  const dirs = [primary.dir, secondary.dir];
  await pair.stop();
  for (const pid of pids) t.notOk(processAlive(pid), `pid ${pid} gone`);
  for (const d of dirs) t.notOk(existsSync(d), `${d} removed`);
});

t.test('t teardown alone stops the pair', { skip }, async (t) => {
  let pids: number[] = [];
  let dirs: string[] = [];
  await t.test('a test that forgets to stop its pair', async (tt) => {
    const pair = await startColoPairOrSkip(tt);
    if (!pair) return;
    pids = [pair.primary.pid, pair.secondary.pid];
    dirs = [pair.primary.dir, pair.secondary.dir];
    tt.ok(pids.every(processAlive));
  });
  for (const pid of pids) t.notOk(processAlive(pid), `pid ${pid} gone after the subtest's teardown`);
  for (const d of dirs) t.notOk(existsSync(d), `${d} removed`);
});

t.test('two pairs at once do not collide', { skip }, async (t) => {
  const [a, b] = await Promise.all([startColoPair({ t }), startColoPair({ t })]);
  if (!a.ok || !b.ok) {
    t.pass('two COLO pairs', { skip: (a.ok ? '' : a.reason) || (b.ok ? '' : b.reason) });
    return;
  }
  const pa = Object.values(a.pair.ports);
  const pb = Object.values(b.pair.ports);
  t.same(pa.filter((p) => pb.includes(p)), [], 'no shared port');
  for (const pair of [a.pair, b.pair]) {
    t.match(await queryColoStatus(pair.primary), { mode: 'primary' });
    t.match(await queryColoStatus(pair.secondary), { mode: 'secondary' });
  }
  t.comment(`parallel bring-up: ${Math.round(a.pair.timings.totalMs)} ms and ${Math.round(b.pair.timings.totalMs)} ms`);
});

t.test('a bring-up that fails half way says where, with both stderr tails, and leaves nothing behind', { skip }, async (t) => {
  // Node names must start with a letter: both QEMUs are up when the primary's drive_add fails.
  const err = await startColoPair({ t, colo: { replicationNode: '0bad' } }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ColoPairStartError, 'ColoPairStartError');
  if (!(err instanceof ColoPairStartError)) return;
  t.equal(err.code, 'COLO_PAIR_START_FAILED');
  t.equal(err.step, 'primary: drive_add replication');
  t.match(err.message, /primary \(pid \d+.*stderr:[\s\S]*secondary \(pid \d+/);
  t.equal(err.pids.length, 2, 'both had been started');
  for (const pid of err.pids) t.notOk(processAlive(pid), `pid ${pid} gone`);
  for (const d of err.dirs) t.notOk(existsSync(d), `${d} removed`);
});

// ---- failover runs ----

interface Step {
  command: string;
  args?: Record<string, unknown>;
}

interface StepResult extends Step {
  ok: boolean;
  ms: number;
  reply?: unknown;
  error?: string;
}

/** The documented primary failover (facts §2): the secondary died, continue on the primary. */
function primaryFailoverSteps(pair: ColoPair): Step[] {
  const { colo } = pair;
  const { ids } = colo;
  return [
    { command: 'x-blockdev-change', args: { parent: colo.disk, child: colo.quorumChild } },
    { command: 'human-monitor-command', args: { 'command-line': `drive_del ${colo.replicationNode}` } },
    ...[ids.comp0, ids.iothread1, ids.m0, ids.redire0, ids.redire1].map((id) => ({ command: 'object-del', args: { id } })),
    { command: 'x-colo-lost-heartbeat' },
  ];
}

/** The documented secondary failover (facts §2): the primary died, take over and prepare to be primary. */
function secondaryFailoverSteps(pair: ColoPair): Step[] {
  const { colo } = pair;
  const { ids } = colo;
  const socket = (id: string, host: string, port: number, server: boolean): Step => ({
    command: 'chardev-add',
    args: { id, backend: { type: 'socket', data: { addr: { type: 'inet', data: { host, port: String(port) } }, server } } },
  });
  // The document binds mirror0/compare1 to 0.0.0.0; the harness binds public listeners to the side's own host.
  const pub = colo.secondaryHost;
  return [
    { command: 'nbd-server-stop' },
    { command: 'x-colo-lost-heartbeat' },
    { command: 'object-del', args: { id: ids.f2 } },
    { command: 'object-del', args: { id: ids.f1 } },
    { command: 'chardev-remove', args: { id: ids.red1 } },
    { command: 'chardev-remove', args: { id: ids.red0 } },
    socket(ids.mirror0, pub, colo.mirrorPort, true),
    socket(ids.compare1, pub, colo.compare1Port, true),
    socket(ids.compare0, '127.0.0.1', colo.compare0Port, true),
    socket(ids.compare0_0, '127.0.0.1', colo.compare0Port, false),
    socket(ids.compare_out, '127.0.0.1', colo.compareOutPort, true),
    socket(ids.compare_out0, '127.0.0.1', colo.compareOutPort, false),
  ];
}

interface FailoverRun {
  client: QmpClient;
  events: Array<{ t: number; event: QmpEvent }>;
  yanked: unknown[];
  results: StepResult[];
  sequenceMs: number;
  transcript: readonly QmpTranscriptEntry[];
}

/**
 * SIGKILL `victim`, then on the survivor (through a recording QMP tap): optionally query-yank and
 * yank the dead peer's connections, then run the documented failover sequence step by step.
 */
/** query-status until the VM runs again, or its last answer after 3 s. */
async function waitForRunning(client: QmpClient): Promise<{ running: boolean; status: string }> {
  const until = performance.now() + 3000;
  for (;;) {
    const st = (await queryStatus(client)) as { running: boolean; status: string };
    if (st.running || performance.now() > until) return st;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function runFailover(t: Test, pair: ColoPair, victim: ColoRole, opts: { yank: boolean; scenario: string }): Promise<FailoverRun> {
  const survivor = pair.side(victim === 'primary' ? 'secondary' : 'primary');
  const rec = await recordQmp(survivor.spareQmpPaths[0] as string, survivor.dir);
  const client = new QmpClient({ address: rec.address, reconnect: false, commandTimeoutMs: 5000 });
  t.teardown(async () => {
    await client.close();
    await rec.close();
  });
  const events: FailoverRun['events'] = [];
  client.on('event', (event) => events.push({ t: rec.elapsed(), event }));
  await client.connect();
  t.match(await queryColoStatus(client), { mode: survivor.role }, `${survivor.role} in COLO before the kill`);

  // The secondary's COLO_EXIT comes at once (its migration socket gets EOF): listen before killing.
  const coloExit = survivor.role === 'secondary' ? client.waitForEvent('COLO_EXIT', { timeoutMs: 5000 }) : undefined;
  const killedAt = rec.elapsed();
  pair.side(victim).kill('SIGKILL');
  await pair.side(victim).qemu.exited;
  if (coloExit) {
    const ev = await coloExit;
    t.same(ev.data, { mode: 'secondary', reason: 'error' }, 'the secondary emits COLO_EXIT reason error when the primary dies');
    // Observed on 7.2: COLO_EXIT said error, yet the secondary stays in mode secondary until x-colo-lost-heartbeat.
    const exitT = events.find((e) => e.event.event === 'COLO_EXIT')?.t ?? NaN;
    t.comment(`COLO_EXIT ${(exitT - killedAt).toFixed(1)} ms after the kill; then ${JSON.stringify(await queryColoStatus(client))}`);
  } else {
    // Observed on 7.2: the primary says nothing (no event, still mode primary); only a heartbeat notices.
    t.comment(`primary after the kill: events ${JSON.stringify(events.map((e) => e.event.event))}, ${JSON.stringify(await queryColoStatus(client))}`);
  }

  const yanked: unknown[] = [];
  const sequenceStart = rec.elapsed();
  const t0 = performance.now();
  if (opts.yank) {
    const ids = pair.colo.ids;
    const peerChardevs = [ids.mirror0, ids.compare1, ids.red0, ids.red1];
    // Only what query-yank lists: naming a missing instance fails the whole yank.
    const instances = (await queryYank(client)).filter((i) => i.type !== 'chardev' || peerChardevs.includes(i.id ?? ''));
    t.ok(instances.some((i) => i.type === 'migration'), 'query-yank lists the migration');
    await client.execute('yank', { instances }, { oob: client.sessionInfo?.oob ?? false });
    yanked.push(...instances);
  }
  const steps = victim === 'secondary' ? primaryFailoverSteps(pair) : secondaryFailoverSteps(pair);
  const results: StepResult[] = [];
  for (const step of steps) {
    const ts = performance.now();
    try {
      const reply = await client.execute(step.command, step.args);
      results.push({ ...step, ok: true, ms: performance.now() - ts, reply });
    } catch (err) {
      results.push({ ...step, ok: false, ms: performance.now() - ts, error: (err as Error).message });
    }
  }
  const sequenceMs = performance.now() - t0;
  const sequenceEnd = rec.elapsed();
  for (const r of results) t.ok(r.ok, `${r.command} ${r.args ? JSON.stringify(r.args) : ''} succeeds${r.error ? `: ${r.error}` : ''}`);
  t.comment(`${opts.scenario}: ${results.length} commands${opts.yank ? ' (after query-yank + yank)' : ''} in ${sequenceMs.toFixed(1)} ms`);

  if (RECORD) {
    const name = `${opts.scenario}-qemu-${pair.version.major}.${pair.version.minor}.${pair.version.micro}`;
    // Let trailing events (COLO_EXIT, RESUME) land in the transcript before saving.
    await queryStatus(client);
    rec.save(`${FIXTURES}${name}.jsonl`);
    const meta = {
      scenario: opts.scenario,
      qemu: pair.version,
      survivor: survivor.role,
      killed: victim,
      killSignal: 'SIGKILL',
      killedAtT: killedAt,
      sequenceStartT: sequenceStart,
      sequenceEndT: sequenceEnd,
      sequenceMs: Math.round(sequenceMs * 1000) / 1000,
      yank: opts.yank,
      format: '{dir: out (client to QEMU) | in (QEMU to client), t: ms since the recorder started, msg: the QMP JSON line}',
    };
    writeFileSync(`${FIXTURES}${name}.meta.json`, `${JSON.stringify(meta, null, 2)}\n`);
  }
  return { client, events, yanked, results, sequenceMs, transcript: rec.entries };
}

/** Every command in the transcript got exactly one reply with its id. */
function checkTranscript(t: Test, entries: readonly QmpTranscriptEntry[]): void {
  const sent = entries.filter((e) => e.dir === 'out').map((e) => (e.msg as { id?: unknown }).id);
  const answered = entries.filter((e) => e.dir === 'in' && (e.msg as { id?: unknown }).id !== undefined).map((e) => (e.msg as { id?: unknown }).id);
  t.same(answered.slice().sort(), sent.slice().sort(), 'transcript: every command answered once');
  t.ok(entries[0]?.dir === 'in' && typeof (entries[0].msg as { QMP?: unknown }).QMP === 'object', 'transcript starts with the greeting');
  t.ok(entries.every((e, i) => i === 0 || e.t >= (entries[i - 1] as QmpTranscriptEntry).t), 'transcript times are ordered');
}

for (const yank of [false, true]) {
  const scenario = yank ? 'primary-failover-yank' : 'primary-failover';
  t.test(`primary failover after the secondary was SIGKILLed${yank ? ', yanking first' : ''}`, { skip }, async (t) => {
    const pair = await startColoPairOrSkip(t);
    if (!pair) return;
    const run = await runFailover(t, pair, 'secondary', { yank, scenario });
    if (!run.results.every((r) => r.ok)) return;
    t.same(await queryColoStatus(run.client), { mode: 'none', 'last-mode': 'primary', reason: 'request' });
    // x-colo-lost-heartbeat replies before COLO_EXIT and RESUME: the VM is back to running a
    // moment later (query-status said {status: colo, running: false} right after, once here).
    t.match(await waitForRunning(run.client), { running: true, status: 'running' });
    const objects = await listObjects(run.client);
    const { ids } = pair.colo;
    for (const id of [ids.comp0, ids.iothread1, ids.m0, ids.redire0, ids.redire1]) t.notOk(objects.includes(id), `${id} gone`);
    t.notOk((await listBlockNodes(run.client)).some((n) => n['node-name'] === pair.colo.replicationNode), 'replication0 gone');
    checkTranscript(t, run.transcript);
  });
}

for (const yank of [false, true]) {
  const scenario = yank ? 'secondary-failover-yank' : 'secondary-failover';
  t.test(`secondary failover after the primary was SIGKILLed${yank ? ', yanking first' : ''}`, { skip }, async (t) => {
    const pair = await startColoPairOrSkip(t);
    if (!pair) return;
    const run = await runFailover(t, pair, 'primary', { yank, scenario });
    if (!run.results.every((r) => r.ok)) return;
    t.same(await queryColoStatus(run.client), { mode: 'none', 'last-mode': 'secondary', reason: 'request' });
    // x-colo-lost-heartbeat replies before COLO_EXIT and RESUME: the VM is back to running a
    // moment later (query-status said {status: colo, running: false} right after, once here).
    t.match(await waitForRunning(run.client), { running: true, status: 'running' });
    const { ids } = pair.colo;
    const objects = await listObjects(run.client);
    for (const id of [ids.f1, ids.f2]) t.notOk(objects.includes(id), `${id} gone`);
    t.ok(objects.includes(ids.rew0), 'rew0 stays (the resume sequence inserts before it)');
    const chardevs = await listChardevs(run.client);
    for (const id of [ids.red0, ids.red1]) t.notOk(chardevs.includes(id), `${id} gone`);
    for (const id of [ids.mirror0, ids.compare1, ids.compare0, ids.compare0_0, ids.compare_out, ids.compare_out0]) t.ok(chardevs.includes(id), `${id} added`);
    checkTranscript(t, run.transcript);
  });
}

function roundAll<T extends object>(o: T): Record<keyof T, number> {
  return Object.fromEntries(Object.entries(o).map(([k, val]) => [k, Math.round(val as number)])) as Record<keyof T, number>;
}
