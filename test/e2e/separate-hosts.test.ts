/**
 * Two separate hosts (network namespaces of the lab, test/lab/), roles swapped after a failback,
 * then only an AGENT dies: its peer must not take over, because the guest's QEMU still lives.
 *
 * On one loopback both hosts share addresses and ports, which hid a real bug: an agent that
 * picks the peer's address by the ROLE the peer plays (not by the host it is) probes itself
 * once the roles are swapped, finds nothing listening, and takes over from a live QEMU. Here each
 * host has its own addresses and port space (the documented fixed ports on both), so probing the
 * wrong address cannot succeed by accident.
 *
 * Run with arbiter witness (w) and with arbiter none:
 * 1. a primary, b secondary, steady;
 * 2. power loss of a (nft drop, then every process of a SIGKILLed: no FIN/RST reaches b) ->
 *    b runs the secondary failover and runs solo;
 * 3. power on a; a's agent starts with qemu.launch and launches a fresh secondary on a (its own
 *    addresses, red0/red1 dialling b); the agents resume replication with roles swapped
 *    (b primary in COLO, a secondary);
 * 4. kill -9 of b's AGENT only (its QEMU keeps running the guest): for longer than detection +
 *    arbitration, a must never leave COLO secondary nor start a failover, and at every moment
 *    exactly one QEMU runs the guest as primary (PrimaryWatch, from QEMU's own events);
 *    b's agent restarted, steady again;
 * 5. the mirror: kill -9 of a's agent only: b must not run a primary failover (stays COLO primary).
 *
 * Until the agent derives the peer's host from the host it is (not from its role), step 4 fails:
 * a probes its own address, sees the peer's QEMU "gone" and takes over. Every probe and decision
 * the agents logged is printed, so a failure says why.
 */
import t, { type Test } from 'tap';
import { freshSecondaryCommand } from '../../src/qemu/colo-launch.js';
import { QmpClient } from '../../src/qmp/index.js';
import { agentState, killAllChildren, logMsg, requireBuiltCli, sleep, type AgentProcess, type LogPredicate } from '../helpers/agent-process.js';
import { coloModeSeen, failoverStarting, noTakeover, waitFailoverDone } from '../helpers/colo-agents.js';
import { queryColoStatus, queryStatus } from '../helpers/colo-pair.js';
import { PrimaryWatch, type WatchedPair } from '../helpers/split-brain.js';
import { describeAgents, startLabColoOrSkip, steadyProblems, waitAgentStatuses, type LabArbiter, type LabColo, type PairHost } from '../lab/lab-colo.js';

const WAIT_MS = 30_000;
/** drive-mirror of the disk and migration of the guest's RAM under TCG on 2 busy cores. */
const RESUME_WAIT_MS = 90_000;
/**
 * How long an agent-only death is watched: detection (100 ms x 3), the probe (250 ms), re-probes
 * (200 ms), the witness's lease (500 ms) and the failover itself take well under 2 s.
 */
const WATCH_MS = 5000;

t.teardown(killAllChildren);

const resumed: LogPredicate = (r) => r.component === 'agent' && r.msg === 'replication resumed: the guest is protected again';
const probed: LogPredicate = (r) => r.msg === 'probed the peer QEMU';
/** Anything that says the agent decided about a takeover, or ran one. */
const takeoverTalk: LogPredicate = (r) => probed(r) || noTakeover(r) || failoverStarting(r) || (r.component === 'takeover-gate' && typeof r.msg === 'string');

/** What an agent said about probes and takeovers since `since`, one line each. */
function decisions(agent: AgentProcess, since: number): string {
  const lines = agent.filter(takeoverTalk, since).map((e) => {
    const { level, time, pid, hostname, component, ...rest } = e.record!;
    void level;
    void time;
    void pid;
    void hostname;
    return `  [${agent.name}] ${component ?? ''}: ${JSON.stringify(rest)}`;
  });
  return lines.length ? lines.join('\n') : `  [${agent.name}] (no probe or takeover decision logged)`;
}

