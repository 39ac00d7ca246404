import t from 'tap';
import { InvalidMessageError, MalformedFrameError, UnknownTypeError } from '../../src/heartbeat/errors.js';
import { decodePayload, encodePayload, type Message } from '../../src/heartbeat/messages.js';
import { MessageType, RESERVED_TYPES } from '../../src/heartbeat/protocol.js';

const hello: Message = {
  type: 'hello',
  body: { name: 'node-a.example', role: 'primary', session: '0123456789abcdef', protocolVersion: 1, nonce: 'ab'.repeat(16) },
};
const heartbeat: Message = {
  type: 'heartbeat',
  body: { sentAt: 12345.678, summary: { role: 'secondary', coloMode: 'secondary', qemuReachable: false, agentState: 'degraded' } },
};

t.test('every type round-trips through encode/decode', async (t) => {
  const msgs: Message[] = [
    hello,
    heartbeat,
    { type: 'heartbeat', body: { sentAt: 0, summary: { role: 'primary', coloMode: 'none', qemuReachable: true } } },
    { type: 'ack', body: { seq: 42, sentAt: 99.5 } },
    { type: 'goodbye', body: { reason: 'planned maintenance: kernel update' } },
    { type: 'goodbye', body: { reason: '' } },
    ...Object.keys(RESERVED_TYPES).map((name) => ({ type: name, body: { any: ['json', 1, true, null], nested: { x: 1 } } }) as Message),
  ];
  for (const m of msgs) {
    const { typeCode, payload } = encodePayload(m, 7);
    t.strictSame(decodePayload(typeCode, payload), { ...m, epoch: 7 }, m.type);
  }
});

t.test('type numbers are the documented ones', async (t) => {
  t.equal(encodePayload(hello, 0).typeCode, 1);
  t.equal(encodePayload(heartbeat, 0).typeCode, 2);
  t.equal(encodePayload({ type: 'ack', body: { seq: 1, sentAt: 1 } }, 0).typeCode, 3);
  t.equal(encodePayload({ type: 'goodbye', body: { reason: 'x' } }, 0).typeCode, 4);
  t.same(Object.values(RESERVED_TYPES), [16, 17, 18, 19, 20]);
});

t.test('summary tolerates (and drops) unknown keys, nothing else does', async (t) => {
  const withExtra = Buffer.from(JSON.stringify({ sentAt: 1, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true, future: 7 }, epoch: 3 }));
  t.strictSame(decodePayload(MessageType.HEARTBEAT, withExtra), {
    type: 'heartbeat',
    body: { sentAt: 1, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true } },
    epoch: 3,
  });
  const extraTop = Buffer.from(JSON.stringify({ sentAt: 1, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true }, x: 1, epoch: 0 }));
  t.throws(() => decodePayload(MessageType.HEARTBEAT, extraTop), MalformedFrameError);
  const extraHello = Buffer.from(JSON.stringify({ ...hello.body, admin: true, epoch: 0 }));
  t.throws(() => decodePayload(MessageType.HELLO, extraHello), MalformedFrameError);
});

