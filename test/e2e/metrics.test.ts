/**
 * End to end metrics: real agent processes (`node dist/cli.js run`) on a real QEMU COLO pair on
 * the lab of separate hosts (test/lab/lab-colo.ts: host a the primary QEMU and its agent, host b
 * the secondary and its agent, each a network namespace; heartbeats on both of the hosts' links),
 * each agent with its Prometheus endpoint on 0.0.0.0:9464 of its host, scraped over HTTP by this
 * test through the host's control link (lab.controlAddr) and parsed as the text exposition format
 * (test/helpers/exposition.ts, strictly: a malformed line fails the test).
 *
 * The agents are attached *before* the migration into COLO, so that their COLO monitors see
 * what happens then (the colo-start, and on 7.2 the first checkpoint, which may already
 * deadlock): they start first, inside their hosts, on the topology the pair will have (the lab's
 * addresses and documented ports, prepareLabColoOrSkip), with qemu.qmp pointing at a path in our
 * temp dir that does not exist yet; when the harness spawns each QEMU inside its host (`ip netns
 * exec` execs, so QEMU is still our child, found in /proc by test/helpers/colo-spawn-watch.ts),
 * that path becomes a symlink to the QEMU's agent socket (qmp0.sock: a file, the same from every
 * namespace) and the agent's QMP reconnect loop (10-100 ms) finds it. The secondary's link waits
 * until the harness has exported the secondary's disk (still before the migration): an agent
 * attached to a fresh secondary beside a primary not yet in COLO prepares the NBD export itself,
 * and the harness's own nbd-server-start then fails (see linkQmpWhenSpawned).
 *
 * 1. A normal pair (x-checkpoint-delay 600 s): COLO modes, roles, peer up, heartbeat RTT
 *    histograms, the colo-start; then the secondary host crashes (lab.crash: its QEMU and agent
 *    SIGKILLed) and the primary agent's failover shows in its metrics, /status and /healthz.
 * 2. A small checkpoint delay (1 s): QEMU 7.2 under TCG deadlocks the primary at the end of a
 *    checkpoint (facts §3), usually the first, sometimes the second or third; the primary agent
 *    must export it as a stalled checkpoint. On other versions: checkpoints are counted.
 *
 * Skipped with the harness's reason where this QEMU cannot do COLO, or without the lab (root, ip,
 * nft). dist/ must be built (`npm test` does it first). No timed assertions: the waits are generous
 * bounds, not targets.
 */
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { AgentStatus } from '../../src/agent.js';
import { AGENT_STATES } from '../../src/metrics/registry.js';
import { QmpClient } from '../../src/qmp/index.js';
import { agentState, killAllChildren, linkDown, linkUp, peerTransition, requireBuiltCli, sleep, type AgentProcess } from '../helpers/agent-process.js';
import { waitColoReady, waitFailoverDone } from '../helpers/colo-agents.js';
import { coloSupport } from '../helpers/colo-cmdline.js';
import type { ColoPair, ColoRole } from '../helpers/colo-pair.js';
import { watchColoQemuSpawns, type SpawnedColoQemu } from '../helpers/colo-spawn-watch.js';
import { scrape, scrapeUntil } from '../helpers/exposition.js';
import { httpGet } from '../helpers/http.js';
import { qemuAvailable } from '../helpers/qemu.js';
import { BRING_UP_HOST, prepareLabColoOrSkip, type LabColo } from '../lab/lab-colo.js';

/** A bound for a loaded 2-core machine, not a target. */
const WAIT_MS = 30_000;
const NODES: Record<ColoRole, string> = { primary: 'colo-a', secondary: 'colo-b' };

const avail = await qemuAvailable();
const support = avail.ok ? coloSupport(avail) : avail;
const skip = support.ok ? false : support.reason;

t.setTimeout(5 * 60_000);
t.teardown(killAllChildren);

// ---- a pair with agents attached from its start ----

