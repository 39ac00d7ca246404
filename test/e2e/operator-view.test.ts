/**
 * What an operator reads of a real failover, end to end on the lab of separate hosts (real agent
 * processes, a real QEMU COLO pair: test/lab/lab-colo.ts): the survivor's log lines (each failover
 * step line names its component once; each COLO_EXIT of its QEMU is one line), its /metrics
 * across an agent restart (colo_agent_unprotected_seconds keeps counting from the failover), and
 * its /status while the peer is lost and no takeover clears the view (the peer's QEMU is not
 * "reachable" after the probe found it silent).
 *
 * Outcomes are read from the agents' raw log lines, their /metrics and /status over the control
 * link, and QEMU's own events on the harness's QMP socket. Nothing here asserts speed.
 */
import t, { type Test } from 'tap';
import type { QmpEvent } from '../../src/qmp/index.js';
import { agentState, killAllChildren, logMsg, requireBuiltCli, sleep, type AgentProcess } from '../helpers/agent-process.js';
import { runCli } from '../helpers/cli.js';
import { failoverDone, noTakeover, waitFailoverDone } from '../helpers/colo-agents.js';
import { componentKeys, scrapeSample } from '../helpers/observe.js';
import { startLabColoAgentsOrSkip, type LabColo } from '../lab/lab-colo.js';

/** A bound for a loaded 2-core machine, not a target. */
const WAIT_MS = 30_000;

t.setTimeout(6 * 60_000);
t.teardown(killAllChildren);

const STEP_MESSAGES = new Set(['failover step', 'failover step failed', 'optional failover step failed; continuing']);

/** The lab with the pair (a primary, b secondary) and both agents ready (arbiter none). */
function setup(t: Test): Promise<LabColo | undefined> {
  return startLabColoAgentsOrSkip(t, { arbiter: 'none' });
}

/** The agent's colo_agent_unprotected_seconds, once it answers; with the wall-clock time just before (sent) and after (received) the scrape. */
async function unprotectedSeconds(lc: LabColo): Promise<{ value: number; sent: number; received: number }> {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const sent = Date.now();
    try {
      const value = await scrapeSample(lc.metricsAddress('b'), 'colo_agent_unprotected_seconds');
      if (value !== undefined) return { value, sent, received: Date.now() };
    } catch (err) {
      if (Date.now() >= end) throw err;
    }
    if (Date.now() >= end) throw new Error('no colo_agent_unprotected_seconds on /metrics');
    await sleep(100);
  }
}

