/**
 * EtcdArbiter against a real etcd (test/helpers/etcd-server.ts), over real sockets.
 *
 * Most tests share one etcd started with fast raft timings, so that it accepts a 1 s lease TTL;
 * each test uses its own key prefix. The kill test has its own etcd at default timings (there
 * etcd raises a 1 s TTL to 2 s).
 */
import { once } from 'node:events';
import { Etcd3 } from 'etcd3';
import t from 'tap';
import type { ArbitrationResult, EpochSeenEvent } from '../../src/arbiter/arbiter.js';
import { EtcdArbiter, EtcdArbiterOptionsError, type EtcdArbiterOptions } from '../../src/arbiter/etcd-arbiter.js';
import { etcdAvailable, startEtcd, type RunningEtcd } from '../helpers/etcd-server.js';
import type { Teardownable } from '../helpers/short-temp-dir.js';

const avail = etcdAvailable();

interface Node {
  primary: boolean;
  epoch: number;
}

let prefixSeq = 0;
const newPrefix = () => `/colo-agent-test/${process.pid}-${++prefixSeq}`;

function makeArbiter(
  tt: Teardownable,
  etcd: { endpoint: string },
  prefix: string,
  nodeName: string,
  node: Node,
  extra: Partial<EtcdArbiterOptions> = {},
): EtcdArbiter {
  const a = new EtcdArbiter({
    endpoints: [etcd.endpoint],
    prefix,
    nodeName,
    leaseTtlSeconds: 1,
    isPrimary: () => node.primary,
    epoch: () => node.epoch,
    dialTimeoutMs: 1000,
    pollIntervalMs: 200,
    ...extra,
  });
  tt.teardown(() => a.close());
  return a;
}

function rawClient(tt: Teardownable, etcd: { endpoint: string }): Etcd3 {
  const c = new Etcd3({ hosts: etcd.endpoint });
  tt.teardown(() => c.close());
  return c;
}

async function readKeys(raw: Etcd3, prefix: string): Promise<{ record: unknown; holder: string | null; holderLease?: string }> {
  const rec = await raw.get(`${prefix}/epoch`).string();
  const holder = await raw.get(`${prefix}/holder`).exec();
  const kv = holder.kvs[0];
  return { record: rec === null ? null : JSON.parse(rec), holder: kv ? kv.value.toString() : null, ...(kv && { holderLease: kv.lease }) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until it holds or `ms` pass; returns whether it held. */
async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

t.test('options that cannot work are refused', async (t) => {
  const base: EtcdArbiterOptions = {
    endpoints: ['http://127.0.0.1:2379'],
    prefix: '/p',
    nodeName: 'a',
    leaseTtlSeconds: 2,
    isPrimary: () => false,
    epoch: () => 0,
    dialTimeoutMs: 1000,
  };
  t.throws(() => new EtcdArbiter({ ...base, endpoints: [] }), EtcdArbiterOptionsError);
  t.throws(() => new EtcdArbiter({ ...base, endpoints: ['127.0.0.1:2379'] }), EtcdArbiterOptionsError);
  t.throws(() => new EtcdArbiter({ ...base, leaseTtlSeconds: 0 }), EtcdArbiterOptionsError);
  t.throws(() => new EtcdArbiter({ ...base, leaseTtlSeconds: 1.5 }), EtcdArbiterOptionsError);
  t.throws(() => new EtcdArbiter({ ...base, prefix: '/' }), EtcdArbiterOptionsError);
  t.throws(() => new EtcdArbiter({ ...base, nodeName: '' }), EtcdArbiterOptionsError);
  const a = new EtcdArbiter(base);
  t.equal(a.mode, 'etcd');
  t.equal(a.leaseRemainingMs(), undefined);
  t.equal(a.reachable(), false);
  t.same(await a.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 100 }), {
    granted: false,
    retryable: true,
    reason: 'the etcd arbiter is not running',
  });
});

