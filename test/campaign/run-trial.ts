/**
 * One trial of the lifecycle campaign on a fresh lab (lab-phases.ts): bring the pair into the
 * trial's phase, follow every QEMU (qemu-fleet.ts), inject the fault at the host that plays the
 * role (hostOf), play it out, wait for the expected end state, and hand judge() what QEMU showed.
 *
 * Playing a fault out (the "repair" is what a person or the machine itself would do):
 * - power-loss: nft drop of all the host's links, SIGKILL of all its processes; after the
 *   takeover (or the watch), power on and the host comes back (relaunch: its agent with
 *   qemu.launch launches a fresh secondary);
 * - crash: SIGKILL of all the host's processes (FIN/RST reach the peer); then relaunch;
 * - isolate / partition: nft drops; after the takeover, heal; the host that lost the guest still
 *   runs a QEMU that is stale (paused primary, or a secondary the primary dropped), which its
 *   agent does not replace while it answers: it is rebooted (relaunch);
 * - freeze: SIGSTOP of all the host's processes; the agents have failover.fenceCommand (SIGKILL
 *   of every process of the peer's namespace) and failover.unresponsivePeerMs; after the takeover
 *   thaw, then relaunch (the fence left nothing to thaw, or the thaw must change nothing);
 * - qemu-death: SIGKILL of the QEMU alone; after the takeover the host is relaunched;
 * - agent-death: SIGKILL of the agent alone; watched for WATCH_MS (nobody may take over), then
 *   the agent is started again with the same config (it adopts its QEMU);
 * - agent-restart-mid-failover: the primary's QEMU killed; the secondary's agent SIGKILLed
 *   the moment its journal holds a running decision, then started again: it finishes the
 *   failover from the journal; then the primary's host is relaunched;
 * - witness-down: SIGKILL of the witness; watched; the witness started again.
 * In a solo phase the host without a QEMU is relaunched at the end (the expected resume); in
 * during-resync the first drive-mirror is throttled (its NBD flow shaped, lab-phases.ts), the
 * ones after the fault are not (the shaper goes when the first job stops).
 *
 * Failovers come from the agents' logs (`failover starting`, component failover; `failover done`,
 * component agent), stamped by the agent on the same wall clock as QEMU's events.
 */
import { OutsideTapScope } from '../lab/scope.js';
import { logTimeMs, sleep, type LogPredicate } from '../helpers/agent-process.js';
import { failoverDone, failoverResuming, failoverStarting, onJournal, runningDecision } from '../helpers/colo-agents.js';
import type { PairHost } from '../lab/lab-colo.js';
import { mulberry32 } from '../../src/util/prng.js';
import { expectation, replicated, solo, type Expectation } from './matrix.js';
import { PhaseError, RESYNC_THROTTLED_MS, TrialLab } from './lab-phases.js';
import type { Trial } from './plan.js';
import { judge, type FailoverRecord, type TrialObservation, type TrialVerdict } from './verdict.js';

/** failover.unresponsivePeerMs in every trial: a frozen peer is fenced after 1 s of silence. */
export const UNRESPONSIVE_PEER_MS = 1000;
/** How long a fault with no takeover due is watched: detection, probes, lease, the frozen-peer rule all fit well inside. */
export const WATCH_MS = 3500;
/** How long a due takeover is waited for (its bound is far less: a longer one is a liveness failure, measured). */
const TAKEOVER_WAIT_MS = 15_000;

export interface TrialOutcome {
  trial: Trial;
  expectation: Expectation;
  verdict: TrialVerdict;
  observation: TrialObservation;
  /** The trial from lab creation to its end (teardown excluded), and its parts. */
  durationMs: number;
  phaseMs: number;
  /** What the harness did and saw, one line each. */
  notes: string[];
  /** Agents' logs and QEMU events, kept for a trial that did not hold. */
  transcript?: string;
  /** Set when the lab could not be made here (no root, no QEMU COLO): not run. */
  skipped?: string;
}

/** The part of a tap Test (or of the CLI's scope) a trial runs in. */
interface Scope {
  teardown(fn: () => unknown): void;
  pass(message: string, extra: { skip: string }): unknown;
}

/** The trial's scope: tap's teardown and skip, outside tap. */
class TrialScope extends OutsideTapScope implements Scope {}

/** The replay command of a trial. */
export function replayCommand(seed: number, index: number): string {
  return `npm run campaign -- --seed ${seed} --only ${index}`;
}

