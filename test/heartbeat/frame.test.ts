import { randomBytes } from 'node:crypto';
import t from 'tap';
import { computeMac, INSECURE_KEY } from '../../src/heartbeat/auth.js';
import {
  AuthMismatchError,
  BadMacError,
  BadVersionError,
  FrameRejectedError,
  MalformedFrameError,
  OversizeFrameError,
  TruncatedFrameError,
  UnknownTypeError,
} from '../../src/heartbeat/errors.js';
import { encodeFrame, FrameReader, openFrame, sealFrame } from '../../src/heartbeat/frame.js';
import type { Message } from '../../src/heartbeat/messages.js';
import { HEADER_BYTES, MAC_BYTES, MIN_BODY_BYTES, PROTOCOL_VERSION } from '../../src/heartbeat/protocol.js';
import { hasCode } from '../../src/errors.js';

const key = randomBytes(32);
const session = '00112233445566ff';

const messages: Message[] = [
  { type: 'hello', body: { name: 'a', role: 'primary', session, protocolVersion: 1, nonce: '0f'.repeat(16) } },
  { type: 'heartbeat', body: { sentAt: 1.5, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true, agentState: 'healthy' } } },
  { type: 'ack', body: { seq: 7, sentAt: 1.5 } },
  { type: 'goodbye', body: { reason: 'shutdown' } },
  { type: 'peer-qemu-gone', body: { at: 1 } },
  { type: 'failover-announce', body: {} },
  { type: 'arbitration-request', body: { term: 3 } },
  { type: 'arbitration-grant', body: { term: 3 } },
  { type: 'ready-to-be-secondary', body: { host: 'b' } },
];

const frames = messages.map((message, i) => encodeFrame({ session, seq: i + 1, message, epoch: 0, key }));

function readAll(reader: FrameReader, chunks: Buffer[]): Message[] {
  const out: Message[] = [];
  for (const c of chunks) {
    reader.push(c);
    for (let f = reader.next(); f !== undefined; f = reader.next()) out.push(f.message);
  }
  return out;
}

function rejectionOf(fn: () => unknown): FrameRejectedError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FrameRejectedError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

t.test('layout: length prefix, version, type, session, seq, payload, MAC over all before it', async (t) => {
  const f = frames[2]!;
  t.equal(f.readUInt32BE(0), f.length - 4);
  t.equal(f[4], PROTOCOL_VERSION);
  t.equal(f[5], 3);
  t.equal(f.toString('hex', 6, 14), session);
  t.equal(f.readBigUInt64BE(14), 3n);
  t.equal(f.subarray(HEADER_BYTES, f.length - MAC_BYTES).toString(), '{"seq":7,"sentAt":1.5,"epoch":0}');
  const d = openFrame(f, key);
  t.same(d, { version: 1, typeCode: 3, session, seq: 3, message: messages[2], epoch: 0, bytes: f.length });
});

t.test('every type round-trips through the reader, whole and in 1-byte writes', async (t) => {
  t.same(readAll(new FrameReader({ key }), [Buffer.concat(frames)]), messages, 'one chunk');
  const all = Buffer.concat(frames);
  const bytes = [...all].map((b) => Buffer.from([b]));
  t.same(readAll(new FrameReader({ key }), bytes), messages, '1-byte chunks');
  const random: Buffer[] = [];
  for (let i = 0; i < all.length; ) {
    const n = 1 + Math.floor(Math.random() * 90);
    random.push(all.subarray(i, i + n));
    i += n;
  }
  t.same(readAll(new FrameReader({ key }), random), messages, 'random chunks');
});

t.test('the key can change between two frames of one chunk', async (t) => {
  const k2 = randomBytes(32);
  const a = encodeFrame({ session, seq: 1, message: messages[0]!, epoch: 0, key });
  const b = encodeFrame({ session, seq: 2, message: messages[1]!, epoch: 0, key: k2 });
  const r = new FrameReader({ key });
  r.push(Buffer.concat([a, b]));
  t.equal(r.next()?.message.type, 'hello');
  r.setKey(k2);
  t.equal(r.next()?.message.type, 'heartbeat');
  t.equal(r.next(), undefined);
});

t.test('oversize length prefix is refused from the 4 prefix bytes alone', async (t) => {
  const r = new FrameReader({ key, maxFrameBytes: 1024 });
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(1025);
  const err = rejectionOf(() => r.push(prefix));
  t.type(err, OversizeFrameError);
  t.equal(err.reason, 'oversize');
  t.equal(err.code, 'ERR_HB_OVERSIZE');
  t.equal(r.bufferedBytes, 0, 'nothing buffered');
  const huge = Buffer.from([0xff, 0xff, 0xff, 0xff]);
  const r2 = new FrameReader({ key });
  t.equal(rejectionOf(() => { r2.push(huge.subarray(0, 2)); r2.push(huge.subarray(2)); }).reason, 'oversize', 'prefix split across chunks');
  // A legitimate frame exactly at the limit is fine.
  const padded = (n: number): Buffer => encodeFrame({ session, seq: 1, message: { type: 'peer-qemu-gone', body: { pad: 'x'.repeat(n) } }, epoch: 0, key });
  const exact = padded(1024 - (padded(0).length - 4));
  t.equal(exact.readUInt32BE(0), 1024);
  const r3 = new FrameReader({ key, maxFrameBytes: 1024 });
  r3.push(exact);
  t.equal(r3.next()?.message.type, 'peer-qemu-gone');
});

