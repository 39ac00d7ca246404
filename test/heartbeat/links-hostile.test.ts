/**
 * Bad input against a live listener. Every case: the connection is dropped, a `rejected` event
 * carries the right reason, nothing counts as a heartbeat, and the listener still serves a good
 * peer afterwards.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { newSessionId } from '../../src/heartbeat/auth.js';
import { REJECT_REASONS } from '../../src/heartbeat/errors.js';
import { HeartbeatLinks, type HeartbeatLinksOptions } from '../../src/heartbeat/links.js';
import { createLogger } from '../../src/log.js';
import { closedOf, key, portOf, Proxy, rawSocket, RawPeer, record, sleep, startLinks, until, summaryOf, waitEvent } from './support.js';

interface Listener {
  a: HeartbeatLinks;
  k: Buffer;
  port: number;
  beats: ReturnType<typeof record<'heartbeat'>>;
}

async function listener(t: Test, extra: Partial<HeartbeatLinksOptions> = {}): Promise<Listener> {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k, helloTimeoutMs: 300, ...extra });
  return { a, k, port: portOf(a), beats: record(a, 'heartbeat') };
}

/** A good peer completes a handshake and gets its heartbeat ACKed. */
async function stillServes(t: Test, l: Listener, localAddress?: string): Promise<void> {
  const p = await RawPeer.connect(t, l.port, l.k, { ...(localAddress ? { localAddress } : {}) });
  await p.handshake();
  t.ok(await p.acked(), 'listener still serves a good peer');
  p.socket.destroy();
}

