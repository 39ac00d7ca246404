/**
 * TCP ports for benchmarks that share this machine with other work: only from a range set aside
 * for them (47000-47999), never an ephemeral port the kernel might also hand to someone else.
 */
import net from 'node:net';

export const BENCH_PORT_RANGE = { first: 47000, last: 47999 } as const;

/** Ports handed out by this process, so two calls never return the same one. */
const handedOut = new Set<number>();

function canBind(host: string, port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** A port in the bench range that is free on `host` now and was not handed out before. */
export async function benchPort(host = '127.0.0.1'): Promise<number> {
  const { first, last } = BENCH_PORT_RANGE;
  const size = last - first + 1;
  // A random start: two benchmarks started at once rarely probe the same ports.
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const port = first + ((start + i) % size);
    if (handedOut.has(port)) continue;
    if (await canBind(host, port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free TCP port in ${first}-${last} on ${host}`);
}