/** Asserts the steady state (both agents peer-up, the arbiter reachable, the primary's lease held); prints the agents' logs when it does not come. */
async function assertSteady(t: Test, lc: LabColo, primary: PairHost, what: string): Promise<boolean> {
  const why = await waitSteady(lc, primary);
  t.equal(why, '', `${what} (${await describeAgents(lc)})`);
  if (why !== '') t.comment(`agents' logs:\n${lc.transcript(40)}`);
  return why === '';
}

function waitSteady(lc: LabColo, primary: PairHost, timeoutMs = 20_000): Promise<string> {
  return waitAgentStatuses(lc, timeoutMs, (st) => steadyProblems(lc.arbiter, primary, st));
}

/** A QMP client of our own on a QEMU the agent launched (its harness socket appears once it is up). */
async function harnessClient(t: Test, address: string): Promise<QmpClient> {
  const c = new QmpClient({ address, reconnect: { initialMs: 50, maxMs: 200 } });
  t.teardown(() => c.close());
  c.connect().catch(() => undefined);
  await c.waitUntilReady(WAIT_MS);
  return c;
}

/**
 * Kill only `victim`'s agent and watch for WATCH_MS: the survivor must start no failover and stay
 * in its COLO mode, and exactly one QEMU must run the guest as primary all along. Returns whether
 * the survivor held (the rest of the scenario means nothing after a takeover).
 */
async function killAgentOnly(t: Test, lc: LabColo, watch: PrimaryWatch, victim: PairHost, survivorMode: 'primary' | 'secondary', survivorQemu: QmpClient): Promise<boolean> {
  const survivorHost: PairHost = victim === 'a' ? 'b' : 'a';
  const survivor = lc.agents[survivorHost]!;
  const since = survivor.cursor();
  const before = await describeAgents(lc);
  lc.lab.killProcess(lc.agents[victim]!.pid);
  await lc.agents[victim]!.exited;
  // The whole window, even after a failover started: its end (two primaries) is what the watch must show.
  await sleep(WATCH_MS);
  const started = survivor.find(failoverStarting, since);
  const mode = (await queryColoStatus(survivorQemu).catch((e: Error) => ({ mode: `? (${e.message})` }))).mode;
  const explain = `before: ${before}\nafter: ${await describeAgents(lc)}\n${survivor.name} said:\n${decisions(survivor, since)}\nQEMU events:\n${watch.describe()}`;
  t.comment(`kill -9 of ${victim}'s agent; ${survivor.name} decided:\n${decisions(survivor, since)}`);
  const held = started === undefined && mode === survivorMode;
  t.ok(started === undefined, `${survivor.name} starts no failover while ${victim}'s QEMU lives (watched ${WATCH_MS} ms)`, held ? {} : { diagnostic: true, explain });
  t.equal(mode, survivorMode, `${survivorHost}'s QEMU is still COLO ${survivorMode}`);
  t.same(watch.overlaps(), [], 'never two QEMUs running the guest as primary', { events: watch.describe() });
  const primaries = (['primary', 'secondary'] as const).filter((k) => watch.runningPrimary(k));
  t.equal(primaries.length, 1, `exactly one QEMU runs the guest as primary now (${primaries.join(', ') || 'none'})`);
  if (!held) t.comment(`agents' logs:\n${lc.transcript(40)}`);
  return held;
}