t.test('malformed payloads are refused with reason malformed', async (t) => {
  // Every case but the epoch ones carries a valid epoch, so each fails for the reason it names.
  const j = (v: unknown): Buffer => Buffer.from(JSON.stringify(typeof v === 'object' && v !== null && !Array.isArray(v) ? { epoch: 0, ...v } : v));
  const hb = (summary: unknown, sentAt: unknown = 1): Buffer => j({ sentAt, summary });
  const okSummary = { role: 'primary', coloMode: 'primary', qemuReachable: true };
  const cases: Array<[string, number, Buffer]> = [
    ['not JSON', MessageType.ACK, Buffer.from('{"seq":1,')],
    ['epoch missing', MessageType.ACK, Buffer.from('{"seq":1,"sentAt":1}')],
    ['epoch negative', MessageType.ACK, j({ seq: 1, sentAt: 1, epoch: -1 })],
    ['epoch fractional', MessageType.ACK, j({ seq: 1, sentAt: 1, epoch: 1.5 })],
    ['epoch as string', MessageType.ACK, j({ seq: 1, sentAt: 1, epoch: '1' })],
    ['epoch beyond 2^53', MessageType.ACK, Buffer.from('{"seq":1,"sentAt":1,"epoch":9007199254740993}')],
    ['not UTF-8', MessageType.GOODBYE, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    ['empty', MessageType.ACK, Buffer.alloc(0)],
    ['array', MessageType.ACK, j([1, 2])],
    ['null', MessageType.ACK, j(null)],
    ['number', MessageType.ACK, j(5)],
    ['missing field', MessageType.ACK, j({ seq: 1 })],
    ['seq as string', MessageType.ACK, j({ seq: '1', sentAt: 1 })],
    ['seq fractional', MessageType.ACK, j({ seq: 1.5, sentAt: 1 })],
    ['seq negative', MessageType.ACK, j({ seq: -1, sentAt: 1 })],
    ['seq beyond 2^53', MessageType.ACK, Buffer.from('{"seq":9007199254740993,"sentAt":1,"epoch":0}')],
    ['negative time', MessageType.ACK, j({ seq: 1, sentAt: -5 })],
    ['huge time', MessageType.ACK, Buffer.from('{"seq":1,"sentAt":1e300,"epoch":0}')],
    ['hello bad session', MessageType.HELLO, j({ ...hello.body, session: 'XYZ' })],
    ['hello upper-case session', MessageType.HELLO, j({ ...hello.body, session: '0123456789ABCDEF' })],
    ['hello short nonce', MessageType.HELLO, j({ ...hello.body, nonce: 'ab' })],
    ['hello version 0', MessageType.HELLO, j({ ...hello.body, protocolVersion: 0 })],
    ['hello version 256', MessageType.HELLO, j({ ...hello.body, protocolVersion: 256 })],
    ['hello name with space', MessageType.HELLO, j({ ...hello.body, name: 'a b' })],
    ['hello empty name', MessageType.HELLO, j({ ...hello.body, name: '' })],
    ['hello role upper-case', MessageType.HELLO, j({ ...hello.body, role: 'Primary' })],
    ['summary not object', MessageType.HEARTBEAT, hb('primary')],
    ['summary missing qemuReachable', MessageType.HEARTBEAT, hb({ role: 'primary', coloMode: 'primary' })],
    ['summary qemuReachable string', MessageType.HEARTBEAT, hb({ ...okSummary, qemuReachable: 'yes' })],
    ['summary bad COLO mode', MessageType.HEARTBEAT, hb({ ...okSummary, coloMode: 'tertiary' })],
    ['summary bad agentState', MessageType.HEARTBEAT, hb({ ...okSummary, agentState: 'x'.repeat(40) })],
    ['heartbeat sentAt null', MessageType.HEARTBEAT, hb(okSummary, null)],
    ['goodbye control chars', MessageType.GOODBYE, j({ reason: 'bye\nforged log line' })],
    ['goodbye too long', MessageType.GOODBYE, j({ reason: 'x'.repeat(201) })],
    ['goodbye reason number', MessageType.GOODBYE, j({ reason: 1 })],
    ['reserved body not object', MessageType.PEER_QEMU_GONE, j('gone')],
    ['__proto__ key', MessageType.FAILOVER_ANNOUNCE, Buffer.from('{"__proto__":{"polluted":true}}')],
    ['nested constructor key', MessageType.ARBITRATION_REQUEST, Buffer.from('{"a":{"constructor":1}}')],
  ];
  for (const [what, type, payload] of cases) {
    const err = t.throws(() => decodePayload(type, payload), MalformedFrameError, what) as MalformedFrameError;
    t.equal(err.reason, 'malformed', what);
    t.equal(err.code, 'ERR_HB_MALFORMED', what);
  }
  t.throws(() => encodePayload({ type: 'ack', body: { seq: 1, sentAt: 1 } }, -1), InvalidMessageError, 'a negative epoch is never sent');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
});

t.test('unknown type numbers are refused with reason unknown-type', async (t) => {
  for (const type of [0, 5, 15, 21, 99, 255]) {
    const err = t.throws(() => decodePayload(type, Buffer.from('{}')), UnknownTypeError) as UnknownTypeError;
    t.equal(err.reason, 'unknown-type');
  }
});

t.test('refuses to encode what a peer would refuse', async (t) => {
  t.throws(() => encodePayload({ type: 'hello', body: { ...(hello.body as object), name: 'bad name' } } as Message, 0), InvalidMessageError);
  t.throws(
    () => encodePayload({ type: 'heartbeat', body: { sentAt: Number.NaN, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true } } }, 0),
    InvalidMessageError,
  );
  t.throws(() => encodePayload({ type: 'goodbye', body: { reason: 'a\u0000b' } }, 0), InvalidMessageError);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  t.throws(() => encodePayload({ type: 'peer-qemu-gone', body: cyclic }, 0), InvalidMessageError);
});

t.test('HEARTBEAT summary.intervalMs: the sender announces its pace; out of range is malformed', async (t) => {
  const m: Message = { type: 'heartbeat', body: { sentAt: 1, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true, intervalMs: 200 } } };
  const { typeCode, payload } = encodePayload(m, 0);
  t.strictSame(decodePayload(typeCode, payload), { ...m, epoch: 0 }, 'round trip');
  for (const bad of [0, -5, 1.5, 600_001, '200']) {
    const raw = Buffer.from(JSON.stringify({ sentAt: 1, summary: { role: 'primary', coloMode: 'primary', qemuReachable: true, intervalMs: bad }, epoch: 0 }));
    t.throws(() => decodePayload(MessageType.HEARTBEAT, raw), MalformedFrameError, `intervalMs ${JSON.stringify(bad)}`);
  }
});
