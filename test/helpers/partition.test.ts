/**
 * The iptables partition helper against real TCP connections on loopback: a cut makes a connect
 * silent (no answer, no refusal), a heal restores it, a flow cut hits only its source address,
 * and close() leaves no rule or chain behind.
 */
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import t, { type Test } from 'tap';
import { freePort } from './free-port.js';
import { dropFlow, dropPorts, iptablesAvailable, Partition } from './partition.js';

type ConnectResult = 'connected' | 'refused' | 'silent';

function tryConnect(host: string, port: number, opts: { localAddress?: string; timeoutMs?: number } = {}): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, ...(opts.localAddress && { localAddress: opts.localAddress }) });
    const done = (r: ConnectResult) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('silent'), opts.timeoutMs ?? 400);
    s.once('connect', () => done('connected'));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'silent'));
  });
}

async function listen(t: Test, host: string): Promise<number> {
  const port = await freePort(host);
  const server = net.createServer((c) => c.on('error', () => undefined));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return port;
}

const avail = iptablesAvailable();

t.test('a ports cut makes connects silent; heal restores them', { skip: avail.available ? false : avail.reason }, async (t) => {
  const port = await listen(t, '127.0.0.1');
  const other = await listen(t, '127.0.0.1');
  const p = await Partition.create({ t });
  t.equal(await tryConnect('127.0.0.1', port), 'connected', 'connects before the cut');
  await p.cut('pair', [dropPorts([port])]);
  t.ok(p.isCut('pair'));
  t.equal(await tryConnect('127.0.0.1', port), 'silent', 'silent (dropped, not refused) during the cut');
  t.equal(await tryConnect('127.0.0.1', other), 'connected', 'another port is not affected');
  await p.heal('pair');
  t.notOk(p.isCut('pair'));
  t.equal(await tryConnect('127.0.0.1', port), 'connected', 'connects again after the heal');
});

t.test('a flow cut drops only that source address to that service', { skip: avail.available ? false : avail.reason }, async (t) => {
  const port = await listen(t, '127.0.0.3');
  const p = await Partition.create({ t });
  await p.cut('w', [dropFlow('127.0.0.1', '127.0.0.3', port)]);
  t.equal(await tryConnect('127.0.0.3', port, { localAddress: '127.0.0.1' }), 'silent', 'from 127.0.0.1: cut');
  t.equal(await tryConnect('127.0.0.3', port, { localAddress: '127.0.0.2' }), 'connected', 'from 127.0.0.2: still through');
  await p.heal();
  t.equal(await tryConnect('127.0.0.3', port, { localAddress: '127.0.0.1' }), 'connected', 'healed');
});

t.test('close() removes every rule, the jump and the chain', { skip: avail.available ? false : avail.reason }, async (t) => {
  const port = await listen(t, '127.0.0.1');
  const p = await Partition.create();
  await p.cut('a', [dropPorts([port, port + 1])]);
  t.equal(p.listRules().length, 4, 'two rules per port');
  await p.close();
  const rules = avail.available ? spawnSync(avail.iptables, ['-w', '-S'], { encoding: 'utf8' }).stdout : '';
  t.notMatch(rules, p.chain, 'nothing names the chain any more');
  t.equal(await tryConnect('127.0.0.1', port), 'connected', 'the port connects');
  await p.heal();
  t.pass('heal after close is a no-op');
  await t.rejects(p.cut('b', [dropPorts([port])]), /closed/, 'cut after close fails');
});
