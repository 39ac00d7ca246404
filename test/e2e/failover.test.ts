/**
 * End to end failover: real agent processes (`node dist/cli.js run`) on a real QEMU COLO pair on
 * the lab of separate hosts (test/lab/: host a runs the primary QEMU and its agent, host b the
 * secondary and its agent, each a network namespace with its own addresses and the documented
 * fixed ports). Faults are what they say: a lost host is `lab.crash` (every process of the host
 * SIGKILLed: the kernel closes its sockets) or `lab.powerLoss` (nft drops all its traffic, then
 * the kill: no FIN, no RST reaches the survivor); a QEMU-only or agent-only death kills that one
 * pid; a frozen QEMU or agent is SIGSTOP of that pid. Outcomes are checked in QEMU itself through
 * the harness's own QMP socket (a unix socket: reachable from here), and in the survivor's
 * failover journal.
 *
 * The subtests run one after another (tap's default inside a file): each starts a lab, two TCG
 * QEMUs and two agents, which keeps both cores of these machines busy. They assert states, log
 * records and QEMU's answers, never how fast anything went (test/bench/failover.ts measures that);
 * the timings the agents logged are printed as comments. Skipped with the reason without root,
 * ip or nft (no lab) or where this QEMU cannot do COLO.
 *
 * dist/ must be built (`npm test` does it first).
 */
import t, { type Test } from 'tap';
import { profileForVersion } from '../../src/colo/profile.js';
import { failoverSequence } from '../../src/colo/sequences.js';
import { agentState, killAllChildren, logMsg, peerTransition, requireBuiltCli, sleep } from '../helpers/agent-process.js';
import {
  failoverDone,
  failoverFailed,
  failoverResuming,
  failoverStarting,
  noTakeover,
  onJournal,
  readJournal,
  runningDecision,
  waitFailoverDone,
  type FailoverTiming,
  type JournalSnapshot,
} from '../helpers/colo-agents.js';
import { listBlockNodes, listChardevs, listObjects, queryColoStatus, queryStatus, type ColoPair, type ColoSide } from '../helpers/colo-pair.js';
import { startLabColoAgentsOrSkip, type LabColo, type PairHost } from '../lab/lab-colo.js';

/** A bound for a loaded 2-core machine (other QEMUs run beside these), not a target. */
const WAIT_MS = 30_000;

t.setTimeout(8 * 60_000);
t.teardown(killAllChildren);

/** The lab with the pair (a primary, b secondary) and both agents ready (arbiter none, as the example configs); undefined after a skip with the reason. */
function setup(t: Test, sets: string[] = []): Promise<LabColo | undefined> {
  return startLabColoAgentsOrSkip(t, { arbiter: 'none', sets });
}

function report(t: Test, what: string, timing: FailoverTiming): void {
  t.comment(
    `${what}: ${timing.sequence} (trigger ${timing.trigger}) sequence ${timing.sequenceMs} ms (failover done durationMs), ` +
      `fault -> failover starting ${timing.faultToStartMs} ms, fault -> failover done ${timing.faultToDoneMs} ms`,
  );
}

/** The survivor of a lost primary: the secondary-failover's end state (facts §2, §3). */
async function assertSecondaryFailoverState(t: Test, pair: ColoPair, survivor: ColoSide): Promise<void> {
  const st = await queryStatus(survivor);
  t.equal(st.status, 'running', 'the survivor QEMU runs the VM');
  t.equal(st.running, true);
  t.same(await queryColoStatus(survivor), { mode: 'none', 'last-mode': 'secondary', reason: 'request' }, 'COLO exited on request, last mode secondary');
  const ids = pair.colo.ids;
  const objects = await listObjects(survivor);
  for (const id of [ids.f1, ids.f2]) t.notOk(objects.includes(id), `object ${id} removed`);
  const chardevs = await listChardevs(survivor);
  for (const id of [ids.red0, ids.red1]) t.notOk(chardevs.includes(id), `chardev ${id} removed`);
  for (const id of [ids.mirror0, ids.compare1, ids.compare0, ids.compare0_0, ids.compare_out, ids.compare_out0]) {
    t.ok(chardevs.includes(id), `chardev ${id} added for the next secondary`);
  }
}

