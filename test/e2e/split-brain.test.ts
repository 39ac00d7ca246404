/**
 * Split brain (issue 6), end to end on the lab of separate hosts (issue 12): real agent processes
 * (`node dist/cli.js run`) on a real QEMU COLO pair, each host a network namespace of its own
 * (test/lab/: host a the primary, host b the secondary), a real arbiter on host w (a witness agent
 * process, or a real etcd), and real faults: partitions and isolation are nftables drops inside
 * the hosts (no FIN, no RST), the arbiter down is a SIGKILLed witness or a hung (SIGSTOPped) w.
 * What ran the guest is asked of QEMU itself through the harness's own QMP socket, and followed
 * from QEMU's events so that not even a moment of two running primaries goes unseen
 * (test/helpers/split-brain.ts; the rig is test/lab/lab-split-brain.ts).
 *
 * The subtests run one after another; each brings up its own lab, pair, agents and arbiter. They
 * skip, saying why, without the lab (root, ip, nft), without QEMU that can do COLO, or without etcd.
 * They assert outcomes, never speeds; the handover gap QEMU's stamps show is printed as a comment.
 *
 * dist/ must be built (`npm test` does it first).
 */
import t, { type Test } from 'tap';
import { killAllChildren, logMsg, requireBuiltCli, sleep, type AgentProcess } from '../helpers/agent-process.js';
import { failoverDone, failoverStarting } from '../helpers/colo-agents.js';
import { mulberry32 } from '../helpers/prng.js';
import { describeObservation, grantedTakeover, guestStopped, type ArbiterKind, type Observation } from '../helpers/split-brain.js';
import type { ColoRole } from '../helpers/colo-pair.js';
import { startLabRigOrSkip, type LabRig as Rig } from '../lab/lab-split-brain.js';

const WAIT_MS = 15_000;

t.setTimeout(10 * 60_000);
t.teardown(killAllChildren);

/** The log tails of every process, for a failure message. */
function tails(rig: Rig, lines = 30): string {
  return rig.tails(lines);
}

/** Exactly `side` runs the guest as primary now, and never were there two at once. */
function assertOnlyRunningPrimary(t: Test, rig: Rig, obs: Observation, side: ColoRole, when: string): void {
  t.same(obs.runningPrimaries, [side], `${when}: exactly one running primary, the ${side} (${describeObservation(obs)})`);
  assertNeverTwo(t, rig);
}

function assertNeverTwo(t: Test, rig: Rig): void {
  const overlaps = rig.watch.overlaps();
  t.same(overlaps, [], `at no moment did both QEMUs run the guest as primary (by QEMU's event stamps)${overlaps.length ? `\n${rig.watch.describe()}` : ''}`);
  const gap = rig.watch.handoverGapMs();
  if (gap !== undefined) t.comment(`handover: the new primary started ${gap.toFixed(1)} ms after the old one stopped (QEMU event stamps)`);
}

/**
 * The side that continues was never paused on the way (its guest ran throughout). Asserted as
 * TODO when it was: a known race (the witness announces the new epoch before the agent adopted
 * it, and the lease guard reads the lease as run out meanwhile, stopping the guest of the very
 * primary that was granted `continue` until its failover resumes it).
 */
function assertNoNeedlessPause(t: Test, rig: Rig, side: ColoRole): void {
  const pauses = rig.watch.pauses(side);
  const what = pauses.map(([a, b]) => `${(b - a).toFixed(0)} ms`).join(', ');
  t.same(pauses, [], `the ${side}'s guest was never paused on its way${what ? ` (paused ${what})` : ''}`, {
    todo: pauses.length ? 'known race: lease guard stops the guest of the primary granted "continue" before its epoch is adopted' : false,
  });
}

/** Wait for a log record; on timeout fail with every process's tail instead of throwing. */
async function expectLog(t: Test, rig: Rig, agent: AgentProcess, predicate: Parameters<AgentProcess['waitForLog']>[0], what: string, since = 0): Promise<boolean> {
  try {
    await agent.waitForLog(predicate, WAIT_MS, { since });
    t.pass(what);
    return true;
  } catch (err) {
    t.fail(`${what}: ${(err as Error).message.split('\n')[0]}\n${tails(rig)}`);
    return false;
  }
}

