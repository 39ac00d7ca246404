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
import { Agent as HttpAgent } from 'node:http';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { sleep, startPair, withMetricsEndpoints, type AgentPair, type MetricsAddresses, type Side } from '../helpers/agent-process.js';
import { fetchMetrics, type HttpReply } from '../helpers/http.js';
import { CLK_TCK, cpuSeconds, rssMb } from '../helpers/proc.js';
import { progress, runBench } from './run-bench.js';
import { summarize, type Summary } from './stats.js';

const WARMUP_MS = 5000;
const SCRAPE_PERIOD_MS = 1000;

interface Agents {
  pair: AgentPair;
  metrics: MetricsAddresses;
}

/** Two heartbeat-only agents at 100 ms x 3, each with metrics on its own port. */
async function startAgents(): Promise<Agents> {
  const { started: pair, metrics } = await withMetricsEndpoints((setsFor) =>
    startPair({ heartbeat: { intervalMs: 100, missThreshold: 3, suspectMisses: 2 }, setsFor }),
  );
  return { pair, metrics };
}

interface Phase {
  wallS: number;
  cpuS: Record<Side, number>;
  rssMb: Record<Side, number>;
}

/** Runs `during` for `seconds` and measures both agents' CPU time over exactly that window. */
async function phase(agents: Agents, seconds: number, during: (until: number) => Promise<void>): Promise<Phase> {
  const pids = { primary: agents.pair.primary.pid, secondary: agents.pair.secondary.pid };
  const t0 = performance.now();
  const c0 = { primary: cpuSeconds(pids.primary), secondary: cpuSeconds(pids.secondary) };
  await during(t0 + seconds * 1000);
  const wallS = (performance.now() - t0) / 1000;
  return {
    wallS,
    cpuS: { primary: cpuSeconds(pids.primary) - c0.primary, secondary: cpuSeconds(pids.secondary) - c0.secondary },
    rssMb: { primary: rssMb(pids.primary) ?? Number.NaN, secondary: rssMb(pids.secondary) ?? Number.NaN },
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

  const agents = await startAgents();
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  try {
    progress(`agents up (primary pid ${agents.pair.primary.pid}, secondary pid ${agents.pair.secondary.pid}); warming up ${WARMUP_MS / 1000} s`);
    await sleep(WARMUP_MS);

    progress(`quiet phase: ${seconds} s without scrapes`);
    const quiet = await phase(agents, seconds, async (until) => sleep(Math.max(0, until - performance.now())));

    progress(`scrape phase: ${seconds} s, GET /metrics on the primary once per second`);
    const scrapes: HttpReply[] = [];
    const scraped = await phase(agents, seconds, async (until) => {
      // On a fixed 1 s grid from the phase start, so a slow scrape does not shift the next.
      for (let next = until - seconds * 1000; next < until; next += SCRAPE_PERIOD_MS) {
        await sleep(Math.max(0, next - performance.now()));
        scrapes.push(await fetchMetrics(agents.metrics.primary, { agent: httpAgent }));
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
    await agents.pair.stop();
  }
}

runBench('bench:metrics', main, 'interrupted: killing the agents');
