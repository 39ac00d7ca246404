/**
 * Split brain (issue 6): a randomized run of partition/kill trials on real QEMU pairs with real
 * agents and a real witness, on the lab of separate hosts (issue 12; test/lab/lab-split-brain.ts:
 * host a the primary, host b the secondary, host w the witness, each a network namespace).
 * Each trial brings up a fresh lab and pair, picks a scenario, waits for the outcome, and prints
 * one line saying which side ended as the running primary.
 *
 * The faults: partitions and isolation are nftables drops inside the hosts (silent: no FIN, no
 * RST); a host killed (`kill-*-host`) is, by the trial's seed, either a crash (every process of the
 * host SIGKILLed: the kernel closes their sockets) or a power loss (the host's links dropped first,
 * then its processes SIGKILLed behind the drop: nothing reaches the peer); the witness down is its
 * process SIGKILLed. The verdicts:
 *
 * - no trial may end with two running primaries, and at no moment may both QEMUs run the guest
 *   as primary (followed from QEMU's own STOP/RESUME/COLO_EXIT stamps);
 * - no trial may end with none while a healthy side (QEMU and agent alive, arbiter reachable)
 *   could continue. `partition+witness-down` legitimately ends with a paused primary and a passive
 *   secondary (neither can reach an arbiter): the line says so and it is no failure; once the pair
 *   link heals, the primary must run its guest again (its secondary is back at its epoch).
 *
 * The scenarios are shuffled by a seeded generator (each appears equally often); the seed is
 * printed and can be set with COLO_TRIAL_SEED, the number of trials with COLO_TRIALS (default 21),
 * and COLO_TRIAL_SCENARIOS=a,b limits the run to some scenarios (to reproduce one).
 * Trials run one after another: each keeps two TCG QEMUs and three agents busy on these 2 cores.
 * Without the lab (root, ip, nft) or QEMU that can do COLO, the run skips and says why.
 *
 * dist/ must be built (`npm test` does it first).
 */
import t, { type Test } from 'tap';
import { killAllChildren, requireBuiltCli, sleep } from '../helpers/agent-process.js';
import type { ColoRole } from '../helpers/colo-pair.js';
import { mulberry32 } from '../helpers/prng.js';
import { describeObservation, SIDES, type Observation } from '../helpers/split-brain.js';
import { startLabRigOrSkip, type LabRig as Rig } from '../lab/lab-split-brain.js';

t.setTimeout(20 * 60_000);
t.teardown(killAllChildren);

const SCENARIOS = [
  'partition-pair',
  'isolate-primary',
  'isolate-secondary',
  'kill-primary-host',
  'kill-secondary-host',
  'partition+witness-down',
  'flap',
] as const;
type Scenario = (typeof SCENARIOS)[number];

const OUTCOME_WAIT_MS = 12_000;
const SETTLE_MS = 1000;
/** States in which an agent may still be about to act. */
const BUSY = new Set(['failing-over', 'peer-suspect', 'peer-down', 'arbitrating', 'peer-agent-lost']);

const seed = Number(process.env.COLO_TRIAL_SEED ?? Math.floor(Math.random() * 2 ** 31));
const trials = Math.max(1, Number(process.env.COLO_TRIALS ?? 21));

/** COLO_TRIAL_SCENARIOS=flap,isolate-primary limits the run to those (for reproducing one). */
const chosen: readonly Scenario[] = process.env.COLO_TRIAL_SCENARIOS
  ? SCENARIOS.filter((s) => process.env.COLO_TRIAL_SCENARIOS!.split(',').includes(s))
  : SCENARIOS;

