/**
 * The gate between "the rule says act" and the failover sequence: stale epoch, gateways, the
 * arbiter's grant (persisted first), fencing. Real EpochStore files, real sockets for gateways,
 * real shell commands for fencing; the arbiter is the `none` mode or a small in-test one that
 * answers as told (the witness and etcd arbiters have their own tests with real servers).
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Arbiter, ArbiterEvents, ArbitrationRequest, ArbitrationResult } from '../../src/arbiter/arbiter.js';
import { EpochStore } from '../../src/arbiter/epoch-store.js';
import { NoneArbiter } from '../../src/arbiter/none-arbiter.js';
import { TakeoverGate, type ArbitrationEvent, type FenceEvent, type TakeoverGateOptions } from '../../src/arbiter/takeover-gate.js';
import { freePort } from '../helpers/free-port.js';

class ScriptedArbiter extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly mode = 'witness' as const;
  readonly requests: ArbitrationRequest[] = [];
  constructor(private readonly answer: (req: ArbitrationRequest) => ArbitrationResult) {
    super();
  }
  async start(): Promise<void> {}
  async close(): Promise<void> {}
  async request(req: ArbitrationRequest): Promise<ArbitrationResult> {
    this.requests.push(req);
    return this.answer(req);
  }
  leaseRemainingMs(): undefined {
    return undefined;
  }
  reachable(): boolean {
    return true;
  }
}

async function gate(t: Test, o: Partial<Omit<TakeoverGateOptions, 'epochs'>> = {}) {
  const epochs = await EpochStore.open(t.testdir());
  const g = new TakeoverGate({
    nodeName: 'node-b',
    arbiter: new NoneArbiter(),
    epochs,
    gateways: [],
    gatewayTimeoutMs: 200,
    requestTimeoutMs: 1000,
    fence: { command: '', timeoutMs: 2000, policy: 'abort', maxWaitMs: 1000 },
    peer: () => ({ name: 'node-a', host: '127.0.0.1' }),
    ...o,
  });
  const arbitrations: ArbitrationEvent[] = [];
  const fences: FenceEvent[] = [];
  g.on('arbitration', (e) => arbitrations.push(e));
  g.on('fence', (e) => fences.push(e));
  return { g, epochs, arbitrations, fences };
}

t.test('mode none grants the next epoch, persisted before the gate opens', async (t) => {
  const { g, epochs, arbitrations } = await gate(t);
  t.match(await g.pass('takeover'), { pass: true, epoch: 1, fenced: false });
  t.equal(epochs.epoch, 1);
  const onDisk = JSON.parse(await readFile(epochs.path, 'utf8')) as { epoch: number; holder: string };
  t.match(onDisk, { epoch: 1, holder: 'node-b' });
  t.match(await g.pass('continue'), { pass: true, epoch: 2 });
  t.same(arbitrations.map((a) => a.result), ['granted', 'granted']);
});

t.test('a stale node never asks; a denial naming a newer epoch makes it stale', async (t) => {
  const arbiter = new ScriptedArbiter(() => ({ granted: false, retryable: false, reason: 'stale epoch', epoch: 4 }));
  const { g, epochs, arbitrations } = await gate(t, { arbiter });
  t.match(await g.pass('takeover'), { pass: false, step: 'stale', retry: false });
  t.ok(epochs.stale, 'the newer epoch is recorded');
  t.equal(epochs.newestSeen, 4);
  t.match(arbitrations, [{ action: 'takeover', result: 'denied', epoch: 4 }]);
  t.match(await g.pass('takeover'), { pass: false, step: 'stale', reason: /stale/ });
  t.equal(arbiter.requests.length, 1, 'the arbiter is not asked again');
});

t.test('an unreachable arbiter: retry later, nothing persisted', async (t) => {
  const arbiter = new ScriptedArbiter(() => ({ granted: false, retryable: true, reason: 'the witness is unreachable' }));
  const { g, epochs, arbitrations } = await gate(t, { arbiter });
  t.match(await g.pass('continue'), { pass: false, step: 'arbiter', retry: true, reason: /unreachable/ });
  t.equal(epochs.epoch, 0);
  t.match(arbitrations, [{ action: 'continue', result: 'unavailable' }]);
});

t.test('gateways: none answering vetoes before the arbiter is asked; a refusal counts as an answer', async (t) => {
  const arbiter = new ScriptedArbiter((r) => ({ granted: true, epoch: r.epoch + 1, by: 'test' }));
  // A closed port on loopback refuses: the network path works.
  const refused = { host: '127.0.0.1', port: await freePort() };
  const ok = await gate(t, { arbiter, gateways: [refused] });
  t.match(await ok.g.pass('takeover'), { pass: true, epoch: 1 });

  // A name that does not resolve never answers: cut off.
  const cut = await gate(t, { arbiter, gateways: [{ host: 'gateway.invalid', port: 80 }] });
  t.match(await cut.g.pass('takeover'), { pass: false, step: 'gateway', retry: true, reason: /no gateway answers/ });
  t.equal(arbiter.requests.length, 1, 'the arbiter was not asked after the veto');
});

t.test('fencing runs after the grant with the peer in its environment; a failure aborts', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'fenced');
  const good = await gate(t, {
    fence: { command: `echo "$COLO_AGENT_PEER_NAME $COLO_AGENT_PEER_HOST $COLO_AGENT_EPOCH $COLO_AGENT_ACTION" > ${out}`, timeoutMs: 2000, policy: 'abort', maxWaitMs: 1000 },
  });
  t.match(await good.g.pass('takeover'), { pass: true, epoch: 1, fenced: true });
  t.equal((await readFile(out, 'utf8')).trim(), 'node-a 127.0.0.1 1 takeover');
  t.match(good.fences, [{ ok: true, attempts: 1 }]);

  const bad = await gate(t, { fence: { command: 'exit 3', timeoutMs: 2000, policy: 'abort', maxWaitMs: 1000 } });
  t.match(await bad.g.pass('takeover'), { pass: false, step: 'fence', retry: false, reason: /never run unfenced/ });
  t.equal(bad.epochs.epoch, 1, 'the grant stays recorded: this node holds the epoch, unfenced');
  t.match(bad.fences, [{ ok: false }]);
});

t.test('a listening gateway passes', async (t) => {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { g } = await gate(t, { gateways: [{ host: '127.0.0.1', port: (server.address() as AddressInfo).port }] });
  t.match(await g.pass('takeover'), { pass: true });
});