t.test('wrong key', async (t) => {
  const l = await listener(t);
  const rej = waitEvent(l.a, 'rejected');
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${l.port}`], key: key() });
  const bRej = waitEvent(b, 'rejected');
  t.match(await rej, { reason: 'bad-mac', link: 'in:127.0.0.1', remoteAddress: '127.0.0.1' });
  t.match(await bRej, { reason: 'bad-mac' });
  await b.close();
  t.same(l.beats, []);
  await stillServes(t, l);
});

t.test('random bytes', async (t) => {
  const l = await listener(t);
  // In a well-formed envelope (plausible length, our version): only the MAC can refuse it.
  const env = randomBytes(104);
  env.writeUInt32BE(100, 0);
  env[4] = 1;
  let s = await rawSocket(t, l.port);
  let rej = waitEvent(l.a, 'rejected');
  s.write(env);
  t.match(await rej, { reason: 'bad-mac' });
  await closedOf(s);
  // Pure noise: some reason from the fixed set, and the connection is gone.
  for (let i = 0; i < 5; i++) {
    s = await rawSocket(t, l.port);
    rej = waitEvent(l.a, 'rejected');
    s.write(randomBytes(4096));
    s.end();
    const r = await rej;
    t.ok((REJECT_REASONS as readonly string[]).includes(r.reason), `noise rejected as ${r.reason}`);
    await closedOf(s);
  }
  t.same(l.beats, []);
  await stillServes(t, l);
});

t.test('oversize length prefix: dropped on the prefix alone', async (t) => {
  const l = await listener(t, { maxFrameBytes: 1024 });
  const s = await rawSocket(t, l.port);
  const rej = waitEvent(l.a, 'rejected');
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(1025);
  s.write(prefix); // and nothing else: the listener must not wait for a body
  t.match(await rej, { reason: 'oversize', remoteAddress: '127.0.0.1' });
  await closedOf(s);
  await stillServes(t, l);
});

t.test('truncated frame at close', async (t) => {
  const l = await listener(t);
  const p = await RawPeer.connect(t, l.port, l.k);
  const rej = waitEvent(l.a, 'rejected');
  p.write(p.hello().subarray(0, 40));
  p.socket.end();
  t.match(await rej, { reason: 'truncated' });
  await stillServes(t, l);
});

t.test('silent connection: hello timeout', async (t) => {
  const l = await listener(t);
  const s = await rawSocket(t, l.port);
  const rej = waitEvent(l.a, 'rejected');
  t.match(await rej, { reason: 'hello-timeout', link: 'in:127.0.0.1' });
  await closedOf(s);
  await stillServes(t, l);
});

t.test('a HEARTBEAT instead of a HELLO: unexpected-message', async (t) => {
  const l = await listener(t);
  const p = await RawPeer.connect(t, l.port, l.k);
  const rej = waitEvent(l.a, 'rejected');
  p.write(p.heartbeat()); // MAC'd with the shared key, so it is authentic, but out of order
  t.match(await rej, { reason: 'unexpected-message' });
  t.same(l.beats, []);
  await stillServes(t, l);
});

t.test('frames replayed from a captured connection onto a new one', async (t) => {
  const l = await listener(t);
  const proxy = await Proxy.start(t, l.port);
  const aUp = waitEvent(l.a, 'link-up');
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${proxy.port}`], key: l.k });
  await Promise.all([aUp, waitEvent(b, 'link-up')]);
  await until(() => l.beats.length >= 3);
  const captured = Buffer.concat(proxy.recorded[0]!);
  const helloLen = captured.readUInt32BE(0) + 4;
  t.ok(captured.length > helloLen, 'captured HELLO and keyed frames');
  const aUps = record(l.a, 'link-up');
  const beatsBefore = l.beats.length;

  // 1. The whole recording while B's session is still current: the HELLO's seq is not fresh.
  let s = await rawSocket(t, l.port);
  let rej = waitEvent(l.a, 'rejected', (e) => e.link === 'in:127.0.0.1' && e.reason !== undefined);
  s.write(captured);
  t.match(await rej, { reason: 'replay' });
  await closedOf(s);

  // 2. Without the HELLO: the keyed frames do not verify under the shared key.
  s = await rawSocket(t, l.port);
  rej = waitEvent(l.a, 'rejected');
  s.write(captured.subarray(helloLen));
  t.match(await rej, { reason: 'bad-mac' });
  await closedOf(s);

  // 3. After B restarted (new session): the old session is retired, its HELLO is a replay.
  await b.close();
  const b2 = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${l.port}`], key: l.k });
  await waitEvent(l.a, 'peer-session', (e) => e.session === b2.session);
  s = await rawSocket(t, l.port);
  rej = waitEvent(l.a, 'rejected');
  s.write(captured);
  t.match(await rej, { reason: 'replay' });
  await closedOf(s);
  await b2.close();
  // B's live link keeps beating until b.close(), so a count taken earlier would race it: a replayed
  // frame counted would be a duplicate (same session, same send time), and there is none.
  const sent = l.beats.filter((e) => e.peerSession === b.session).map((e) => e.sentAt);
  t.equal(new Set(sent).size, sent.length, 'no replayed frame counted as a heartbeat');
  t.ok(sent.length >= beatsBefore, "B's own beats all counted");

  // 4. A fresh listener that never saw B: the HELLO passes, but the recorded keyed frames were
  //    MAC'd with the old connection's key, so no link comes up and nothing counts.
  const fresh2 = await startLinks(t, { nodeName: 'node-c', listen: '127.0.0.1:0', key: l.k, helloTimeoutMs: 300 });
  const freshUps = record(fresh2, 'link-up');
  const freshSessions = record(fresh2, 'peer-session');
  const freshBeats = record(fresh2, 'heartbeat');
  s = await rawSocket(t, portOf(fresh2));
  rej = waitEvent(fresh2, 'rejected');
  s.write(captured);
  t.match(await rej, { reason: 'bad-mac' });
  t.same([...freshUps, ...freshSessions, ...freshBeats], [], 'no link-up, no peer-session, no heartbeat');
  t.same(aUps.filter((e) => e.peerSession === b.session), [], 'no replayed link-up on the original listener');
  await stillServes(t, l);
});

t.test('foreign session, unknown type and a second HELLO on an authenticated connection', async (t) => {
  const l = await listener(t);
  const cases: Array<[string, (p: RawPeer) => Buffer]> = [
    ['foreign-session', (p) => p.frame({ type: 'heartbeat', body: { sentAt: 1, summary: summaryOf('secondary')() } }, { session: newSessionId() })],
    ['unknown-type', (p) => p.rawFrame(99, Buffer.from('{}'))],
    ['unexpected-message', (p) => p.frame({ type: 'hello', body: { name: p.name, role: 'secondary', session: p.session, protocolVersion: 1, nonce: 'aa'.repeat(16) } })],
    ['replay', (p) => p.frame({ type: 'heartbeat', body: { sentAt: 1, summary: summaryOf('secondary')() } }, { seq: 1 })],
  ];
  for (const [reason, bad] of cases) {
    const p = await RawPeer.connect(t, l.port, l.k);
    await p.handshake();
    await p.acked();
    const rej = waitEvent(l.a, 'rejected');
    const down = waitEvent(l.a, 'link-down', (e) => e.peerSession === p.session);
    p.write(bad(p));
    t.match(await rej, { reason }, reason);
    t.match(await down, { reason }, `${reason}: link-down carries the reason`);
    await closedOf(p.socket);
  }
  await stillServes(t, l);
});

t.test('flood of frames: rate-limit', async (t) => {
  const l = await listener(t, { maxFramesPerSecond: 200 });
  const p = await RawPeer.connect(t, l.port, l.k);
  await p.handshake();
  await p.acked();
  const rej = waitEvent(l.a, 'rejected');
  const flood: Buffer[] = [];
  for (let i = 0; i < 3000; i++) flood.push(p.heartbeat());
  p.write(Buffer.concat(flood));
  t.match(await rej, { reason: 'rate-limit' });
  await closedOf(p.socket);
  t.ok(l.beats.length < 1500, `the flood was cut off long before its end (${l.beats.length} of 3000 counted)`);
  await stillServes(t, l);
});

t.test('too many connections from one source', async (t) => {
  const l = await listener(t, { maxConnectionsPerSource: 3, helloTimeoutMs: 2000 });
  const idle = [await rawSocket(t, l.port), await rawSocket(t, l.port), await rawSocket(t, l.port)];
  const rej = waitEvent(l.a, 'rejected');
  const extra = await rawSocket(t, l.port);
  t.same(await rej, { reason: 'too-many-connections', remoteAddress: '127.0.0.1', message: 'more than 3 connections from 127.0.0.1' });
  await closedOf(extra);
  // Another source is not affected...
  await stillServes(t, l, '127.0.0.9');
  // ...and once the idle ones are gone, this source is served again.
  for (const s of idle) s.destroy();
  await until(() => l.a.links().length === 0, 5000, 'the listener to see the idle sockets go');
  await stillServes(t, l);
});

t.test('rejection warnings are rate-limited per reason', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const x of chunk.toString().split('\n')) if (x) lines.push(JSON.parse(x) as Record<string, unknown>);
      cb();
    },
  });
  const l = await listener(t, { logger: createLogger({ level: 'warn', destination: sink }) });
  const prefix = Buffer.from([0xff, 0xff, 0xff, 0xff]);
  for (let i = 0; i < 10; i++) {
    const s = await rawSocket(t, l.port);
    const rej = waitEvent(l.a, 'rejected');
    s.write(prefix);
    await rej;
    await closedOf(s);
  }
  const warns = lines.filter((x) => x.reason === 'oversize');
  t.equal(warns.length, 1, 'one line for ten rejections');
  t.equal(warns[0]!.component, 'heartbeat');
  await stillServes(t, l);
});

t.test('a peer that stops reading is dropped: write-backlog', async (t) => {
  const l = await listener(t, { maxPendingWriteBytes: 64 * 1024 });
  const p = await RawPeer.connect(t, l.port, l.k);
  await p.handshake();
  await p.acked();
  p.socket.pause(); // from now on the peer reads nothing; kernel buffers fill, then ours
  const down = waitEvent(l.a, 'link-down');
  const downs = record(l.a, 'link-down');
  const body = { pad: 'x'.repeat(12_000) };
  let sent = 0;
  for (let i = 0; i < 5000 && downs.length === 0; i++) {
    sent += l.a.send('ready-to-be-secondary', body);
    if (i % 20 === 0) await sleep(1);
  }
  t.match(await down, { reason: 'write-backlog', peerSession: p.session });
  t.ok(sent > 0, `${sent} large messages queued before the drop`);
  t.throws(() => l.a.send('peer-qemu-gone', { pad: 'x'.repeat(20_000) }), { code: 'ERR_HB_INVALID_MESSAGE' }, 'a body over maxFrameBytes is refused at the sender');
  p.socket.destroy();
  await stillServes(t, l);
});
