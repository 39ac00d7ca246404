import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { KeyFileError } from '../../src/heartbeat/errors.js';
import { readKeyFile } from '../../src/heartbeat/key.js';

async function failure(path: string): Promise<KeyFileError> {
  try {
    await readKeyFile(path);
  } catch (err) {
    if (err instanceof KeyFileError) return err;
    throw err;
  }
  throw new Error('did not fail');
}

t.test('reads a key of 32 bytes or more, as-is', async (t) => {
  const dir = t.testdir();
  const k = randomBytes(32);
  writeFileSync(join(dir, 'k32'), k, { mode: 0o600 });
  t.same(await readKeyFile(join(dir, 'k32')), k);
  const long = Buffer.from('a'.repeat(64) + '\n');
  writeFileSync(join(dir, 'hex'), long, { mode: 0o600 });
  t.same(await readKeyFile(join(dir, 'hex')), long, 'no trimming: both sides read the same bytes');
});

t.test('clear errors, never with key bytes', async (t) => {
  const dir = t.testdir();
  const short = Buffer.from('secretsecretsecret');
  writeFileSync(join(dir, 'short'), short);
  writeFileSync(join(dir, 'zero'), Buffer.alloc(32));
  mkdirSync(join(dir, 'adir'));

  const missing = await failure(join(dir, 'nope'));
  t.equal(missing.code, 'ERR_HB_KEY_MISSING');
  t.match(missing.message, /nope.*does not exist/);

  const s = await failure(join(dir, 'short'));
  t.equal(s.code, 'ERR_HB_KEY_SHORT');
  t.match(s.message, /18 bytes; at least 32/);
  t.notMatch(s.message, /secret/, 'no key bytes in the message');
  t.notMatch(String(s.stack), /secret/, 'nor in the stack');

  t.equal((await failure(join(dir, 'zero'))).code, 'ERR_HB_KEY_WEAK');
  const d = await failure(join(dir, 'adir'));
  t.equal(d.code, 'ERR_HB_KEY_UNREADABLE');
  t.match(d.message, /not a regular file/);
});

t.test('unreadable by permissions (skipped as root)', { skip: process.getuid?.() === 0 ? 'running as root: file modes do not stop reads' : false }, async (t) => {
  const dir = t.testdir({ k: 'x'.repeat(40) });
  const { chmodSync } = await import('node:fs');
  chmodSync(join(dir, 'k'), 0);
  t.equal((await failure(join(dir, 'k'))).code, 'ERR_HB_KEY_UNREADABLE');
});

t.test('a key other users can read is refused, naming the mode, not the bytes', async (t) => {
  const dir = t.testdir();
  const k = randomBytes(32);
  for (const mode of [0o644, 0o640, 0o604, 0o620]) {
    const p = join(dir, `k${mode.toString(8)}`);
    writeFileSync(p, k, { mode });
    chmodSync(p, mode); // the umask may have narrowed it
    const e = await failure(p);
    t.equal(e.code, 'ERR_HB_KEY_EXPOSED', mode.toString(8));
    t.match(e.message, new RegExp(`mode ${mode.toString(8)}.*chmod 600`));
    t.notOk(e.message.includes(k.toString('hex')));
  }
  const ok = join(dir, 'k400');
  writeFileSync(ok, k, { mode: 0o400 });
  t.same(await readKeyFile(ok), k, 'owner-only read is fine');
});