t.test('length below the minimum is malformed', async (t) => {
  const r = new FrameReader({ key });
  const b = Buffer.alloc(4);
  b.writeUInt32BE(MIN_BODY_BYTES - 1);
  t.type(rejectionOf(() => r.push(b)), MalformedFrameError);
});

t.test('truncated frame at end of stream', async (t) => {
  const r = new FrameReader({ key });
  r.push(frames[1]!.subarray(0, 30));
  t.equal(r.next(), undefined, 'waits for more');
  const err = rejectionOf(() => r.end());
  t.type(err, TruncatedFrameError);
  t.equal(err.reason, 'truncated');
  const clean = new FrameReader({ key });
  clean.push(frames[0]!);
  clean.next();
  t.doesNotThrow(() => clean.end(), 'a clean end is fine');
  t.type(rejectionOf(() => openFrame(frames[0]!.subarray(0, 60), key)), TruncatedFrameError, 'openFrame too');
});

t.test('bad version, even with a valid MAC', async (t) => {
  const f = sealFrame({ version: 2, typeCode: 2, session, seq: 1, payload: Buffer.from('{}') }, key);
  const err = rejectionOf(() => openFrame(f, key));
  t.type(err, BadVersionError);
  t.equal(err.reason, 'bad-version');
});

t.test('bad MAC: wrong key, any flipped bit', async (t) => {
  t.type(rejectionOf(() => openFrame(frames[1]!, randomBytes(32))), BadMacError, 'wrong key');
  const f = frames[1]!;
  for (let bit = 5 * 8; bit < f.length * 8; bit += 7) {
    const m = Buffer.from(f);
    m[bit >> 3]! ^= 1 << (bit & 7);
    const err = rejectionOf(() => openFrame(m, key));
    t.equal(err.reason, 'bad-mac', `bit ${bit}`);
  }
});

t.test('insecure peer against a keyed node: auth-mismatch, not a silent bad-mac', async (t) => {
  const f = encodeFrame({ session, seq: 1, message: messages[0]!, epoch: 0, key: INSECURE_KEY });
  const err = rejectionOf(() => openFrame(f, key, INSECURE_KEY));
  t.type(err, AuthMismatchError);
  t.equal(err.reason, 'auth-mismatch');
  t.equal(rejectionOf(() => openFrame(f, key)).reason, 'bad-mac', 'without the probe it is only bad-mac');
  t.equal(openFrame(f, INSECURE_KEY).message.type, 'hello', 'two insecure nodes do talk');
});

t.test('unknown type with a valid MAC', async (t) => {
  const f = sealFrame({ version: 1, typeCode: 200, session, seq: 1, payload: Buffer.from('{}') }, key);
  const err = rejectionOf(() => openFrame(f, key));
  t.type(err, UnknownTypeError);
  t.ok(hasCode(err, 'ERR_HB_UNKNOWN_TYPE'));
  const forged = sealFrame({ version: 1, typeCode: 200, session, seq: 1, payload: Buffer.from('{}') }, randomBytes(32));
  t.equal(rejectionOf(() => openFrame(forged, key)).reason, 'bad-mac', 'unauthenticated noise never gets past the MAC');
});

t.test('malformed payload and sequence number beyond 2^53', async (t) => {
  const bad = sealFrame({ version: 1, typeCode: 3, session, seq: 1, payload: Buffer.from('{"seq":1,"epoch":0}') }, key);
  t.type(rejectionOf(() => openFrame(bad, key)), MalformedFrameError);
  // sealFrame refuses such a seq, so patch one in and re-MAC by hand.
  const big = Buffer.from(frames[2]!);
  big.writeBigUInt64BE(2n ** 60n, 14);
  computeMac(key, big.subarray(0, big.length - MAC_BYTES)).copy(big, big.length - MAC_BYTES);
  t.type(rejectionOf(() => openFrame(big, key)), MalformedFrameError);
});

t.test('a reader is dead after its first rejection', async (t) => {
  const r = new FrameReader({ key });
  const m = Buffer.from(frames[1]!);
  m[m.length - 1]! ^= 1;
  r.push(Buffer.concat([m, frames[2]!]));
  t.throws(() => r.next(), BadMacError);
  t.equal(r.next(), undefined, 'the good frame behind it is not delivered');
  r.push(frames[3]!);
  t.equal(r.next(), undefined);
  t.doesNotThrow(() => r.end());
});

t.test('sealFrame and the reader refuse nonsense parameters', async (t) => {
  t.throws(() => sealFrame({ version: 1, typeCode: 2, session: 'xyz', seq: 1, payload: Buffer.alloc(0) }, key), RangeError);
  t.throws(() => sealFrame({ version: 1, typeCode: 2, session, seq: -1, payload: Buffer.alloc(0) }, key), RangeError);
  t.throws(() => new FrameReader({ key, maxFrameBytes: 10 }), RangeError);
});
