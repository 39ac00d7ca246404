/**
 * Fuzz-style: a few thousand random and mutated frames (bit flips, truncations, extensions,
 * rewritten length prefixes, spliced after a valid HELLO) thrown at a live listener, one
 * connection each, in a bounded loop with a seeded PRNG. The process must survive, no input may
 * ever count as a heartbeat (or bring a link up), and a good peer must still work afterwards.
 */
import t from 'tap';
import { REJECT_REASONS } from '../../src/heartbeat/errors.js';
import { mulberry32 } from '../helpers/prng.js';
import { closedOf, key, portOf, Proxy, rawSocket, RawPeer, record, startLinks, until, waitEvent } from './support.js';

const ITERATIONS = 2500;
const CONCURRENCY = 8;
const SEED = Number(process.env.HB_FUZZ_SEED ?? 0x5eed);

function splitFrames(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + 4 <= stream.length; ) {
    const n = stream.readUInt32BE(i) + 4;
    if (i + n > stream.length) break;
    out.push(stream.subarray(i, i + n));
    i += n;
  }
  return out;
}

t.test('thousands of mutated frames never count, and the listener keeps serving', async (t) => {
  t.comment(`seed ${SEED} (set HB_FUZZ_SEED to reproduce)`);
  const rnd = mulberry32(SEED);
  const int = (n: number): number => Math.floor(rnd() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));

  const k = key();
  // Corpus: real traffic of a real pair (HELLO under the shared key, then keyed frames), recorded
  // through a proxy on a different listener, so the target has never seen that session.
  const c = await startLinks(t, { nodeName: 'node-c', listen: '127.0.0.1:0', key: k });
  const proxy = await Proxy.start(t, portOf(c));
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${proxy.port}`], key: k });
  await waitEvent(b, 'link-up');
  const cBeats = record(c, 'heartbeat');
  await until(() => cBeats.length >= 5);
  await b.close({ goodbye: 'corpus done' });
  const corpus = splitFrames(Buffer.concat(proxy.recorded[0]!));
  const hello = corpus[0]!;
  t.ok(corpus.length >= 6, `corpus of ${corpus.length} frames`);

  const a = await startLinks(t, {
    nodeName: 'node-a',
    listen: '127.0.0.1:0',
    key: k,
    maxFrameBytes: 4096,
    helloTimeoutMs: 500,
    maxConnectionsPerSource: 64,
  });
  const port = portOf(a);
  const beats = record(a, 'heartbeat');
  const ups = record(a, 'link-up');
  const sessions = record(a, 'peer-session');
  const messages = record(a, 'message');
  const goodbyes = record(a, 'goodbye');
  const rejected = record(a, 'rejected');

  const mutate = (): Buffer => {
    const base = Buffer.from(corpus[int(corpus.length)]!);
    switch (int(7)) {
      case 0: {
        for (let i = 1 + int(3); i > 0; i--) {
          const bit = int(base.length * 8);
          base[bit >> 3]! ^= 1 << (bit & 7);
        }
        return base;
      }
      case 1:
        return base.subarray(0, int(base.length));
      case 2:
        return Buffer.concat([base, bytes(1 + int(64))]);
      case 3:
        base.writeUInt32BE(rnd() < 0.5 ? int(2 ** 32) : int(base.length * 2), 0);
        return base;
      case 4:
        return bytes(1 + int(300));
      case 5:
        base[int(base.length)] = [0x00, 0xff, 0x7b, 0x22, 0x01][int(5)]!;
        return base;
      default: {
        // A valid HELLO (it does verify) followed by a damaged or foreign keyed frame.
        const next = Buffer.from(corpus[1 + int(corpus.length - 1)]!);
        if (rnd() < 0.5) next[int(next.length)]! ^= 1 + int(255);
        return Buffer.concat([hello, next]);
      }
    }
  };

  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < ITERATIONS) {
      sent++;
      const payload = mutate();
      const s = await rawSocket(t, port);
      if (rnd() < 0.2) {
        for (let i = 0; i < payload.length; i += 1 + int(8)) s.write(payload.subarray(i, i + 1 + int(8)));
      } else {
        s.write(payload);
      }
      s.end();
      await closedOf(s);
      s.destroy();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));

  t.equal(sent, ITERATIONS);
  t.same(beats, [], 'no mutated frame counted as a heartbeat');
  t.same([...ups, ...sessions, ...messages, ...goodbyes], [], 'no link-up, peer-session, message or goodbye');
  t.ok(rejected.length > ITERATIONS / 2, `${rejected.length} rejections`);
  const reasons = new Set(rejected.map((r) => r.reason));
  t.ok([...reasons].every((r) => (REJECT_REASONS as readonly string[]).includes(r)), `reasons: ${[...reasons].sort().join(', ')}`);

  // Still alive and serving: a raw good peer and a real agent.
  const p = await RawPeer.connect(t, port, k);
  await p.handshake();
  t.ok(await p.acked());
  const d = await startLinks(t, { nodeName: 'node-d', role: 'secondary', peers: [`127.0.0.1:${port}`], key: k });
  const beat = await waitEvent(a, 'heartbeat', (e) => e.peerName === 'node-d');
  t.equal(beat.peerSession, d.session);
});
