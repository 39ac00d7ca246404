/**
 * Which trials a campaign runs: from a seed, a replayable list of (phase, fault) cells. The cells
 * are visited in a seeded shuffle, round after round, so N trials cover min(N, cells) distinct
 * cells and a failure's seed and index replay exactly that trial (`--seed S --only I`).
 */
import { mulberry32 } from '../../src/util/prng.js';
import { cells, type Fault, type Phase } from './matrix.js';

export interface Trial {
  /** 1-based position in the campaign. */
  index: number;
  phase: Phase;
  fault: Fault;
  /** The trial's own seed (its random choices: delays, which fault moment). */
  seed: number;
}

export interface PlanOptions {
  trials: number;
  seed: number;
  phase?: string | undefined;
  fault?: string | undefined;
}

export function planTrials(o: PlanOptions): Trial[] {
  const pool = cells({ phase: o.phase, fault: o.fault });
  if (pool.length === 0) throw new Error(`no cell matches phase ${o.phase ?? '*'} and fault ${o.fault ?? '*'}`);
  const rnd = mulberry32(o.seed);
  const out: Trial[] = [];
  while (out.length < o.trials) {
    const round = [...pool];
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [round[i], round[j]] = [round[j]!, round[i]!];
    }
    for (const c of round) {
      if (out.length >= o.trials) break;
      out.push({ index: out.length + 1, ...c, seed: Math.floor(rnd() * 2 ** 31) });
    }
  }
  return out;
}

/** A random seed for a campaign run (printed, so the run can be replayed). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
