import { randomBytes } from 'node:crypto';
import t from 'tap';
import { deriveConnectionKey, INSECURE_KEY, isInsecureKey, macMatches, computeMac, newNonce, newSessionId, sharedKeyProblem } from '../../src/heartbeat/auth.js';

t.test('per-connection key depends on the shared key and both nonces, in order', async (t) => {
  const k = randomBytes(32);
  const d = newNonce();
  const l = newNonce();
  const ck = deriveConnectionKey(k, d, l);
  t.equal(ck.length, 32);
  t.same(deriveConnectionKey(k, d, l), ck, 'deterministic');
  t.notSame(deriveConnectionKey(k, l, d), ck, 'dialer and listener nonces are not interchangeable');
  t.notSame(deriveConnectionKey(k, d, newNonce()), ck, 'a new nonce gives a new key');
  t.notSame(deriveConnectionKey(randomBytes(32), d, l), ck, 'another shared key gives another key');
  t.throws(() => deriveConnectionKey(k, Buffer.alloc(3), l), RangeError);
});

t.test('MAC check is exact', async (t) => {
  const k = randomBytes(32);
  const data = Buffer.from('frame bytes');
  const mac = computeMac(k, data);
  t.ok(macMatches(k, data, mac));
  t.notOk(macMatches(k, Buffer.from('frame bytez'), mac));
  t.notOk(macMatches(k, data, mac.subarray(0, 31)), 'short MAC');
});

t.test('key problems and insecure key', async (t) => {
  t.equal(sharedKeyProblem(randomBytes(32)), undefined);
  t.equal(sharedKeyProblem(randomBytes(64)), undefined);
  t.equal(sharedKeyProblem(randomBytes(31)), 'short');
  t.equal(sharedKeyProblem(Buffer.alloc(32)), 'weak', 'the insecure key cannot be used as a real key');
  t.ok(isInsecureKey(INSECURE_KEY));
  t.notOk(isInsecureKey(randomBytes(32)));
  t.match(newSessionId(), /^[0-9a-f]{16}$/);
  t.not(newSessionId(), newSessionId());
});
