/**
 * The partition drill's wiring, on real sockets (plain TCP servers stand in for QEMU's listeners
 * and the agents' heartbeat listeners): every link passes through its proxy until cut(); then an
 * open connection carries nothing and is not closed, a new one is refused, and the mirror
 * proxy's port can be bound on 0.0.0.0 (as the secondary's QEMU does when it takes over).
 */
import net from 'node:net';
import t, { type Test } from 'tap';
import { startPartitionWiring, type PartitionWiring } from '../../src/demo/partition.js';

/** An echo server on host, port picked by the kernel. */
async function echoServer(t: Test, host: string): Promise<net.Server> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return server;
}

const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

function connect(t: Test, host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
    t.teardown(() => void s.destroy());
  });
}

/** Write `text` and resolve with what came back within `ms` (the empty string when nothing did). */
function roundTrip(s: net.Socket, text: string, ms: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) finish();
    };
    const timer = setTimeout(finish, ms);
    function finish() {
      clearTimeout(timer);
      s.off('data', onData);
      resolve(got);
    }
    s.on('data', onData);
    s.write(text);
  });
}

async function setup(t: Test): Promise<PartitionWiring> {
  const mirror = await echoServer(t, '127.0.0.1');
  const compare1 = await echoServer(t, '127.0.0.1');
  const nbd = await echoServer(t, '127.0.0.2');
  const migration = await echoServer(t, '127.0.0.2');
  const hbPrimary = await echoServer(t, '127.0.0.1');
  const hbSecondary = await echoServer(t, '127.0.0.2');
  const wiring = await startPartitionWiring(
    {
      mirrorPort: portOf(mirror),
      compare1Port: portOf(compare1),
      nbdPort: portOf(nbd),
      migrationPort: portOf(migration),
      compare0Port: 1,
      compareOutPort: 2,
    },
    { primary: portOf(hbPrimary), secondary: portOf(hbSecondary) },
  );
  t.teardown(() => wiring.close());
  return wiring;
}

t.test('every link goes through a proxy on the target side\'s address', async (t) => {
  const w = await setup(t);
  t.equal(w.proxies.length, 6, 'two heartbeat directions and four replication connections');
  t.equal(w.dial.mirror.host, '127.0.0.1');
  t.equal(w.dial.compare1.host, '127.0.0.1');
  t.equal(w.dial.nbd.host, '127.0.0.2');
  t.equal(w.dial.migration.host, '127.0.0.2');
  t.match(w.heartbeatPeer.primary, /^127\.0\.0\.2:\d+$/, 'the primary dials a proxy on the secondary\'s address');
  t.match(w.heartbeatPeer.secondary, /^127\.0\.0\.1:\d+$/);
  t.same(w.coloFor.primary, { nbdPort: w.dial.nbd.port }, 'the primary probes the NBD export through its proxy');
  t.equal(w.coloFor.secondary?.mirrorPort, w.dial.mirror.port, 'the secondary probes mirror0 through its proxy');
  t.equal(w.coloFor.secondary?.compare1Port, w.dial.compare1.port);
  t.not(w.coloFor.secondary?.compare0Port, 1, 'the secondary gets compare ports of its own');
  t.not(w.coloFor.secondary?.compareOutPort, 2);
  for (const [name, a] of Object.entries(w.dial)) {
    const s = await connect(t, a.host, a.port);
    t.equal(await roundTrip(s, `hello ${name}`, 2000), `hello ${name}`, `${name} passes`);
  }
});

t.test('cut(): silent on open connections, refused for new ones, and the port can be bound again', async (t) => {
  const w = await setup(t);
  const open = await connect(t, w.dial.mirror.host, w.dial.mirror.port);
  t.equal(await roundTrip(open, 'before', 2000), 'before');
  let closed = false;
  open.on('close', () => (closed = true));
  await w.cut();
  t.equal(await roundTrip(open, 'after', 300), '', 'nothing comes back through the cut');
  t.notOk(closed, 'and the connection was not closed');
  const hb = w.heartbeatPeer.primary.split(':');
  const err = await connect(t, hb[0] as string, Number(hb[1])).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e,
  );
  t.equal(err?.code, 'ECONNREFUSED', 'a new connection is refused');
  // What the secondary's QEMU does on takeover: chardev-add mirror0 on 0.0.0.0 at the port it knows.
  const taker = net.createServer();
  await new Promise<void>((resolve, reject) => {
    taker.once('error', reject);
    taker.listen(w.dial.mirror.port, '0.0.0.0', resolve);
  }).then(
    () => t.pass('0.0.0.0 binds on the cut proxy\'s port while its old connection is still open'),
    (e: Error) => t.fail(`bind failed: ${e.message}`),
  );
  await new Promise<void>((resolve) => taker.close(() => resolve()));
  await w.close();
  await w.close();
  t.pass('close is idempotent');
});
