/**
 * The scenarios recorded for the alert rules (issue 14), each on a fresh lab (test/lab/: hosts a
 * and b as separate network namespaces, a real QEMU 7.2 COLO pair, real agents, the witness on w
 * unless said otherwise), each step marked in the recording so that the expectations
 * (series-expectations.ts) can say when an alert must fire.
 *
 * Routine paths (nothing may page): planned work (steady state, a planned stop and restart of each
 * agent, maintenance on and off around one of them) and failback both ways (a host lost, the fresh
 * secondary back on it, replication resumed; then the other host, so that the roles end swapped).
 * Faults (their alert must fire): host power loss, the network faults (one heartbeat link down,
 * wrong-key frames, the witness down), an isolated primary (lease, stale epoch), a partition
 * without an arbiter (split brain), a failover that fails, a fence that fails, a QEMU that is lost
 * and whose relaunch keeps failing, a stalled checkpoint (7.2's deadlock; on 11.1 a secondary frozen
 * inside a checkpoint), and replication stopped by hand.
 *
 * The holds after each fault are the rules' `for:` plus some: the recording shows the state long
 * enough for the alert to fire on real samples (the generated tests also hold the final state for
 * 40 minutes: series-promtool.ts).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentState, sleep, type AgentProcess } from '../helpers/agent-process.js';
import { failoverFailed, onJournal, runningDecision, waitFailoverDone } from '../helpers/colo-agents.js';
import { BRING_UP_HOST, peerOf, startLabColoOrSkip, steadyProblems, waitAgentStatuses, type LabColo, type PairHost } from '../lab/lab-colo.js';
import { TrialLab } from '../campaign/lab-phases.js';
import { freshSecondaryCommand } from '../../src/qemu/colo-launch.js';
import { cutMgmtLink, maintenance, restoreMgmtLink, sendWrongKeyHello, type Scope } from './series-lab.js';
import type { SeriesFixture } from './series-fixture.js';
import { checkpointSupport } from '../helpers/colo-cmdline.js';
import { atNextStop, QemuCheckpointLog } from '../helpers/qemu-checkpoints.js';

const WAIT_MS = 30_000;
const RESUME_WAIT_MS = 120_000;

export interface ScenarioContext {
  lc: LabColo;
  /** The campaign's lab (witness scenarios): relaunching a host as a fresh secondary, waiting for COLO. */
  tl: TrialLab | undefined;
  mark(name: string): void;
  /** Let the recording run for `s` seconds. */
  hold(s: number): Promise<void>;
  note(msg: string): void;
}

export interface Scenario {
  name: string;
  kind: SeriesFixture['kind'];
  description: string;
  arbiter: 'witness' | 'none';
  run(ctx: ScenarioContext): Promise<void>;
}

/** The agent QMP socket of the QEMU the pair started on `h`. */
const bringUpQmp = (lc: LabColo, h: PairHost): string => lc.pair.side(h === BRING_UP_HOST.primary ? 'primary' : 'secondary').agentQmpAddress;

/** Both agents on the pair as brought up, with `sets`, then steady (peers up, witness reachable, a holding the lease). */
async function startSteady(ctx: ScenarioContext, sets: string[] = []): Promise<void> {
  const { lc } = ctx;
  await Promise.all((['a', 'b'] as const).map((h) => lc.startAgent(h, bringUpQmp(lc, h), sets)));
  await mustSteady(lc, 'a');
  ctx.mark('steady');
}

async function mustSteady(lc: LabColo, primary: PairHost): Promise<void> {
  const why = await waitAgentStatuses(lc, WAIT_MS, (st) => steadyProblems(lc.arbiter, primary, st));
  if (why) throw new Error(`not steady (primary ${primary}): ${why}`);
}

const agent = (lc: LabColo, h: PairHost): AgentProcess => {
  const a = lc.agents[h];
  if (!a) throw new Error(`no agent on ${h}`);
  return a;
};

/** `h`'s agent stopped the way systemctl stop does it (SIGTERM: it says goodbye), restarted after `downS` on the same QEMU. */
async function plannedRestart(ctx: ScenarioContext, h: PairHost, downS: number, primary: PairHost): Promise<void> {
  const a = agent(ctx.lc, h);
  ctx.mark(`stop-${h}`);
  a.kill('SIGTERM');
  const exit = await Promise.race([a.exited, sleep(15_000).then(() => undefined)]);
  if (!exit) throw new Error(`${h}'s agent did not stop on SIGTERM`);
  await ctx.hold(downS);
  ctx.mark(`start-${h}`);
  await ctx.lc.startAgent(h, bringUpQmp(ctx.lc, h));
  await mustSteady(ctx.lc, primary);
}

