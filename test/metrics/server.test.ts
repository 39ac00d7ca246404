import t from 'tap';
import { connect, type Socket } from 'node:net';
import { attachAgentMetrics } from '../../src/metrics/agent-metrics.js';
import { MetricsOptionsError } from '../../src/metrics/errors.js';
import { AgentMetrics } from '../../src/metrics/registry.js';
import { MetricsServer, type MetricsServerOptions } from '../../src/metrics/server.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { httpRequest, loneAgentConfig, makeAgent, type Teardown } from './support.js';

async function setup(t: Teardown, extra: Partial<MetricsServerOptions> = {}) {
  const dir = shortTempDir(t, 'msrv-');
  const cfg = await loneAgentConfig('primary', dir);
  const agent = makeAgent(t, cfg);
  const metrics = new AgentMetrics({ version: '9.9.9', node: 'colo-a' });
  const binding = attachAgentMetrics(agent, metrics);
  t.teardown(() => binding.detach());
  await agent.start();
  const server = new MetricsServer({ listen: '127.0.0.1:0', metrics, agent, ...extra });
  t.teardown(() => server.close());
  const { port } = await server.listen();
  return { agent, metrics, server, port };
}

/** Resolves with everything the server sent before it closed the connection. */
function readUntilClosed(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => (data += c));
    s.on('error', () => undefined);
    s.once('close', () => resolve(data));
  });
}

async function openSocket(t: Teardown, port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  t.teardown(() => s.destroy());
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  return s;
}

t.test('GET /metrics: the exposition with its content type', async (t) => {
  const { port, server } = await setup(t);
  t.equal(server.address()?.port, port, 'bound address exposed (port 0 asked)');
  t.equal(server.address()?.host, '127.0.0.1');
  const r = await httpRequest(port, '/metrics');
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.match(r.body, /^colo_agent_build_info\{version="9\.9\.9",node="colo-a"\} 1$/m);
  t.match(r.body, /^colo_agent_state\{state="waiting-for-peer"\} 1$/m, 'the live agent state');
  t.match(r.body, /^# TYPE process_cpu_user_seconds_total counter$/m);
  t.equal(r.headers['cache-control'], 'no-store');
  t.equal((await httpRequest(port, '/metrics?debug=1')).status, 200, 'a query string is ignored');
});

t.test('GET /status: the agent status as JSON', async (t) => {
  const { port } = await setup(t);
  const r = await httpRequest(port, '/status');
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  const s = JSON.parse(r.body) as Record<string, unknown>;
  t.match(s, {
    node: 'colo-a',
    role: 'primary',
    state: 'waiting-for-peer',
    peer: { state: 'unknown' },
    links: [],
    qemu: { qmp: String, status: String, colo: { mode: 'unknown' } },
  });
});

t.test('GET /healthz: 200 while running, 503 once stopped', async (t) => {
  const { port, agent } = await setup(t);
  const ok = await httpRequest(port, '/healthz');
  t.equal(ok.status, 200);
  t.equal(ok.headers['content-type'], 'application/json; charset=utf-8');
  t.match(JSON.parse(ok.body), { ok: true, state: 'waiting-for-peer', eventLoopLagMs: Number, problems: [] });
  await agent.stop('test');
  const bad = await httpRequest(port, '/healthz');
  t.equal(bad.status, 503);
  t.match(JSON.parse(bad.body), { ok: false, state: 'stopped', problems: ['agent state is stopped'] });
});

t.test('404, 405 and 413', async (t) => {
  const { port } = await setup(t);
  for (const path of ['/', '/metricsx', '/metrics/', '/../status']) {
    t.equal((await httpRequest(port, path)).status, 404, `404 ${path}`);
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']) {
    const r = await httpRequest(port, '/metrics', { method });
    t.equal(r.status, 405, `405 ${method}`);
    t.equal(r.headers.allow, 'GET');
  }
  const post = await httpRequest(port, '/metrics', { method: 'POST', body: 'x'.repeat(1000) });
  t.equal(post.status, 405, 'POST with a body: 405 too');
  t.equal(post.headers.connection, 'close', 'and the connection closes (the body is never read)');
  const withBody = await httpRequest(port, '/metrics', { body: 'hello', headers: { 'content-length': '5' } });
  t.equal(withBody.status, 413, 'GET with a body');
  t.equal(withBody.headers.connection, 'close');
});

t.test('bounded: connections over the cap are dropped', async (t) => {
  const { port } = await setup(t, { maxConnections: 2 });
  const held = [await openSocket(t, port), await openSocket(t, port)];
  const third = await openSocket(t, port);
  t.equal(await readUntilClosed(third), '', 'the third connection is closed without an answer');
  held[0]!.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(await readUntilClosed(held[0]!), /^HTTP\/1\.1 200/, 'the held ones are served');
});

t.test('bounded: slow requests are cut off, oversized headers refused', async (t) => {
  const { port } = await setup(t, { requestTimeoutMs: 300, idleTimeoutMs: 300 });
  const idle = await openSocket(t, port);
  // Node's idle (keep-alive) and request timers race for a connection that sent nothing: either
  // closes it, the request timer with a 408 first. Both end it, which is what is asserted.
  const idleReply = await readUntilClosed(idle);
  t.ok(idleReply === '' || idleReply.startsWith('HTTP/1.1 408'), `a connection that sends nothing is closed: ${JSON.stringify(idleReply.slice(0, 20))}`);

  const slow = await openSocket(t, port);
  slow.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // never finishes its headers
  const slowReply = await readUntilClosed(slow);
  t.ok(slowReply === '' || slowReply.startsWith('HTTP/1.1 408'), `cut off (408 or a plain close): ${JSON.stringify(slowReply.slice(0, 20))}`);

  const big = await openSocket(t, port);
  big.write(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  const bigReply = await readUntilClosed(big);
  t.ok(bigReply === '' || bigReply.startsWith('HTTP/1.1 431'), `headers over 8 KiB refused: ${JSON.stringify(bigReply.slice(0, 20))}`);
});

t.test('close() ends kept-alive connections and is idempotent', async (t) => {
  const { port, server } = await setup(t);
  const s = await openSocket(t, port);
  const closed = readUntilClosed(s);
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
  await new Promise<void>((resolve) => s.once('data', () => resolve()));
  await Promise.all([server.close(), server.close()]);
  t.match(await closed, /^HTTP\/1\.1 200/, 'the kept-alive socket was closed by close()');
  t.equal(s.destroyed || s.readyState === 'closed', true);
});

t.test('listen errors', async (t) => {
  const { port, metrics, agent } = await setup(t);
  t.throws(() => new MetricsServer({ listen: 'localhost', metrics, agent }), { code: 'ERR_METRICS_OPTIONS' });
  t.throws(() => new MetricsServer({ listen: '127.0.0.1:99999', metrics, agent }), MetricsOptionsError);
  const second = new MetricsServer({ listen: `127.0.0.1:${port}`, metrics, agent });
  t.teardown(() => second.close());
  await t.rejects(second.listen(), { code: 'ERR_METRICS_LISTEN' }, 'port in use');
  t.equal(second.address(), undefined);
});