t.test('against a real etcd', { skip: avail.available ? false : avail.reason }, async (t) => {
  const etcd = await startEtcd({ t, fast: true });
  const raw = rawClient(t, etcd);
  const minTtl = await raw.leaseClient.leaseGrant({ TTL: 1 });
  t.comment(`etcd with 50/500 ms raft timings grants a 1 s lease request as TTL ${minTtl.TTL} s`);

  t.test('the configured primary becomes the holder; holding survives several TTLs; a planned stop does not revoke', async (t) => {
    const prefix = newPrefix();
    const na: Node = { primary: true, epoch: 0 };
    const nb: Node = { primary: false, epoch: 0 };
    const a = makeArbiter(t, etcd, prefix, 'a', na);
    const b = makeArbiter(t, etcd, prefix, 'b', nb);
    await a.start();
    await b.start();
    t.equal(a.reachable(), true);
    t.equal(b.reachable(), true);
    t.ok((a.leaseRemainingMs() ?? 0) > 0, 'the primary holds a lease');
    t.equal(b.leaseRemainingMs(), undefined, 'the secondary holds none');
    const keys = await readKeys(raw, prefix);
    t.same(keys.record, { epoch: 0, holder: 'a' });
    t.equal(keys.holder, 'a');

    // Three TTLs later the keepalives still hold it.
    await sleep(3000);
    t.ok((a.leaseRemainingMs() ?? 0) > 0, 'still held after 3 TTLs');
    t.equal((await readKeys(raw, prefix)).holder, 'a');

    // A planned stop leaves the key in place until the lease runs out by itself.
    await a.close();
    t.equal((await readKeys(raw, prefix)).holder, 'a', 'close() does not revoke the lease');
    t.ok(await waitFor(() => a.leaseRemainingMs() === 0, 3000), "our side's lease ends after close");

    // The restarted agent (same node, still running the guest) takes its key back at once.
    const a2 = makeArbiter(t, etcd, prefix, 'a', na);
    await a2.start();
    t.ok((a2.leaseRemainingMs() ?? 0) > 0, 'the restarted primary holds again');
    const after = await readKeys(raw, prefix);
    t.same(after.record, { epoch: 0, holder: 'a' }, 'same epoch: nothing was granted');
    t.equal(after.holder, 'a');
  });

  t.test('continue is granted to the holder; the peer sees the new epoch; takeover waits for the holder and is denied while it lives', async (t) => {
    const prefix = newPrefix();
    const na: Node = { primary: true, epoch: 0 };
    const nb: Node = { primary: false, epoch: 0 };
    const a = makeArbiter(t, etcd, prefix, 'a', na);
    const b = makeArbiter(t, etcd, prefix, 'b', nb);
    await a.start();
    await b.start();
    const seen = once(b, 'epoch') as Promise<[EpochSeenEvent]>;

    const cont = await a.request({ action: 'continue', epoch: 0 }, { timeoutMs: 2000 });
    t.same(cont, { granted: true, epoch: 1, by: `etcd ${etcd.endpoint}` });
    na.epoch = 1;
    t.same((await readKeys(raw, prefix)).record, { epoch: 1, holder: 'a' });
    const [ev] = await seen;
    t.same(ev, { epoch: 1, holder: 'a' }, 'the secondary hears of epoch 1');
    nb.epoch = 1;

    const take = await b.request({ action: 'takeover', epoch: 1 }, { timeoutMs: 2500 });
    t.equal(take.granted, false);
    if (!take.granted) {
      t.equal(take.retryable, true);
      t.match(take.reason, /a holds the lease/);
      t.equal(take.epoch, 1);
    }
    t.ok((a.leaseRemainingMs() ?? 0) > 0, 'the holder kept its lease meanwhile');
    t.equal(b.leaseRemainingMs(), undefined);
    const keys = await readKeys(raw, prefix);
    t.same(keys.record, { epoch: 1, holder: 'a' }, 'nothing was granted');
    t.equal(keys.holder, 'a');

    // A stale request (the old epoch) is a firm no.
    const stale = await b.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 1000 });
    t.match(stale, { granted: false, retryable: false, epoch: 1 });
  });

  t.test('takeover is granted once the holder is gone and its lease expired', async (t) => {
    const prefix = newPrefix();
    const na: Node = { primary: true, epoch: 0 };
    const nb: Node = { primary: false, epoch: 0 };
    const a = makeArbiter(t, etcd, prefix, 'a', na);
    const b = makeArbiter(t, etcd, prefix, 'b', nb);
    await a.start();
    await b.start();
    t.ok((a.leaseRemainingMs() ?? 0) > 0);

    // The holder's agent dies (its keepalives stop; nothing is revoked).
    const diedAt = Date.now();
    await a.close();
    const take = await b.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 10_000 });
    const tookMs = Date.now() - diedAt;
    t.same(take, { granted: true, epoch: 1, by: `etcd ${etcd.endpoint}` });
    t.comment(`takeover granted ${tookMs} ms after the holder stopped renewing (TTL ${minTtl.TTL} s)`);
    t.equal(a.leaseRemainingMs(), 0, "the old holder's side ended before the grant");
    t.ok((b.leaseRemainingMs() ?? 0) > 0, 'the new holder holds a lease');
    const keys = await readKeys(raw, prefix);
    t.same(keys.record, { epoch: 1, holder: 'b' });
    t.equal(keys.holder, 'b');

    // b keeps it alive: a stale node cannot take it back, and b still holds after 2 TTLs.
    await sleep(2000);
    t.ok((b.leaseRemainingMs() ?? 0) > 0, 'the new holder keeps its lease alive');
    t.equal((await readKeys(raw, prefix)).holder, 'b');
    const late = makeArbiter(t, etcd, prefix, 'a', { primary: false, epoch: 0 });
    await late.start();
    const denied = await late.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 1000 });
    t.match(denied, { granted: false, retryable: false, epoch: 1 });
    t.equal(late.leaseRemainingMs(), undefined);
  });

  t.test('two nodes asking at once: exactly one is granted', async (t) => {
    for (let round = 0; round < 4; round++) {
      const prefix = newPrefix();
      const c = makeArbiter(t, etcd, prefix, 'c', { primary: false, epoch: 0 });
      const d = makeArbiter(t, etcd, prefix, 'd', { primary: false, epoch: 0 });
      await Promise.all([c.start(), d.start()]);
      const actions = round % 2 === 0 ? (['takeover', 'takeover'] as const) : (['continue', 'takeover'] as const);
      const [rc, rd] = await Promise.all([
        c.request({ action: actions[0], epoch: 0 }, { timeoutMs: 1500 }),
        d.request({ action: actions[1], epoch: 0 }, { timeoutMs: 1500 }),
      ]);
      const winners = [rc, rd].filter((r) => r.granted);
      t.equal(winners.length, 1, `round ${round}: exactly one granted (${JSON.stringify([rc, rd])})`);
      const [winner, loser, winnerName]: [ArbitrationResult, ArbitrationResult, string] = rc.granted ? [rc, rd, 'c'] : [rd, rc, 'd'];
      t.match(winner, { granted: true, epoch: 1 });
      t.match(loser, { granted: false, retryable: false, epoch: 1 }, 'the loser is stale against the winner');
      const keys = await readKeys(raw, prefix);
      t.same(keys.record, { epoch: 1, holder: winnerName });
      t.equal(keys.holder, winnerName);
    }
  });

  t.test('a grant whose answer was lost is reported again to its node, and only to it', async (t) => {
    const prefix = newPrefix();
    // As if b's takeover txn committed but the answer never reached b: the record names b at
    // epoch 1; b's lease (never kept alive) has expired, so the holder key is gone.
    await raw.put(`${prefix}/epoch`).value(JSON.stringify({ epoch: 1, holder: 'b' })).exec();
    const a = makeArbiter(t, etcd, prefix, 'a', { primary: false, epoch: 0 });
    const b = makeArbiter(t, etcd, prefix, 'b', { primary: false, epoch: 0 });
    await a.start();
    await b.start();
    t.match(await a.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 1000 }), { granted: false, retryable: false, epoch: 1 });
    t.same(await b.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 1000 }), { granted: true, epoch: 1, by: `etcd ${etcd.endpoint}` });
    t.ok((b.leaseRemainingMs() ?? 0) > 0);
    const keys = await readKeys(raw, prefix);
    t.same(keys.record, { epoch: 1, holder: 'b' }, 'no second grant');
    t.equal(keys.holder, 'b');
  });

  t.test('a primary whose holder key vanishes ends its lease at once, then takes the key back', async (t) => {
    const prefix = newPrefix();
    const a = makeArbiter(t, etcd, prefix, 'a', { primary: true, epoch: 0 });
    await a.start();
    const before = await readKeys(raw, prefix);
    t.equal(before.holder, 'a');
    // Someone deletes the key (an operator, or etcd expiring a lease we thought alive).
    await raw.delete().key(`${prefix}/holder`).exec();
    t.ok(await waitFor(() => a.leaseRemainingMs() === 0, 2000), 'lease ends as soon as the key is seen gone');
    t.ok(await waitFor(() => (a.leaseRemainingMs() ?? 0) > 0, 3000), 'the primary takes the key back');
    const after = await readKeys(raw, prefix);
    t.equal(after.holder, 'a');
    t.not(after.holderLease, before.holderLease, 'bound to a new lease');
    t.same(after.record, { epoch: 0, holder: 'a' }, 'at the same epoch');
  });
});

