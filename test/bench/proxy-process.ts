/**
 * A PairProxy backed by test/helpers/fault-proxy-cli.ts in its own process, so that the proxy's
 * event loop does not share a thread with the benchmark that times the agents. Commands go as
 * JSON-lines on its stdin; each call resolves when the proxy has confirmed the change.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { trackChild, type PairProxy, type ProxySpec } from '../helpers/agent-process.js';
import type { DirectionSpec, FaultProxyStats } from '../helpers/fault-proxy.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROXY_CLI = fileURLToPath(new URL('../helpers/fault-proxy-cli.ts', import.meta.url));

interface Reply {
  ok?: boolean;
  error?: string;
  event?: string;
  port?: number;
  host?: string;
  stats?: FaultProxyStats;
}

export async function processProxy(spec: ProxySpec): Promise<PairProxy> {
  const child = spawn(process.execPath, ['--import', 'tsx', PROXY_CLI, '--target', `${spec.targetHost}:${spec.targetPort}`, '--listen', `${spec.listenHost}:0`], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  trackChild(child);
  child.stdin.on('error', () => {});
  const waiting: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  let gone: Error | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      gone = new Error(`fault proxy ${spec.name} exited (code ${code}, signal ${signal})`);
      for (const w of waiting.splice(0)) w.reject(gone);
      resolve();
    }),
  );
  createInterface({ input: child.stdout }).on('line', (line) => {
    let reply: Reply;
    try {
      reply = JSON.parse(line) as Reply;
    } catch {
      return;
    }
    if (reply.event === 'closed') return;
    const w = waiting.shift();
    if (!w) return;
    if (reply.ok === false) w.reject(new Error(`fault proxy ${spec.name}: ${reply.error}`));
    else w.resolve(reply);
  });
  const next = (): Promise<Reply> =>
    new Promise((resolve, reject) => {
      if (gone) reject(gone);
      else waiting.push({ resolve, reject });
    });

  const listening = await next(); // the first line: {"event":"listening",...}
  const address = `${listening.host}:${listening.port}`;
  const command = (line: string): Promise<Reply> => {
    const reply = next();
    child.stdin.write(`${line}\n`);
    return reply;
  };
  const done = async (line: string) => void (await command(line));
  let closing: Promise<void> | undefined;

  return {
    name: spec.name,
    path: spec.path,
    from: spec.from,
    address,
    blackhole: () => done('blackhole'),
    cut: () => done('cut'),
    heal: () => done('heal'),
    halfOpen: (d: DirectionSpec) => done(`halfopen ${d}`),
    delay: (ms: number, jitterMs = 0, d: DirectionSpec = 'both') => done(`delay ${ms} ${jitterMs} ${d}`),
    drop: (p: number, d: DirectionSpec = 'both') => done(`drop ${p} ${d}`),
    stats: async () => (await command('stats')).stats!,
    close: () => {
      closing ??= (async () => {
        if (!gone) child.stdin.end('close\n');
        const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
