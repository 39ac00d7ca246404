import t from 'tap';
import { EventEmitter } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { ColoMonitorEvents, ColoStatus } from '../../src/colo/monitor-events.js';
import { attachAgentMetrics, bindColoMetrics, coloExitReason, qmpErrorLabel } from '../../src/metrics/agent-metrics.js';
import { AgentMetrics } from '../../src/metrics/registry.js';
import { FakeQmpServer, type FakeQmpConnection, type ReceivedCommand } from '../helpers/fake-qmp-server.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { agentConfig, freePort, makeAgent, metricTotal, metricValue, waitFor } from './support.js';

/** A COLO monitor as src/colo/monitor.ts shapes it: typed events plus getters. */
class FakeColoMonitor extends EventEmitter<ColoMonitorEvents> {
  status: ColoStatus = { mode: 'none' };
  inProgress = false;
  stalled = false;
}

t.test('COLO monitor events drive the checkpoint, stall, exit and mode metrics', async (t) => {
  const m = new AgentMetrics({ version: '1', node: 'a', defaultMetrics: false });
  const colo = new FakeColoMonitor();
  const detach = bindColoMetrics(colo, m);
  t.equal(await metricValue(m, 'colo_agent_colo_mode', { mode: 'none' }), 1, 'initial mode from the getter');

  colo.emit('change', { mode: 'none' }, { mode: 'primary' });
  t.equal(await metricValue(m, 'colo_agent_colo_mode', { mode: 'primary' }), 1);
  t.equal(await metricValue(m, 'colo_agent_colo_mode', { mode: 'none' }), 0);

  colo.emit('checkpoint', { kind: 'colo-start', pauseMs: 900, stopAt: 1_700_000_000_000, resumeAt: 1_700_000_000_900 });
  t.equal(await metricValue(m, 'colo_agent_colo_starts_total'), 1, 'colo-start counted apart');
  t.equal(await metricValue(m, 'colo_agent_checkpoints_total'), 0);
  t.equal(await metricValue(m, 'colo_agent_checkpoint_pause_seconds'), 0, 'its pause is not a checkpoint pause');

  colo.emit('checkpoint', { kind: 'checkpoint', pauseMs: 4, stopAt: 1_700_000_001_000, resumeAt: 1_700_000_001_004 });
  colo.emit('checkpoint', { kind: 'checkpoint', pauseMs: 30, stopAt: 1_700_000_002_000, resumeAt: 1_700_000_002_030 });
  t.equal(await metricValue(m, 'colo_agent_checkpoints_total'), 2);
  t.equal(await metricValue(m, 'colo_agent_checkpoint_pause_seconds'), 2);
  t.ok(Math.abs((await metricValue(m, 'colo_agent_checkpoint_pause_seconds', {}, 'sum'))! - 0.034) < 1e-9, 'pause sum in seconds');
  t.equal(await metricValue(m, 'colo_agent_last_checkpoint_timestamp_seconds'), 1_700_000_002.03, 'RESUME time, Unix seconds');

  colo.inProgress = true;
  t.equal(await metricValue(m, 'colo_agent_checkpoint_in_progress'), 1, 'in progress read at scrape time');
  colo.emit('stalled', { stopAt: 1_700_000_003_000, stoppedForMs: 2000 });
  colo.stalled = true;
  t.equal(await metricValue(m, 'colo_agent_checkpoint_stalled'), 1);
  t.equal(await metricValue(m, 'colo_agent_checkpoint_stalls_total'), 1);
  colo.emit('stall-cleared', { stoppedForMs: 2500 });
  colo.stalled = false;
  colo.inProgress = false;
  t.equal(await metricValue(m, 'colo_agent_checkpoint_stalled'), 0);
  t.equal(await metricValue(m, 'colo_agent_checkpoint_in_progress'), 0);

  colo.emit('colo-exit', { mode: 'primary', reason: 'error', at: 1 });
  colo.emit('colo-exit', { mode: 'primary', reason: 'request', at: 2 });
  colo.emit('colo-exit', { mode: 'primary', reason: 'something-new', at: 3 });
  for (const reason of ['error', 'request', 'other']) t.equal(await metricValue(m, 'colo_agent_colo_exits_total', { reason }), 1, `exit ${reason}`);

  detach();
  t.equal(colo.listenerCount('checkpoint') + colo.listenerCount('change') + colo.listenerCount('colo-exit'), 0, 'detach removes the listeners');
  colo.emit('checkpoint', { kind: 'checkpoint', pauseMs: 4, stopAt: 0, resumeAt: 4 });
  t.equal(await metricValue(m, 'colo_agent_checkpoints_total'), 2, 'nothing counted after detach');
});

