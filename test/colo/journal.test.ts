/**
 * The failover journal: atomic replacement, begin/resume/finish, the node's role, and refusing
 * corrupt files.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ColoStepError, JournalCorruptError, JournalIoError, JournalStateError } from '../../src/colo/errors.js';
import { Journal, JOURNAL_FILE_NAME } from '../../src/colo/journal.js';

const DECISION = { id: 'd-1', epoch: 7, sequence: 'secondary-failover', roleBefore: 'secondary', roleAfter: 'primary' } as const;

let tick = 0;
const now = () => new Date(Date.UTC(2030, 0, 1, 0, 0, tick++));

const onDisk = (dir: string) => JSON.parse(readFileSync(join(dir, JOURNAL_FILE_NAME), 'utf8')) as Record<string, unknown>;
const temps = (dir: string) => readdirSync(dir).filter((n) => n.includes('.tmp-'));

t.test('a fresh journal: begin, steps, finish; everything survives a reopen', async (t) => {
  const dir = join(t.testdir(), 'state');
  const j = await Journal.open(dir, { now });
  t.equal(j.current(), undefined);
  t.equal(j.role(), undefined);
  t.equal(j.unfinished(), undefined);

  const b = await j.begin(DECISION);
  t.equal(b.started, true);
  t.match(b, { decision: { ...DECISION, status: 'running', completedSteps: [] } });
  t.match(onDisk(dir), { format: 'colo-agent-failover-journal', version: 1, decision: { id: 'd-1', status: 'running' } }, 'begin is on disk before it returns');
  t.equal(statSync(join(dir, JOURNAL_FILE_NAME)).mode & 0o777, 0o600);

  await j.stepDone('yank');
  await j.stepDone('nbd-server-stop');
  await j.stepDone('yank'); // idempotent
  t.same((onDisk(dir).decision as { completedSteps: string[] }).completedSteps, ['yank', 'nbd-server-stop']);

  const reopened = await Journal.open(dir, { now });
  t.same(reopened.current(), j.current(), 'same state after a "crash"');
  t.equal(reopened.unfinished()?.id, 'd-1');

  const done = await j.finish({ ok: true });
  t.equal(done.status, 'finished');
  t.ok(done.endedAt);
  t.match(j.role(), { role: 'primary', reason: 'secondary-failover d-1 finished' });
  const again = await Journal.open(dir);
  t.match(again.role(), { role: 'primary' }, 'the new role is persisted with the finish, in one write');
  t.equal(again.unfinished(), undefined);
  t.same(temps(dir), [], 'no temp files left behind');
});

t.test('begin refuses while a decision is unfinished and returns it; resume and abandon', async (t) => {
  const dir = t.testdir();
  const j = await Journal.open(dir, { now });
  await j.begin(DECISION);
  await j.stepDone('yank');

  // The agent crashed here; a new agent process opens the journal and the trigger fires again.
  const j2 = await Journal.open(dir, { now });
  const b = await j2.begin({ ...DECISION, id: 'd-2' });
  t.equal(b.started, false);
  t.match(b, { unfinished: { id: 'd-1', status: 'running', completedSteps: ['yank'] } });
  t.equal(j2.current()?.id, 'd-1', 'nothing was overwritten');
  const resumed = await j2.resume();
  t.same(resumed.completedSteps, ['yank'], 'resume hands back the completed steps for alreadyDone');

  const err = new ColoStepError('COLO_STEP_TIMEOUT', 'x-colo-lost-heartbeat', 'x-colo-lost-heartbeat', 'no reply within 2000 ms');
  const failed = await j2.finish({ ok: false, error: err });
  t.match(failed, { status: 'failed', error: { code: 'COLO_STEP_TIMEOUT', step: 'x-colo-lost-heartbeat' } });
  t.equal(j2.role(), undefined, 'a failed failover changes no role');
  t.equal((await j2.begin({ ...DECISION, id: 'd-3' })).started, false, 'a failed decision still blocks a new one');

  const r2 = await j2.resume();
  t.equal(r2.status, 'running');
  t.equal(r2.error, undefined, 'resume clears the old error');
  t.same(r2.completedSteps, ['yank']);
  const ab = await j2.abandon('operator fixed it by hand');
  t.match(ab, { status: 'abandoned', abandonReason: 'operator fixed it by hand' });
  const b3 = await j2.begin({ ...DECISION, id: 'd-3' });
  t.equal(b3.started, true, 'after abandon a new decision can begin');
});

t.test('calls that make no sense in the state are typed errors', async (t) => {
  const j = await Journal.open(t.testdir());
  await t.rejects(j.stepDone('yank'), JournalStateError);
  await t.rejects(j.finish({ ok: true }), { code: 'COLO_JOURNAL_STATE' });
  await t.rejects(j.resume(), JournalStateError);
  await t.rejects(j.abandon('x'), JournalStateError);
  await j.begin(DECISION);
  await j.finish({ ok: true });
  await t.rejects(j.stepDone('late'), JournalStateError, 'no steps after finish');
});

t.test('concurrent calls are written one after another, none lost', async (t) => {
  const dir = t.testdir();
  const j = await Journal.open(dir);
  await j.begin(DECISION);
  const names = Array.from({ length: 12 }, (_, i) => `step-${i}`);
  await Promise.all(names.map((n) => j.stepDone(n)));
  t.same((await Journal.open(dir)).current()?.completedSteps, names);
});

t.test('setRole persists the node role', async (t) => {
  const dir = t.testdir();
  const j = await Journal.open(dir, { now });
  await j.setRole('secondary', 'resynced as the new secondary');
  t.match((await Journal.open(dir)).role(), { role: 'secondary', reason: 'resynced as the new secondary' });
  t.equal((await Journal.open(dir)).current(), undefined);
});

t.test('a crash mid-write (temp file left, rename never happened) is ignored correctly', async (t) => {
  const dir = t.testdir();
  const j = await Journal.open(dir, { now });
  await j.begin(DECISION);
  await j.stepDone('yank');
  const before = readFileSync(join(dir, JOURNAL_FILE_NAME), 'utf8');
  // What a crash between write and rename leaves: a temp file with the next (maybe partial) content.
  const next = JSON.parse(before) as { decision: { completedSteps: string[] } };
  next.decision.completedSteps.push('nbd-server-stop');
  writeFileSync(join(dir, `${JOURNAL_FILE_NAME}.tmp-999-deadbeef`), JSON.stringify(next).slice(0, 40));
  writeFileSync(join(dir, `${JOURNAL_FILE_NAME}.tmp-999-cafef00d`), JSON.stringify(next));
  writeFileSync(join(dir, 'unrelated.tmp-1'), 'keep me');

  const after = await Journal.open(dir);
  t.same(after.current()?.completedSteps, ['yank'], 'the renamed file is the truth; the step is not recorded');
  t.same(temps(dir), ['unrelated.tmp-1'], 'stray journal temps removed, other files untouched');
  t.equal(readFileSync(join(dir, JOURNAL_FILE_NAME), 'utf8'), before);

  // Crash before the very first rename: only a temp file exists.
  const fresh = t.testdir({ [`${JOURNAL_FILE_NAME}.tmp-1-00000000`]: '{"format":"colo-agent-fail' });
  const f = await Journal.open(fresh);
  t.equal(f.current(), undefined);
  t.same(temps(fresh), []);
});

t.test('corrupt or foreign journal files are refused with a typed error', async (t) => {
  const valid = { format: 'colo-agent-failover-journal', version: 1, role: null, decision: null };
  const decision = { id: 'd', sequence: 's', roleBefore: 'secondary', roleAfter: 'primary', startedAt: 'x', completedSteps: [], status: 'running' };
  const cases: Array<[string, string]> = [
    ['empty', ''],
    ['half written', JSON.stringify({ ...valid, decision }).slice(0, 50)],
    ['not JSON', 'hello'],
    ['an array', '[]'],
    ['other format', JSON.stringify({ ...valid, format: 'x' })],
    ['future version', JSON.stringify({ ...valid, version: 2 })],
    ['bad status', JSON.stringify({ ...valid, decision: { ...decision, status: 'maybe' } })],
    ['steps not strings', JSON.stringify({ ...valid, decision: { ...decision, completedSteps: [1] } })],
    ['missing id', JSON.stringify({ ...valid, decision: { ...decision, id: undefined } })],
    ['failed without error', JSON.stringify({ ...valid, decision: { ...decision, status: 'failed' } })],
    ['bad role', JSON.stringify({ ...valid, role: { role: 'witness', since: 'x', reason: 'y' } })],
  ];
  for (const [what, text] of cases) {
    const dir = t.testdir({ [JOURNAL_FILE_NAME]: text });
    const err = await Journal.open(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, JournalCorruptError, what);
    t.match(err, { code: 'COLO_JOURNAL_CORRUPT', path: join(dir, JOURNAL_FILE_NAME) }, what);
  }
  const ok = t.testdir({ [JOURNAL_FILE_NAME]: JSON.stringify({ ...valid, decision }) });
  t.equal((await Journal.open(ok)).current()?.status, 'running', 'control: the valid variant opens');
});

t.test('an unusable directory is a JournalIoError', async (t) => {
  const dir = t.testdir({ file: 'x' });
  await t.rejects(Journal.open(join(dir, 'file', 'state')), JournalIoError);
});