function rigFor(t: Test, arbiter: ArbiterKind, sets?: string[]): Promise<Rig | undefined> {
  return startLabRigOrSkip(t, { arbiter, ...(sets && { sets }) });
}

/**
 * Test 4 asserts that nothing at all happens while the pair is healthy: with 100 ms x 3 a stall of
 * the shared machine (both agents missed each other's heartbeats at the same moment, seen here
 * under load) makes a healthy pair look cut off, and with the arbiter down that pauses the guest
 * as designed. The peer counts as lost only after 1.5 s of silence (1.2 s suspect) instead: the
 * test is about the arbiter going away, not about detection.
 */
const STALL_TOLERANT_HEARTBEAT = ['heartbeat.missThreshold=15', 'heartbeat.suspectMisses=12'];

const epochOf = (o: Observation, side: ColoRole) => o.sides[side].agent?.epoch?.epoch;

/** Test 1 (and its etcd twin): the link between the two hosts is cut, both still reach the arbiter. */
async function linkCut(t: Test, arbiter: ArbiterKind): Promise<void> {
  const rig = await rigFor(t, arbiter);
  if (!rig) return;
  const agents = { primary: rig.agent('primary'), secondary: rig.agent('secondary') };
  const sinceS = agents.secondary.cursor();
  await rig.cutPair();
  if (!(await expectLog(t, rig, agents.primary, failoverDone, 'the primary continues alone (primary-failover done)'))) return;
  const during = await rig.waitFor((o) => o.sides.primary.agent?.state === 'solo', WAIT_MS);
  assertOnlyRunningPrimary(t, rig, during.obs, 'primary', 'during the cut');
  t.equal(epochOf(during.obs, 'primary'), 1, 'the primary holds epoch 1 (its continue grant)');
  t.equal(during.obs.sides.primary.qemu.mode, 'none', 'its QEMU left COLO (primary failover)');
  t.equal(during.obs.sides.secondary.qemu.mode, 'secondary', 'the secondary QEMU is still a COLO secondary');
  t.equal(agents.secondary.find(failoverStarting, sinceS), undefined, 'the secondary started no failover');
  t.not(epochOf(during.obs, 'secondary'), 1, 'the secondary was not granted an epoch');

  await rig.heal();
  const after = await rig.waitFor((o) => o.sides.secondary.agent?.epoch?.stale === true && o.sides.secondary.agent?.state === 'stale', WAIT_MS);
  t.ok(after.ok, `after the heal the secondary is stale (${describeObservation(after.obs)})`);
  await sleep(500);
  const settled = await rig.observe();
  assertOnlyRunningPrimary(t, rig, settled, 'primary', 'after the heal');
  t.equal(agents.secondary.find(failoverStarting, sinceS), undefined, 'and the secondary never started a failover');
  assertNoNeedlessPause(t, rig, 'primary');
}

/**
 * Test 2 (and its etcd twin): the primary is cut from its peer and from the arbiter.
 *
 * Known product issue, asserted as TODO: on QEMU 7.2 the agent's QMP `stop` pauses the vCPUs and
 * emits STOP at once, but the command does not return while the partition lasts (QEMU then drains
 * and flushes its disks, and the replication disk's NBD child waits on the unreachable secondary),
 * so the agent logs "could not stop the guest" instead of "guest STOPPED" and its QMP stays hung
 * until the heal. The guest IS paused (QEMU's STOP event, and query-status after the heal).
 */
