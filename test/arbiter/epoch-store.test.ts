/**
 * The epoch store: persistence across reopen, staleness that survives a restart, refusing corrupt
 * files, monotonicity, no writes for news-free observations, and serialized concurrent calls.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { EpochStore, EPOCH_FILE_NAME } from '../../src/arbiter/epoch-store.js';
import { EpochCorruptError, EpochIoError } from '../../src/arbiter/errors.js';
import { hasCode } from '../../src/errors.js';

let tick = 0;
const now = () => new Date(Date.UTC(2030, 0, 1, 0, 0, tick++));

const fileOf = (dir: string) => join(dir, EPOCH_FILE_NAME);
const onDisk = (dir: string) => JSON.parse(readFileSync(fileOf(dir), 'utf8')) as Record<string, unknown>;

t.test('a fresh store is epoch 0, not stale, and writes nothing until something changes', async (t) => {
  const dir = join(t.testdir(), 'state', 'nested');
  const s = await EpochStore.open(dir, { now });
  t.equal(s.epoch, 0);
  t.equal(s.newestSeen, 0);
  t.equal(s.stale, false);
  t.equal(s.holder, undefined);
  t.match(s.snapshot(), { path: fileOf(dir), epoch: 0, newestSeen: 0, stale: false, updatedAt: undefined });
  t.same(readdirSync(dir), [], 'the directory was created, no file yet');
  t.same(await s.observe(0, 'peer'), { stale: false, changed: false });
  t.same(readdirSync(dir), []);
});

t.test('adopt persists before resolving and survives a reopen', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  await s.adopt(1, { holder: 'node-b', reason: 'granted by witness w1 (takeover)' });
  t.match(onDisk(dir), { version: 1, epoch: 1, holder: 'node-b', newestSeen: 1, reason: 'granted by witness w1 (takeover)' }, 'on disk when adopt resolves');
  t.equal(statSync(fileOf(dir)).mode & 0o777, 0o600);
  t.match(onDisk(dir), { updatedAt: /^2030-01-01T/ });

  const r = await EpochStore.open(dir);
  t.same(r.snapshot(), s.snapshot(), 'same state after a restart');
  t.equal(r.epoch, 1);
  t.equal(r.holder, 'node-b');
  t.equal(r.stale, false);
  t.same(readdirSync(dir), [EPOCH_FILE_NAME], 'no temp files left');
});

t.test('staleness: a higher epoch seen is persisted and survives a reopen', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  await s.adopt(2, { holder: 'node-a', reason: 'grant' });
  t.same(await s.observe(2, 'node-b'), { stale: false, changed: false }, 'the same epoch is no news');
  t.same(await s.observe(1, 'node-b'), { stale: false, changed: false }, 'an older one neither');
  t.same(await s.observe(3, 'node-b'), { stale: true, changed: true });
  t.equal(s.stale, true);
  t.match(onDisk(dir), { epoch: 2, newestSeen: 3, newestSeenFrom: 'node-b' });
  t.same(await s.observe(3, 'node-b'), { stale: true, changed: false });

  const r = await EpochStore.open(dir);
  t.equal(r.stale, true, 'a restart does not un-stale the node');
  t.match(r.snapshot(), { epoch: 2, newestSeen: 3, newestSeenFrom: 'node-b', stale: true });
});

t.test('repeated observations of a known epoch do not touch the file', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  await s.observe(5, 'node-b');
  const before = statSync(fileOf(dir));
  const text = readFileSync(fileOf(dir), 'utf8');
  const results = [];
  for (let i = 0; i < 200; i++) results.push(await s.observe(i % 6, 'node-b'));
  t.ok(
    results.every((r) => r.stale && !r.changed),
    'every observation reports stale, unchanged',
  );
  const after = statSync(fileOf(dir));
  // Every write renames a new file into place, so the inode would change.
  t.equal(after.ino, before.ino, 'same inode: no rename happened');
  t.equal(after.mtimeMs, before.mtimeMs);
  t.equal(readFileSync(fileOf(dir), 'utf8'), text);
  t.same(readdirSync(dir), [EPOCH_FILE_NAME]);
});

t.test('monotonicity: adopt never goes backwards; re-adopt is idempotent', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  await s.adopt(3, { holder: 'node-a', reason: 'grant' });
  const ino = statSync(fileOf(dir)).ino;
  await s.adopt(3, { holder: 'node-a', reason: 'grant again' });
  await s.adopt(3, { reason: 'grant again, holder not given' });
  t.equal(statSync(fileOf(dir)).ino, ino, 'an idempotent re-adopt writes nothing');
  t.equal(onDisk(dir).reason, 'grant');

  await t.rejects(s.adopt(2, { reason: 'old grant' }), { code: 'ERR_EPOCH_REGRESSION', message: /cannot adopt epoch 2: this node is already at epoch 3/ });
  await t.rejects(s.adopt(3, { holder: 'node-b', reason: 'x' }), { code: 'ERR_EPOCH_CONFLICT', message: /held by node-a/ });
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.rejects(s.adopt(bad, { reason: 'x' }), { code: 'ERR_EPOCH_INVALID' }, `adopt(${bad})`);
    await t.rejects(s.observe(bad, 'x'), { code: 'ERR_EPOCH_INVALID' }, `observe(${bad})`);
  }
  await t.rejects(s.clearStale({ adoptEpoch: -2, reason: 'x' }), { code: 'ERR_EPOCH_INVALID' });
  t.match(s.snapshot(), { epoch: 3, holder: 'node-a', newestSeen: 3 }, 'nothing changed');
  t.match(onDisk(dir), { epoch: 3, holder: 'node-a', newestSeen: 3 });

  // Adopting a grant of an epoch that was already superseded leaves the node stale.
  await s.observe(7, 'node-b');
  await s.adopt(5, { holder: 'node-a', reason: 'late grant' });
  t.match(s.snapshot(), { epoch: 5, newestSeen: 7, stale: true });
  await s.adopt(7, { holder: 'node-a', reason: 'grant' });
  t.match(s.snapshot(), { epoch: 7, newestSeen: 7, stale: false, holder: 'node-a' });
  t.match(onDisk(dir), { epoch: 7, newestSeen: 7, holder: 'node-a' });
});

t.test('an epoch 0 held by nobody can be re-adopted naming its holder', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  await s.adopt(0, { holder: 'node-a', reason: 'configured primary' });
  t.match(onDisk(dir), { epoch: 0, holder: 'node-a' });
});

t.test('clearStale rejoins at the peer epoch, never below what was seen', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  await s.adopt(2, { holder: 'node-a', reason: 'grant' });
  await s.observe(4, 'node-b');
  t.equal(s.stale, true);
  await t.rejects(s.clearStale({ adoptEpoch: 3, reason: 'x' }), { code: 'ERR_EPOCH_REGRESSION', message: /has seen epoch 4/ });
  t.equal(s.stale, true);
  await s.clearStale({ adoptEpoch: 4, holder: 'node-b', reason: 'rejoined as secondary of node-b' });
  t.match(s.snapshot(), { epoch: 4, newestSeen: 4, holder: 'node-b', stale: false, reason: 'rejoined as secondary of node-b' });
  const r = await EpochStore.open(dir);
  t.match(r.snapshot(), { epoch: 4, newestSeen: 4, holder: 'node-b', stale: false });
  await r.clearStale({ adoptEpoch: 6, reason: 'rejoined again' });
  t.match(r.snapshot(), { epoch: 6, newestSeen: 6, holder: undefined, newestSeenFrom: undefined });
});

t.test('corrupt or foreign files are refused with ERR_EPOCH_CORRUPT, never read as epoch 0', async (t) => {
  const valid = { version: 1, epoch: 2, newestSeen: 3, updatedAt: 'x', reason: 'r' };
  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /the file is empty/],
    ['half written', JSON.stringify(valid).slice(0, 20), /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['another version', JSON.stringify({ ...valid, version: 2 }), /version 2 is not supported/],
    ['epoch missing', JSON.stringify({ ...valid, epoch: undefined }), /epoch is undefined/],
    ['epoch a string', JSON.stringify({ ...valid, epoch: '2' }), /epoch is "2"/],
    ['epoch negative', JSON.stringify({ ...valid, epoch: -1 }), /epoch is -1/],
    ['epoch fractional', JSON.stringify({ ...valid, epoch: 1.5 }), /epoch is 1.5/],
    ['newestSeen missing', JSON.stringify({ ...valid, newestSeen: undefined }), /newestSeen is undefined/],
    ['newestSeen below epoch', JSON.stringify({ ...valid, newestSeen: 1 }), /newestSeen 1 is below epoch 2/],
    ['holder a number', JSON.stringify({ ...valid, holder: 5 }), /holder is not a non-empty string/],
    ['newestSeenFrom empty', JSON.stringify({ ...valid, newestSeenFrom: '' }), /newestSeenFrom/],
    ['reason missing', JSON.stringify({ ...valid, reason: undefined }), /reason is not a string/],
  ];
  for (const [name, text, why] of cases) {
    const dir = t.testdir({ [EPOCH_FILE_NAME]: text });
    const err = await EpochStore.open(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, EpochCorruptError, name);
    t.ok(hasCode(err, 'ERR_EPOCH_CORRUPT'), `${name}: code`);
    const msg = (err as Error).message;
    t.match(msg, why, `${name}: says what is wrong`);
    t.ok(msg.includes(fileOf(dir)), `${name}: names the file`);
    t.match(msg, /Inspect it and repair it/, `${name}: tells the operator what to do`);
    t.equal(readFileSync(fileOf(dir), 'utf8'), text, `${name}: the file is left alone for inspection`);
  }
  const ok = t.testdir({ [EPOCH_FILE_NAME]: JSON.stringify({ ...valid, holder: 'node-a', extra: 'ignored' }) });
  t.match((await EpochStore.open(ok)).snapshot(), { epoch: 2, newestSeen: 3, stale: true, holder: 'node-a' }, 'a valid file is read');
});

t.test('stray temp files of an interrupted write are removed; the renamed file is the truth', async (t) => {
  const dir = t.testdir({
    [EPOCH_FILE_NAME]: JSON.stringify({ version: 1, epoch: 1, newestSeen: 1, updatedAt: 'x', reason: 'r' }),
    [`${EPOCH_FILE_NAME}.tmp-9-deadbeef`]: '{"version":1,"epoch":2,',
    'other.tmp-1': 'keep me',
  });
  const s = await EpochStore.open(dir);
  t.equal(s.epoch, 1);
  t.same(readdirSync(dir).sort(), [EPOCH_FILE_NAME, 'other.tmp-1']);
});

t.test('I/O failures are ERR_EPOCH_IO and leave the state unchanged', async (t) => {
  const isDir = t.testdir();
  mkdirSync(fileOf(isDir));
  await t.rejects(EpochStore.open(isDir), { code: 'ERR_EPOCH_IO', message: /cannot read/ });

  const notDir = join(t.testdir({ file: 'x' }), 'file');
  const err = await EpochStore.open(notDir).catch((e: unknown) => e);
  t.type(err, EpochIoError);

  const gone = join(t.testdir(), 'state');
  const s = await EpochStore.open(gone);
  await s.adopt(1, { reason: 'grant' });
  rmSync(gone, { recursive: true });
  await t.rejects(s.adopt(2, { reason: 'grant' }), { code: 'ERR_EPOCH_IO', message: /cannot write/ });
  await t.rejects(s.observe(9, 'node-b'), { code: 'ERR_EPOCH_IO' });
  t.match(s.snapshot(), { epoch: 1, newestSeen: 1, stale: false }, 'memory follows the disk: unchanged');
  // The queue is not stuck after a failure.
  mkdirSync(gone);
  t.same(await s.observe(9, 'node-b'), { stale: true, changed: true });
});

t.test('concurrent calls run in call order and never interleave their writes', async (t) => {
  const dir = t.testdir();
  const s = await EpochStore.open(dir, { now });
  const a1 = s.adopt(1, { holder: 'node-a', reason: 'g1' });
  const o3 = s.observe(3, 'node-b');
  const o2 = s.observe(2, 'node-b'); // queued behind o3: no news by the time it runs
  const a3 = s.adopt(3, { holder: 'node-a', reason: 'g3' });
  const o3again = s.observe(3, 'node-b'); // queued (not the fast path): sees a3's result
  const aOld = s.adopt(2, { reason: 'late' });
  const [, r3, r2, , r3again] = await Promise.all([a1, o3, o2, a3, o3again]);
  await t.rejects(aOld, { code: 'ERR_EPOCH_REGRESSION' }, 'runs after adopt(3), so it is a regression');
  t.same(r3, { stale: true, changed: true }, 'observe(3) ran after adopt(1)');
  t.same(r2, { stale: true, changed: false }, 'observe(2) ran after observe(3)');
  t.same(r3again, { stale: false, changed: false }, 'observe(3) after adopt(3): no longer stale');
  t.match(onDisk(dir), { epoch: 3, newestSeen: 3, holder: 'node-a', reason: 'g3' });
  t.same(readdirSync(dir), [EPOCH_FILE_NAME]);

  // Many in parallel: the file always ends at the highest, and reads back intact.
  await Promise.all(Array.from({ length: 30 }, (_, i) => s.observe(4 + (i % 10), `n${i}`)));
  t.equal(s.newestSeen, 13);
  t.match(onDisk(dir), { newestSeen: 13, newestSeenFrom: 'n9' });
  t.equal((await EpochStore.open(dir)).newestSeen, 13);
});

t.test('a hand-written file with extra whitespace is fine; writing keeps it pretty JSON', async (t) => {
  const dir = t.testdir();
  writeFileSync(fileOf(dir), '\n  {"version":1,"epoch":0,"newestSeen":0,"updatedAt":"","reason":""}  \n');
  const s = await EpochStore.open(dir, { now });
  await s.observe(1, 'node-b');
  t.match(readFileSync(fileOf(dir), 'utf8'), /^\{\n {2}"version": 1,\n/);
});