t.test('label helpers', async (t) => {
  t.equal(qmpErrorLabel({ command: 'x', id: 1, oob: false, durationMs: 1, ok: false, code: 'QMP_COMMAND_FAILED', errorClass: 'GenericError' }), 'GenericError');
  t.equal(qmpErrorLabel({ command: 'x', id: 1, oob: false, durationMs: 1, ok: false, code: 'QMP_TIMEOUT' }), 'QMP_TIMEOUT');
  t.equal(coloExitReason('error'), 'error');
  t.equal(coloExitReason('checkpoint'), 'other');
});

/**
 * Answers like a QEMU in COLO primary mode: the first query-colo-status fails (GenericError), the
 * rest say primary; the VM runs; yank has nothing to yank; everything else succeeds.
 */
function qemuLike(): (cmd: ReceivedCommand, conn: FakeQmpConnection) => void {
  let coloQueries = 0;
  return (cmd, conn) => {
    switch (cmd.execute) {
      case 'query-colo-status':
        if (coloQueries++ === 0) conn.error(cmd.id, 'GenericError', 'not yet');
        else conn.reply(cmd.id, { mode: 'primary', 'last-mode': 'none', reason: 'none' });
        return;
      case 'query-status':
        conn.reply(cmd.id, { running: true, status: 'running' });
        return;
      case 'query-yank':
        conn.reply(cmd.id, []);
        return;
      default:
        conn.reply(cmd.id, {});
    }
  };
}

