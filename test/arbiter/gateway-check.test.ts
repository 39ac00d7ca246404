import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { checkGateways, formatTarget } from '../../src/arbiter/gateway-check.js';
import { FenceOptionsError, GatewaysUnreachableError } from '../../src/arbiter/fence-errors.js';

async function listening(t: Test): Promise<{ port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const s: Server = createServer((c) => {
    accepted.push(c);
    c.on('error', () => {});
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const c of accepted) c.destroy();
    return new Promise<void>((r) => s.close(() => r()));
  });
  return { port: (s.address() as { port: number }).port, accepted };
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// A target that never answers. 10.255.255.1 does not work on this machine (a sandbox proxy
// completes every outbound handshake at once), so, as in peer-qemu-probe.test.ts, a listener that
// never accepts and whose one-entry accept queue is full stands in: the kernel then drops
// further SYNs, which is what a cut-off network looks like. Node always accepts, so python3 it is.
const python = spawnSync('python3', ['--version']).status === 0;
const noPython = python ? false : 'python3 not found: it provides the never-answering listener';

async function blackhole(t: Test): Promise<number> {
  const child = spawn('python3', ['-c', 'import socket,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const port = Number(await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve)));
  // Fill the queue: the first connection completes its handshake and sits there unaccepted.
  const filler = await checkGateways({ targets: [{ host: '127.0.0.1', port }], timeoutMs: 300, need: 'all' });
  t.ok(filler.results[0], 'filler probe ran');
  return port;
}

t.test('a listening target is reachable, and the socket is closed at once', async (t) => {
  const srv = await listening(t);
  const r = await checkGateways({ targets: [{ host: '127.0.0.1', port: srv.port }], timeoutMs: 2000, need: 'all' });
  t.equal(r.ok, true);
  t.match(r.results, [{ target: `127.0.0.1:${srv.port}`, reachable: true }]);
  t.equal(r.results[0]!.error, undefined);
  // The target sees the connection end (our side destroyed it).
  while (srv.accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
  const c = srv.accepted[0]!;
  if (!c.destroyed) {
    await new Promise<void>((resolve) => {
      c.once('close', () => resolve());
      c.resume();
    });
  }
  t.pass('the probe connection was closed');
});

t.test('a refused port counts as reachable: the host answered', async (t) => {
  const port = await closedPort();
  const r = await checkGateways({ targets: [{ host: '127.0.0.1', port }], timeoutMs: 2000, need: 'all' });
  t.equal(r.ok, true);
  t.match(r.results, [{ reachable: true, error: 'ECONNREFUSED' }]);
});

t.test('a name that does not resolve is unreachable', async (t) => {
  const r = await checkGateways({ targets: [{ host: 'no-such-host.invalid', port: 80 }], timeoutMs: 3000, need: 'any' });
  t.equal(r.ok, false);
  t.match(r.results, [{ target: 'no-such-host.invalid:80', reachable: false }]);
  t.not(r.results[0]!.error, 'ECONNREFUSED');
});

t.test('a target that does not answer is unreachable once the timeout runs out', { skip: noPython }, async (t) => {
  const port = await blackhole(t);
  const r = await checkGateways({ targets: [{ host: '127.0.0.1', port }], timeoutMs: 300, need: 'any' });
  t.equal(r.ok, false);
  t.match(r.results, [{ reachable: false, error: 'timeout' }]);
  t.ok(r.results[0]!.ms >= 290, 'it waited for the timeout');
});

t.test('any / all', { skip: noPython }, async (t) => {
  const up = await listening(t);
  const refused = await closedPort();
  const down = await blackhole(t);
  const targets = [
    { host: '127.0.0.1', port: up.port },
    { host: '127.0.0.1', port: refused },
    { host: '127.0.0.1', port: down },
  ];
  const any = await checkGateways({ targets, timeoutMs: 300, need: 'any' });
  t.equal(any.ok, true, 'any: one answer is enough');
  t.same(any.results.map((r) => r.reachable), [true, true, false], 'results in target order');
  const all = await checkGateways({ targets, timeoutMs: 300, need: 'all' });
  t.equal(all.ok, false, 'all: one silent target fails');
  const err = new GatewaysUnreachableError('all', all.results);
  t.equal(err.code, 'GATEWAYS_UNREACHABLE');
  t.match(err.message, new RegExp(`127\\.0\\.0\\.1:${down} \\(timeout\\)`));
  t.equal((await checkGateways({ targets: targets.slice(0, 2), timeoutMs: 300, need: 'all' })).ok, true, 'all: every target answered');
  t.equal((await checkGateways({ targets: targets.slice(2), timeoutMs: 300, need: 'any' })).ok, false, 'any: none answered');
});

t.test('no targets: the check is off and passes', async (t) => {
  t.same(await checkGateways({ targets: [], timeoutMs: 100, need: 'all' }), { ok: true, results: [] });
  t.same(await checkGateways({ targets: [], timeoutMs: 100, need: 'any' }), { ok: true, results: [] });
});

t.test('targets and options that can never work are rejected', async (t) => {
  await t.rejects(checkGateways({ targets: [{ host: '127.0.0.1', port: 0 }], timeoutMs: 100, need: 'any' }), FenceOptionsError);
  await t.rejects(checkGateways({ targets: [{ host: '', port: 80 }], timeoutMs: 100, need: 'any' }), { code: 'FENCE_BAD_OPTIONS' });
  await t.rejects(checkGateways({ targets: [], timeoutMs: 0, need: 'any' }), { code: 'FENCE_BAD_OPTIONS' });
  await t.rejects(checkGateways({ targets: [], timeoutMs: 100, need: 'most' as 'any' }), { code: 'FENCE_BAD_OPTIONS' });
});

t.test('IPv6 targets are written with brackets', async (t) => {
  t.equal(formatTarget({ host: '::1', port: 9 }), '[::1]:9');
  t.equal(formatTarget({ host: 'gw.example', port: 9 }), 'gw.example:9');
});
