/**
 * Continuous replication end to end (issue 8): real agent processes on a real QEMU COLO pair, on
 * the lab of separate hosts (test/lab/lab-colo.ts: host a starts as the primary, host b as the
 * secondary, each a network namespace with its own addresses and the documented fixed ports).
 * After a failover, the lost host comes back with a fresh secondary QEMU and its agent restarted
 * on it; the agents' handshake (ready to be secondary -> resume) must bring the pair back into
 * COLO by itself, and a second failover must work after that. In the first scenario the test
 * starts the fresh secondary (startFreshSecondary, inside b); in the second the returning agent
 * launches it itself (qemu.launch, inside a), once its peer's newer epoch tells it that it lost
 * the guest.
 *
 * The losses: scenario 1 loses b by power loss (nft drop, then every process SIGKILLed: no FIN,
 * no RST; power on, then the fresh secondary), then by a crash (lab.crash: the kernel closes the
 * sockets); scenario 2 loses a by a crash, then the new primary b by power loss, so that the
 * final takeover runs with the roles swapped and no FIN/RST to go by (the case where an agent
 * that aimed its probe by role rather than by host would look at its own address).
 *
 * Outcomes are read from QEMU itself through the harness's QMP sockets. Timings are printed as
 * comments (bench:failback measures them); nothing here asserts speed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { QmpClient } from '../../src/qmp/index.js';
import { freshSecondaryCommand, startFreshSecondary, type FreshSecondary } from '../../src/qemu/colo-launch.js';
import { agentState, killAllChildren, logMsg, requireBuiltCli, type AgentProcess, type LogPredicate } from '../helpers/agent-process.js';
import { waitFailoverDone } from '../helpers/colo-agents.js';
import { listBlockNodes, listObjects, queryColoStatus, queryStatus, type QmpTarget } from '../helpers/colo-pair.js';
import { errorLines, scrapeSample } from '../helpers/observe.js';
import { BRING_UP_HOST, startLabColoAgentsOrSkip, waitAgentStatuses, type LabColo, type PairHost } from '../lab/lab-colo.js';

/** Bounds for a loaded 2-core machine, not targets. */
const WAIT_MS = 30_000;
/** drive-mirror of a 64 MiB disk, migration of the guest's RAM, under TCG on 2 busy cores. */
const RESUME_WAIT_MS = 120_000;

t.setTimeout(10 * 60_000);
t.teardown(killAllChildren);

const resumed: LogPredicate = (r) => r.component === 'agent' && r.msg === 'replication resumed: the guest is protected again';
const readySecondary = agentState('ready-secondary');

/** The lab with the pair (a primary, b secondary) and both agents ready (arbiter none; failover.reprobeIntervalMs 200). */
function setup(t: Test): Promise<LabColo | undefined> {
  return startLabColoAgentsOrSkip(t, { arbiter: 'none' });
}

/** The lost host comes back: a fresh secondary QEMU on `host` (inside it), its agent restarted on it. */
async function comeBack(lc: LabColo, host: PairHost): Promise<{ qemu: FreshSecondary; agent: AgentProcess }> {
  const qemu = await startFreshSecondary({ pair: lc.pair, host: host === BRING_UP_HOST.primary ? 'primary' : 'secondary' });
  const agent = await lc.startAgent(host, qemu.agentQmpAddress);
  return { qemu, agent };
}

/**
 * The lost primary host comes back with qemu.launch on: its agent, restarted, learns from the
 * peer's epoch that it is stale and launches the fresh secondary itself. The QEMU runs in its own
 * session (it outlives the agent) inside the host: the lab's teardown kills it with every other
 * process of the host.
 */
