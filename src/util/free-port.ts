/**
 * A TCP port that was free a moment ago: the kernel picks one for a listener that is closed at
 * once. Whoever binds it later may lose it to another process meanwhile, so callers that start
 * listeners on such ports retry with new ones when the bind fails with EADDRINUSE.
 *
 * Two calls in a row must not hand out the same port (a closed listener's port can come straight
 * back from the kernel): a caller that asks for a listen port and a peer port, or two colo ports,
 * would otherwise get one port twice. So the ports handed out recently are remembered and skipped.
 */
import net from 'node:net';

/** How many ports handed out are remembered; far more than any one test asks for at once. */
const RECENT_LIMIT = 512;
const recent: number[] = [];

function bindAndRelease(host: string): Promise<number> {
  const server = net.createServer();
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A port free on `host` right now (bind it soon), not handed out by a recent call. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  let port = await bindAndRelease(host);
  for (let tries = 0; recent.includes(port) && tries < 50; tries++) port = await bindAndRelease(host);
  recent.push(port);
  if (recent.length > RECENT_LIMIT) recent.shift();
  return port;
}