async function primaryIsolated(t: Test, arbiter: ArbiterKind): Promise<void> {
  const rig = await rigFor(t, arbiter);
  if (!rig) return;
  const agents = { primary: rig.agent('primary'), secondary: rig.agent('secondary') };
  const sinceP = agents.primary.cursor();
  await rig.isolate('primary');
  if (!(await expectLog(t, rig, agents.secondary, failoverDone, 'the secondary takes over (secondary-failover done)'))) return;
  const during = await rig.waitFor((o) => o.sides.secondary.agent?.state === 'solo' && o.sides.primary.qemu.running === false, WAIT_MS);
  t.ok(during.ok, `the isolated primary's guest is paused (${describeObservation(during.obs)})`);
  assertOnlyRunningPrimary(t, rig, during.obs, 'secondary', 'during the isolation');
  t.equal(epochOf(during.obs, 'secondary'), 1, 'the secondary holds epoch 1');
  t.equal(during.obs.sides.primary.agent?.guestStopped, 'lease', "the primary's status says guestStopped: lease");
  t.equal(agents.primary.find(failoverStarting, sinceP), undefined, 'the isolated primary started no failover');

  await rig.heal();
  const after = await rig.waitFor((o) => o.sides.primary.agent?.state === 'stale' && o.sides.primary.qemu.fromEvents !== true, WAIT_MS);
  t.ok(after.ok, `after the heal the old primary is stale and its QMP answers (${describeObservation(after.obs)})`);
  await sleep(1000);
  const settled = await rig.observe();
  t.equal(settled.sides.primary.qemu.status, 'paused', 'its guest stays paused (query-status)');
  t.equal(settled.sides.primary.agent?.epoch?.stale, true, 'its epoch is marked stale');
  assertOnlyRunningPrimary(t, rig, settled, 'secondary', 'after the heal');
  t.equal(agents.primary.find(logMsg('guest resumed (cont)'), sinceP), undefined, 'the old primary never resumed its guest');
  assertStopCompleted(t, agents.primary, sinceP);
  t.comment(`QEMU events: ${rig.watch.describe().replace(/\n/g, ' | ')}`);
}

/** Test 3: the secondary cut from the peer and the arbiter: the primary continues, the secondary does nothing. */
async function secondaryIsolated(t: Test, arbiter: ArbiterKind): Promise<void> {
  const rig = await rigFor(t, arbiter);
  if (!rig) return;
  const agents = { primary: rig.agent('primary'), secondary: rig.agent('secondary') };
  const sinceS = agents.secondary.cursor();
  await rig.isolate('secondary');
  if (!(await expectLog(t, rig, agents.primary, failoverDone, 'the primary continues alone (primary-failover done)'))) return;
  const during = await rig.waitFor((o) => o.sides.primary.agent?.state === 'solo', WAIT_MS);
  assertOnlyRunningPrimary(t, rig, during.obs, 'primary', 'during the isolation');
  t.equal(epochOf(during.obs, 'primary'), 1, 'the primary holds epoch 1');
  t.equal(during.obs.sides.secondary.qemu.mode, 'secondary', 'the secondary QEMU is untouched (COLO secondary)');
  await sleep(1000);
  t.equal(agents.secondary.find(failoverStarting, sinceS), undefined, 'the isolated secondary started no failover');
  if (arbiter === 'witness') t.ok(agents.secondary.find(logMsg('asked the witness'), sinceS), 'it asked the witness (out of reach: no verdict)');
  t.notOk(agents.secondary.find(grantedTakeover, sinceS), 'and was granted nothing');

  await rig.heal();
  const after = await rig.waitFor((o) => o.sides.secondary.agent?.state === 'stale', WAIT_MS);
  t.ok(after.ok, `after the heal the secondary is stale (${describeObservation(after.obs)})`);
  assertOnlyRunningPrimary(t, rig, after.obs, 'primary', 'after the heal');
  assertNoNeedlessPause(t, rig, 'primary');
}

/**
 * Test 4: the arbiter goes away while the pair is healthy (the witness SIGKILLed; etcd's host w
 * hung: every process of w SIGSTOPped, its port still completing handshakes in w's kernel):
 * nothing may happen, and it is used again once back.
 */
