/**
 * Continuous replication end to end (issue 8): real agent processes on a real QEMU COLO pair.
 * After a failover, the lost host comes back with a fresh secondary QEMU and its agent restarted
 * on it; the agents' handshake (ready to be secondary -> resume) must bring the pair back into
 * COLO by itself, and a second failover must work after that. In the first scenario the test
 * starts the fresh secondary (startFreshSecondary); in the second the returning agent launches
 * it itself (qemu.launch), once its peer's newer epoch tells it that it lost the guest.
 *
 * Outcomes are read from QEMU itself through the harness's QMP sockets. Timings are printed as
 * comments (bench:failback measures them); nothing here asserts speed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { QmpClient } from '../../src/qmp/index.js';
import { freshSecondaryCommand, startFreshSecondary, type FreshSecondary } from '../../src/qemu/colo-launch.js';
import { agentState, killAllChildren, logMsg, requireBuiltCli, startAgent, type AgentProcess, type LogPredicate } from '../helpers/agent-process.js';
import { startColoAgents, waitFailoverDone, type ColoAgents } from '../helpers/colo-agents.js';
import { listBlockNodes, listObjects, queryColoStatus, queryStatus, startColoPairOrSkip, type ColoPair, type QmpTarget } from '../helpers/colo-pair.js';

const WAIT_MS = 30_000;
/** drive-mirror of a 64 MiB disk, migration of the guest's RAM, under TCG on 2 busy cores. */
const RESUME_WAIT_MS = 120_000;

t.teardown(killAllChildren);

const resumed: LogPredicate = (r) => r.component === 'agent' && r.msg === 'replication resumed: the guest is protected again';
const readySecondary = agentState('ready-secondary');

async function setup(t: Test): Promise<{ pair: ColoPair; agents: ColoAgents } | undefined> {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return undefined;
  const agents = await startColoAgents(pair, { t, failover: { reprobeIntervalMs: 200 } });
  return { pair, agents };
}

/** The lost host comes back: a fresh secondary QEMU on `host`, its agent restarted on it. */
async function comeBack(t: Test, pair: ColoPair, agents: ColoAgents, host: 'primary' | 'secondary'): Promise<{ qemu: FreshSecondary; agent: AgentProcess }> {
  const qemu = await startFreshSecondary({ pair, host });
  const opts = agents.startOptions(host);
  const agent = await startAgent({ ...opts, sets: [...(opts.sets ?? []), `qemu.qmp=${qemu.agentQmpAddress}`], t });
  return { qemu, agent };
}

/**
 * The lost primary host comes back with qemu.launch on: its agent, restarted, learns from the
 * peer's epoch that it is stale and launches the fresh secondary itself. The QEMU runs in its own
 * session (it outlives the agent): the test kills it by the pid in the launch record.
 */
