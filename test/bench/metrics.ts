/**
 * Cost of the metrics endpoint on a real agent: `npm run bench:metrics [-- --seconds N]`.
 *
 *   --seconds N   length of each phase (default 60)
 *
 * Two agent processes (`node dist/cli.js run`) heartbeat each other at 100 ms x 3 over loopback,
 * no QEMU, both with metrics on. After a warm-up:
 *   1. quiet phase, N s: nobody scrapes; each agent's CPU time (utime + stime from /proc/PID/stat)
 *      over the phase gives its CPU share;
 *   2. scrape phase, N s: GET /metrics on the primary agent once per second, over one kept-alive
 *      connection as Prometheus does; the response time (request written to body received, as
 *      seen here) of each scrape, and again both agents' CPU share.
 * The secondary is never scraped: its two figures show how much the share drifts without scrapes.
 * Also printed: the size of one exposition (bytes, samples, families).
 *
 * Every child is killed at the end, on error and on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { keygen } from '../../src/commands/keygen.js';
import { AgentPortInUseError, EXAMPLE_CONFIGS, freePort, killAllChildren, sleep, startAgent, type AgentProcess } from '../helpers/agent-process.js';
import { summarize, type Summary } from './stats.js';

type Side = 'primary' | 'secondary';
const SIDES: readonly Side[] = ['primary', 'secondary'];
const HOSTS: Record<Side, string> = { primary: '127.0.0.1', secondary: '127.0.0.2' };
const WARMUP_MS = 5000;
const SCRAPE_PERIOD_MS = 1000;

const progress = (s: string) => process.stderr.write(`${s}\n`);

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK; // fields 14 and 15 of proc(5)
}

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

interface Agents {
  procs: Record<Side, AgentProcess>;
  metrics: Record<Side, { host: string; port: number }>;
  stop(): Promise<void>;
}

/** Two heartbeat-only agents, each with metrics on its own port (startPair() cannot give them different ones). */
async function startAgents(dir: string): Promise<Agents> {
  const keyFile = join(dir, 'heartbeat.key');
  await keygen(keyFile, false);
  for (let attempt = 1; ; attempt++) {
    const hb = { primary: await freePort(HOSTS.primary), secondary: await freePort(HOSTS.secondary) };
    const metrics = {
      primary: { host: HOSTS.primary, port: await freePort(HOSTS.primary) },
      secondary: { host: HOSTS.secondary, port: await freePort(HOSTS.secondary) },
    };
    const sets = (side: Side): string[] => {
      const peer: Side = side === 'primary' ? 'secondary' : 'primary';
      mkdirSync(join(dir, side), { recursive: true });
      return [
        `node.stateDir=${join(dir, side)}`,
        `qemu.qmp=unix:${join(dir, `${side}-qmp.sock`)}`, // nothing listens: no QEMU
        `heartbeat.keyFile=${keyFile}`,
        `heartbeat.listen=${HOSTS[side]}:${hb[side]}`,
        `heartbeat.peers=${HOSTS[peer]}:${hb[peer]}`,
        'heartbeat.intervalMs=100',
        'heartbeat.missThreshold=3',
        'heartbeat.suspectMisses=2',
        `metrics.listen=${metrics[side].host}:${metrics[side].port}`,
        'log.level=info',
      ];
    };
    const started = await Promise.allSettled(SIDES.map((side) => startAgent({ name: side, config: EXAMPLE_CONFIGS[side], sets: sets(side) })));
    const procs = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failed) {
      const pair = { primary: procs[0]!, secondary: procs[1]! };
      await Promise.all(SIDES.map((s) => pair[s].waitForPeerState('up', 15_000)));
      return { procs: pair, metrics, stop: async () => void (await Promise.allSettled(procs.map((p) => p.stop()))) };
    }
    await Promise.allSettled(procs.map((p) => p.stop()));
    if (!(failed.reason instanceof AgentPortInUseError) || attempt >= 3) throw failed.reason;
  }
}

interface Scrape {
  ms: number;
  body: string;
}