async function arbiterDown(t: Test, arbiter: ArbiterKind): Promise<void> {
  const rig = await rigFor(t, arbiter, STALL_TOLERANT_HEARTBEAT);
  if (!rig) return;
  const agents = { primary: rig.agent('primary'), secondary: rig.agent('secondary') };
  const since = { primary: agents.primary.cursor(), secondary: agents.secondary.cursor() };
  if (arbiter === 'witness') rig.killWitness();
  else {
    await rig.freezeArbiter();
    t.teardown(() => rig.thawArbiter()); // so that etcd's stop() can end it
  }
  const unreachable = await rig.waitFor((o) => o.sides.primary.agent?.arbiter.reachable === false && o.sides.secondary.agent?.arbiter.reachable === false, WAIT_MS);
  t.ok(unreachable.ok, `both agents notice the ${arbiter} is gone (${describeObservation(unreachable.obs)})`);
  // Sample for a few seconds: both stay peer-up, no guest stops, no failover.
  const seen = new Set<string>();
  const end = Date.now() + 4000;
  while (Date.now() < end) {
    const o = await rig.observe();
    for (const side of ['primary', 'secondary'] as const) seen.add(`${side}:${o.sides[side].agent?.state}:${o.sides[side].qemu.mode}:${o.sides[side].qemu.status}`);
    await sleep(200);
  }
  t.same([...seen].sort(), ['primary:peer-up:primary:running', 'secondary:peer-up:secondary:running'], 'both stayed peer-up, QEMUs running in their COLO modes');
  for (const side of ['primary', 'secondary'] as const) {
    const a = agents[side];
    t.equal(a.find((r) => typeof r.msg === 'string' && r.msg.startsWith('agent state '), since[side]), undefined, `the ${side} agent changed no state`);
    t.equal(a.find((r) => guestStopped(r) || failoverStarting(r), since[side]), undefined, `the ${side} agent stopped no guest and started no failover`);
  }
  const o = await rig.observe();
  assertOnlyRunningPrimary(t, rig, o, 'primary', `with the ${arbiter} down`);

  // And it comes back: both reach it again (with a witness, the primary holds its lease again).
  if (arbiter === 'witness') await rig.restartWitness();
  else await rig.thawArbiter();
  const back = await rig.waitFor(
    (o) =>
      o.sides.primary.agent?.arbiter.reachable === true &&
      o.sides.secondary.agent?.arbiter.reachable === true &&
      (arbiter !== 'witness' || (o.sides.primary.agent?.arbiter.leaseRemainingMs ?? 0) > 0),
    WAIT_MS,
  );
  t.ok(back.ok, `the ${arbiter} is reached again (${describeObservation(back.obs)})`);
}

/** Test 5: a partition that comes and goes: never two running primaries, and a consistent end. */
async function flapping(t: Test, arbiter: ArbiterKind): Promise<void> {
  const rig = await rigFor(t, arbiter);
  if (!rig) return;
  const seed = Number(process.env.COLO_FLAP_SEED ?? Date.now() % 2 ** 31);
  const rnd = mulberry32(seed);
  const cycles = 6;
  const steps: string[] = [];
  let maxRunning = 0;
  for (let i = 0; i < cycles; i++) {
    const cutMs = 200 + Math.round(rnd() * 200);
    const healMs = 200 + Math.round(rnd() * 200);
    await rig.cutPair();
    await sleep(cutMs);
    maxRunning = Math.max(maxRunning, (await rig.observe()).runningPrimaries.length);
    await rig.heal();
    await sleep(healMs);
    maxRunning = Math.max(maxRunning, (await rig.observe()).runningPrimaries.length);
    steps.push(`cut ${cutMs} ms / joined ${healMs} ms`);
  }
  t.comment(`flap seed=${seed} (COLO_FLAP_SEED): ${steps.join(', ')}`);
  t.ok(maxRunning <= 1, `never two running primaries in the samples (max ${maxRunning})`);
  // Let it settle: no decision in flight any more.
  const busy = new Set(['failing-over', 'peer-suspect', 'peer-down', 'arbitrating']);
  const settled = await rig.waitFor(
    (o) => ['primary', 'secondary'].every((s) => !busy.has(String(o.sides[s as ColoRole].agent?.state))),
    WAIT_MS,
  );
  t.ok(settled.ok, `the agents settle (${describeObservation(settled.obs)})`);
  const o = settled.obs;
  assertOnlyRunningPrimary(t, rig, o, o.runningPrimaries[0] ?? 'primary', 'after the flapping');
  const p = o.sides.primary.agent;
  const s = o.sides.secondary.agent;
  if (p?.state === 'solo' || s?.state === 'solo') {
    const winner: ColoRole = p?.state === 'solo' ? 'primary' : 'secondary';
    const loser: ColoRole = winner === 'primary' ? 'secondary' : 'primary';
    t.comment(`the flapping ended in a failover: ${winner} solo at epoch ${epochOf(o, winner)}`);
    t.same(o.runningPrimaries, [winner], 'the side that failed over runs the guest');
    t.equal(o.sides[loser].agent?.state, 'stale', 'the other side is stale');
    assertNoNeedlessPause(t, rig, winner);
  } else {
    t.comment('the flapping ended with the pair still joined');
    t.equal(p?.state, 'peer-up', 'primary peer-up');
    t.equal(s?.state, 'peer-up', 'secondary peer-up');
    t.equal(o.sides.primary.qemu.mode, 'primary', 'the primary QEMU still COLO primary');
    t.equal(o.sides.secondary.qemu.mode, 'secondary', 'the secondary QEMU still COLO secondary');
    t.equal(epochOf(o, 'primary'), 0, 'no epoch was granted');
  }
}