function assertFinishedJournal(t: Test, lc: LabColo, host: PairHost, sequence: string): JournalSnapshot | undefined {
  const j = readJournal(lc.journalPath(host));
  t.equal(j?.decision?.status, 'finished', 'the journal says finished');
  t.equal(j?.decision?.sequence, sequence);
  t.equal(j?.role?.role, 'primary', 'the journal records the role primary');
  const steps = j?.decision?.completedSteps ?? [];
  t.equal(new Set(steps).size, steps.length, 'no step recorded twice');
  return j;
}

/** The names of the steps a sequence must have completed (the optional yank may have failed). */
function requiredSteps(pair: ColoPair, sequence: 'primary-failover' | 'secondary-failover'): string[] {
  return failoverSequence(sequence, pair.colo, profileForVersion(pair.version))
    .steps.filter((s) => !s.optional)
    .map((s) => s.name);
}

/**
 * Lose `host`, its QEMU and agent with it: `crash` SIGKILLs its processes (the kernel closes their
 * sockets: FIN/RST reach the peer), `powerLoss` drops its traffic first (nothing reaches the peer).
 * Returns the wall-clock time of the fault.
 */
async function loseHost(lc: LabColo, host: PairHost, how: 'crash' | 'powerLoss'): Promise<number> {
  const at = Date.now();
  await (how === 'crash' ? lc.lab.crash(host) : lc.lab.powerLoss(host));
  return at;
}

