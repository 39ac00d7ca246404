import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import {
  FaultProxy,
  FaultProxyClosedError,
  FaultProxyListenError,
  startFaultProxies,
  startFaultProxy,
  type FaultProxyOptions,
} from './fault-proxy.js';
import { FakeClock } from './fake-clock.js';

/** All the helpers need from a tap test: a place to register cleanup. */
type Test = Pick<typeof t, 'teardown'>;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Poll until cond() holds; fails the wait (not a speed assertion) after a generous limit. */
async function waitFor(cond: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Received bytes: appending is O(1) and length is cheap, so polling 16 MiB transfers stays cheap. */
class Bytes {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  buffer(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  toString(): string {
    return this.buffer().toString();
  }
}

interface TargetServer {
  port: number;
  /** Server-side sockets, in accept order. */
  sockets: net.Socket[];
  /** Bytes received per server-side socket, in accept order. */
  received: Bytes[];
  closed: Set<net.Socket>;
}

/** A target on 127.0.0.1 that records what it gets and, if echo, sends it straight back. */
async function startTarget(t: Test, echo = true): Promise<TargetServer> {
  const target: TargetServer = { port: 0, sockets: [], received: [], closed: new Set() };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const i = target.sockets.push(socket) - 1;
    const got = (target.received[i] = new Bytes());
    socket.on('error', () => {});
    socket.on('close', () => target.closed.add(socket));
    socket.on('data', (chunk: Buffer) => {
      got.push(chunk);
      if (echo) socket.write(chunk);
    });
    socket.on('end', () => {
      if (echo) socket.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  target.port = (server.address() as net.AddressInfo).port;
  t.teardown(async () => {
    for (const s of target.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return target;
}

async function startProxy(t: Test, opts: FaultProxyOptions): Promise<FaultProxy> {
  const proxy = await startFaultProxy(opts);
  t.teardown(() => proxy.close());
  return proxy;
}

interface Client {
  socket: net.Socket;
  received: () => Bytes;
  error: () => NodeJS.ErrnoException | undefined;
  closed: () => boolean;
}

async function connect(t: Test, port: number): Promise<Client> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const buf = new Bytes();
  let error: NodeJS.ErrnoException | undefined;
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    buf.push(chunk);
  });
  socket.on('error', (err) => {
    error = err;
  });
  socket.on('close', () => {
    closed = true;
  });
  t.teardown(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  return { socket, received: () => buf, error: () => error, closed: () => closed };
}

t.test('forwards bytes unchanged both ways and reports the bound address', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port });
  t.equal(proxy.host, '127.0.0.1');
  t.ok(proxy.port > 0, 'port 0 resolved to the real port');
  t.equal(proxy.address, `127.0.0.1:${proxy.port}`);

  const c = await connect(t, proxy.port);
  c.socket.write('hello');
  await waitFor(() => c.received().length === 5, 'echo of hello');
  t.equal(c.received().toString(), 'hello');

  const big = randomBytes(1024 * 1024);
  c.socket.write(big);
  await waitFor(() => c.received().length === 5 + big.length, 'echo of 1 MiB');
  t.ok(c.received().buffer().subarray(5).equals(big), '1 MiB comes back byte for byte');

  const s = proxy.stats();
  t.equal(s.accepted, 1);
  t.equal(s.active, 1);
  t.equal(s.c2s.forwardedBytes, 5 + big.length);
  t.equal(s.s2c.forwardedBytes, 5 + big.length);
  t.equal(s.c2s.droppedBytes, 0);
});

t.test('a FIN is passed on per direction (half-close)', async (t) => {
  const target = await startTarget(t); // echoes, then ends after the client's end
  const proxy = await startProxy(t, { targetPort: target.port });
  const c = await connect(t, proxy.port);
  const ended = once(c.socket, 'end');
  c.socket.end('last words');
  await ended;
  t.equal(c.received().toString(), 'last words', 'reply arrives before the FIN');
  await waitFor(() => proxy.stats().active === 0, 'connection to be released');
});

t.test('delay: a round trip takes at least both delays, and order is kept', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port, seed: 7 });
  const c = await connect(t, proxy.port);
  proxy.delay(100, 0, 'both');
  const start = performance.now();
  c.socket.write('ping');
  await waitFor(() => c.received().length === 4, 'delayed echo');
  const rtt = performance.now() - start;
  // 2 ms slack: Node timers run on a millisecond loop clock that can lag performance.now().
  t.ok(rtt >= 198, `round trip ${rtt.toFixed(1)} ms covers 2 x 100 ms`);

  // With jitter, later chunks may be due earlier; they must still come out in order.
  proxy.delay(5, 40, 'c2s');
  let expected = 'ping';
  for (let i = 0; i < 30; i++) {
    const msg = `<${i}>`;
    expected += msg;
    c.socket.write(msg);
    await sleep(1);
  }
  await waitFor(() => c.received().length === expected.length, 'jittered echoes');
  t.equal(c.received().toString(), expected, 'bytes in the order they were sent');
});