interface Setup {
  lc: LabColo;
  pair: ColoPair;
  /** Each role's agent at bring-up (a's the primary's, b's the secondary's). */
  agents: Record<ColoRole, AgentProcess>;
  /** HOST:PORT of each agent's metrics endpoint, on its host's control link. */
  metrics: Record<ColoRole, string>;
}

/**
 * Until stopped: as soon as our child QEMU named `primary` appears, link links.primary to its agent
 * QMP socket (qmp0.sock); the secondary's link is made once the harness has exported its disk
 * (nbdExport in query-block-exports, asked on its spare socket qmp2.sock), still before the
 * migration. Attached earlier, the secondary's agent sees a fresh secondary beside a primary not in
 * COLO and prepares the export itself (nbd-server-start), racing the harness's own bring-up, which
 * then fails with "NBD server already running". QEMUs alive before the call are ignored.
 */
function linkQmpWhenSpawned(links: Record<ColoRole, string>, nbdExport: string): { linked: Set<ColoRole>; stop(): Promise<void> } {
  const linked = new Set<ColoRole>();
  const ac = new AbortController();
  const pending: Array<Promise<void>> = [];
  const link = (q: SpawnedColoQemu) => {
    symlinkSync(q.qmpPath, links[q.role]);
    linked.add(q.role);
  };
  const linkOnceExported = async (q: SpawnedColoQemu): Promise<void> => {
    const spare = new QmpClient({ address: `unix:${q.qmpPath.replace(/qmp0\.sock$/, 'qmp2.sock')}`, reconnect: { initialMs: 10, maxMs: 50 } });
    try {
      spare.connect().catch(() => undefined); // the socket appears once QEMU is up
      await spare.waitUntilReady(WAIT_MS);
      while (!ac.signal.aborted) {
        const exports = await spare.execute<Array<{ id: string }>>('query-block-exports');
        if (exports.some((e) => e.id === nbdExport)) return link(q);
        await sleep(5);
      }
    } finally {
      await spare.close();
    }
  };
  const onSpawn = (q: SpawnedColoQemu) => {
    if (q.role === 'primary') link(q);
    else pending.push(linkOnceExported(q).catch(() => undefined));
  };
  watchColoQemuSpawns({ qmpSocket: 0, signal: ac.signal, ignoreExisting: true, onSpawn });
  return {
    linked,
    stop: async () => {
      ac.abort();
      await Promise.all(pending);
    },
  };
}

/**
 * Agents first (inside their hosts, heartbeating, metrics on, QMP not there yet), then the pair on
 * the topology they were configured with. Undefined after a skip (no lab, or this QEMU cannot do COLO).
 */
async function setup(t: Test, opts: { checkpointDelayMs?: number; sets?: string[] } = {}): Promise<Setup | undefined> {
  const ahead = await prepareLabColoOrSkip(t, {
    arbiter: 'none',
    ...(opts.checkpointDelayMs !== undefined && { colo: { checkpointDelayMs: opts.checkpointDelayMs } }),
    // Find the QEMU's socket (our symlink) within 100 ms of its appearing. Heartbeat 100 ms x 20: a
    // scheduling stall of a loaded machine while the QEMUs start is no outage (no timed assertion here).
    sets: ['qemu.reconnectInitialMs=10', 'qemu.reconnectMaxMs=100', 'heartbeat.missThreshold=20', 'heartbeat.suspectMisses=10', ...(opts.sets ?? [])],
  });
  if (!ahead) return undefined;
  const links: Record<ColoRole, string> = { primary: join(ahead.dir, 'primary-qmp.sock'), secondary: join(ahead.dir, 'secondary-qmp.sock') };
  const host = BRING_UP_HOST;
  // The pair as the agents see it before it exists: its topology (ahead.colo), and QMP at our links, not there yet.
  const [primary, secondary] = await Promise.all([ahead.startAgent(host.primary, `unix:${links.primary}`), ahead.startAgent(host.secondary, `unix:${links.secondary}`)]);
  await Promise.all([primary.waitForPeerState('up', WAIT_MS), secondary.waitForPeerState('up', WAIT_MS)]);

  const linker = linkQmpWhenSpawned(links, ahead.colo.nbdExport);
  let lc: LabColo | undefined;
  try {
    lc = await ahead.startPair();
  } finally {
    await linker.stop();
  }
  if (!lc) return undefined;
  t.same(lc.pair.colo, ahead.colo, 'the pair runs the topology the agents were configured with');
  t.same([...linker.linked].sort(), ['primary', 'secondary'], 'both agents were pointed at their QEMU before the migration');
  const agents = { primary, secondary };
  await waitColoReady(agents, WAIT_MS);
  return { lc, pair: lc.pair, agents, metrics: { primary: lc.metricsAddress(host.primary), secondary: lc.metricsAddress(host.secondary) } };
}