if (requireBuiltCli(t)) {
  // Power loss here; the crashed primary host (FIN/RST reach the survivor) is the fault of the two journal tests below.
  t.test('primary host lost (power loss: no FIN, no RST): the secondary runs secondary-failover', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.b!;
    const since = survivor.cursor();
    const faultAt = await loseHost(lc, 'a', 'powerLoss');
    const timing = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    report(t, 'primary host lost (power loss)', timing);
    t.equal(timing.sequence, 'secondary-failover');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });
    t.ok(survivor.alive, 'the survivor agent still runs');
    await assertSecondaryFailoverState(t, pair, pair.secondary);
    const j = assertFinishedJournal(t, lc, 'b', 'secondary-failover');
    t.same(
      requiredSteps(pair, 'secondary-failover').filter((n) => !j?.decision?.completedSteps.includes(n)),
      [],
      'every required step is recorded as completed',
    );
  });

  t.test('secondary host lost (power loss: no FIN, no RST): the primary runs primary-failover', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.a!;
    const since = survivor.cursor();
    const faultAt = await loseHost(lc, 'b', 'powerLoss');
    const timing = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    report(t, 'secondary host lost (power loss)', timing);
    t.equal(timing.sequence, 'primary-failover');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });
    const st = await queryStatus(pair.primary);
    t.equal(st.status, 'running', 'the primary QEMU runs the VM');
    t.same(await queryColoStatus(pair.primary), { mode: 'none', 'last-mode': 'primary', reason: 'request' }, 'COLO exited on request, last mode primary');
    const ids = pair.colo.ids;
    const objects = await listObjects(pair.primary);
    for (const id of [ids.comp0, ids.iothread1, ids.m0, ids.redire0, ids.redire1]) t.notOk(objects.includes(id), `object ${id} removed`);
    const nodes = (await listBlockNodes(pair.primary)).map((n) => n['node-name']);
    t.notOk(nodes.includes(pair.colo.replicationNode), `block node ${pair.colo.replicationNode} removed`);
    assertFinishedJournal(t, lc, 'a', 'primary-failover');
  });

  t.test('only the primary QEMU killed, its agent alive: the fast path, the peer never declared down', async (t) => {
    // 2 s of silence before down: a failover that starts well before that did not come from the heartbeat.
    const lc = await setup(t, ['heartbeat.missThreshold=20', 'heartbeat.suspectMisses=10']);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.b!;
    const primaryAgent = lc.agents.a!;
    const since = survivor.cursor();
    const sinceP = primaryAgent.cursor();
    const faultAt = Date.now();
    lc.lab.killProcess(pair.primary.pid); // the QEMU alone
    const timing = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    report(t, 'primary QEMU killed (fast path)', timing);
    t.ok(timing.trigger === 'peer-qemu-gone' || timing.trigger === 'colo-exit-error', `fast-path trigger (${timing.trigger}), not peer-down`);
    await primaryAgent.waitForLog(logMsg('our QEMU is gone'), WAIT_MS, { since: sinceP });
    await primaryAgent.waitForLog(agentState('qemu-lost'), WAIT_MS, { since: sinceP });
    await sleep(300); // any late heartbeat verdict would be logged by now
    t.equal(survivor.find(peerTransition('down'), since), undefined, 'the secondary never declared the peer down');
    t.equal(survivor.find(peerTransition('suspect'), since), undefined, 'nor suspect');
    t.ok(primaryAgent.alive, 'the primary agent still runs');
    t.equal(primaryAgent.find((r) => failoverStarting(r) || failoverDone(r), sinceP), undefined, 'the primary agent did not fail over');
    const st = await queryStatus(pair.secondary);
    t.equal(st.status, 'running');
    t.same(await queryColoStatus(pair.secondary), { mode: 'none', 'last-mode': 'secondary', reason: 'request' });
    assertFinishedJournal(t, lc, 'b', 'secondary-failover');
  });

  t.test('agent crash mid-sequence: a restarted agent resumes the failover from the journal and finishes it once', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair } = lc;
    const first = lc.agents.b!;
    let frozenAt: JournalSnapshot | undefined;
    // The moment the decision is on disk (before or during its first steps), freeze the agent.
    const watch = onJournal(lc.stateDir('b'), runningDecision, (j) => {
      first.kill('SIGSTOP');
      frozenAt = j;
    });
    t.teardown(() => watch.close());
    const since = first.cursor();
    await loseHost(lc, 'a', 'crash');
    const seen = await Promise.race([watch.matched, sleep(WAIT_MS).then(() => undefined)]);
    t.ok(seen, 'the journal showed a running decision');
    if (!seen || !frozenAt) return;
    await sleep(200); // let anything already in flight land in the journal
    const atStop = readJournal(lc.journalPath('b'));
    if (atStop?.decision?.status !== 'running') {
      t.fail(
        `race lost: the journal says ${atStop?.decision?.status} although the agent was SIGSTOPped as soon as it showed a running decision ` +
          `(completed then: ${JSON.stringify(frozenAt.decision?.completedSteps)})`,
      );
      return;
    }
    const decisionId = atStop.decision.id;
    const doneBefore = [...atStop.decision.completedSteps];
    t.comment(`frozen with completedSteps ${JSON.stringify(frozenAt.decision?.completedSteps)}; after 200 ms: ${JSON.stringify(doneBefore)}`);
    t.equal(first.find(failoverDone, since), undefined, 'the frozen agent had not finished');

    const second = await lc.restartAgent('b');
    t.equal((await first.exited).signal, 'SIGKILL', 'the first agent was SIGKILLed while frozen');
    const resumed = await second.waitForLog(failoverResuming, WAIT_MS);
    t.equal(resumed.record?.decision, decisionId, 'it resumes the same decision');
    t.same(resumed.record?.alreadyDone, doneBefore, 'with the steps the first agent had completed');
    const end = await second.waitForLog((r) => failoverDone(r) || failoverFailed(r), WAIT_MS);
    t.ok(failoverDone(end.record!), `the resumed failover succeeded${failoverFailed(end.record!) ? `: ${JSON.stringify(end.record?.err)}` : ''}`);
    t.comment(`resumed run: sequence ${end.record?.durationMs} ms`);
    await second.waitForLog(agentState('solo'), WAIT_MS);
    const start = second.find(agentState('failing-over'));
    t.match(String(start?.record?.reason), /^resuming secondary-failover from the journal/, 'the new agent went straight to the journal\'s failover');
    await sleep(500);
    t.equal(second.find(failoverStarting), undefined, 'the new agent started no second failover');
    t.equal(second.filter(failoverResuming).length, 1, 'and resumed exactly once');

    const j = assertFinishedJournal(t, lc, 'b', 'secondary-failover');
    t.equal(j?.decision?.id, decisionId, 'one decision, the one begun before the crash');
    const steps = j?.decision?.completedSteps ?? [];
    t.same(steps.slice(0, doneBefore.length), doneBefore, 'the steps done before the crash come first, unrepeated');
    t.same(
      requiredSteps(pair, 'secondary-failover').filter((n) => !steps.includes(n)),
      [],
      'every required step is recorded as completed',
    );
    await assertSecondaryFailoverState(t, pair, pair.secondary);
  });

  t.test('survivor QEMU frozen during the sequence: the step times out, the agent reports failed and stays responsive', async (t) => {
    const lc = await setup(t, ['failover.stepTimeoutMs=500', 'qemu.commandTimeoutMs=500']);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.b!;
    t.teardown(() => pair.secondary.kill('SIGCONT'));
    const watch = onJournal(lc.stateDir('b'), runningDecision, () => pair.secondary.kill('SIGSTOP'));
    t.teardown(() => watch.close());
    const since = survivor.cursor();
    await loseHost(lc, 'a', 'crash');
    const seen = await Promise.race([watch.matched, sleep(WAIT_MS).then(() => undefined)]);
    if (!seen) {
      t.fail(`the journal never showed a running decision\n${survivor.tail(30)}`);
      return;
    }
    const failed = await survivor.waitForLog((r) => failoverFailed(r) || failoverDone(r), WAIT_MS, { since });
    t.ok(failoverFailed(failed.record!), 'the failover FAILED (the QEMU was frozen)');
    const err = failed.record?.err as { code?: string; message?: string; step?: string } | undefined;
    t.equal(err?.code, 'COLO_STEP_TIMEOUT', `the error is the step's timeout: ${err?.message}`);
    t.match(String(err?.message), /no reply within 500 ms/);
    await survivor.waitForLog(agentState('failed'), WAIT_MS, { since });
    const j = readJournal(lc.journalPath('b'));
    t.equal(j?.decision?.status, 'failed', 'the journal records the failure');
    t.equal(j?.decision?.error?.code, 'COLO_STEP_TIMEOUT');
    t.equal(j?.role, null, 'no role change recorded');
    t.ok(survivor.alive, 'the agent is still alive');

    pair.secondary.kill('SIGCONT');
    survivor.kill('SIGTERM');
    const exit = await Promise.race([survivor.exited, sleep(10_000).then(() => undefined)]);
    t.ok(exit, 'the agent exits on SIGTERM');
    t.same(exit, { code: 0, signal: null }, 'cleanly (exit code 0)');
    t.ok(survivor.find(agentState('stopped'), since), 'after logging state stopped');
  });

  t.test('a crashed peer AGENT whose QEMU lives: no takeover; once that QEMU dies too, the failover runs', async (t) => {
    // failover.reprobeIntervalMs is 200 on the lab's agents.
    const lc = await setup(t);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.b!;
    const since = survivor.cursor();
    lc.lab.killProcess(lc.agents.a!.pid); // the agent alone
    const refused = await survivor.waitForLog(noTakeover, WAIT_MS, { since });
    t.equal((refused.record?.probe as { verdict?: string } | undefined)?.verdict, 'alive', 'the probe found the primary QEMU alive');
    await survivor.waitForLog(agentState('peer-agent-lost'), WAIT_MS, { since });
    await sleep(2000);
    const probes = survivor.filter(logMsg('probed the peer QEMU'), since).map((e) => `${e.record?.verdict} (${e.record?.detail})`);
    const premature = survivor.find((r) => failoverStarting(r) || agentState('failing-over')(r), since);
    if (premature) {
      // Split brain: the VM now runs on both sides. Nothing after this is meaningful.
      t.fail(
        `the secondary took over while the primary QEMU was alive (${String(premature.record?.reason)}); ` +
          `its probes of ${pair.colo.primaryHost}:${pair.colo.mirrorPort} said, in order: ${probes.join(', ')}`,
      );
      return;
    }
    const verdicts = survivor.filter(noTakeover, since).map((e) => (e.record?.probe as { verdict?: string } | undefined)?.verdict);
    t.ok(verdicts.length >= 3, `it kept re-probing (${verdicts.length} decisions, probes: ${probes.join(', ')})`);
    t.same([...new Set(verdicts)], ['alive'], 'every probe said alive');
    t.equal((await queryColoStatus(pair.secondary)).mode, 'secondary', 'the secondary QEMU is still in COLO mode secondary');
    t.equal((await queryColoStatus(pair.primary)).mode, 'primary', 'and the primary still primary');

    const sinceKill = survivor.cursor();
    const faultAt = Date.now();
    lc.lab.killProcess(pair.primary.pid); // now its QEMU
    const timing = await waitFailoverDone(survivor, sinceKill, faultAt, WAIT_MS);
    report(t, 'primary QEMU killed after its agent', timing);
    t.equal(timing.sequence, 'secondary-failover');
    await assertSecondaryFailoverState(t, pair, pair.secondary);
    assertFinishedJournal(t, lc, 'b', 'secondary-failover');
  });
}