t.test('two real agents heartbeating over sockets: links, peer outage, QMP, failover, state', async (t) => {
  const dir = shortTempDir(t, 'met-');
  const fake = await FakeQmpServer.start({ dir, onCommand: qemuLike() });
  t.teardown(() => fake.close());
  const [portA, portB] = [await freePort(), await freePort()];
  const cfgA = agentConfig({
    role: 'primary',
    stateDir: join(dir, 'a'),
    listen: `127.0.0.1:${portA}`,
    peers: [`127.0.0.1:${portB}`],
    qmp: fake.address,
  });
  const cfgB = agentConfig({
    role: 'secondary',
    stateDir: join(dir, 'b'),
    listen: `127.0.0.1:${portB}`,
    peers: [`127.0.0.1:${portA}`],
    qmp: `unix:${join(dir, 'nothing.sock')}`,
  });
  const a = makeAgent(t, cfgA);
  const ma = new AgentMetrics({ version: '1', node: 'colo-a', defaultMetrics: false });
  const binding = attachAgentMetrics(a, ma);
  t.teardown(() => binding.detach());
  let b = makeAgent(t, cfgB);
  await Promise.all([a.start(), b.start()]);

  const v = (name: Parameters<typeof metricValue>[1], labels?: Record<string, string>) => metricValue(ma, name, labels);
  await t.test('peer up: links, heartbeats both ways, RTT', async (t) => {
    await waitFor('A sees the peer up', async () => (await v('colo_agent_peer_up')) === 1 && (await v('colo_agent_state', { state: 'peer-up' })) === 1);
    await waitFor('heartbeats counted', async () => (await metricTotal(ma, 'colo_agent_heartbeats_sent_total')) > 3 && (await metricTotal(ma, 'colo_agent_heartbeats_received_total')) > 3);
    await waitFor('RTT observed', async () => (await metricTotal(ma, 'colo_agent_heartbeat_rtt_seconds')) > 0);
    t.equal(await v('colo_agent_peer_state', { state: 'up' }), 1);
    t.equal(await v('colo_agent_role', { role: 'primary' }), 1);
    const dialled = `127.0.0.1:${portB}`;
    // Named by its configured address when dialled, in:<addr> when accepted.
    await waitFor('both links up', async () => (await v('colo_agent_link_up', { link: dialled })) === 1 && (await v('colo_agent_link_up', { link: 'in:127.0.0.1' })) === 1);
    t.ok((await v('colo_agent_heartbeats_sent_total', { link: dialled }))! > 0);
    t.ok((await v('colo_agent_heartbeats_received_total', { link: 'in:127.0.0.1' }))! > 0);
    t.ok((await v('colo_agent_heartbeat_rtt_seconds', { link: dialled }))! > 0, 'RTT per link');
  });

  await t.test('QMP: session up, command durations, errors by QEMU error class, COLO mode', async (t) => {
    await waitFor('QEMU up', async () => (await v('colo_agent_qemu_up')) === 1);
    await waitFor('colo mode primary', async () => (await v('colo_agent_colo_mode', { mode: 'primary' })) === 1);
    t.ok((await v('colo_agent_qmp_command_duration_seconds', { command: 'query-colo-status' }))! >= 2, 'query-colo-status timed');
    t.equal(await v('colo_agent_qmp_errors_total', { code: 'GenericError' }), 1, 'the refused command counted under its error class');
  });

  await t.test('refused input is counted by reason', async (t) => {
    const before = await metricTotal(ma, 'colo_agent_heartbeat_rejected_total');
    const s = connect(portA, '127.0.0.1');
    t.teardown(() => s.destroy());
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.write(Buffer.from([0xff, 0xff, 0xff, 0xff])); // a length prefix far above maxFrameBytes
    await waitFor('a rejection', async () => (await metricTotal(ma, 'colo_agent_heartbeat_rejected_total')) > before);
    t.equal(await v('colo_agent_heartbeat_rejected_total', { reason: 'oversize' }), 1);
  });

  await t.test('a manual failover through the fake QEMU: counters, durations, steps, state and role', async (t) => {
    await a.requestFailover();
    t.equal(a.state, 'solo', 'the failover ran');
    t.equal(await v('colo_agent_failovers_total', { sequence: 'primary-failover', result: 'success' }), 1);
    t.equal(await v('colo_agent_failovers_total', { sequence: 'primary-failover', result: 'failure' }), 0);
    t.equal(await v('colo_agent_failover_duration_seconds', { sequence: 'primary-failover' }), 1);
    t.equal(await v('colo_agent_failover_step_duration_seconds', { sequence: 'primary-failover', step: 'x-colo-lost-heartbeat' }), 1, 'per-step durations');
    const ts = (await v('colo_agent_last_failover_timestamp_seconds'))!;
    t.ok(Math.abs(ts - Date.now() / 1000) < 60, 'last failover timestamp is now (Unix seconds)');
    t.equal(await v('colo_agent_state', { state: 'solo' }), 1);
    t.equal(await v('colo_agent_state', { state: 'peer-up' }), 0);
    t.equal(await v('colo_agent_role', { role: 'primary' }), 1);
  });

  await t.test('stopping the peer: peer down, an outage, detection latency, links down', async (t) => {
    const outages = (await v('colo_agent_peer_outages_total'))!;
    const detections = (await v('colo_agent_detection_latency_seconds'))!;
    await b.stop('test: peer goes away');
    await waitFor('A sees the peer down', async () => (await v('colo_agent_peer_up')) === 0);
    t.equal(await v('colo_agent_peer_state', { state: 'down' }), 1);
    t.equal(await v('colo_agent_peer_outages_total'), outages + 1, 'one more outage');
    t.equal(await v('colo_agent_detection_latency_seconds'), detections + 1, 'its detection latency observed');
    const latency = (await metricValue(ma, 'colo_agent_detection_latency_seconds', {}, 'sum'))!;
    const timeoutS = (cfgA.heartbeat.intervalMs * cfgA.heartbeat.missThreshold) / 1000;
    t.ok(latency >= timeoutS, `the silence that ran out is at least the ${timeoutS} s timeout (sum ${latency})`);
    await waitFor('outage length grows', async () => (await v('colo_agent_peer_outage_seconds'))! > 0.05);
    t.equal(await v('colo_agent_link_up', { link: `127.0.0.1:${portB}` }), 0, 'the link series stays, at 0');
  });

  await t.test('the peer back: outage over, its duration observed', async (t) => {
    const ended = (await v('colo_agent_peer_outage_duration_seconds'))!;
    b = makeAgent(t, cfgB);
    await b.start();
    await waitFor('A sees the peer up again', async () => (await v('colo_agent_peer_up')) === 1);
    t.equal(await v('colo_agent_peer_outage_duration_seconds'), ended + 1);
    t.equal(await v('colo_agent_peer_outage_seconds'), 0, 'no current outage');
    // A's redial of B follows its backoff: the accepted link may have come up first.
    await waitFor('the dialled link up again', async () => (await v('colo_agent_link_up', { link: `127.0.0.1:${portB}` })) === 1);
  });

  await t.test('stop and detach', async (t) => {
    await a.stop('test done');
    t.equal(await v('colo_agent_state', { state: 'stopped' }), 1);
    binding.detach();
    binding.detach();
    t.equal(a.links.listenerCount('heartbeat'), 1, "only the agent's own heartbeat listener is left");
    t.equal(a.listenerCount('state'), 0);
  });
});

