/** freePort: a bindable port, and never the same one twice in a row (kernels recycle them). */
import net from 'node:net';
import t from 'tap';
import { freePort } from '../../src/util/free-port.js';

t.test('the port can be bound, and many calls in a row hand out distinct ports', async (t) => {
  const port = await freePort();
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  await new Promise<void>((r) => server.close(() => r()));
  const ports: number[] = [];
  for (let i = 0; i < 200; i++) ports.push(await freePort(i % 2 ? '127.0.0.1' : '0.0.0.0'));
  t.equal(new Set(ports).size, ports.length, '200 calls, 200 distinct ports');
});
