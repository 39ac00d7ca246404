/**
 * A real Prometheus server scraping real agents: two `colo-agent run` processes heartbeating each
 * other (no QEMU), each with its metrics endpoint on loopback, and the Debian `prometheus` binary
 * scraping both every second with deploy/prometheus/alerts.yml loaded.
 *
 * What only a real Prometheus can tell: that it accepts our exposition (target health up, no
 * scrape error), that the series arrive under the names and labels the dashboard and the alert
 * rules use (the `pair` label from the scrape config, `node` joined from colo_agent_build_info),
 * and that every alert rule evaluates without error against real series (rule health ok) and
 * the ones whose condition holds go pending. Prometheus is asked through its HTTP API only.
 *
 * Skipped where `prometheus` is not installed (Debian package: prometheus). The agents run the
 * built CLI (dist/): `npm test` builds first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { parse as parseYaml } from 'yaml';
import { packageVersion } from '../../src/metrics/index.js';
import {
  freePort,
  killAllChildren,
  requireBuiltCli,
  sleep,
  startPair,
  trackChild,
  withMetricsEndpoints,
  type AgentPair,
  type MetricsAddresses,
  type Side,
} from '../helpers/agent-process.js';
import { httpGet } from '../helpers/http.js';
import { processAlive } from '../helpers/proc.js';
import { findExecutable } from '../helpers/run-command.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS = join(ROOT, 'deploy/prometheus/alerts.yml');
const PAIR_LABEL = 'test-pair';
const NODES = { primary: 'colo-a', secondary: 'colo-b' } as const;
const WAIT_MS = 30_000;

const prometheusBin = findExecutable('prometheus');
const skip = prometheusBin ? false : 'prometheus is not installed (Debian package: prometheus; .ci/run installs it)';

t.teardown(killAllChildren);

// ---- two agents with metrics ----

interface MetricsPair {
  agents: AgentPair;
  /** HOST:PORT of each agent's metrics endpoint. */
  metrics: MetricsAddresses;
  /** HOST:PORT of each agent's heartbeat listener. */
  heartbeat: Readonly<Record<Side, string>>;
}

/** Two heartbeat-only agents with metrics on, each on its own metrics port. */
async function startMetricsPair(t: Test): Promise<MetricsPair> {
  const { started: agents, metrics } = await withMetricsEndpoints((setsFor) =>
    startPair({ t, heartbeat: { intervalMs: 100, startupGraceMs: 3000 }, setsFor, upTimeoutMs: WAIT_MS }),
  );
  return { agents, metrics, heartbeat: agents.heartbeatListen };
}

// ---- a Prometheus server ----

interface PrometheusServer {
  readonly child: ChildProcess;
  readonly port: number;
  /** GET a path of its HTTP API; resolves with the parsed JSON body (any status). */
  get<T = unknown>(path: string): Promise<{ status: number; body: T }>;
  stderrTail(lines?: number): string;
  /** SIGTERM, SIGKILL after graceMs; resolves once it has exited. Idempotent. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startPrometheus(t: Test, dir: string, targets: string[]): Promise<PrometheusServer> {
  const port = await freePort();
  const config = {
    // scrape_timeout may not exceed scrape_interval (the default 10 s would be refused).
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: [ALERTS],
    scrape_configs: [{ job_name: 'colo-agent', static_configs: [{ targets, labels: { pair: PAIR_LABEL } }] }],
  };
  mkdirSync(dir, { recursive: true });
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`); // JSON is YAML
  const child = spawn(
    prometheusBin!,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  trackChild(child);
  const stderr: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (c: string) => stderr.push(...c.split('\n').filter(Boolean)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let stopping: ReturnType<PrometheusServer['stop']> | undefined;
  const server: PrometheusServer = {
    child,
    port,
    async get<T>(path: string) {
      const r = await httpGet(port, path);
      return { status: r.status, body: JSON.parse(r.body) as T };
    },
    stderrTail: (lines = 15) => stderr.slice(-lines).join('\n'),
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
        await Promise.race([exited, late]);
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        return exited;
      })();
      return stopping;
    },
  };
  t.teardown(() => server.stop());
  // Ready: the TSDB is open and the config (rules included) loaded.
  const until = Date.now() + WAIT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited at start-up:\n${server.stderrTail()}`);
    const ok = await httpGet(port, '/-/ready').then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return server;
    if (Date.now() > until) throw new Error(`prometheus not ready within ${WAIT_MS} ms:\n${server.stderrTail()}`);
    await sleep(100);
  }
}

// ---- the HTTP API's shapes (the parts used) ----

interface ApiReply<D> {
  status: 'success' | 'error';
  data: D;
  error?: string;
}
interface Target {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
}
interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}
interface Rule {
  name: string;
  type: 'alerting' | 'recording';
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
  state?: string;
}
interface RuleGroup {
  name: string;
  file: string;
  rules: Rule[];
}
interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
}

/** Polls `fetch` until `ok` holds of its result, and returns the last result either way. */
async function settle<T>(fetch: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = WAIT_MS): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fetch();
    if (ok(v) || Date.now() > until) return v;
    await sleep(250);
  }
}

