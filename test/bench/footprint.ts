/**
 * Footprint of an idle pair: `npm run bench:footprint [-- options]`.
 *
 *   --seconds N   length of each sampling window (default 60)
 *   --warmup N    seconds between peer-up and the window, for start-up garbage to settle (default 5)
 *   --qemu        give each agent a paused QEMU of its own (QMP status polling included)
 *   --rates LIST  heartbeat rates in Hz, comma-separated (default 10,20; intervalMs = 1000 / Hz)
 *   --skip-keepalived   agents only
 *
 * At 10 Hz and 20 Hz heartbeats (heartbeat.intervalMs 100 and 50) it starts an idle pair of real
 * agents (footprint-agents.ts), waits for both to see the peer up, then samples each agent's RSS
 * and CPU over the window (footprint-sampler.ts). When keepalived can run here (installed, root),
 * a keepalived pair at the same advert rate (advert_int 0.1 and 0.05) is measured the same way
 * after it, one instance = the parent plus its VRRP child, and printed beside the agents.
 * The pairs run one after the other, never together. Everything started is killed at the end,
 * on error and on Ctrl-C (the namespaces fp-a and fp-b are deleted).
 */
import { parseArgs } from 'node:util';
import { sleep } from '../helpers/agent-process.js';
import { startIdlePair } from './footprint-agents.js';
import { sampleFootprints, type Footprint } from './footprint-sampler.js';
import { keepalivedMissing, startKeepalivedPair } from './keepalived-pair.js';
import { progress, runBench } from './run-bench.js';

const TARGET = { rssMb: 50, cpuPercent: 0.5 }; // per agent at 10 Hz (issue 14)

interface Row {
  hz: number;
  name: string;
  f: Footprint;
}

function report(rows: Row[], seconds: number, qemu: boolean, keepalivedNote: string | undefined): string {
  const out = [''];
  out.push(`Idle footprint, ${seconds} s window per row, agents ${qemu ? 'each with a paused QEMU' : 'without QEMU (QMP socket missing)'}, metrics endpoint on, not scraped`);
  out.push(['rate', 'process'.padEnd(22), 'RSS MB mean'.padStart(12), 'RSS MB max'.padStart(11), 'CPU %'.padStart(7), '  target'].join(' '));
  for (const r of rows) {
    const agent = !r.name.startsWith('keepalived');
    const target =
      agent && r.hz === 10 ? `RSS <= ${TARGET.rssMb}: ${r.f.rssMaxMb <= TARGET.rssMb ? 'met' : 'MISSED'}, CPU <= ${TARGET.cpuPercent}: ${r.f.cpuPercent <= TARGET.cpuPercent ? 'met' : 'MISSED'}` : '';
    out.push([`${r.hz} Hz`.padEnd(5), r.name.padEnd(21), r.f.rssMeanMb.toFixed(1).padStart(12), r.f.rssMaxMb.toFixed(1).padStart(11), r.f.cpuPercent.toFixed(2).padStart(7), ' ', target].join(' '));
  }
  out.push('CPU %: utime + stime over the window, in % of one core. keepalived rows: parent + VRRP child summed.');
  if (keepalivedNote) out.push(`keepalived not measured: ${keepalivedNote}`);
  return out.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' }, warmup: { type: 'string', default: '5' }, qemu: { type: 'boolean', default: false },
      rates: { type: 'string', default: '10,20' },
      'skip-keepalived': { type: 'boolean', default: false },
    },
  });
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  if (!(seconds >= 2)) throw new RangeError('--seconds must be >= 2');
  if (!(warmup >= 0)) throw new RangeError('--warmup must be >= 0');
  const rates = values.rates.split(',').map((hz) => ({ hz: Number(hz), intervalMs: 1000 / Number(hz) }));
  if (rates.some((r) => !Number.isInteger(r.intervalMs) || r.intervalMs < 10)) throw new RangeError('--rates: each rate must divide 1000 into whole ms (at most 100 Hz)');
  const noKeepalived = values['skip-keepalived'] ? 'skipped (--skip-keepalived)' : keepalivedMissing();
  const rows: Row[] = [];
  for (const rate of rates) {
    progress(`agents at ${rate.hz} Hz: starting, ${warmup} s warm-up, ${seconds} s window`);
    const pair = await startIdlePair({ intervalMs: rate.intervalMs, qemu: values.qemu });
    try {
      await sleep(warmup * 1000);
      const f = await sampleFootprints(
        pair.agents.map((a) => ({ name: `colo-agent ${a.name}`, pids: () => (a.alive ? [a.pid] : []) })),
        seconds,
      );
      for (const [name, fp] of f) rows.push({ hz: rate.hz, name, f: fp });
    } finally {
      await pair.stop();
    }
    if (noKeepalived) continue;
    const advert = rate.intervalMs / 1000;
    progress(`keepalived at advert_int ${advert}: starting, ${warmup} s warm-up, ${seconds} s window`);
    const k = await startKeepalivedPair(advert);
    try {
      await sleep(warmup * 1000);
      const f = await sampleFootprints(k.instances.map((i) => ({ name: i.name, pids: i.pids })), seconds);
      for (const [name, fp] of f) rows.push({ hz: rate.hz, name, f: fp });
    } finally {
      k.stop();
    }
  }
  process.stdout.write(`${report(rows, seconds, values.qemu, noKeepalived)}\n`);
}

runBench('bench:footprint', main, 'interrupted: killing the agents, QEMUs and keepalived instances, deleting fp-a and fp-b');