function scrape(httpAgent: HttpAgent, target: { host: string; port: number }): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ ...target, path: '/metrics', agent: httpAgent, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve({ ms: performance.now() - t0, body }) : reject(new Error(`GET /metrics: ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('GET /metrics: no answer within 5 s')));
    req.on('error', reject);
    req.end();
  });
}

interface Phase {
  wallS: number;
  cpuS: Record<Side, number>;
  rssMb: Record<Side, number>;
}

/** Runs `during` for `seconds` and measures both agents' CPU time over exactly that window. */
async function phase(agents: Agents, seconds: number, during: (until: number) => Promise<void>): Promise<Phase> {
  const pids = { primary: agents.procs.primary.pid, secondary: agents.procs.secondary.pid };
  const t0 = performance.now();
  const c0 = { primary: cpuSeconds(pids.primary), secondary: cpuSeconds(pids.secondary) };
  await during(t0 + seconds * 1000);
  const wallS = (performance.now() - t0) / 1000;
  return {
    wallS,
    cpuS: { primary: cpuSeconds(pids.primary) - c0.primary, secondary: cpuSeconds(pids.secondary) - c0.secondary },
    rssMb: { primary: rssMb(pids.primary), secondary: rssMb(pids.secondary) },
  };
}

/** Samples, HELP/TYPE families, and how many of each are colo-agent's own. */
function expositionSize(text: string) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const samples = lines.filter((l) => !l.startsWith('#'));
  const families = lines.filter((l) => l.startsWith('# TYPE '));
  return {
    bytes: Buffer.byteLength(text),
    samples: samples.length,
    families: families.length,
    ownSamples: samples.filter((l) => l.startsWith('colo_agent_')).length,
    ownFamilies: families.filter((l) => l.startsWith('# TYPE colo_agent_')).length,
  };
}

const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);
const pct = (cpuS: number, wallS: number) => (cpuS / wallS) * 100;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' } } });
  const seconds = Number(values.seconds);
  if (!Number.isInteger(seconds) || seconds < 1) throw new RangeError(`--seconds must be a positive integer, got ${values.seconds}`);

  const dir = mkdtempSync(join(tmpdir(), 'colo-bm-'));
  const agents = await startAgents(dir);
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  try {
    progress(`agents up (primary pid ${agents.procs.primary.pid}, secondary pid ${agents.procs.secondary.pid}); warming up ${WARMUP_MS / 1000} s`);
    await sleep(WARMUP_MS);

    progress(`quiet phase: ${seconds} s without scrapes`);
    const quiet = await phase(agents, seconds, async (until) => sleep(Math.max(0, until - performance.now())));

    progress(`scrape phase: ${seconds} s, GET /metrics on the primary once per second`);
    const scrapes: Scrape[] = [];
    const scraped = await phase(agents, seconds, async (until) => {
      // On a fixed 1 s grid from the phase start, so a slow scrape does not shift the next.
      for (let next = until - seconds * 1000; next < until; next += SCRAPE_PERIOD_MS) {
        await sleep(Math.max(0, next - performance.now()));
        scrapes.push(await scrape(httpAgent, agents.metrics.primary));
      }
      await sleep(Math.max(0, until - performance.now()));
    });

    const rt: Summary = summarize(scrapes.map((s) => s.ms));
    const size = expositionSize(scrapes.at(-1)?.body ?? '');
    const f = (n: number) => n.toFixed(2);
    const out: string[] = [''];
    out.push(`/metrics benchmark: 2 agents heartbeating at 100 ms x 3 on loopback, no QEMU; ${seconds} s per phase, after ${WARMUP_MS / 1000} s of warm-up`);
    out.push('');
    out.push(`GET /metrics on the primary agent, once per second over one kept-alive connection: response time, ms (n = ${rt.n})`);
    out.push(['min', 'p50', 'p90', 'p99', 'max', 'mean'].map((h) => lpad(h, 8)).join(''));
    out.push([rt.min, rt.p50, rt.p90, rt.p99, rt.max, rt.mean].map((v) => lpad(f(v), 8)).join(''));
    out.push(`(nearest rank: with n < 100, p99 is the max; the first scrape includes the TCP connect)`);
    out.push('');
    out.push(
      `One exposition: ${size.bytes} bytes, ${size.samples} samples in ${size.families} families ` +
        `(colo_agent_*: ${size.ownSamples} samples in ${size.ownFamilies} families; the rest are Node's process metrics)`,
    );
    out.push('');
    out.push('CPU share, % of one core (utime + stime from /proc/PID/stat over the phase)');
    out.push([pad('phase', 22), lpad('primary (scraped)', 18), lpad('secondary', 12), lpad('wall s', 9)].join(''));
    out.push([pad('no scrapes', 22), lpad(f(pct(quiet.cpuS.primary, quiet.wallS)), 18), lpad(f(pct(quiet.cpuS.secondary, quiet.wallS)), 12), lpad(quiet.wallS.toFixed(1), 9)].join(''));
    out.push(
      [pad('1 scrape/s (primary)', 22), lpad(f(pct(scraped.cpuS.primary, scraped.wallS)), 18), lpad(f(pct(scraped.cpuS.secondary, scraped.wallS)), 12), lpad(scraped.wallS.toFixed(1), 9)].join(''),
    );
    const delta = (s: Side) => pct(scraped.cpuS[s], scraped.wallS) - pct(quiet.cpuS[s], quiet.wallS);
    out.push([pad('difference', 22), lpad(`${delta('primary') >= 0 ? '+' : ''}${f(delta('primary'))}`, 18), lpad(`${delta('secondary') >= 0 ? '+' : ''}${f(delta('secondary'))}`, 12)].join(''));
    const extraCpuMs = (scraped.cpuS.primary - quiet.cpuS.primary * (scraped.wallS / quiet.wallS)) * 1000;
    out.push(
      `Primary's extra CPU in the scrape phase: ${extraCpuMs.toFixed(0)} ms for ${scrapes.length} scrapes, ` +
        `~${(extraCpuMs / Math.max(1, scrapes.length)).toFixed(1)} ms per scrape (CPU time is counted in ${(1000 / CLK_TCK).toFixed(0)} ms ticks; ` +
        "the secondary's difference shows the drift without scrapes).",
    );
    out.push(`RSS at the end, MB: primary ${f(scraped.rssMb.primary)}, secondary ${f(scraped.rssMb.secondary)}`);
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    httpAgent.destroy();
    await agents.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

process.once('SIGINT', () => {
  progress('interrupted: killing the agents');
  killAllChildren();
  process.exit(130);
});

main().then(
  () => {
    killAllChildren();
    process.exit(0);
  },
  (err: unknown) => {
    progress(`bench:metrics failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