/** `h` lost by `how`; its peer's failover waited for. */
async function lose(ctx: ScenarioContext, h: PairHost, how: 'crash' | 'powerLoss', marker: string): Promise<void> {
  const survivor = agent(ctx.lc, peerOf(h));
  const since = survivor.cursor();
  const at = Date.now();
  ctx.mark(marker);
  await (how === 'crash' ? ctx.lc.lab.crash(h) : ctx.lc.lab.powerLoss(h));
  const fo = await waitFailoverDone(survivor, since, at, WAIT_MS);
  await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });
  ctx.note(`${h} lost (${how}): ${peerOf(h)} ran ${fo.sequence} (trigger ${fo.trigger}), fault -> done ${fo.faultToDoneMs} ms`);
}

/** `h` back as a fresh secondary (its agent launches it: qemu.launch), replication resumed into it. */
async function failback(ctx: ScenarioContext, h: PairHost, marker: string): Promise<void> {
  const tl = ctx.tl!;
  tl.primary = peerOf(h);
  ctx.mark(marker);
  await tl.relaunch(h);
  if ((await tl.waitColo(RESUME_WAIT_MS)) === undefined) throw new Error(`replication did not resume into ${h}`);
  const why = await tl.waitSteady(WAIT_MS);
  if (why) throw new Error(`not steady after the failback into ${h}: ${why}`);
  ctx.mark(`${marker}-done`);
}

