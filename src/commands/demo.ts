/**
 * `colo-agent demo`: a primary agent on 127.0.0.1 and a secondary on 127.0.0.2, on this machine,
 * with a fresh key in a temp directory, their logs interleaved in a compact form. Today it shows
 * the heartbeat and the failure detector (kill one child with `kill -9` and watch the other);
 * the QEMU pair joins it with the failover work. Ctrl-C stops everything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { keygen } from './keygen.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../../config/examples/', import.meta.url));

/** Fields every line has; the rest is shown as key=value. */
const SKIP = new Set(['level', 'time', 'pid', 'node', 'msg', 'component', 'hostname']);

/** One pino JSON line as "time node level msg key=value ...". Non-JSON lines pass through. */
export function compactLogLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof rec.time === 'string' ? rec.time.slice(11, 23) : '';
  const extras = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const level = rec.level === 'info' ? '' : ` ${String(rec.level).toUpperCase()}`;
  return `${time} ${String(rec.node ?? '?').padEnd(7)}${level} ${String(rec.msg ?? '')}${extras ? `  ${extras}` : ''}`;
}

export async function demo(out: (s: string) => void): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'colo-agent-demo-'));
  const keyFile = join(dir, 'heartbeat.key');
  await keygen(keyFile, false);

  const children: ChildProcess[] = [];
  const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
  // Whatever ends this process (a crash, a closed stdout), the agents it started go with it.
  process.on('exit', () => children.filter(alive).forEach((c) => c.kill('SIGKILL')));
  const start = (name: string, config: string) => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'run',
        '--config',
        join(EXAMPLES, config),
        '--set',
        `heartbeat.keyFile=${keyFile}`,
        '--set',
        `node.stateDir=${join(dir, name)}`,
        '--set',
        `qemu.qmp=unix:${join(dir, `${name}-qmp.sock`)}`,
        '--set',
        'metrics.listen=',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (l) => out(compactLogLine(l)));
    }
    child.on('exit', (code, signal) => out(`--- ${name} (pid ${child.pid}) exited ${signal ?? code}`));
    out(`--- started ${name} (pid ${child.pid}): kill -9 ${child.pid} to watch its peer detect the loss`);
    children.push(child);
  };
  start('primary', 'primary.yaml');
  start('secondary', 'secondary.yaml');

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      for (const c of children.filter(alive)) c.kill('SIGTERM');
      const poll = setInterval(() => {
        if (!children.some(alive)) {
          clearInterval(poll);
          resolve();
        }
      }, 50);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.stdout.on('error', stop); // e.g. piped into `head`
  });
  await rm(dir, { recursive: true, force: true });
}