/** What the agent logged about its peer and its heartbeat links, one line each (for a failure message). */
function heartbeatTalk(a: AgentProcess): string {
  return a
    .filter((r) => peerTransition()(r) || linkUp()(r) || linkDown()(r))
    .map((e) => `  ${String(e.record?.time)} ${e.line}`)
    .join('\n');
}

/** 'COLO started' records of the agent's COLO monitor. */
const coloStartsLogged = (a: AgentProcess) => a.filter((r) => r.component === 'colo-monitor' && r.msg === 'COLO started').length;

if (requireBuiltCli(t)) {
  t.test('a COLO pair: modes, peer up, heartbeat RTTs, colo-start; the secondary host dies: failover metrics, /status', { skip }, async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { pair, agents, metrics } = s;

    for (const side of ['primary', 'secondary'] as const) {
      // The colo-start RESUME may land a poll after the mode change waitColoReady saw.
      const e = await scrapeUntil(metrics[side], (x) => x.value('colo_agent_colo_starts_total') >= 1 && x.value('colo_agent_peer_up') === 1, 5000);
      const name = NODES[side];
      t.equal(e.value('colo_agent_build_info', { node: name }), 1, `${name}: build_info names the node`);
      t.same(e.stateOf('colo_agent_colo_mode', 'mode'), [side], `${name}: colo_agent_colo_mode{mode="${side}"} 1, every other mode 0`);
      t.equal(e.find('colo_agent_colo_mode').length, 4, `${name}: the mode state set has its 4 series`);
      t.same(e.stateOf('colo_agent_role', 'role'), [side], `${name}: role ${side}`);
      t.same(e.stateOf('colo_agent_state', 'state'), ['peer-up'], `${name}: state peer-up`);
      t.equal(e.find('colo_agent_state').length, AGENT_STATES.length, `${name}: one state series per agent state`);
      t.equal(e.value('colo_agent_peer_up'), 1, `${name}: colo_agent_peer_up 1`);
      t.same(e.stateOf('colo_agent_peer_state', 'state'), ['up'], `${name}: peer state up`);
      t.equal(e.value('colo_agent_qemu_up'), 1, `${name}: its QEMU is up`);

      const rtt = e.find('colo_agent_heartbeat_rtt_seconds_count');
      t.ok(rtt.length > 0, `${name}: RTT histograms for ${rtt.map((r) => r.labels.link).join(', ')}`);
      t.ok(rtt.reduce((a, r) => a + r.value, 0) > 0, `${name}: heartbeat RTTs counted (${rtt.map((r) => r.value).join(', ')})`);
      for (const r of rtt) {
        const inf = e.value('colo_agent_heartbeat_rtt_seconds_bucket', { link: r.labels.link!, le: '+Inf' });
        t.equal(inf, r.value, `${name} ${r.labels.link}: _count equals the +Inf bucket`);
        t.ok(e.value('colo_agent_heartbeat_rtt_seconds_sum', { link: r.labels.link! }) > 0, `${name} ${r.labels.link}: positive RTT sum`);
      }
      for (const l of e.find('colo_agent_link_up')) t.equal(l.value, 1, `${name}: link ${l.labels.link} up`);

      // Attached before the migration, the monitor sees the colo-start; the metric counts what it saw.
      const logged = coloStartsLogged(agents[side]);
      t.equal(e.value('colo_agent_colo_starts_total'), logged, `${name}: colo_starts_total = the monitor's 'COLO started' records (${logged})`);
      t.ok(logged >= 1, `${name}: the monitor saw the colo-start`);
      t.equal(e.value('colo_agent_checkpoints_total'), 0, `${name}: no checkpoint (x-checkpoint-delay ${pair.colo.checkpointDelayMs} ms)`);
      t.equal(e.value('colo_agent_checkpoint_stalled'), 0, `${name}: not stalled`);
      const outages = e.value('colo_agent_peer_outages_total');
      t.equal(outages, 0, `${name}: no peer outage yet`);
      if (outages !== 0) t.comment(`${name}'s peer detector and links said:\n${heartbeatTalk(agents[side])}`);
      t.equal(e.value('colo_agent_failovers_total', { sequence: 'primary-failover', result: 'success' }), 0, `${name}: no failover yet`);
    }

    // The secondary host dies.
    const primary = agents.primary;
    const since = primary.cursor();
    const faultAt = Date.now();
    await s.lc.lab.crash(BRING_UP_HOST.secondary);
    const timing = await waitFailoverDone(primary, since, faultAt, WAIT_MS);
    t.equal(timing.sequence, 'primary-failover');
    await primary.waitForLog(agentState('solo'), WAIT_MS, { since });
    t.comment(`primary-failover (trigger ${timing.trigger}): sequence ${timing.sequenceMs} ms, fault -> done ${timing.faultToDoneMs} ms`);

    // The agent polls after a failover; the mode shows none once that answer is in.
    const e = await scrapeUntil(metrics.primary, (x) => x.stateOf('colo_agent_colo_mode', 'mode')[0] === 'none', 5000);
    t.equal(e.value('colo_agent_peer_outages_total'), 1, 'colo_agent_peer_outages_total 0 -> 1');
    t.equal(e.value('colo_agent_peer_up'), 0, 'colo_agent_peer_up 0');
    t.same(e.stateOf('colo_agent_peer_state', 'state'), ['down'], 'peer state down');
    t.ok(e.value('colo_agent_peer_outage_seconds') > 0, `the outage in progress is timed (${e.value('colo_agent_peer_outage_seconds')} s)`);
    t.equal(e.value('colo_agent_detection_latency_seconds_count'), 1, 'one detection latency observed (up -> down)');
    t.equal(e.value('colo_agent_failovers_total', { sequence: 'primary-failover', result: 'success' }), 1, 'failovers_total{primary-failover,success} 1');
    t.equal(e.value('colo_agent_failovers_total', { sequence: 'primary-failover', result: 'failure' }), 0, 'no failed primary-failover');
    for (const result of ['success', 'failure']) {
      t.equal(e.value('colo_agent_failovers_total', { sequence: 'secondary-failover', result }), 0, `no secondary-failover ${result}`);
    }
    t.equal(e.value('colo_agent_failover_duration_seconds_count', { sequence: 'primary-failover' }), 1, 'failover duration histogram count 1');
    const sumS = e.value('colo_agent_failover_duration_seconds_sum', { sequence: 'primary-failover' });
    t.ok(Math.abs(sumS * 1000 - timing.sequenceMs) < 1, `the duration observed (${sumS} s) is the one logged (${timing.sequenceMs} ms)`);
    t.ok(e.find('colo_agent_failover_step_duration_seconds_count', { sequence: 'primary-failover' }).length > 0, 'step durations observed');
    const lastFailover = e.value('colo_agent_last_failover_timestamp_seconds');
    t.ok(lastFailover * 1000 >= faultAt - 1000 && lastFailover * 1000 <= Date.now() + 1000, 'last failover timestamp is now-ish');
    t.same(e.stateOf('colo_agent_state', 'state'), ['solo'], 'state solo');
    t.same(e.stateOf('colo_agent_role', 'role'), ['primary'], 'role primary');
    t.same(e.stateOf('colo_agent_colo_mode', 'mode'), ['none'], 'COLO mode none after primary-failover');
    t.equal(e.value('colo_agent_qemu_up'), 1, 'its QEMU is still up');

    const status = await httpGet(metrics.primary, '/status');
    t.equal(status.status, 200);
    t.match(String(status.headers['content-type']), /^application\/json/);
    const st = JSON.parse(status.body) as AgentStatus;
    t.equal(st.node, NODES.primary);
    t.equal(st.role, 'primary', '/status: role primary');
    t.equal(st.state, 'solo', '/status: state solo');
    t.equal(st.peer.state, 'down', '/status: peer down');
    t.match(st.lastFailover, { sequence: 'primary-failover', ok: true, trigger: timing.trigger }, '/status: lastFailover');
    t.ok(Math.abs((st.lastFailover?.durationMs ?? -1) - timing.sequenceMs) < 0.01, '/status: lastFailover.durationMs as logged');
    const health = await httpGet(metrics.primary, '/healthz');
    t.equal(health.status, 200, '/healthz: solo is healthy (the agent did its job)');
    t.match(JSON.parse(health.body), { ok: true, state: 'solo' });
  });

  t.test('a small checkpoint delay: the primary agent exports the stalled checkpoint (QEMU 7.2 under TCG deadlocks)', { skip }, async (t) => {
    const DELAY_MS = 1000;
    const STALL_MS = 2000;
    const s = await setup(t, { checkpointDelayMs: DELAY_MS, sets: [`colo.checkpointStallMs=${STALL_MS}`] });
    if (!s) return;
    const { pair, metrics } = s;
    const v = pair.version;
    const knownDeadlock = v.major === 7 && v.minor === 2;
    // The tolerance of test/colo/monitor.real.test.ts: the deadlock may come at the 2nd or 3rd checkpoint.
    const e = await scrapeUntil(metrics.primary, (x) => x.value('colo_agent_checkpoint_stalled') === 1, DELAY_MS * 6 + STALL_MS + 2000);
    const stalled = e.value('colo_agent_checkpoint_stalled') === 1;
    const completed = e.value('colo_agent_checkpoints_total');
    const sec = await scrape(metrics.secondary);
    t.comment(
      `QEMU ${v.major}.${v.minor}.${v.micro}: the primary agent counted ${completed} completed checkpoint(s), ${stalled ? 'then a stall' : 'no stall'}; ` +
        `the secondary agent ${sec.value('colo_agent_checkpoints_total')}`,
    );
    if (knownDeadlock) t.ok(stalled, `QEMU ${v.major}.${v.minor}: colo_agent_checkpoint_stalled 1 on the primary agent`);
    if (stalled) {
      t.equal(e.value('colo_agent_checkpoint_stalls_total'), 1, 'colo_agent_checkpoint_stalls_total 1');
      t.equal(e.value('colo_agent_checkpoint_in_progress'), 1, 'the checkpoint is still in progress');
      t.equal(e.value('colo_agent_colo_starts_total'), 1, 'one colo-start before it');
      t.equal(e.value('colo_agent_checkpoint_pause_seconds_count'), completed, 'one pause observed per completed checkpoint');
      t.equal(sec.value('colo_agent_checkpoint_stalled'), 0, 'the secondary agent reports no stall');
      t.equal(sec.value('colo_agent_checkpoint_stalls_total'), 0);
    } else {
      t.ok(completed > 0, 'no stall: the primary agent counts completed checkpoints');
      t.equal(e.value('colo_agent_checkpoint_stalls_total'), 0);
    }
    t.equal(e.value('colo_agent_peer_up'), 1, 'the agents still heartbeat: peer up');
  });
}