async function comeBackLaunching(t: Test, pair: ColoPair, agents: ColoAgents, host: 'primary' | 'secondary'): Promise<{ qemu: QmpClient; agent: AgentProcess; pid: () => number | undefined }> {
  const cmd = await freshSecondaryCommand({ pair, host });
  const opts = agents.startOptions(host);
  const stateDir = opts.sets.find((s) => s.startsWith('node.stateDir='))!.slice('node.stateDir='.length);
  const pid = (): number | undefined => {
    try {
      return (JSON.parse(readFileSync(join(stateDir, 'qemu-launch.json'), 'utf8')) as { pid: number }).pid;
    } catch {
      return undefined;
    }
  };
  let launchedPid: number | undefined;
  // Registered before the agent starts, so it runs even when a later step fails.
  t.teardown(() => {
    try {
      if (launchedPid !== undefined) process.kill(-launchedPid, 'SIGKILL'); // its own process group (setsid)
    } catch {
      // already gone
    }
  });
  const sets = [
    ...opts.sets,
    `qemu.qmp=${cmd.agentQmpAddress}`,
    'qemu.launch.enabled=true',
    `qemu.launch.secondaryCommand=${JSON.stringify(cmd.argv)}`,
    'qemu.launch.restart=no',
  ];
  const agent = await startAgent({ ...opts, sets, t });
  const launched = await agent.waitForLog(logMsg('launched the secondary QEMU'), WAIT_MS);
  launchedPid = launched.record?.pid as number | undefined;
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

if (requireBuiltCli(t)) {
  t.test('secondary host lost -> primary failover -> fresh secondary -> automatic resume -> COLO; then lost again -> failover again', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { pair, agents } = s;
    const primary = agents.primary;
    let since = primary.cursor();
    let faultAt = Date.now();
    pair.side('secondary').kill('SIGKILL');
    agents.secondary.kill('SIGKILL');
    const first = await waitFailoverDone(primary, since, faultAt, WAIT_MS);
    t.equal(first.sequence, 'primary-failover');
    await primary.waitForLog(agentState('solo'), WAIT_MS, { since });

    since = primary.cursor();
    const back = await comeBack(t, pair, agents, 'secondary');
    await back.agent.waitForLog(readySecondary, WAIT_MS);
    const done = (await primary.waitForLog(resumed, RESUME_WAIT_MS, { since })).record ?? {};
    t.comment(`resume: ${JSON.stringify({ sequence: done.sequence, pauseMs: done.pauseMs, resyncMs: done.resyncMs, bytes: done.bytes, unprotectedMs: done.unprotectedMs })}`);
    t.equal(done.sequence, 'primary-resume');
    await assertColo(t, pair.side('primary'), back.qemu, 'after the resume');
    await back.agent.waitForLog(logMsg('agent state ready-secondary -> peer-up'), WAIT_MS).catch(() => undefined);

    // The new secondary's host is lost again: a second failover after a resume.
    since = primary.cursor();
    faultAt = Date.now();
    back.qemu.kill('SIGKILL');
    back.agent.kill('SIGKILL');
    const second = await waitFailoverDone(primary, since, faultAt, WAIT_MS);
    t.equal(second.sequence, 'primary-failover', 'the second failover ran');
    await primary.waitForLog(agentState('solo'), WAIT_MS, { since });
    t.match(await queryStatus(pair.side('primary')), { status: 'running' });
    t.match(await queryColoStatus(pair.side('primary')), { mode: 'none' });
  });

  t.test('primary host lost -> secondary failover -> the old primary host back as secondary -> resume before rew0 -> COLO with roles swapped -> failover again', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { pair, agents } = s;
    const survivor = agents.secondary;
    let since = survivor.cursor();
    let faultAt = Date.now();
    pair.side('primary').kill('SIGKILL');
    agents.primary.kill('SIGKILL');
    const first = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    t.equal(first.sequence, 'secondary-failover');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });

    since = survivor.cursor();
    const back = await comeBackLaunching(t, pair, agents, 'primary');
    await back.agent.waitForLog(readySecondary, WAIT_MS);
    const done = (await survivor.waitForLog(resumed, RESUME_WAIT_MS, { since })).record ?? {};
    t.comment(`resume: ${JSON.stringify({ sequence: done.sequence, pauseMs: done.pauseMs, resyncMs: done.resyncMs, unprotectedMs: done.unprotectedMs })}`);
    t.equal(done.sequence, 'secondary-resume', 'the filters went in before rew0');
    await assertColo(t, pair.side('secondary'), back.qemu, 'roles swapped');
    const objects = await listObjects(pair.side('secondary'));
    t.ok(objects.includes(pair.colo.ids.rew0), 'the new primary keeps its filter-rewriter');

    // The new primary (old secondary host) is lost: the new secondary (old primary host) takes over.
    const since2 = back.agent.cursor();
    faultAt = Date.now();
    pair.side('secondary').kill('SIGKILL');
    survivor.kill('SIGKILL');
    const second = await waitFailoverDone(back.agent, since2, faultAt, WAIT_MS);
    t.equal(second.sequence, 'secondary-failover', 'the old primary host takes the guest back');
    t.ok(back.pid() !== undefined, 'the launched QEMU (now the primary) is still recorded for adoption');
    t.match(await queryStatus(back.qemu), { status: 'running' });
    const nodes = (await listBlockNodes(back.qemu)).map((n) => n['node-name']);
    t.ok(nodes.length > 0);
  });
}