export async function runTrial(trial: Trial): Promise<TrialOutcome> {
  const scope = new TrialScope();
  const started = Date.now();
  const e = expectation(trial.phase, trial.fault, { unresponsivePeerMs: UNRESPONSIVE_PEER_MS });
  const notes: string[] = [];
  let tl: TrialLab | undefined;
  let phaseMs = 0;
  let obs: TrialObservation = { faultAt: started, hostOf: { primary: 'a', secondary: 'b' }, qemus: [], failovers: [], endAt: started };
  try {
    tl = await TrialLab.open(scope, { unresponsivePeerMs: UNRESPONSIVE_PEER_MS, fence: trial.fault.startsWith('freeze') });
    if (!tl) {
      const skip = scope.skipped ?? 'the lab could not be made';
      return { trial, expectation: e, verdict: { held: true, safety: [], liveness: [], overlapMs: 0 }, observation: obs, durationMs: 0, phaseMs: 0, notes, skipped: skip };
    }
    try {
      await tl.reach(trial.phase);
    } catch (err) {
      throw new PhaseError(`reaching phase ${trial.phase}: ${(err as Error).message}`);
    }
    phaseMs = Date.now() - started;
    obs = await play(tl, trial, e, notes);
  } catch (err) {
    if (phaseMs === 0) phaseMs = Date.now() - started;
    obs = { ...obs, endAt: Date.now(), harnessError: (err as Error).message, qemus: tl?.fleet.timelines() ?? [] };
  }
  if (tl?.resyncStartedAt !== undefined) {
    const end = tl.resyncEndedAt;
    notes.push(`the throttled copy ${end !== undefined ? `ran ${Math.round(end - tl.resyncStartedAt)} ms (running -> stopped, QEMU's stamps)` : 'had not stopped when the trial ended'}`);
  }
  const verdict = judge(obs, e);
  const durationMs = Date.now() - started;
  const transcript = verdict.held || !tl ? undefined : `${tl.transcript(40)}\n--- QEMU (fleet):\n${tl.fleet.describe()}`;
  await scope.close();
  return { trial, expectation: e, verdict, observation: obs, durationMs, phaseMs, notes, ...(transcript !== undefined && { transcript }) };
}

/** Inject the fault, play it out, and observe. */
async function play(tl: TrialLab, trial: Trial, e: Expectation, notes: string[]): Promise<TrialObservation> {
  const rnd = mulberry32(trial.seed);
  const hostOf = { primary: tl.primary, secondary: tl.secondary } as const;
  const { lab } = tl.lc;
  const note = (s: string) => notes.push(`+${Date.now() - faultAt} ms ${s}`);
  // A random moment: inside the throttled copy for during-resync, else shortly after the phase settled.
  await sleep(trial.phase === 'during-resync' ? 200 + Math.floor(rnd() * (RESYNC_THROTTLED_MS / 6)) : Math.floor(rnd() * 300));
  const faultAt = Date.now();
  const f = trial.fault;
  const role = f.endsWith('-primary') ? 'primary' : f.endsWith('-secondary') ? 'secondary' : undefined;
  const victim: PairHost | undefined = role ? hostOf[role] : undefined;
  const survivor = hostOf[e.runs];
  /** The host that lost the guest (or never had it in a solo phase): relaunched at the end. */
  const lost: PairHost = survivor === hostOf.primary ? hostOf.secondary : hostOf.primary;

  const waitTakeover = async () => {
    const done = await waitRecord(tl, survivor, failoverDone, faultAt, TAKEOVER_WAIT_MS);
    note(done === undefined ? `no failover done on ${survivor} within ${TAKEOVER_WAIT_MS} ms` : `failover done on ${survivor}`);
  };
  const settle = () => (e.takeover ? waitTakeover() : sleep(WATCH_MS));

  switch (f) {
    case 'power-loss-primary':
    case 'power-loss-secondary':
      await lab.powerLoss(victim!);
      note(`power loss of ${victim}`);
      await settle();
      await lab.powerOn(victim!);
      break;
    case 'crash-primary':
    case 'crash-secondary':
      await lab.crash(victim!);
      note(`crash of ${victim}`);
      await settle();
      break;
    case 'isolate-primary':
    case 'isolate-secondary':
      await lab.isolate(victim!);
      note(`${victim} isolated`);
      await settle();
      await lab.heal();
      note('healed');
      break;
    case 'partition':
      await lab.partition('a', 'b');
      note('a and b partitioned');
      await settle();
      await lab.heal();
      note('healed');
      break;
    case 'freeze-primary':
    case 'freeze-secondary':
      await lab.freeze(victim!);
      note(`${victim} frozen`);
      await settle();
      await lab.thaw(victim!);
      note(`${victim} thawed`);
      await sleep(500);
      break;
    case 'qemu-death-primary':
    case 'qemu-death-secondary':
      tl.killQemu(victim!);
      note(`QEMU of ${victim} killed`);
      await settle();
      break;
    case 'agent-death-primary':
    case 'agent-death-secondary':
      await tl.killAgent(victim!);
      note(`agent of ${victim} killed`);
      await settle();
      await tl.startAgent(victim!);
      note(`agent of ${victim} started again`);
      break;
    case 'agent-restart-mid-failover': {
      const s = hostOf.secondary;
      const killed = onJournal(tl.lc.stateDir(s), runningDecision, () => lab.killProcess(tl.agent(s)!.pid));
      tl.killQemu(hostOf.primary);
      note(`QEMU of ${hostOf.primary} killed`);
      const j = await Promise.race([killed.matched, sleep(TAKEOVER_WAIT_MS).then(() => undefined)]);
      killed.close();
      if (j === undefined) note(`${s}'s journal never held a running decision`);
      else {
        note(`agent of ${s} killed with a running decision in its journal (${j.decision?.sequence ?? '?'})`);
        await tl.agent(s)!.exited;
        await tl.startAgent(s);
        note(`agent of ${s} started again`);
      }
      await waitTakeover();
      break;
    }
    case 'witness-down':
      tl.killWitness();
      note('witness killed');
      await settle();
      await tl.restartWitness();
      note('witness started again');
      break;
  }

  if (trial.phase === 'during-resync') {
    const ended = tl.resyncEndedAt;
    const lasted = ended !== undefined && tl.resyncStartedAt !== undefined ? ` (it ran ${Math.round(ended - tl.resyncStartedAt)} ms)` : '';
    if (ended !== undefined && ended < faultAt) throw new PhaseError(`the throttled resync was over ${Math.round(faultAt - ended)} ms before the fault${lasted}: not during-resync`);
    note(`the throttled resync was still running at the fault${ended !== undefined ? ` (it stopped at +${Math.round(ended - faultAt)} ms)` : ''}`);
  }

  // The repair: the host that lost the guest (or the solo phase's host without a QEMU) comes back as a fresh secondary.
  let repairAt: number | undefined;
  const needsRelaunch = e.resumes && (e.takeover || solo(trial.phase) || !(f.startsWith('agent-death') || f === 'witness-down'));
  if (needsRelaunch) {
    repairAt = Date.now();
    await tl.relaunch(lost);
    note(`${lost} relaunched (agent with qemu.launch)`);
  } else if (e.resumes) repairAt = Date.now();
  let resumedAt: number | undefined;
  if (e.resumes) {
    resumedAt = await tl.waitColo();
    note(resumedAt === undefined ? 'COLO not back' : `COLO back (${resumedAt - repairAt!} ms after the repair)`);
  } else if (replicated(trial.phase) && !tl.fleet.coloUp()) note('COLO is not up at the end');
  await sleep(200);
  return {
    faultAt,
    hostOf,
    qemus: tl.fleet.timelines(),
    failovers: failoversSince(tl, faultAt),
    ...(resumedAt !== undefined && { resumedAt }),
    endAt: Date.now(),
  };
}

/** The first record on host `h` (any of its agents) matching, logged at or after `from`; polled. */
async function waitRecord(tl: TrialLab, h: PairHost, predicate: LogPredicate, from: number, timeoutMs: number): Promise<number | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    for (const a of tl.agentsOf(h)) {
      const hit = a.filter(predicate).find((x) => logTimeMs(x.record!) >= from);
      if (hit) return logTimeMs(hit.record!);
    }
    if (Date.now() >= end) return undefined;
    await sleep(50);
  }
}

