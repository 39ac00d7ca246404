/**
 * `promtool check metrics` (Prometheus's own linter) on our exposition, with every kind of series
 * populated. Skipped where promtool is not installed (Debian: the `prometheus` package).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { AgentMetrics } from '../../src/metrics/registry.js';
import { findExecutable } from '../helpers/run-command.js';

const promtool = findExecutable('promtool');

/** Metrics with a value in every series kind: labelled counters, histograms, collect() gauges. */
function populated(): AgentMetrics {
  const m = new AgentMetrics({ version: '0.1.0', node: 'colo-a' });
  for (const link of ['127.0.0.2:7410', 'in:127.0.0.2', 'in:[fd00::2]#2']) {
    m.linkUp.set({ link }, 1);
    m.heartbeatsSent.inc({ link }, 10);
    m.heartbeatsReceived.inc({ link }, 9);
    m.heartbeatRtt.observe({ link }, 0.00021);
  }
  m.heartbeatRejected.inc({ reason: 'bad-mac' });
  m.checkpoints.inc();
  m.checkpointPause.observe(0.004);
  m.lastCheckpoint.set(1_700_000_000.123);
  m.qmpCommandDuration.observe({ command: 'query-colo-status' }, 0.0004);
  m.qmpErrors.inc({ code: 'GenericError' });
  m.failovers.inc({ sequence: 'secondary-failover', result: 'success' });
  m.failoverDuration.observe({ sequence: 'secondary-failover' }, 0.03);
  m.failoverStepDuration.observe({ sequence: 'secondary-failover', step: 'x-colo-lost-heartbeat' }, 0.002);
  m.sources.peerOutageSeconds = () => 1.5;
  return m;
}

t.test('promtool check metrics finds no problem', { skip: promtool ? false : 'promtool is not installed (Debian package: prometheus)' }, async (t) => {
  const text = await populated().text();
  const r = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  t.equal(r.error, undefined, 'promtool ran');
  t.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no findings');
  t.equal(r.status, 0, 'exit status 0');
});