t.test('delay follows the injected clock', async (t) => {
  const clock = new FakeClock();
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port, clock });
  const c = await connect(t, proxy.port);
  await waitFor(() => target.sockets.length === 1, 'upstream connection');
  proxy.delay(500, 0, 'c2s');
  c.socket.write('held');
  await waitFor(() => clock.pendingCount === 1, 'chunk to be queued');
  clock.advance(499);
  await sleep(50);
  t.equal(target.received[0]?.length, 0, 'nothing forwarded before 500 ms of clock time');
  clock.advance(1);
  await waitFor(() => target.received[0]?.toString() === 'held', 'forward at 500 ms');
  t.pass('forwarded once the clock reached the delay');
});

t.test('drop(1) forwards nothing', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port });
  const c = await connect(t, proxy.port);
  await waitFor(() => target.sockets.length === 1, 'upstream connection');
  proxy.drop(1, 'c2s');
  c.socket.write('one');
  await waitFor(() => proxy.stats().c2s.droppedBytes === 3, 'first drop');
  c.socket.write('two!');
  await waitFor(() => proxy.stats().c2s.droppedBytes === 7, 'second drop');
  const s = proxy.stats();
  t.equal(s.c2s.forwardedBytes, 0);
  t.equal(s.c2s.droppedChunks, 2);
  t.equal(target.received[0]?.length, 0, 'the target got nothing');
  t.equal(c.received().length, 0, 'so nothing echoed');
  t.notOk(c.closed(), 'the connection itself stays up');
});

/** Send 40 small messages one chunk at a time through drop(0.5) and see which arrive. */
async function dropRun(t: Test, seed: number): Promise<{ arrived: string; dropped: number }> {
  const target = await startTarget(t, false);
  const proxy = await startProxy(t, { targetPort: target.port, seed });
  const c = await connect(t, proxy.port);
  await waitFor(() => target.sockets.length === 1, 'upstream connection');
  proxy.drop(0.5, 'c2s');
  const seen = () => proxy.stats().c2s.forwardedChunks + proxy.stats().c2s.droppedChunks;
  for (let i = 0; i < 40; i++) {
    c.socket.write(`m${String(i).padStart(2, '0')};`);
    // One write, one read on the proxy: the drop decisions line up with messages.
    await waitFor(() => seen() === i + 1, `message ${i} to reach the proxy`);
  }
  const s = proxy.stats();
  await waitFor(() => target.received[0]?.length === s.c2s.forwardedBytes, 'forwarded bytes to land');
  return { arrived: target.received[0]?.toString() ?? '', dropped: s.c2s.droppedChunks };
}

t.test('drop with a seed is reproducible', async (t) => {
  const a = await dropRun(t, 1234);
  const b = await dropRun(t, 1234);
  t.ok(a.dropped > 0 && a.dropped < 40, `some but not all dropped (${a.dropped}/40)`);
  t.equal(b.dropped, a.dropped, 'same count with the same seed');
  t.equal(b.arrived, a.arrived, 'same messages arrive with the same seed');
});

