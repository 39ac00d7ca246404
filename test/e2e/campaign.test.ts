/**
 * The CI campaign (issue 12): the lifecycle campaign of test/campaign/ on the lab of separate
 * hosts, a short run: CI_TRIALS trials from a fixed seed, then CI_TRIALS from a random seed
 * (printed, so a failure replays). Each trial is a subtest that fails on a safety violation or a
 * liveness failure, with its replay command and the agents' logs; the table comes at the end.
 * The full run (>= 200 trials) is `npm run campaign -- --trials 200 --seed S`.
 *
 * Needs root (network namespaces, nftables) and a QEMU that does COLO: skips and says so otherwise.
 * COLO_CAMPAIGN_TRIALS overrides the per-seed count, COLO_CAMPAIGN_SEED the random seed.
 */
import t from 'tap';
import { killAllChildren, requireBuiltCli } from '../helpers/agent-process.js';
import { labAvailable } from '../lab/netns.js';
import { planTrials, randomSeed } from '../campaign/plan.js';
import { replayCommand, runTrial, trialLine } from '../campaign/run-trial.js';
import { campaignTable, type TrialResult } from '../campaign/table.js';

const CI_TRIALS = Number(process.env.COLO_CAMPAIGN_TRIALS ?? 10);
const FIXED_SEED = 12;
/** A trial takes ~7-25 s on a 2-core machine; 20 of them fit well inside this. */
const FILE_TIMEOUT_MS = 15 * 60_000;

t.setTimeout(FILE_TIMEOUT_MS);
t.teardown(killAllChildren);

const avail = labAvailable();
if (!avail.ok) t.pass('lifecycle campaign', { skip: avail.reason });
else if (requireBuiltCli(t)) {
  const random = Number(process.env.COLO_CAMPAIGN_SEED ?? randomSeed());
  for (const seed of [FIXED_SEED, random]) {
    t.test(`campaign, seed ${seed}${seed === FIXED_SEED ? ' (fixed)' : ' (random)'}`, { timeout: FILE_TIMEOUT_MS }, async (t) => {
      t.comment(`seed ${seed}: replay a trial with npm run campaign -- --seed ${seed} --only INDEX`);
      const results: TrialResult[] = [];
      for (const trial of planTrials({ trials: CI_TRIALS, seed })) {
        await t.test(`#${trial.index} ${trial.phase} / ${trial.fault}`, { timeout: 5 * 60_000 }, async (t) => {
          const out = await runTrial(trial);
          if (out.skipped) {
            t.pass('trial', { skip: out.skipped });
            return;
          }
          results.push({ trial, verdict: out.verdict, boundMs: out.expectation.boundMs });
          t.comment(trialLine(out, seed));
          const replay = replayCommand(seed, trial.index);
          const diag = out.verdict.held ? {} : { replay, notes: out.notes, transcript: out.transcript };
          t.same(out.verdict.safety, [], `safety (${out.expectation.why})`, diag);
          t.same(out.verdict.liveness, [], 'liveness', diag);
          // How fast is the benchmark's business (npm run campaign): a loaded CI machine is slower, not wrong.
          if (out.verdict.overBound) t.comment(`over its bound (a figure, not a failure): ${out.verdict.overBound}`);
        });
      }
      t.comment(`\n${campaignTable(results, seed)}`);
    });
  }
}
