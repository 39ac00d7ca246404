/**
 * `npm run campaign -- --trials N --seed S [--phase P] [--fault F] [--only I]`: the lifecycle
 * campaign (issue 12) on the lab of separate hosts, one trial at a time. Prints a line per trial as
 * it ends, then the table (table.ts). Exit 1 when any trial breached safety, 2 on bad arguments or
 * without root (the lab needs network namespaces and nftables).
 */
import { parseArgs } from 'node:util';
import { labAvailable } from '../lab/netns.js';
import { FAULTS, PHASES } from './matrix.js';
import { planTrials, randomSeed } from './plan.js';
import { trialLine, runTrial } from './run-trial.js';
import { campaignTable, type TrialResult } from './table.js';

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: npm run campaign -- --trials N --seed S [--phase P] [--fault F] [--only I] [--verbose]\n  phases: ${PHASES.join(', ')}\n  faults: ${FAULTS.join(', ')}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    trials: { type: 'string' },
    seed: { type: 'string' },
    phase: { type: 'string' },
    fault: { type: 'string' },
    only: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const int = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) usage(`--${name} takes a whole number, got ${v}`);
  return Number(v);
};
if (values.phase !== undefined && !(PHASES as readonly string[]).includes(values.phase)) usage(`unknown phase ${values.phase}`);
if (values.fault !== undefined && !(FAULTS as readonly string[]).includes(values.fault)) usage(`unknown fault ${values.fault}`);
const seed = int(values.seed, 'seed') ?? randomSeed();
const only = int(values.only, 'only');
const count = Math.max(int(values.trials, 'trials') ?? 20, only ?? 0);

const avail = labAvailable();
if (!avail.ok) {
  process.stderr.write(`campaign: ${avail.reason}\n`);
  process.exit(2);
}

let trials;
try {
  trials = planTrials({ trials: count, seed, phase: values.phase, fault: values.fault });
} catch (err) {
  usage((err as Error).message);
}
if (only !== undefined) trials = trials.filter((t) => t.index === only);
process.stdout.write(`campaign: ${trials.length} trials, seed ${seed}${values.phase ? `, phase ${values.phase}` : ''}${values.fault ? `, fault ${values.fault}` : ''}\n`);

const results: TrialResult[] = [];
const started = Date.now();
for (const trial of trials) {
  const out = await runTrial(trial);
  if (out.skipped) {
    process.stdout.write(`campaign: skipped: ${out.skipped}\n`);
    process.exit(2);
  }
  results.push({ trial, verdict: out.verdict, boundMs: out.expectation.boundMs });
  process.stdout.write(`${trialLine(out, seed)}\n`);
  if (values.verbose || !out.verdict.held) {
    process.stdout.write(`${out.notes.map((n) => `    ${n}`).join('\n')}\n`);
    if (out.transcript && !out.verdict.held) process.stdout.write(`${out.transcript}\n`);
  }
}
process.stdout.write(`\n${campaignTable(results, seed)}`);
process.stdout.write(`${Math.round((Date.now() - started) / 1000)} s in all\n`);
process.exit(results.some((r) => r.verdict.safety.length > 0) ? 1 : 0);