t.test('blackhole: connections stay open, no bytes pass, heal resumes', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port });
  const c = await connect(t, proxy.port);
  c.socket.write('before');
  await waitFor(() => c.received().toString() === 'before', 'echo before the blackhole');

  proxy.blackhole();
  c.socket.write('during');
  const late = await connect(t, proxy.port); // accepted, not refused
  late.socket.write('newcomer');
  await sleep(300);
  t.equal(c.received().toString(), 'before', 'nothing came back during the blackhole');
  t.equal(target.received[0]?.toString(), 'before', 'nothing reached the target');
  t.equal(target.sockets.length, 1, 'the new connection was not passed to the target');
  t.notOk(c.closed() || late.closed(), 'client sockets still open (no FIN, no RST)');
  t.equal(target.closed.size, 0, 'target-side socket still open');
  t.equal(proxy.stats().accepted, 2);

  proxy.heal();
  await waitFor(() => c.received().toString() === 'beforeduring', 'held bytes after heal');
  await waitFor(() => late.received().toString() === 'newcomer', 'new connection after heal');
  t.equal(target.sockets.length, 2);
  c.socket.write('+after');
  await waitFor(() => c.received().toString() === 'beforeduring+after', 'clean forwarding again');
  t.pass('the surviving connection carries on');
});

t.test('cut resets connections and refuses new ones until heal', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port });
  const c = await connect(t, proxy.port);
  c.socket.write('x');
  await waitFor(() => c.received().length === 1, 'echo before the cut');

  proxy.cut();
  await waitFor(() => c.closed(), 'client socket to close');
  t.equal(c.error()?.code, 'ECONNRESET', 'the client sees a reset, not a FIN');
  await waitFor(() => target.closed.size === 1, 'target-side socket to close');
  t.equal(proxy.stats().active, 0);

  // The TCP handshake is done by the kernel; the proxy then resets the connection at once.
  const refused = net.connect({ host: '127.0.0.1', port: proxy.port });
  refused.on('error', () => {}); // ECONNRESET, expected
  t.teardown(() => refused.destroy());
  await new Promise((resolve) => refused.once('close', resolve));
  t.equal(proxy.stats().refused, 1);
  t.equal(target.sockets.length, 1, 'the refused connection never reached the target');

  proxy.heal();
  const after = await connect(t, proxy.port);
  after.socket.write('back');
  await waitFor(() => after.received().toString() === 'back', 'echo after heal');
  t.equal(proxy.stats().accepted, 2);
});

t.test('halfOpen stops reading a side, so its writer backs up', async (t) => {
  const total = 16 * 1024 * 1024; // more than loopback socket buffers hold
  for (const dir of ['c2s', 's2c'] as const) {
    await t.test(dir, async (t) => {
      const target = await startTarget(t, false);
      const proxy = await startProxy(t, { targetPort: target.port });
      const c = await connect(t, proxy.port);
      await waitFor(() => target.sockets.length === 1, 'upstream connection');
      const writer = dir === 'c2s' ? c.socket : target.sockets[0]!;
      const got = () => (dir === 'c2s' ? (target.received[0]?.length ?? 0) : c.received().length);

      proxy.halfOpen(dir);
      // Many writes, so writableLength counts what the kernel did not take rather than one big request.
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      for (let sent = 0; sent < total; sent += chunk.length) writer.write(chunk);
      await sleep(300); // let the kernel move what it can
      t.ok(writer.writableLength > 0, `writer still holds ${writer.writableLength} bytes`);
      t.equal(got(), 0, 'nothing reached the reader');

      proxy.heal();
      await waitFor(() => got() === total, 'everything after heal');
      t.equal(writer.writableLength, 0, 'writer drained');
    });
  }
});

t.test('a target that refuses makes the client see a reset', async (t) => {
  // Bind and release a port so that (almost certainly) nothing listens on it.
  const dead = net.createServer();
  dead.listen(0, '127.0.0.1');
  await once(dead, 'listening');
  const deadPort = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => dead.close(() => resolve()));
  const proxy = await startProxy(t, { targetPort: deadPort });
  const c = await connect(t, proxy.port);
  await waitFor(() => c.closed(), 'client to be closed');
  t.equal(proxy.stats().accepted, 1);
  t.equal(proxy.stats().active, 0);
});

