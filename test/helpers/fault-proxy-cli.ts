/**
 * The fault proxy as its own process, for benchmarks: the proxy's event loop then does not share
 * a core with the code being measured.
 *
 *   node --import tsx test/helpers/fault-proxy-cli.ts --target 127.0.0.1:7000 [--listen 127.0.0.1:0] [--seed 42]
 *
 * stdout carries one JSON object per line. The first is
 *   {"event":"listening","host":"127.0.0.1","port":40123,"seed":42}
 * stdin takes one command per line and each gets one reply line ({"ok":true,...} or
 * {"ok":false,"error":"..."}):
 *   delay <ms> [jitterMs] [c2s|s2c|both]    drop <probability> [c2s|s2c|both]
 *   blackhole    cut    halfopen <c2s|s2c|both>    heal    stats    close
 * `close`, the end of stdin, SIGINT and SIGTERM all close the proxy and exit 0.
 */
import { createInterface } from 'node:readline';
import { FaultProxy, type DirectionSpec } from './fault-proxy.js';

function parseHostPort(value: string | undefined, flag: string): { host: string; port: number } {
  const m = value ? /^\[?([^\]]*?)\]?:(\d+)$/.exec(value) : null;
  if (!m) throw new RangeError(`${flag} needs host:port, got ${String(value)}`);
  return { host: m[1] || '127.0.0.1', port: Number(m[2]) };
}

function arg(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Apply one command line; returns the reply. */
function runCommand(proxy: FaultProxy, line: string): Record<string, unknown> {
  const [cmd = '', ...rest] = line.trim().split(/\s+/);
  const dir = (v: string | undefined, dflt: DirectionSpec): DirectionSpec => (v ?? dflt) as DirectionSpec;
  switch (cmd.toLowerCase()) {
    case 'delay':
      proxy.delay(Number(rest[0]), Number(rest[1] ?? 0), dir(rest[2], 'both'));
      break;
    case 'drop':
      proxy.drop(Number(rest[0]), dir(rest[1], 'both'));
      break;
    case 'blackhole':
      proxy.blackhole();
      break;
    case 'cut':
      proxy.cut();
      break;
    case 'halfopen':
      proxy.halfOpen(dir(rest[0], 'both'));
      break;
    case 'heal':
      proxy.heal();
      break;
    case 'stats':
      return { ok: true, cmd, stats: proxy.stats() };
    default:
      return { ok: false, cmd, error: `unknown command ${JSON.stringify(cmd)}` };
  }
  return { ok: true, cmd, faults: proxy.faultState() };
}

async function main(argv: string[]): Promise<void> {
  const target = parseHostPort(arg(argv, '--target'), '--target');
  const listen = parseHostPort(arg(argv, '--listen') ?? '127.0.0.1:0', '--listen');
  const seedArg = arg(argv, '--seed');
  const proxy = await FaultProxy.start({
    targetHost: target.host,
    targetPort: target.port,
    listenHost: listen.host,
    listenPort: listen.port,
    ...(seedArg !== undefined ? { seed: Number(seedArg) } : {}),
  });
  emit({ event: 'listening', host: proxy.host, port: proxy.port, seed: proxy.seed });

  const rl = createInterface({ input: process.stdin });
  let shuttingDown = false;
  const shutdown = async () => {
    if (shuttingDown) return;
    shuttingDown = true;
    rl.close();
    await proxy.close();
    emit({ event: 'closed' });
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  rl.on('close', () => void shutdown());
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    if (line.trim().toLowerCase() === 'close') {
      void shutdown();
      return;
    }
    try {
      emit(runCommand(proxy, line));
    } catch (err) {
      emit({ ok: false, cmd: line.trim(), error: (err as Error).message });
    }
  });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`fault-proxy-cli: ${(err as Error).message}\n`);
  process.exit(2);
});