/** The agent's own QMP `stop` returned in time (see the known issue above: a TODO while it hangs). */
function assertStopCompleted(t: Test, agent: AgentProcess, since: number): void {
  const stopped = agent.find(guestStopped, since);
  const couldNot = agent.find(logMsg('could not stop the guest'), since);
  const late = agent.find((r) => r.msg === 'late QMP reply after timeout, discarded' && r.command === 'stop', since);
  const why = couldNot
    ? `QMP stop did not return in time on QEMU ${String(agent.find((r) => typeof r.profile === 'string')?.record?.profile ?? '7.2')} ` +
      `(${String((couldNot.record?.err as { message?: string } | undefined)?.message)}; ` +
      `${late ? `its reply came ${Math.round(Number(late.record?.elapsedMs))} ms after it was sent, after the heal` : 'no reply yet'}): ` +
      'the vCPUs were paused at once (STOP event), but the agent logged "could not stop the guest" and its QMP hung for the whole partition'
    : false;
  t.comment(
    `the agent's QMP stop: ${stopped ? `'guest STOPPED' logged at ${String(stopped.record?.time)}` : 'never reported done'}` +
      `${couldNot ? `; 'could not stop the guest' at ${String(couldNot.record?.time)}` : ''}${late ? `; late reply after ${Math.round(Number(late.record?.elapsedMs))} ms` : ''}`,
  );
  t.ok(stopped && !couldNot, "the agent's QMP stop completed in time ('guest STOPPED' logged, no 'could not stop the guest')", { todo: why });
}

if (requireBuiltCli(t)) {
  t.test('witness: link cut, witness reachable from both: exactly one side acts (the primary continues)', (t) => linkCut(t, 'witness'));

  t.test('witness: primary isolated from peer and witness: it pauses, the secondary takes over', (t) => primaryIsolated(t, 'witness'));

  t.test('witness: secondary isolated from peer and witness: the primary continues, the secondary does nothing', (t) => secondaryIsolated(t, 'witness'));

  t.test('witness down (SIGKILL) with the pair healthy: nothing happens', (t) => arbiterDown(t, 'witness'));

  t.test('witness: flapping partition: never two running primaries, a consistent end', (t) => flapping(t, 'witness'));

  t.test('etcd: link cut, etcd reachable from both: exactly one side acts (the primary continues)', (t) => linkCut(t, 'etcd'));

  t.test('etcd: primary isolated from peer and etcd: it pauses, the secondary takes over', (t) => primaryIsolated(t, 'etcd'));

  t.test('etcd: secondary isolated from peer and etcd: the primary continues, the secondary does nothing', (t) => secondaryIsolated(t, 'etcd'));

  t.test('etcd: flapping partition: never two running primaries, a consistent end', (t) => flapping(t, 'etcd'));

  t.test('etcd hung (SIGSTOP) with the pair healthy: nothing happens', (t) => arbiterDown(t, 'etcd'));
}