t.test('close tears everything down and is safe twice', async (t) => {
  const clock = new FakeClock();
  const target = await startTarget(t);
  const proxy = await FaultProxy.start({ targetPort: target.port, clock });
  const a = await connect(t, proxy.port);
  await waitFor(() => target.sockets.length === 1, 'upstream connection');
  proxy.delay(10_000, 0, 'c2s');
  a.socket.write('stuck in the delay queue');
  await waitFor(() => clock.pendingCount === 1, 'delay timer');
  proxy.blackhole();
  const b = await connect(t, proxy.port); // held, target never dialled
  await waitFor(() => proxy.stats().active === 2, 'both connections held');

  const first = proxy.close();
  const second = proxy.close();
  t.equal(first, second, 'the second close returns the same promise');
  await first;
  await proxy.close();
  t.ok(proxy.closed);
  t.equal(clock.pendingCount, 0, 'no timers left');
  t.equal(proxy.stats().active, 0);
  await waitFor(() => a.closed() && b.closed(), 'client sockets closed');
  await waitFor(() => target.closed.size === 1, 'target-side socket closed');
  t.throws(() => proxy.heal(), FaultProxyClosedError);

  const late = net.connect({ host: '127.0.0.1', port: proxy.port });
  const [err] = (await once(late, 'error')) as [NodeJS.ErrnoException];
  t.equal(err.code, 'ECONNREFUSED', 'the port no longer listens');
});

t.test('rejects nonsense arguments', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, { targetPort: target.port });
  t.throws(() => proxy.delay(-1), RangeError);
  t.throws(() => proxy.delay(Number.NaN), RangeError);
  t.throws(() => proxy.drop(1.5), RangeError);
  t.throws(() => proxy.halfOpen('sideways' as 'c2s'), RangeError);
  await t.rejects(FaultProxy.start({ targetPort: 0 }), RangeError);
});

t.test('startFaultProxies starts several, all or nothing', async (t) => {
  const target = await startTarget(t);
  const proxies = await startFaultProxies([
    { targetPort: target.port, name: 'a' },
    { targetPort: target.port, name: 'b' },
    { targetPort: target.port, name: 'c' },
  ]);
  t.teardown(() => Promise.all(proxies.map((p) => p.close())));
  t.equal(new Set(proxies.map((p) => p.port)).size, 3, 'three distinct ports');
  for (const p of proxies) {
    const c = await connect(t, p.port);
    c.socket.write('hi');
    await waitFor(() => c.received().toString() === 'hi', `echo via ${p.port}`);
  }
  const taken = proxies[0]!.port;
  const err = await startFaultProxies([
    { targetPort: target.port },
    { targetPort: target.port, listenPort: taken },
  ]).catch((e: unknown) => e);
  t.type(err, FaultProxyListenError);
  t.equal((err as FaultProxyListenError).code, 'ERR_FAULT_PROXY_LISTEN');
});

t.test('the CLI wrapper runs a proxy in its own process', async (t) => {
  const target = await startTarget(t);
  const cli = fileURLToPath(new URL('./fault-proxy-cli.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', cli, '--target', `127.0.0.1:${target.port}`, '--seed', '9'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    cwd: fileURLToPath(new URL('../..', import.meta.url)), // where tsx resolves
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => JSON.parse(((await lines.next()).value as string) ?? 'null') as Record<string, unknown>;

  const hello = await next();
  t.match(hello, { event: 'listening', host: '127.0.0.1', seed: 9 });
  const c = await connect(t, hello.port as number);
  c.socket.write('via cli');
  await waitFor(() => c.received().toString() === 'via cli', 'echo through the CLI proxy');

  child.stdin.write('drop 1 c2s\n');
  t.match(await next(), { ok: true, cmd: 'drop', faults: { drop: { c2s: 1, s2c: 0 } } });
  child.stdin.write('bogus\n');
  t.match(await next(), { ok: false });
  child.stdin.write('stats\n');
  t.match(await next(), { ok: true, stats: { accepted: 1, c2s: { forwardedBytes: 7 } } });
  child.stdin.write('close\n');
  t.match(await next(), { event: 'closed' });
  const [code] = await exited;
  t.equal(code, 0);
});