t.test('etcd killed: requests are denied in time as retryable, reachability drops, the lease runs out', { skip: avail.available ? false : avail.reason }, async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  // Default raft timings: etcd's own minimum TTL applies.
  const etcd: RunningEtcd = await startEtcd({ t });
  const raw = new Etcd3({ hosts: etcd.endpoint });
  const grant = await raw.leaseClient.leaseGrant({ TTL: 1 });
  t.comment(`etcd at default raft timings grants a 1 s lease request as TTL ${grant.TTL} s`);
  raw.close();

  // The takeover time at etcd's default timings, for the record (no assertion on it).
  {
    const p = newPrefix();
    const x = makeArbiter(t, etcd, p, 'x', { primary: true, epoch: 0 });
    const y = makeArbiter(t, etcd, p, 'y', { primary: false, epoch: 0 });
    await x.start();
    await y.start();
    await sleep(800); // a keepalive answer, so x's lease runs at the granted TTL
    const diedAt = Date.now();
    await x.close();
    const took = await y.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 10_000 });
    t.match(took, { granted: true, epoch: 1 });
    t.comment(`takeover granted ${Date.now() - diedAt} ms after the holder stopped renewing (TTL ${grant.TTL} s)`);
    await y.close();
  }

  const prefix = newPrefix();
  const a = makeArbiter(t, etcd, prefix, 'a', { primary: true, epoch: 0 });
  const b = makeArbiter(t, etcd, prefix, 'b', { primary: false, epoch: 0 });
  await a.start();
  await b.start();
  t.ok((a.leaseRemainingMs() ?? 0) > 0);
  t.equal(a.reachable(), true);
  // Wait for a keepalive answer, so the lease end reflects the granted TTL.
  await sleep(800);

  etcd.kill('SIGKILL');
  await etcd.exited;
  const r1 = a.leaseRemainingMs() ?? 0;
  t.ok(r1 > 0, `lease left right after the kill: ${r1} ms`);
  await sleep(300);
  const r2 = a.leaseRemainingMs() ?? 0;
  t.ok(r2 < r1, `the lease runs down without etcd (${r1} -> ${r2} ms)`);

  const timeoutMs = 1500;
  const t0 = Date.now();
  const res = await a.request({ action: 'continue', epoch: 0 }, { timeoutMs });
  const took = Date.now() - t0;
  t.equal(res.granted, false);
  if (!res.granted) {
    t.equal(res.retryable, true);
    t.match(res.reason, /etcd unreachable/);
    t.notMatch(res.reason, /\n\s+at /, 'no stack in the reason');
    t.comment(`reason: ${res.reason}`);
  }
  // The API's contract (answer by the timeout), with slack for a loaded machine.
  t.ok(took <= timeoutMs + 1000, `answered after ${took} ms (timeout ${timeoutMs} ms)`);

  t.ok(await waitFor(() => !a.reachable() && !b.reachable(), 3000), 'both see etcd unreachable');
  t.ok(await waitFor(() => a.leaseRemainingMs() === 0, 4000), 'the lease ran out');
  t.equal(b.leaseRemainingMs(), undefined);
  const take = await b.request({ action: 'takeover', epoch: 0 }, { timeoutMs: 500 });
  t.match(take, { granted: false, retryable: true });

  // An arbiter started while etcd is down starts anyway, unreachable.
  const c = makeArbiter(t, etcd, prefix, 'c', { primary: true, epoch: 0 }, { dialTimeoutMs: 500 });
  await c.start();
  t.equal(c.reachable(), false);
  t.equal(c.leaseRemainingMs(), undefined);

  await Promise.all([a.close(), b.close(), c.close()]);
  t.same(unhandled, [], 'no unhandled rejections');
});