if (requireBuiltCli(t)) {
  t.test('a real failover: step lines name their component once, each COLO_EXIT is one log line, and unprotected time survives an agent restart on /metrics', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair, lab } = lc;
    const survivor = lc.agents.b!;
    // QEMU's own account of its COLO_EXIT events (every QMP monitor gets each event).
    const exits: QmpEvent[] = [];
    const onEvent = (e: QmpEvent): void => void (e.event === 'COLO_EXIT' && exits.push(e));
    pair.secondary.qmp.on('event', onEvent);
    t.teardown(() => void pair.secondary.qmp.off('event', onEvent));

    const since = survivor.cursor();
    const faultAt = Date.now();
    await lab.crash('a');
    const timing = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
    t.equal(timing.sequence, 'secondary-failover');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });

    // (f) Every step line of the failover names its component once (pino writes a duplicate key twice).
    const steps = survivor.entries.slice(since).filter((e) => typeof e.record?.msg === 'string' && STEP_MESSAGES.has(e.record.msg));
    t.ok(steps.length > 0, `the survivor logged the failover's steps (${steps.length} lines)`);
    for (const e of steps) t.equal(componentKeys(e.line), 1, `one "component": key in ${e.line.slice(0, 200)}`);
    t.ok(
      steps.every((e) => e.record?.component === 'colo-failover'),
      'each names the failover runner',
    );
    const twice = survivor.entries.slice(since).filter((e) => e.record && componentKeys(e.line) > 1);
    t.same(twice.map((e) => e.line), [], 'no line the survivor wrote during the failover names a component twice');

    // (g) Each COLO_EXIT of the survivor's QEMU is logged exactly once by its agent.
    t.ok(exits.length > 0, `the survivor's QEMU sent COLO_EXIT (${exits.map((e) => JSON.stringify(e.data)).join(', ')})`);
    const exitLines = (): AgentProcess['entries'] => survivor.entries.slice(since).filter((e) => e.line.includes('"msg":"COLO_EXIT"'));
    await survivor.waitForLog((r) => r.msg === 'COLO_EXIT', WAIT_MS, { since });
    await sleep(500); // a second line for the same event would be written by now
    t.equal(exitLines().length, exits.length, `one COLO_EXIT line per event:\n${exitLines().map((e) => e.line).join('\n')}`);
    for (const reason of new Set(exits.map((e) => String(e.data.reason)))) {
      const events = exits.filter((e) => e.data.reason === reason).length;
      const lines = exitLines().filter((e) => e.record?.reason === reason).length;
      t.equal(lines, events, `COLO_EXIT reason ${reason}: ${events} event(s), ${lines} line(s)`);
    }
    t.comment(`every line mentioning COLO_EXIT:\n${survivor.entries.slice(since).filter((e) => e.line.includes('COLO_EXIT')).map((e) => e.line).join('\n')}`);

    // (c) colo_agent_unprotected_seconds on /metrics continues across a restart of the agent.
    let before = await unprotectedSeconds(lc);
    while (before.value < 2) {
      await sleep(250);
      before = await unprotectedSeconds(lc);
    }
    const restarted = await lc.restartAgent('b');
    await restarted.waitForLog(agentState('solo'), WAIT_MS);
    t.notOk(restarted.find(failoverDone), 'the restarted agent ran no second failover');
    const after = await unprotectedSeconds(lc);
    const elapsed = (after.sent - before.received) / 1000;
    t.comment(`unprotected ${before.value} s before the restart, ${after.value} s after, ${elapsed.toFixed(3)} s apart`);
    // Counted from the failover, not from the restart: at least what it was plus the time between the scrapes.
    t.ok(after.value >= before.value + elapsed - 0.05, `after the restart ${after.value} s >= ${before.value} s + ${elapsed.toFixed(3)} s`);
  });

  t.test('the peer host loses power under maintenance (no takeover): /status never says its QEMU is reachable once the probe found it silent', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { lab } = lc;
    const watcher = lc.agents.b!;
    const opts = lc.agentOptions('b', lc.pair.side('secondary').agentQmpAddress);
    let since = watcher.cursor();
    const on = await runCli(['maintenance', 'on', '--config', opts.config, ...opts.sets.flatMap((s) => ['--set', s]), '--reason', 'operator-view test']);
    t.equal(on.code, 0, on.stderr);
    await watcher.waitForLog(logMsg('maintenance mode on: automatic failover suspended'), WAIT_MS, { since });
    const up = await lc.status('b');
    t.equal(up.peer.state, 'up', 'before the fault the peer is up');
    t.equal(up.peer.qemuReachable, true, "and says its QEMU is reachable");

    since = watcher.cursor();
    await lab.powerLoss('a');
    const probed = await watcher.waitForLog((r) => r.msg === 'probed the peer QEMU' && r.verdict === 'silent', WAIT_MS, { since });
    t.ok(probed, `the probe of ${String(probed.record?.host)}:${String(probed.record?.port)} found the peer's QEMU silent`);
    await watcher.waitForLog(noTakeover, WAIT_MS, { since });
    t.notOk(watcher.find(agentState('failing-over'), since), 'maintenance: no takeover');
    // Several looks, while the peer stays lost and nothing (no takeover) changes the view.
    for (let i = 0; i < 5; i++) {
      const st = await lc.status('b');
      t.not(st.peer.state, 'up', `look ${i}: the peer is ${st.peer.state}`);
      t.not(st.peer.qemuReachable, true, `look ${i}: its QEMU is not claimed reachable (qemuReachable ${st.peer.qemuReachable})`);
      t.equal(st.peer.qemuReachable, false, `look ${i}: the last probe's verdict speaks: unreachable`);
      t.match(st.peer.probe, { verdict: 'silent' }, `look ${i}: the probe is shown (${JSON.stringify(st.peer.probe)})`);
      await sleep(300);
    }
  });
}