async function comeBackLaunching(t: Test, lc: LabColo, host: PairHost): Promise<{ qemu: QmpClient; agent: AgentProcess; pid: () => number | undefined }> {
  const cmd = await freshSecondaryCommand({ pair: lc.pair, host: host === BRING_UP_HOST.primary ? 'primary' : 'secondary' });
  const stateDir = lc.stateDir(host);
  const pid = (): number | undefined => {
    try {
      return (JSON.parse(readFileSync(join(stateDir, 'qemu-launch.json'), 'utf8')) as { pid: number }).pid;
    } catch {
      return undefined;
    }
  };
  const sets = ['qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(cmd.argv)}`, 'qemu.launch.restart=no'];
  const agent = await lc.startAgent(host, cmd.agentQmpAddress, sets);
  const launched = await agent.waitForLog(logMsg('launched the secondary QEMU'), WAIT_MS);
  t.match(launched.record, { reason: /stale/ }, 'launched because the peer holds a newer epoch');
  const qemu = new QmpClient({ address: cmd.harnessQmpAddress, reconnect: { initialMs: 50, maxMs: 200 } });
  t.teardown(() => qemu.close());
  qemu.connect().catch(() => undefined); // the socket appears once QEMU is up
  await qemu.waitUntilReady(WAIT_MS);
  return { qemu, agent, pid };
}

async function assertColo(t: Test, primary: QmpTarget, secondary: QmpTarget, what: string): Promise<void> {
  t.match(await queryColoStatus(primary), { mode: 'primary' }, `${what}: the primary QEMU is in COLO as primary`);
  t.match(await queryColoStatus(secondary), { mode: 'secondary' }, `${what}: the new secondary QEMU is in COLO as secondary`);
  t.match(await queryStatus(primary), { running: true }, `${what}: the guest runs`);
}

/**
 * A routine failback is no incident on the returning host: its agent, stale (the peer took over
 * under a newer epoch) beside a QEMU that runs no guest (a fresh secondary), logs nothing at
 * level error or above and counts no guest stop for staleness (it had no guest to pause).
 */
async function assertQuietReturn(t: Test, lc: LabColo, host: PairHost, agent: AgentProcess): Promise<void> {
  t.ok(agent.find(agentState('stale')), `${host}'s returning agent went stale (the peer holds a newer epoch)`);
  const errors = errorLines(agent);
  t.same(
    errors.map((e) => e.line),
    [],
    `${host}'s returning agent logged no line at level error or above during the failback`,
  );
  const stops = await scrapeSample(lc.metricsAddress(host), 'colo_agent_guest_stops_total', { reason: 'stale' });
  t.ok(stops === undefined || stops === 0, `${host}: colo_agent_guest_stops_total{reason="stale"} absent or 0 (it is ${stops})`);
}

if (requireBuiltCli(t)) {
  t.test('secondary host lost -> primary failover -> fresh secondary -> automatic resume -> COLO; then lost again -> failover again', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair, lab } = lc;
    const primary = lc.agents.a!;
    let since = primary.cursor();
    let faultAt = Date.now();
    await lab.powerLoss('b');
    const first = await waitFailoverDone(primary, since, faultAt, WAIT_MS);
    t.equal(first.sequence, 'primary-failover');
    await primary.waitForLog(agentState('solo'), WAIT_MS, { since });

    await lab.powerOn('b');
    since = primary.cursor();
    const back = await comeBack(lc, 'b');
    await back.agent.waitForLog(readySecondary, WAIT_MS);
    const done = (await primary.waitForLog(resumed, RESUME_WAIT_MS, { since })).record ?? {};
    t.comment(`resume: ${JSON.stringify({ sequence: done.sequence, pauseMs: done.pauseMs, resyncMs: done.resyncMs, bytes: done.bytes, unprotectedMs: done.unprotectedMs })}`);
    t.equal(done.sequence, 'primary-resume');
    await assertColo(t, pair.side('primary'), back.qemu, 'after the resume');
    await back.agent.waitForLog(logMsg('agent state ready-secondary -> peer-up'), WAIT_MS).catch(() => undefined);
    await assertQuietReturn(t, lc, 'b', back.agent);

    // The new secondary's host is lost again (a crash this time): a second failover after a resume.
    since = primary.cursor();
    faultAt = Date.now();
    await lab.crash('b');
    const second = await waitFailoverDone(primary, since, faultAt, WAIT_MS);
    t.equal(second.sequence, 'primary-failover', 'the second failover ran');
    await primary.waitForLog(agentState('solo'), WAIT_MS, { since });
    t.match(await queryStatus(pair.side('primary')), { status: 'running' });
    t.match(await queryColoStatus(pair.side('primary')), { mode: 'none' });
  });

  t.test('primary host lost -> secondary failover -> the old primary host back with a fresh secondary that its agent sees before it hears the peer: stale, no guest to pause -> resume -> COLO', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair, lab } = lc;
    const survivor = lc.agents.b!;
    let since = survivor.cursor();
    const faultAt = Date.now();
    await lab.crash('a');
    const first = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    t.equal(first.sequence, 'secondary-failover');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });

    // Host a comes back, its links to b late: its agent (installed primary, epoch not yet known
    // stale) sees its fresh QEMU first (COLO mode none, incoming: no guest runs), and learns the
    // newer epoch only when the links come up. That QEMU is what a stale node must leave alone.
    await lab.partition('a', 'b');
    since = survivor.cursor();
    const back = await comeBack(lc, 'a');
    const seen = await waitAgentStatuses(lc, WAIT_MS, ({ a }) =>
      a.qemu.status === 'ready' && a.qemu.colo.mode === 'none' ? [] : [`a: state ${a.state}, qemu ${a.qemu.status}, COLO mode ${a.qemu.colo.mode}`],
    );
    t.equal(seen, '', `a's agent sees its fresh QEMU (COLO mode none) before it hears b${seen ? `: ${seen}` : ''}`);
    t.notOk(back.agent.find(agentState('stale')), 'and is not stale yet');
    t.match(await queryStatus(back.qemu), { running: false }, 'the fresh secondary runs no guest');
    await lab.heal();
    await back.agent.waitForLog(agentState('stale'), WAIT_MS);
    await back.agent.waitForLog(readySecondary, WAIT_MS);
    const done = (await survivor.waitForLog(resumed, RESUME_WAIT_MS, { since })).record ?? {};
    t.equal(done.sequence, 'secondary-resume');
    await assertColo(t, pair.side('secondary'), back.qemu, 'roles swapped');
    await assertQuietReturn(t, lc, 'a', back.agent);
  });

  t.test('primary host lost -> secondary failover -> the old primary host back as secondary -> resume before rew0 -> COLO with roles swapped -> failover again', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair, lab } = lc;
    const survivor = lc.agents.b!;
    let since = survivor.cursor();
    let faultAt = Date.now();
    await lab.crash('a');
    const first = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    t.equal(first.sequence, 'secondary-failover');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });

    since = survivor.cursor();
    const back = await comeBackLaunching(t, lc, 'a');
    await back.agent.waitForLog(readySecondary, WAIT_MS);
    const done = (await survivor.waitForLog(resumed, RESUME_WAIT_MS, { since })).record ?? {};
    t.comment(`resume: ${JSON.stringify({ sequence: done.sequence, pauseMs: done.pauseMs, resyncMs: done.resyncMs, unprotectedMs: done.unprotectedMs })}`);
    t.equal(done.sequence, 'secondary-resume', 'the filters went in before rew0');
    await assertColo(t, pair.side('secondary'), back.qemu, 'roles swapped');
    const objects = await listObjects(pair.side('secondary'));
    t.ok(objects.includes(pair.colo.ids.rew0), 'the new primary keeps its filter-rewriter');
    await assertQuietReturn(t, lc, 'a', back.agent);

    // The new primary (old secondary host) loses power: the new secondary (old primary host) takes over.
    const since2 = back.agent.cursor();
    faultAt = Date.now();
    await lab.powerLoss('b');
    const second = await waitFailoverDone(back.agent, since2, faultAt, WAIT_MS);
    t.equal(second.sequence, 'secondary-failover', 'the old primary host takes the guest back');
    t.ok(back.pid() !== undefined, 'the launched QEMU (now the primary) is still recorded for adoption');
    t.match(await queryStatus(back.qemu), { status: 'running' });
    const nodes = (await listBlockNodes(back.qemu)).map((n) => n['node-name']);
    t.ok(nodes.length > 0);
  });
}