/**
 * Every failover decision an agent started at or after `from`, with when it was done. A decision
 * is counted once: an agent killed mid-failover may not have flushed its `failover starting`
 * line, and the agent started after it logs `resuming the unfinished failover from the journal`
 * for the same decision id.
 */
function failoversSince(tl: TrialLab, from: number): FailoverRecord[] {
  const out: FailoverRecord[] = [];
  for (const h of ['a', 'b'] as const) {
    const records = tl.agentsOf(h).flatMap((a) => a.entries.map((x) => x.record).filter((r) => r !== undefined));
    const dones = records.filter((r) => failoverDone(r)).map(logTimeMs);
    const byDecision = new Map<string, FailoverRecord>();
    for (const r of records.filter((x) => (failoverStarting(x) || failoverResuming(x)) && logTimeMs(x) >= from)) {
      const at = logTimeMs(r);
      const id = String(r.decision ?? `${r.sequence}@${at}`);
      const seen = byDecision.get(id);
      if (seen && seen.at <= at) continue;
      byDecision.set(id, { host: h, sequence: String(r.sequence), at, doneAt: dones.find((d) => d >= at) });
    }
    out.push(...byDecision.values());
  }
  return out.sort((x, y) => x.at - y.at);
}

/** One line per trial: verdict, cell, takeover, duration, and the replay command when it did not hold. */
export function trialLine(o: TrialOutcome, seed: number): string {
  const v = o.verdict;
  const tag = v.safety.length > 0 ? 'VIOLATED' : v.held ? 'held' : 'FAILED';
  const takeover = v.takeoverMs !== undefined ? ` takeover ${Math.round(v.takeoverMs)} ms${o.expectation.boundMs ? ` (bound ${o.expectation.boundMs})` : ''}` : '';
  const why = v.held ? '' : `: ${[...v.safety.map((s) => `SAFETY: ${s}`), ...v.liveness].join('; ')} (replay: ${replayCommand(seed, o.trial.index)})`;
  return `#${o.trial.index} ${o.trial.phase} / ${o.trial.fault}: ${tag}${takeover}, ${Math.round(o.durationMs / 1000)} s (phase ${Math.round(o.phaseMs / 1000)} s)${why}`;
}
