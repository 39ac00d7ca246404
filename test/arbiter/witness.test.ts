/**
 * The witness end to end over real sockets: a WitnessServer and two WitnessClients (the agents'
 * side) on loopback, with short intervals and leases. The decision rules themselves are unit
 * tested in witness-grants.test.ts; this checks the messages, the epochs in every frame, the
 * agent-side lease, persistence across a witness restart, and hostile request bodies.
 */
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import type { ArbitrationResult } from '../../src/arbiter/arbiter.js';
import { WitnessClient } from '../../src/arbiter/witness-client.js';
import { WitnessServer, type WitnessVerdictEvent } from '../../src/arbiter/witness-server.js';
import type { HealthSummary } from '../../src/heartbeat/messages.js';
import { sleep, until } from '../heartbeat/support.js';

// A lease a few times longer than a scheduling stall on a loaded 2-core CI machine (200 ms was not).
const INTERVAL = 50;
const LEASE = 1000;

interface Node {
  client: WitnessClient;
  epoch: number;
  qemuReachable: boolean;
}

async function startWitness(t: Test, stateDir: string, key: Buffer, listen = '127.0.0.1:0'): Promise<WitnessServer> {
  const w = new WitnessServer({ nodeName: 'witness', listen: [listen], key, intervalMs: INTERVAL, stateDir, leaseMs: LEASE, bothAskWindowMs: 50 });
  t.teardown(() => w.close());
  await w.start();
  return w;
}

function addressOf(w: WitnessServer): string {
  const a = w.links.listenAddresses()[0]!;
  return `127.0.0.1:${a.port}`;
}

async function startNode(t: Test, name: string, role: 'primary' | 'secondary', witness: string, key: Buffer): Promise<Node> {
  const node: Node = { epoch: 0, qemuReachable: true } as Node;
  const summary = (): HealthSummary => ({ role, coloMode: role, qemuReachable: node.qemuReachable, agentState: 'peer-up' });
  node.client = new WitnessClient({
    nodeName: name,
    role,
    witness: [witness],
    key,
    intervalMs: INTERVAL,
    summary,
    epoch: () => node.epoch,
    links: { reconnectInitialMs: 20, reconnectMaxMs: 100 },
  });
  t.teardown(() => node.client.close());
  await node.client.start();
  // The witness counts a link up on our first heartbeat, the client only on the witness's answer
  // to it: a request sent in between fails as "unreachable" (seen on a loaded machine).
  await until(() => node.client.reachable(), 3000, `${name} reaches the witness`);
  return node;
}

async function ask(n: Node, action: 'takeover' | 'continue', timeoutMs = 3000): Promise<ArbitrationResult> {
  const r = await n.client.request({ action, epoch: n.epoch }, { timeoutMs });
  if (r.granted) n.epoch = r.epoch;
  return r;
}

t.test('the primary holds the lease; a takeover is refused while it lives, granted once it is gone', async (t) => {
  const key = randomBytes(32);
  const w = await startWitness(t, t.testdir(), key);
  const verdicts: WitnessVerdictEvent[] = [];
  w.on('verdict', (v) => verdicts.push(v));
  const a = await startNode(t, 'node-a', 'primary', addressOf(w), key);
  const b = await startNode(t, 'node-b', 'secondary', addressOf(w), key);
  await until(() => w.status().holder === 'node-a', 3000, 'the witness adopts the primary as holder');
  await until(() => (a.client.leaseRemainingMs() ?? 0) > 0, 3000, 'the primary learns it holds a lease');
  t.equal(b.client.leaseRemainingMs(), undefined, 'the secondary holds none');
  t.ok(a.client.reachable() && b.client.reachable());

  const refused = await ask(b, 'takeover');
  t.match(refused, { granted: false, reason: /node-a/ }, 'the holder keeps heartbeating: no takeover');
  t.equal(b.epoch, 0);

  // The primary's host dies: its heartbeats stop; the witness waits out the lease, then grants.
  const started = Date.now();
  await a.client.close();
  const granted = await ask(b, 'takeover');
  t.match(granted, { granted: true, epoch: 1, by: 'witness' });
  t.ok(Date.now() - started >= LEASE, 'not before the lease ran out');
  t.equal(w.status().holder, 'node-b');
  t.equal(w.status().epoch, 1);
  await until(() => (b.client.leaseRemainingMs() ?? 0) > 0, 3000, 'the new holder has a lease');
  t.match(verdicts.map((v) => [v.node, v.action, v.granted]), [
    ['node-b', 'takeover', false],
    ['node-b', 'takeover', true],
  ]);
});