t.test('qemu.launch: real launches, their failing exits and the give-up are counted; detach stops it', async (t) => {
  const dir = shortTempDir(t, 'lm-');
  // A "QEMU" that exits 3 at once; the config insists on -incoming (it becomes sh's $0).
  const cfg = agentConfig({
    role: 'secondary',
    stateDir: join(dir, 'state'),
    listen: `127.0.0.1:${await freePort()}`,
    peers: [`127.0.0.1:${await freePort()}`],
    qmp: `unix:${join(dir, 'none.sock')}`,
    sets: [
      'qemu.launch.enabled=true',
      'qemu.launch.secondaryCommand=["/bin/sh","-c","exit 3","-incoming"]',
      'qemu.launch.maxRestarts=1',
      'qemu.launch.restartDelayMs=0',
    ],
  });
  const agent = makeAgent(t, cfg);
  const m = new AgentMetrics({ version: 't', node: 'n', defaultMetrics: false });
  const binding = attachAgentMetrics(agent, m);
  t.teardown(() => binding.detach());
  t.equal(await metricValue(m, 'colo_agent_qemu_launch_gave_up'), 0);
  const supervisor = agent.launcher!.supervisor;
  const gaveUp = new Promise((resolve) => supervisor.once('gave-up', resolve));
  t.match(await supervisor.ensureRunning('test'), { launched: true });
  await gaveUp; // the first launch, one restart (maxRestarts 1), then the give-up
  t.equal(await metricValue(m, 'colo_agent_qemu_launches_total', { result: 'launched' }), 2);
  t.equal(await metricValue(m, 'colo_agent_qemu_exits_total', { exit: 'failure' }), 2, 'exit code 3 is a failure');
  t.equal(await metricValue(m, 'colo_agent_qemu_exits_total', { exit: 'clean' }), 0);
  t.equal(await metricValue(m, 'colo_agent_qemu_launch_gave_up'), 1);
  binding.detach();
  supervisor.reset();
  const exited = new Promise((resolve) => supervisor.once('exited', resolve));
  t.match(await supervisor.ensureRunning('after detach'), { launched: true });
  await exited;
  t.equal(await metricValue(m, 'colo_agent_qemu_launches_total', { result: 'launched' }), 2, 'detach removed the listeners');
});