async function scenario(t: Test, arbiter: LabArbiter): Promise<void> {
  const lc = await startLabColoOrSkip(t, { arbiter });
  if (!lc) return;
  const { lab, pair } = lc;
  t.comment(`lab slot ${lab.slot}: a ${lab.addr('a', 'rep')}/${lab.addr('a', 'mgmt')}, b ${lab.addr('b', 'rep')}/${lab.addr('b', 'mgmt')}; control a ${lab.controlAddr('a')}, b ${lab.controlAddr('b')}`);

  // 1. a primary, b secondary, steady.
  await Promise.all([lc.startAgent('a', pair.side('primary').agentQmpAddress), lc.startAgent('b', pair.side('secondary').agentQmpAddress)]);
  await Promise.all([lc.agents.a!.waitForLog(coloModeSeen('primary'), WAIT_MS), lc.agents.b!.waitForLog(coloModeSeen('secondary'), WAIT_MS)]);
  await assertSteady(t, lc, 'a', 'steady: a primary, b secondary');
  const watch1 = await PrimaryWatch.start(pair);
  t.teardown(() => watch1.close());

  // 2. Power loss of a: b takes over.
  const b = lc.agents.b!;
  let since = b.cursor();
  const faultAt = Date.now();
  const killed = await lab.powerLoss('a');
  watch1.killed('primary', Date.now());
  t.comment(`power loss of a: killed ${killed.length} processes`);
  const fo = await waitFailoverDone(b, since, faultAt, WAIT_MS);
  t.equal(fo.sequence, 'secondary-failover', `b ran the secondary failover (${fo.faultToDoneMs} ms after the power loss)`);
  await b.waitForLog(agentState('solo'), WAIT_MS, { since });
  t.match(await queryStatus(pair.side('secondary')), { running: true }, "b's QEMU runs the guest");
  t.same(watch1.overlaps(), [], 'no moment with two primaries during the failover', { events: watch1.describe() });
  watch1.close();

  // 3. Power on a; its agent launches a fresh secondary there; replication resumes with roles swapped.
  await lab.powerOn('a');
  since = b.cursor();
  const cmd = await freshSecondaryCommand({ pair, host: 'primary' });
  const launchSets = ['qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(cmd.argv)}`, 'qemu.launch.restart=no'];
  const a = await lc.startAgent('a', cmd.agentQmpAddress, launchSets);
  const launched = await a.waitForLog(logMsg('launched the secondary QEMU'), WAIT_MS);
  t.match(launched.record, { reason: /stale/ }, "a's agent launched a fresh secondary: b holds a newer epoch");
  const aQemu = await harnessClient(t, cmd.harnessQmpAddress);
  await a.waitForLog(agentState('ready-secondary'), WAIT_MS);
  const done = (await b.waitForLog(resumed, RESUME_WAIT_MS, { since })).record ?? {};
  t.equal(done.sequence, 'secondary-resume', `replication resumed into a (${JSON.stringify({ pauseMs: done.pauseMs, resyncMs: done.resyncMs })})`);
  t.match(await queryColoStatus(pair.side('secondary')), { mode: 'primary' }, "roles swapped: b's QEMU is COLO primary");
  t.match(await queryColoStatus(aQemu), { mode: 'secondary' }, "roles swapped: a's fresh QEMU is COLO secondary");
  await assertSteady(t, lc, 'b', 'steady with roles swapped');
  const swapped: WatchedPair = { side: (role) => (role === 'primary' ? pair.side('secondary') : { qmp: aQemu }) };

  // 4. kill -9 of b's agent only: a must not take over from b's live QEMU.
  const watch2 = await PrimaryWatch.start(swapped);
  t.teardown(() => watch2.close());
  if (!(await killAgentOnly(t, lc, watch2, 'b', 'secondary', aQemu))) {
    t.comment('a took over from a live QEMU: the rest of the scenario (restart b, the mirror case) is not run');
    return;
  }
  await lc.startAgent('b', pair.side('secondary').agentQmpAddress);
  await assertSteady(t, lc, 'b', `b's agent restarted: steady again`);

  // 5. The mirror: kill -9 of a's agent only: b must stay COLO primary.
  if (!(await killAgentOnly(t, lc, watch2, 'a', 'primary', pair.side('secondary').qmp))) return;
  await lc.startAgent('a', cmd.agentQmpAddress, launchSets);
  await assertSteady(t, lc, 'b', "a's agent restarted (adopting its QEMU): steady again");
  t.same(watch2.overlaps(), [], 'never two primaries with the roles swapped', { events: watch2.describe() });
}

if (requireBuiltCli(t)) {
  t.test('separate hosts, arbiter witness: power loss, failback with roles swapped, then an agent-only death is no reason to take over', (t) => scenario(t, 'witness'));
  t.test('separate hosts, arbiter none: power loss, failback with roles swapped, then an agent-only death is no reason to take over', (t) => scenario(t, 'none'));
}
