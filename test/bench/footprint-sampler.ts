/**
 * Resident memory and CPU of a group of processes over a window, from /proc: RSS (VmRSS, summed
 * over the group) once a second, CPU as utime + stime at the window's start and end. A group is
 * one agent (one process) or one keepalived instance (its parent plus the VRRP child).
 */
import { sleep } from '../helpers/agent-process.js';
import { cpuSeconds, rssMb } from '../helpers/proc.js';

export interface Footprint {
  rssMeanMb: number;
  rssMaxMb: number;
  /** CPU time over wall time, in % of one core. */
  cpuPercent: number;
}

export interface SampledGroup {
  name: string;
  /** The group's pids, asked again at each sample (a keepalived child may be found late). */
  pids: () => number[];
}

function groupCpu(pids: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pids) {
    try {
      m.set(pid, cpuSeconds(pid));
    } catch {
      // gone
    }
  }
  return m;
}

/** Samples every group for `seconds`; throws when a group has no live process left. */
export async function sampleFootprints(groups: SampledGroup[], seconds: number): Promise<Map<string, Footprint>> {
  const pids0 = groups.map((g) => g.pids());
  const cpu0 = pids0.map(groupCpu);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const rss: number[][] = groups.map(() => []);
  while (performance.now() < end) {
    groups.forEach((g, i) => {
      const values = g.pids().map(rssMb);
      if (values.every((v) => v === undefined)) throw new Error(`${g.name}: no process left during the window`);
      rss[i]!.push(values.reduce<number>((s, v) => s + (v ?? 0), 0));
    });
    await sleep(Math.min(1000, Math.max(0, end - performance.now())));
  }
  const wall = (performance.now() - t0) / 1000;
  const out = new Map<string, Footprint>();
  groups.forEach((g, i) => {
    const cpu1 = groupCpu(pids0[i]!);
    // Only processes alive at both ends count: a pid that appeared or vanished has no window.
    let used = 0;
    for (const [pid, c1] of cpu1) used += c1 - (cpu0[i]!.get(pid) ?? c1);
    const r = rss[i]!;
    out.set(g.name, {
      rssMeanMb: r.reduce((s, v) => s + v, 0) / r.length,
      rssMaxMb: Math.max(...r),
      cpuPercent: (used / wall) * 100,
    });
  });
  return out;
}
