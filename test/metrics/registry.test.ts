import t from 'tap';
import { register as globalRegistry } from 'prom-client';
import { REJECT_REASONS } from '../../src/heartbeat/errors.js';
import { METRIC_NAMES, METRIC_TYPES, seriesNames } from '../../src/metrics/names.js';
import { AGENT_STATES, AgentMetrics, LabelLimiter, setStateSet } from '../../src/metrics/registry.js';
import { metricValue } from './support.js';

/** `# TYPE name type` lines of an exposition, as a map. */
function typeLines(text: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) types.set(m[1]!, m[2]!);
  }
  return types;
}

t.test('the exposition has every METRIC_NAMES entry with its TYPE, HELP and the colo_agent_ prefix', async (t) => {
  const m = new AgentMetrics({ version: '1.2.3', node: 'colo-a' });
  const text = await m.text();
  const types = typeLines(text);
  t.ok(METRIC_NAMES.length >= 30, 'the full list');
  for (const name of METRIC_NAMES) {
    t.match(name, /^colo_agent_[a-z_]+$/, `${name}: prefix and charset`);
    t.equal(types.get(name), METRIC_TYPES[name], `${name}: # TYPE ${METRIC_TYPES[name]}`);
    t.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name}: has help`);
    if (METRIC_TYPES[name] === 'counter') t.match(name, /_total$/, `${name}: counters end in _total`);
  }
  const ours = [...types.keys()].filter((n) => n.startsWith('colo_agent_'));
  t.same(ours.sort(), [...METRIC_NAMES].sort(), 'no colo_agent_ metric outside the list');
  t.ok(types.has('process_cpu_user_seconds_total') && types.has('nodejs_eventloop_lag_seconds'), 'default process metrics included');
  t.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8');
});

t.test('known label values are pre-created, state sets hold exactly one 1', async (t) => {
  const m = new AgentMetrics({ version: '1.2.3', node: 'colo-a', defaultMetrics: false });
  t.equal(await metricValue(m, 'colo_agent_build_info', { version: '1.2.3', node: 'colo-a' }), 1);
  for (const reason of REJECT_REASONS) t.equal(await metricValue(m, 'colo_agent_heartbeat_rejected_total', { reason }), 0, `rejected{${reason}} = 0`);
  for (const reason of ['request', 'error', 'other']) t.equal(await metricValue(m, 'colo_agent_colo_exits_total', { reason }), 0);
  for (const sequence of ['primary-failover', 'secondary-failover']) {
    for (const result of ['success', 'failure']) t.equal(await metricValue(m, 'colo_agent_failovers_total', { sequence, result }), 0);
  }
  for (const state of AGENT_STATES) t.equal(await metricValue(m, 'colo_agent_state', { state }), state === 'starting' ? 1 : 0);
  t.equal(await metricValue(m, 'colo_agent_colo_mode', { mode: 'unknown' }), 1);
  t.equal(await metricValue(m, 'colo_agent_peer_state', { state: 'unknown' }), 1);

  setStateSet(m.state, 'state', AGENT_STATES, 'peer-up');
  const values = await Promise.all(AGENT_STATES.map((state) => metricValue(m, 'colo_agent_state', { state })));
  t.same(values.filter((v) => v === 1).length, 1, 'one state is 1');
  t.equal(await metricValue(m, 'colo_agent_state', { state: 'peer-up' }), 1);
});

t.test('each AgentMetrics has its own registry; the global one stays empty of ours', async (t) => {
  const a = new AgentMetrics({ version: '1', node: 'a', defaultMetrics: false });
  const b = new AgentMetrics({ version: '1', node: 'b', defaultMetrics: false });
  a.checkpoints.inc();
  t.equal(await metricValue(a, 'colo_agent_checkpoints_total'), 1);
  t.equal(await metricValue(b, 'colo_agent_checkpoints_total'), 0);
  t.notMatch(await globalRegistry.metrics(), /colo_agent_/);
});

t.test('scrape sources fill the collect() gauges; without one the gauge keeps its value', async (t) => {
  const m = new AgentMetrics({ version: '1', node: 'a', defaultMetrics: false });
  t.equal(await metricValue(m, 'colo_agent_peer_outage_seconds'), 0);
  m.sources.peerOutageSeconds = () => 2.5;
  m.sources.checkpointInProgress = () => true;
  t.equal(await metricValue(m, 'colo_agent_peer_outage_seconds'), 2.5);
  t.equal(await metricValue(m, 'colo_agent_checkpoint_in_progress'), 1);
  m.sources.checkpointStalled = () => undefined;
  m.checkpointStalled.set(1);
  t.equal(await metricValue(m, 'colo_agent_checkpoint_stalled'), 1, 'undefined from the source leaves the event-driven value');
});

t.test('LabelLimiter folds values past the cap into other', async (t) => {
  const l = new LabelLimiter(2);
  t.same(['a', 'b', 'c', 'a', 'd', 'b'].map((v) => l.label(v)), ['a', 'b', 'other', 'a', 'other', 'b']);
});

t.test('seriesNames: histograms expose _bucket/_sum/_count', async (t) => {
  t.same(seriesNames('colo_agent_heartbeat_rtt_seconds'), [
    'colo_agent_heartbeat_rtt_seconds_bucket',
    'colo_agent_heartbeat_rtt_seconds_sum',
    'colo_agent_heartbeat_rtt_seconds_count',
  ]);
  t.same(seriesNames('colo_agent_peer_up'), ['colo_agent_peer_up']);
});
