import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createServer, type Server } from 'node:net';
import { probePeerQemu, probePeerQemuAndHost } from '../../src/arbiter/peer-qemu-probe.js';

function listen(): Promise<Server> {
  return new Promise((resolve) => {
    const s = createServer((c) => c.destroy());
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}
const portOf = (s: Server) => (s.address() as { port: number }).port;

t.test('a listening port is alive', async (t) => {
  const s = await listen();
  t.teardown(() => s.close());
  const r = await probePeerQemu('127.0.0.1', portOf(s), 1000);
  t.equal(r.verdict, 'alive');
});

t.test('a closed port on a live host is refused', async (t) => {
  const s = await listen();
  const port = portOf(s);
  await new Promise<void>((r) => s.close(() => r()));
  const r = await probePeerQemu('127.0.0.1', port, 1000);
  t.equal(r.verdict, 'refused');
  t.equal(r.detail, 'ECONNREFUSED');
});

// A host that never answers: on loopback, a listener that never accepts and whose accept queue
// is full makes the kernel drop further SYNs, exactly what a dead host's silence looks like to
// the prober. Node always accepts, so a tiny python3 listener stands in.
const python = spawnSync('python3', ['--version']).status === 0;
t.test('a host that does not answer is silent once the timeout runs out', { skip: python ? false : 'python3 not found: it provides the never-accepting listener' }, async (t) => {
  const child = spawn('python3', ['-c', 'import socket,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const port = Number(await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve)));
  await probePeerQemu('127.0.0.1', port, 300); // fills the one-entry accept queue
  const r = await probePeerQemu('127.0.0.1', port, 300);
  t.equal(r.verdict, 'silent');
  t.equal(r.detail, 'timeout');
  t.ok(r.tookMs >= 290, 'it waited for the timeout');

  // This is also what a live QEMU chardev server looks like once probes have filled its queue
  // (seen on 7.2: mirror0 stops accepting while red0 is connected). Another port of the same
  // host answering, even with a refusal, proves the host up: the QEMU port is busy, not gone.
  const closed = await listen();
  const closedPort = portOf(closed);
  await new Promise<void>((r) => closed.close(() => r()));
  const busy = await probePeerQemuAndHost({ host: '127.0.0.1', port }, [{ host: '127.0.0.1', port: closedPort }], 300);
  t.equal(busy.verdict, 'alive');
  t.match(busy.detail, /listen queue full/);
  const lost = await probePeerQemuAndHost({ host: '127.0.0.1', port }, [{ host: '127.0.0.1', port }], 300);
  t.equal(lost.verdict, 'silent', 'no port of the host answers: host lost');
});

// A frozen host: its processes are stopped (SIGSTOP) but its kernel still completes TCP handshakes
// on their listening sockets. The probe reports the agent's port as answering, which the takeover
// rule (failover.unresponsivePeerMs) tells apart from a crashed agent, whose port refuses.
t.test('a stopped process still accepts in the kernel; a gone one refuses: the agent verdict says which', { skip: python ? false : 'python3 not found: it provides the listeners to freeze' }, async (t) => {
  const child = spawn('python3', ['-c', 'import socket,time\na=socket.socket();a.bind(("127.0.0.1",0));a.listen(16)\nb=socket.socket();b.bind(("127.0.0.1",0));b.listen(16)\nprint(a.getsockname()[1],b.getsockname()[1],flush=True)\ntime.sleep(60)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const [qemuPort, agentPort] = (await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve))).split(' ').map(Number) as [number, number];
  child.kill('SIGSTOP');
  const frozen = await probePeerQemuAndHost({ host: '127.0.0.1', port: qemuPort }, [{ host: '127.0.0.1', port: agentPort }], 300);
  t.match(frozen, { verdict: 'alive', agent: 'alive' }, 'both ports complete handshakes while the process is stopped');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const closed = await listen();
  const closedPort = portOf(closed);
  t.teardown(() => closed.close());
  const crashed = await probePeerQemuAndHost({ host: '127.0.0.1', port: closedPort }, [{ host: '127.0.0.1', port: agentPort }], 300);
  t.match(crashed, { verdict: 'alive', agent: 'refused' }, "a QEMU that lives beside a crashed agent: the agent's port refuses");
  const none = await probePeerQemuAndHost({ host: '127.0.0.1', port: closedPort }, [], 300);
  t.notOk('agent' in none, 'no agent ports given: no agent verdict');
});