t.test('a primary that asks to continue is granted at once, and the stale secondary is refused for good', async (t) => {
  const key = randomBytes(32);
  const w = await startWitness(t, t.testdir(), key);
  const a = await startNode(t, 'node-a', 'primary', addressOf(w), key);
  const b = await startNode(t, 'node-b', 'secondary', addressOf(w), key);
  await until(() => w.status().holder === 'node-a');
  const [ra, rb] = await Promise.all([ask(a, 'continue'), ask(b, 'takeover')]);
  t.match(ra, { granted: true, epoch: 1 }, `the primary wins when both ask (${JSON.stringify(ra)}; the secondary: ${JSON.stringify(rb)})`);
  t.match(rb, { granted: false }, 'the secondary loses');
  // The grant reaches the holder before it adopts the epoch: the lease is its own all along.
  a.epoch = 0;
  t.ok((a.client.leaseRemainingMs() ?? 0) > 0, 'a grant not yet adopted still counts as our lease');
  a.epoch = 1;
  const epochs: number[] = [];
  b.client.on('epoch', (e) => epochs.push(e.epoch));
  const again = await ask(b, 'takeover');
  t.match(again, { granted: false, retryable: false, epoch: 1 }, 'a request from epoch 0 is stale');
  t.match(b.client.view(), { epoch: 1, holder: 'node-a' }, 'the secondary sees the witness at epoch 1');
});

t.test('the agent-side lease runs out when the witness goes away, and never outlives the witness-side one', async (t) => {
  const key = randomBytes(32);
  const w = await startWitness(t, t.testdir(), key);
  const a = await startNode(t, 'node-a', 'primary', addressOf(w), key);
  await until(() => (a.client.leaseRemainingMs() ?? 0) > 0);
  for (let i = 0; i < 10; i++) {
    await sleep(INTERVAL);
    const mine = a.client.leaseRemainingMs() ?? 0;
    const theirs = w.status().leaseRemainingMs ?? 0;
    t.ok(mine <= theirs + 1, `agent ${mine.toFixed(0)} ms <= witness ${theirs.toFixed(0)} ms`);
  }
  // Heartbeats saying our QEMU is gone renew nothing, at the witness or here.
  a.qemuReachable = false;
  await until(() => a.client.leaseRemainingMs() === 0, 3000, 'no renewal while QEMU is reported gone');
  t.ok(a.client.reachable(), 'although the witness answers');
  a.qemuReachable = true;
  await until(() => (a.client.leaseRemainingMs() ?? 0) > 0, 3000, 'renewed again');
  const reach: boolean[] = [];
  a.client.on('reachable', (r) => reach.push(r));
  await w.close();
  await until(() => a.client.leaseRemainingMs() === 0, 3000, 'lease ran out');
  t.notOk(a.client.reachable());
  t.same(reach, [false]);
  t.match(await ask(a, 'continue', 200), { granted: false, retryable: true, reason: /unreachable/ });
});

t.test('a QEMU-gone heartbeat releases the lease at once', async (t) => {
  const key = randomBytes(32);
  const w = await startWitness(t, t.testdir(), key);
  const a = await startNode(t, 'node-a', 'primary', addressOf(w), key);
  const b = await startNode(t, 'node-b', 'secondary', addressOf(w), key);
  await until(() => w.status().holder === 'node-a');
  await sleep(LEASE); // past the witness's start-up wait
  a.qemuReachable = false;
  await sleep(3 * INTERVAL);
  const started = Date.now();
  t.match(await ask(b, 'takeover'), { granted: true, epoch: 1 });
  t.ok(Date.now() - started < LEASE, 'no wait for a lease its holder gave up');
  t.equal(a.client.leaseRemainingMs(), undefined, 'the old primary learns it is no longer holder');
});

t.test('the witness keeps its epoch and holder across a restart; malformed requests are ignored', async (t) => {
  const key = randomBytes(32);
  const dir = t.testdir();
  const w1 = await startWitness(t, dir, key);
  const port = w1.links.listenAddresses()[0]!.port;
  const a = await startNode(t, 'node-a', 'primary', addressOf(w1), key);
  await until(() => w1.status().holder === 'node-a');
  t.match(await ask(a, 'continue'), { granted: true, epoch: 1 });
  t.equal(a.client.links.send('arbitration-request', { requestId: 'nope', action: 'takeover' }), 1, 'a malformed request is sent');
  t.equal(a.client.links.send('arbitration-request', { requestId: '00112233445566778', action: 'reign' }), 1);
  await sleep(50);
  t.equal(w1.status().epoch, 1, 'and changes nothing');
  await w1.close();

  const w2 = await startWitness(t, dir, key, `127.0.0.1:${port}`);
  t.equal(w2.status().epoch, 1);
  t.equal(w2.status().holder, 'node-a');
  await until(() => a.client.reachable(), 5000, 'the agent redials');
  t.match(await ask(a, 'continue'), { granted: true, epoch: 2 }, 'the holder continues at the next epoch');
});