/** A fence command that always fails (a BMC that does not answer). */
function failingFence(lc: LabColo): string {
  const path = join(lc.dir, 'fence-fails.sh');
  writeFileSync(path, '#!/bin/sh\necho "fence: BMC does not answer" >&2\nexit 1\n');
  chmodSync(path, 0o755);
  return path;
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'planned-work',
    kind: 'routine',
    arbiter: 'witness',
    description:
      'steady 60 s; planned stop of a (SIGTERM, the primary) and restart 10 s later; maintenance on for both; ' +
      'planned stop of b (the secondary) and restart 10 s later; maintenance off; steady 30 s',
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(60);
      await plannedRestart(ctx, 'a', 10, 'a');
      await ctx.hold(15);
      ctx.mark('maintenance-on');
      for (const h of ['a', 'b'] as const) await maintenance(ctx.lc, h, bringUpQmp(ctx.lc, h), 'on');
      await ctx.hold(15);
      await plannedRestart(ctx, 'b', 10, 'a');
      await ctx.hold(15);
      ctx.mark('maintenance-off');
      for (const h of ['a', 'b'] as const) await maintenance(ctx.lc, h, bringUpQmp(ctx.lc, h), 'off');
      await ctx.hold(30);
    },
  },
  {
    name: 'failback-both-ways',
    kind: 'routine',
    arbiter: 'witness',
    description:
      'steady; b crashes, a runs primary-failover; b back at once with a fresh secondary (qemu.launch), a resumes into it (a primary); ' +
      'steady 20 s; a crashes, b runs secondary-failover; a back as the fresh secondary, b resumes into it (roles swapped); steady 30 s',
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(10);
      await lose(ctx, 'b', 'crash', 'crash-b');
      await failback(ctx, 'b', 'failback-b');
      await ctx.hold(20);
      await lose(ctx, 'a', 'crash', 'crash-a');
      await failback(ctx, 'a', 'failback-a');
      await ctx.hold(30);
    },
  },
  {
    name: 'power-loss',
    kind: 'fault',
    arbiter: 'witness',
    description: 'steady; host b (the secondary) loses power and stays off; a runs primary-failover and runs solo',
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(10);
      await lose(ctx, 'b', 'powerLoss', 'power-loss-b');
      await ctx.hold(85);
    },
  },
  {
    name: 'network-faults',
    kind: 'fault',
    arbiter: 'witness',
    description:
      'steady; the management link between a and b dropped (one heartbeat path of two); three HELLOs signed with a wrong key sent to a; ' +
      'the witness killed; 150 s',
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(10);
      ctx.mark('cut-mgmt');
      await cutMgmtLink(ctx.lc.lab);
      ctx.mark('wrong-key');
      for (let i = 0; i < 3; i++) await sendWrongKeyHello(ctx.lc.lab, 'a');
      ctx.mark('witness-down');
      ctx.tl!.killWitness();
      await ctx.hold(150);
      await restoreMgmtLink(ctx.lc.lab);
    },
  },
  {
    name: 'isolate-primary',
    kind: 'fault',
    arbiter: 'witness',
    description:
      'steady; host a (the primary) cut off from b and the witness for 20 s: its lease runs out and it pauses its guest, the witness ' +
      'grants b the takeover (secondary-failover); healed: a hears the newer epoch and stays stale (failover.stepTimeoutMs 60000: see below)',
    async run(ctx) {
      // The lease stop's reply comes only once the link is back (QEMU's COLO thread is blocked on the cut
      // link meanwhile): with the default 2 s step timeout the agent reports "could not stop the guest"
      // and never counts the stop QEMU did make (reported as an agent bug); 60 s lets it count.
      await startSteady(ctx, ['failover.stepTimeoutMs=60000']);
      await ctx.hold(10);
      const survivor = agent(ctx.lc, 'b');
      const since = survivor.cursor();
      const at = Date.now();
      ctx.mark('isolate-a');
      await ctx.lc.lab.isolate('a');
      const fo = await waitFailoverDone(survivor, since, at, WAIT_MS);
      ctx.note(`a isolated: b ran ${fo.sequence} (trigger ${fo.trigger})`);
      await ctx.hold(20 - (Date.now() - at) / 1000);
      ctx.mark('heal');
      await ctx.lc.lab.heal();
      await agent(ctx.lc, 'a').waitForLog(agentState('stale'), WAIT_MS).catch(() => ctx.note('a never logged state stale'));
      await ctx.hold(90);
    },
  },
  {
    name: 'split-brain',
    kind: 'fault',
    arbiter: 'none',
    description: 'arbiter none; steady; a and b partitioned (both links) and left so: each side takes over, both run the guest at the same epoch',
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(10);
      const [a, b] = [agent(ctx.lc, 'a'), agent(ctx.lc, 'b')];
      const [sa, sb] = [a.cursor(), b.cursor()];
      const at = Date.now();
      ctx.mark('partition');
      await ctx.lc.lab.partition('a', 'b');
      const [fa, fb] = await Promise.all([waitFailoverDone(a, sa, at, WAIT_MS), waitFailoverDone(b, sb, at, WAIT_MS)]);
      ctx.note(`partition: a ran ${fa.sequence}, b ran ${fb.sequence}`);
      await ctx.hold(70);
    },
  },
  {
    name: 'failover-failed',
    kind: 'fault',
    arbiter: 'witness',
    description:
      'steady (failover.stepTimeoutMs 500); host a crashes; b starts secondary-failover and its QEMU is frozen (SIGSTOP) the moment the ' +
      'journal holds the decision: a step times out, b is in state failed; its QEMU thawed; a stays down',
    async run(ctx) {
      await startSteady(ctx, ['failover.stepTimeoutMs=500', 'qemu.commandTimeoutMs=500']);
      await ctx.hold(10);
      const qemu = ctx.lc.pair.side('secondary');
      const watch = onJournal(ctx.lc.stateDir('b'), runningDecision, () => qemu.kill('SIGSTOP'));
      const survivor = agent(ctx.lc, 'b');
      const since = survivor.cursor();
      ctx.mark('crash-a');
      await ctx.lc.lab.crash('a');
      await survivor.waitForLog(failoverFailed, WAIT_MS, { since });
      watch.close();
      ctx.mark('failed');
      qemu.kill('SIGCONT');
      await ctx.hold(85);
    },
  },
  {
    name: 'fencing-failed',
    kind: 'fault',
    arbiter: 'witness',
    description: 'steady (failover.fenceCommand exits 1, onFenceFailure abort); host a crashes; b is granted the takeover, the fence fails: no takeover, state failed; a stays down',
    async run(ctx) {
      await startSteady(ctx, [`failover.fenceCommand=${failingFence(ctx.lc)}`]);
      await ctx.hold(10);
      const survivor = agent(ctx.lc, 'b');
      const since = survivor.cursor();
      ctx.mark('crash-a');
      await ctx.lc.lab.crash('a');
      await survivor.waitForLog(agentState('failed'), WAIT_MS, { since });
      await ctx.hold(85);
    },
  },
  {
    name: 'qemu-lost',
    kind: 'fault',
    arbiter: 'witness',
    description:
      "steady; b's QEMU killed (its agent lives and says so): a runs primary-failover; 20 s later b's agent restarted with qemu.launch " +
      'and a secondary command that exits 1 at once (restart on-failure, 2 restarts): it exits three times and the agent gives up',
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(10);
      const survivor = agent(ctx.lc, 'a');
      const since = survivor.cursor();
      const at = Date.now();
      ctx.mark('kill-qemu-b');
      ctx.lc.lab.killProcess(ctx.lc.pair.side('secondary').pid);
      const fo = await waitFailoverDone(survivor, since, at, WAIT_MS);
      ctx.note(`b's QEMU killed: a ran ${fo.sequence} (trigger ${fo.trigger})`);
      await ctx.hold(20);
      const b = agent(ctx.lc, 'b');
      b.kill('SIGTERM');
      await b.exited;
      // A real command line with -incoming (the config requires it) that fails before QEMU starts: a wrong binary path.
      const cmd = await freshSecondaryCommand({ pair: ctx.lc.pair, host: 'secondary' });
      const argv = ['/bin/sh', '-c', 'echo "qemu: cannot open the disk image" >&2; exit 1', ...cmd.argv];
      ctx.mark('restart-b');
      const nb = await ctx.lc.startAgent('b', cmd.agentQmpAddress, [
        'qemu.launch.enabled=true',
        `qemu.launch.secondaryCommand=${JSON.stringify(argv)}`,
        'qemu.launch.restart=on-failure',
        'qemu.launch.maxRestarts=2',
        'qemu.launch.restartDelayMs=1000',
      ]);
      await nb.waitForLog((r) => String(r.msg).startsWith('gave up on the secondary QEMU'), WAIT_MS).catch(() => ctx.note('b never logged the give-up'));
      ctx.mark('gave-up');
      await ctx.hold(85);
    },
  },
  {
    name: 'checkpoint-stall',
    kind: 'fault',
    arbiter: 'witness',
    description:
      'steady (colo.checkpointStallMs 2000); the primary QEMU given x-checkpoint-delay 1000 ms: QEMU 7.2 under TCG deadlocks at the end of ' +
      'one of the first checkpoints (the guest stays stopped); 80 s',
    async run(ctx) {
      await startSteady(ctx, ['colo.checkpointStallMs=2000']);
      await ctx.hold(10);
      ctx.mark('checkpoint-delay');
      await ctx.lc.pair.side('primary').qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': 1000 });
      await agent(ctx.lc, 'a')
        .waitForLog((r) => r.msg === 'checkpoint stalled: STOP with no RESUME', WAIT_MS)
        .then((e) => ctx.note(`a: ${e.record?.msg}`))
        .catch(() => ctx.note('a never logged a stalled checkpoint'));
      ctx.mark('stalled');
      await ctx.hold(80);
    },
  },
  {
    name: 'checkpoint-stall-frozen-secondary',
    kind: 'fault',
    arbiter: 'witness',
    description:
      'QEMU 11.1 (checkpoints complete under TCG); steady (colo.checkpointStallMs 2000); x-checkpoint-delay 300 ms on the primary: ' +
      'checkpoints flow; the secondary QEMU frozen (SIGSTOP) at the STOP the primary emits for a checkpoint, so both guests stay stopped in it; 60 s; ' +
      'thawed (SIGCONT): the checkpoint completes and checkpoints flow again; 40 s',
    async run(ctx) {
      const { pair } = ctx.lc;
      const can = checkpointSupport(pair.version);
      if (!can.ok) throw new Error(can.reason);
      await startSteady(ctx, ['colo.checkpointStallMs=2000']);
      await ctx.hold(10);
      ctx.mark('checkpoint-delay');
      const log = new QemuCheckpointLog(pair.side('primary').qmp);
      try {
        await pair.side('primary').qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': 300 });
        await ctx.hold(10);
        ctx.note(`checkpoints flow: the primary QEMU ran ${log.pauses().pauses.length} in 10 s`);
        const secondary = pair.side('secondary');
        await atNextStop(pair.side('primary').qmp, () => secondary.kill('SIGSTOP'), WAIT_MS);
        ctx.mark('frozen');
        await ctx.hold(60);
        ctx.mark('thawed');
        secondary.kill('SIGCONT');
        await ctx.hold(40);
        ctx.note(`the primary QEMU's longest pause: ${Math.max(...log.pauses().pauses.map((p) => p.pauseUs / 1000))} ms`);
      } finally {
        log.close();
        pair.side('secondary').kill('SIGCONT');
      }
    },
  },
  {
    name: 'replication-stopped',
    kind: 'fault',
    arbiter: 'witness',
    description: "steady; an operator types x-colo-lost-heartbeat into the primary QEMU's monitor (COLO ends there, the guest keeps running); 150 s",
    async run(ctx) {
      await startSteady(ctx);
      await ctx.hold(10);
      ctx.mark('colo-stopped');
      await ctx.lc.pair.side('primary').qmp.execute('x-colo-lost-heartbeat');
      await ctx.hold(150);
    },
  },
];

/** Open the scenario's lab: the pair in COLO (a primary, b secondary), the witness when asked; no agents yet. Undefined after a skip. */
export async function openScenarioLab(scope: Scope, s: Scenario): Promise<{ lc: LabColo; tl: TrialLab | undefined } | undefined> {
  if (s.arbiter === 'witness') {
    const tl = await TrialLab.open(scope, { unresponsivePeerMs: 2000, fence: false });
    return tl && { lc: tl.lc, tl };
  }
  const lc = await startLabColoOrSkip(scope, { arbiter: 'none', diskSizeMb: 32 });
  return lc && { lc, tl: undefined };
}