/** Each scenario equally often (as far as `trials` allows), in a seeded random order. */
function plan(rnd: () => number): Scenario[] {
  const list: Scenario[] = Array.from({ length: trials }, (_, i) => chosen[i % chosen.length]!);
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

interface TrialResult {
  line: string;
  twoPrimaries: boolean;
  noneWhileHealthy: boolean;
  overlapMs: number;
  problems: string[];
  /** Needless pauses of a guest that then ran on as primary (a known product race: asserted as TODO). */
  pauses: string[];
}

/** Which sides could continue: QEMU and agent alive, and an arbiter they can reach, as the scenario left them. */
function healthySides(scenario: Scenario, killed: ColoRole | undefined): ColoRole[] {
  switch (scenario) {
    case 'partition+witness-down':
      return []; // neither side can reach an arbiter
    case 'isolate-primary':
      return ['secondary'];
    case 'isolate-secondary':
      return ['primary'];
    default:
      return SIDES.filter((s) => s !== killed);
  }
}

function whoRuns(o: Observation): string {
  if (o.runningPrimaries.length === 0) return 'none';
  return o.runningPrimaries.map((s) => `${s} (epoch ${o.sides[s].agent?.epoch?.epoch ?? '?'})`).join(' AND ');
}

/** Where the scenario should end up, once the agents have done what they will do. */
function outcomeReached(scenario: Scenario, killed: ColoRole | undefined, o: Observation): boolean {
  const state = (s: ColoRole) => String(o.sides[s].agent?.state);
  const quiet = SIDES.every((s) => s === killed || !BUSY.has(state(s)));
  switch (scenario) {
    case 'partition+witness-down':
      // The primary's lease runs out: it pauses; nobody can be granted anything.
      return o.sides.primary.agent?.guestStopped !== undefined && o.sides.primary.qemu.running === false;
    case 'flap':
      return quiet;
    case 'isolate-primary':
      return state('secondary') === 'solo' && o.sides.primary.qemu.running === false;
    default:
      // Someone failed over (or failed trying) and nobody is mid-sequence.
      return SIDES.some((s) => state(s) === 'solo' || state(s) === 'failed') && SIDES.every((s) => state(s) !== 'failing-over');
  }
}

async function settle(rig: Rig, scenario: Scenario, killed: ColoRole | undefined): Promise<{ obs: Observation; reached: boolean }> {
  const r = await rig.waitFor((o) => outcomeReached(scenario, killed, o), OUTCOME_WAIT_MS);
  await sleep(SETTLE_MS); // anything late (a second takeover) would show now
  return { obs: await rig.observe(), reached: r.ok };
}

async function runTrial(t: Test, n: number, trialSeed: number, scenario: Scenario): Promise<TrialResult | undefined> {
  const rnd = mulberry32(trialSeed);
  const rig = await startLabRigOrSkip(t, { arbiter: 'witness' });
  if (!rig) return undefined;
  const problems: string[] = [];
  let killed: ColoRole | undefined;
  const notes: string[] = [];
  // A random moment within the heartbeat/lease cycle.
  await sleep(Math.round(rnd() * 300));

  switch (scenario) {
    case 'partition-pair':
      await rig.cutPair();
      break;
    case 'isolate-primary':
      await rig.isolate('primary');
      break;
    case 'isolate-secondary':
      await rig.isolate('secondary');
      break;
    case 'kill-primary-host':
    case 'kill-secondary-host': {
      killed = scenario === 'kill-primary-host' ? 'primary' : 'secondary';
      const powerLoss = rnd() < 0.5;
      await (powerLoss ? rig.powerLoss(killed) : rig.crashHost(killed));
      notes.push(powerLoss ? 'power loss (no FIN/RST)' : 'crash (SIGKILL: FIN/RST)');
      break;
    }
    case 'partition+witness-down': {
      const witnessFirst = rnd() < 0.5;
      if (witnessFirst) rig.killWitness();
      await rig.cutPair();
      if (!witnessFirst) rig.killWitness();
      notes.push(witnessFirst ? 'witness killed, then cut' : 'cut, then witness killed');
      break;
    }
    case 'flap': {
      const cycles = 3 + Math.floor(rnd() * 4);
      for (let i = 0; i < cycles; i++) {
        await rig.cutPair();
        await sleep(200 + Math.round(rnd() * 200));
        await rig.heal();
        await sleep(200 + Math.round(rnd() * 200));
      }
      notes.push(`${cycles} cycles`);
      break;
    }
  }

  const { obs: end, reached } = await settle(rig, scenario, killed);
  if (!reached) notes.push(`outcome not reached within ${OUTCOME_WAIT_MS} ms`);
  const healthy = healthySides(scenario, killed);
  const twoPrimaries = end.runningPrimaries.length > 1;
  const noneWhileHealthy = end.runningPrimaries.length === 0 && healthy.length > 0;
  if (twoPrimaries) problems.push('TWO running primaries at the end');
  if (noneWhileHealthy) problems.push(`NO running primary although ${healthy.join(' and ')} could continue`);
  const overlaps = rig.watch.overlaps();
  const overlapMs = overlaps.reduce((sum, [a, b]) => sum + (Math.min(b, Date.now()) - a), 0);
  if (overlaps.length > 0) problems.push(`both QEMUs ran the guest as primary for ${overlapMs.toFixed(1)} ms (QEMU event stamps)`);

  let outcome = whoRuns(end);
  if (scenario === 'partition+witness-down' && end.runningPrimaries.length === 0) {
    const p = end.sides.primary;
    outcome += ` (legitimate: no arbiter reachable; primary ${p.qemu.status}${p.agent?.guestStopped ? `, guestStopped=${p.agent.guestStopped}` : ''}, secondary ${end.sides.secondary.agent?.state} in COLO ${end.sides.secondary.qemu.mode})`;
  }

  // The partitions heal: the outcome must hold (or, with no arbiter, the primary must run again).
  if (rig.cuts.length > 0) {
    await rig.heal();
    const after = await rig.waitFor(
      (o) =>
        o.runningPrimaries.length > 0 &&
        // A loser that heard the winner's epoch is stale.
        SIDES.every((s) => s === killed || o.runningPrimaries.includes(s) || o.sides[s].agent?.state === 'stale' || o.sides[s].agent?.epoch?.epoch === o.sides[o.runningPrimaries[0]!].agent?.epoch?.epoch),
      OUTCOME_WAIT_MS,
    );
    await sleep(SETTLE_MS);
    const healed = await rig.observe();
    const before = end.runningPrimaries.join(',');
    if (healed.runningPrimaries.length > 1) problems.push('TWO running primaries after the heal');
    if (healed.runningPrimaries.length === 0) problems.push('NO running primary after the heal');
    if (before && healed.runningPrimaries.join(',') !== before) problems.push(`the running primary changed at the heal (${before} -> ${healed.runningPrimaries.join(',')})`);
    const overlapsAfter = rig.watch.overlaps();
    if (overlapsAfter.length > overlaps.length) problems.push('both QEMUs ran the guest as primary after the heal');
    notes.push(`after heal: ${whoRuns(healed)}${after.ok ? '' : ` (not settled: ${describeObservation(after.obs)})`}`);
    // Reported, not failed: an agent still "deciding" although its peer is back (see the report).
    const stuck = SIDES.filter((s) => s !== killed && BUSY.has(String(healed.sides[s].agent?.state)) && healed.sides[s].agent?.peer.state === 'up');
    if (stuck.length) notes.push(`still ${stuck.map((s) => `${s} ${healed.sides[s].agent?.state}`).join(', ')} with the peer up`);
    if (problems.length) notes.push(`healed: ${describeObservation(healed)}`);
  }
  const gap = rig.watch.handoverGapMs();
  if (gap !== undefined) notes.push(`handover gap ${gap.toFixed(1)} ms`);
  // A side that ends as the running primary but whose guest was paused on the way (see the report).
  // (With no arbiter reachable, partition+witness-down pauses the primary on purpose until the heal.)
  const pauses = scenario === 'partition+witness-down' ? [] : SIDES.flatMap((s) => rig.watch.pauses(s).map(([a, b]) => `${s} paused ${(b - a).toFixed(0)} ms before running on as primary`));
  if (pauses.length) notes.push(`NEEDLESS PAUSE: ${pauses.join(', ')}`);

  const line = `trial ${n} seed=${trialSeed} scenario=${scenario} -> running primary: ${outcome}${notes.length ? ` [${notes.join('; ')}]` : ''}`;
  if (problems.length || pauses.length) {
    t.comment(`${line}\n  end: ${describeObservation(end)}\n  events:\n${rig.watch.describe()}`);
    t.comment(rig.tails(40));
  }
  await rig.stop();
  return { line, twoPrimaries: twoPrimaries || overlaps.length > 0, noneWhileHealthy, overlapMs, problems, pauses };
}

if (requireBuiltCli(t)) {
  t.test(`randomized split-brain trials (${trials}, seed=${seed}; set COLO_TRIAL_SEED / COLO_TRIALS)`, async (t) => {
    const rnd = mulberry32(seed);
    const scenarios = plan(rnd);
    const lines: string[] = [];
    let failures = 0;
    let skipped = false;
    for (let i = 0; i < scenarios.length; i++) {
      const trialSeed = Math.floor(rnd() * 2 ** 31);
      const scenario = scenarios[i]!;
      const started = Date.now();
      await t.test(`trial ${i + 1}: ${scenario}`, async (tt) => {
        const res = await runTrial(tt, i + 1, trialSeed, scenario);
        if (!res) {
          skipped = true; // no lab or no QEMU that can do COLO: said once is enough
          return;
        }
        const line = `${res.line} (${((Date.now() - started) / 1000).toFixed(1)} s)`;
        lines.push(line);
        console.log(line);
        tt.notOk(res.twoPrimaries, 'never two running primaries');
        tt.notOk(res.noneWhileHealthy, 'not none while a healthy side could continue');
        tt.same(res.problems, [], 'no problem found');
        tt.same(res.pauses, [], 'no guest paused on its way to being the running primary', {
          todo: res.pauses.length
            ? 'known race: the witness announces the new epoch before the agent has adopted it; meanwhile leaseRemainingMs() is undefined, which the lease guard reads as "ran out", and it stops the guest of the primary that was just granted "continue" (resumed after the failover)'
            : false,
        });
        if (res.problems.length) failures++;
      });
      if (skipped) return;
    }
    t.comment(`seed=${seed}: ${lines.length} trials, ${failures} with problems`);
    for (const l of lines) t.comment(l);
  });
}
