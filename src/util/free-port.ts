/**
 * A TCP port that was free a moment ago: the kernel picks one for a listener that is closed at
 * once. Whoever binds it later may lose it to another process meanwhile, so callers that start
 * listeners on such ports retry with new ones when the bind fails with EADDRINUSE.
 */
import net from 'node:net';

/** A port free on `host` right now (bind it soon). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