async function query(prom: PrometheusServer, promql: string): Promise<VectorSample[]> {
  const r = await prom.get<ApiReply<{ resultType: string; result: VectorSample[] }>>(`/api/v1/query?query=${encodeURIComponent(promql)}`);
  if (r.body.status !== 'success') throw new Error(`query ${promql} failed: ${r.body.error}`);
  return r.body.data.result;
}

/** Alert names defined in alerts.yml, per group. */
function alertGroups(): Map<string, string[]> {
  const doc = parseYaml(readFileSync(ALERTS, 'utf8')) as { groups: Array<{ name: string; rules: Array<{ alert?: string }> }> };
  return new Map(doc.groups.map((g) => [g.name, g.rules.flatMap((r) => (r.alert ? [r.alert] : []))]));
}

const byInstance = (samples: VectorSample[]) => [...samples].sort((a, b) => (a.metric.instance ?? '').localeCompare(b.metric.instance ?? ''));

if (!prometheusBin) {
  t.test('a real Prometheus scrapes two agents', { skip }, () => undefined);
} else if (requireBuiltCli(t)) {
  t.test('a real Prometheus scrapes two agents: targets up, series with node and pair labels, alert rules loaded', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'colo-prom-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const { agents, metrics, heartbeat } = await startMetricsPair(t);
    const instances = [metrics.primary, metrics.secondary].sort();
    const prom = await startPrometheus(t, join(dir, 'prometheus'), [metrics.primary, metrics.secondary]);
    const diag = () => `prometheus stderr:\n${prom.stderrTail()}`;

    // 1. Both targets scraped without error.
    const targets = await settle(
      async () => (await prom.get<ApiReply<{ activeTargets: Target[] }>>('/api/v1/targets?state=active')).body.data.activeTargets,
      (ts) => ts.length === 2 && ts.every((x) => x.health === 'up'),
    );
    t.same(targets.map((x) => x.labels.instance).sort(), instances, 'both agents are targets');
    for (const x of targets) {
      t.equal(x.health, 'up', `${x.labels.instance} is up`, { lastError: x.lastError, diag: diag() });
      t.equal(x.lastError, '', `${x.labels.instance}: no scrape error`);
      t.equal(x.labels.job, 'colo-agent');
      t.equal(x.labels.pair, PAIR_LABEL, 'the static pair label is on the target');
      t.equal(x.scrapeUrl, `http://${x.labels.instance}/metrics`);
    }
    const up = await query(prom, 'up{job="colo-agent"}');
    t.same(byInstance(up).map((s) => [s.metric.instance, s.value[1]]), instances.map((i) => [i, '1']), 'up is 1 for both');

    // 2. The series, with their labels.
    const version = packageVersion();
    const build = byInstance(await settle(() => query(prom, 'colo_agent_build_info'), (r) => r.length === 2));
    t.same(
      build.map((s) => s.metric),
      [
        { __name__: 'colo_agent_build_info', instance: metrics.primary, job: 'colo-agent', pair: PAIR_LABEL, node: NODES.primary, version },
        { __name__: 'colo_agent_build_info', instance: metrics.secondary, job: 'colo-agent', pair: PAIR_LABEL, node: NODES.secondary, version },
      ].sort((a, b) => a.instance.localeCompare(b.instance)),
      'colo_agent_build_info: exactly node, version, and the scrape labels',
    );
    t.ok(build.every((s) => s.value[1] === '1'), 'build_info is 1');

    // peer_up carries no node label of its own: dashboards join it from build_info, as here.
    const peerUp = byInstance(
      await settle(
        () => query(prom, 'colo_agent_peer_up * on (job, instance) group_left (node) colo_agent_build_info'),
        (r) => r.length === 2 && r.every((s) => s.value[1] === '1'),
      ),
    );
    t.same(
      peerUp.map((s) => ({ ...s.metric, value: s.value[1] })),
      [
        { instance: metrics.primary, job: 'colo-agent', pair: PAIR_LABEL, node: NODES.primary, value: '1' },
        { instance: metrics.secondary, job: 'colo-agent', pair: PAIR_LABEL, node: NODES.secondary, value: '1' },
      ].sort((a, b) => a.instance.localeCompare(b.instance)),
      'colo_agent_peer_up is 1 on both, node joined from build_info',
    );

    // One RTT histogram per link. Each agent has two: the connection it dials (link named after the
    // peer's heartbeat address) and the one the peer dialled in (link "in:<source address>").
    const rtt = byInstance(
      await settle(
        () => query(prom, 'colo_agent_heartbeat_rtt_seconds_count * on (job, instance) group_left (node) colo_agent_build_info'),
        (r) => r.length === 4 && r.every((s) => Number(s.value[1]) > 0),
      ),
    );
    for (const side of ['primary', 'secondary'] as const) {
      const mine = rtt.filter((s) => s.metric.instance === metrics[side]);
      const links = mine.map((s) => s.metric.link ?? '').sort();
      t.equal(mine.length, 2, `${NODES[side]}: two RTT series (${links.join(', ')})`);
      t.ok(links.includes(heartbeat[side === 'primary' ? 'secondary' : 'primary']), `${NODES[side]}: one for the link it dials`);
      t.ok(links.some((l) => l.startsWith('in:')), `${NODES[side]}: one for the link dialled in`);
      for (const s of mine) {
        t.same([s.metric.node, s.metric.pair, s.metric.job], [NODES[side], PAIR_LABEL, 'colo-agent'], `${NODES[side]} ${s.metric.link}: node and pair labels`);
        t.ok(Number(s.value[1]) > 0, `${NODES[side]} ${s.metric.link}: RTT samples counted (${s.value[1]})`);
      }
    }
    const buckets = await query(prom, 'sum by (instance) (colo_agent_heartbeat_rtt_seconds_bucket{le="+Inf"})');
    t.equal(buckets.length, 2, 'the histogram buckets are stored too (le="+Inf" per instance)');

    // 3. The alert rules: loaded, every one evaluating without error against these series.
    const expected = alertGroups();
    const groups = await settle(
      async () => (await prom.get<ApiReply<{ groups: RuleGroup[] }>>('/api/v1/rules')).body.data.groups,
      (gs) => gs.length > 0 && gs.every((g) => g.rules.every((r) => r.health === 'ok')),
    );
    t.same(groups.map((g) => g.name).sort(), [...expected.keys()].sort(), 'every group of alerts.yml is loaded');
    for (const g of groups) {
      t.equal(g.file, ALERTS, `group ${g.name} comes from alerts.yml`);
      t.same(g.rules.map((r) => r.name), expected.get(g.name), `group ${g.name}: every alert, in order`);
      for (const r of g.rules) t.equal(r.health, 'ok', `${r.name} evaluates`, { lastError: r.lastError });
    }

    // No QEMU behind either agent: ColoQemuUnreachable (for: 1m) goes pending for both, with the
    // pair label; the peer is up and the pair label is set, so those alerts stay quiet.
    const alerts = await settle(
      async () => (await prom.get<ApiReply<{ alerts: Alert[] }>>('/api/v1/alerts')).body.data.alerts,
      (as) => as.filter((a) => a.labels.alertname === 'ColoQemuUnreachable').length === 2,
    );
    const qemu = alerts.filter((a) => a.labels.alertname === 'ColoQemuUnreachable');
    t.same(qemu.map((a) => a.labels.instance).sort(), instances, 'ColoQemuUnreachable is active for both agents');
    t.ok(qemu.every((a) => a.labels.pair === PAIR_LABEL && a.labels.severity === 'critical'), 'with the pair label and its severity');
    t.ok(qemu.every((a) => a.state === 'pending'), 'pending (for: 1m has not passed)');
    for (const quiet of ['ColoPeerDown', 'ColoPairLabelMissing', 'ColoAgentDown', 'ColoAgentTargetsMissing']) {
      t.notOk(alerts.some((a) => a.labels.alertname === quiet), `${quiet} is not active`);
    }

    // 4. Everything stops: no process left behind.
    const promExit = await prom.stop();
    t.ok(promExit.code !== null || promExit.signal !== null, `prometheus exited (${JSON.stringify(promExit)})`);
    const exits = await Promise.all([agents.primary.stop(), agents.secondary.stop()]);
    t.ok(exits.every((e) => e.code !== null || e.signal !== null), 'both agents exited');
    for (const pid of [prom.child.pid, agents.primary.pid, agents.secondary.pid]) t.notOk(processAlive(pid ?? -1), `pid ${pid} is gone`);
  });
}
