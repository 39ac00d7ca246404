/**
 * deploy/prometheus/alerts.yml against metric series recorded from real runs (issue 14: "alerts that
 * page only for trouble"): test/fixtures/series/*.json are what Prometheus would have scraped from
 * both agents and the witness of a lab pair, once a second, during the routine paths (planned stops,
 * maintenance, failback both ways) and during faults (npm run record:series makes them; see
 * series-scenarios.ts). A few rules no lab run can trigger get derived or hand-written series
 * (hand-written-series.ts says why for each).
 *
 * For each fixture promtool must find exactly the expected alerts firing, ever, over the recording
 * and 40 minutes of its final state held (series-promtool.ts): none on a routine path (but the
 * warning that a takeover happened, after the takeovers that start a failback), and on a fault its
 * alerts, each firing by the time its rule's `for:` allows. Every rule must fire in some fixture.
 *
 * The promtool parts skip when promtool is not installed (Debian: apt-get install prometheus).
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { findExecutable, runCommand } from '../helpers/run-command.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { derive, HAND_WRITTEN } from './hand-written-series.js';
import { EXPECTATIONS } from './series-expectations.js';
import { ALERTS_FILE, FIXTURE_DIR, metricOf, readFixture, ruleMetricNames, type SeriesFixture } from './series-fixture.js';
import { loadRules, promtoolTest } from './series-promtool.js';

const recorded = readdirSync(FIXTURE_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => readFixture(join(FIXTURE_DIR, f)));
const byName = (name: string): SeriesFixture => {
  const fx = recorded.find((f) => f.scenario === name);
  if (!fx) throw new Error(`no recording ${name} in ${FIXTURE_DIR}: npm run record:series -- --only ${name}`);
  return fx;
};

/** Scrape-config mistakes, made on real recordings. */
const derived: SeriesFixture[] = [
  // The job renamed (a relabeling mistake): no up{job="colo-agent"} at all.
  derive(byName('planned-work'), 'targets-missing', 'the job label rewritten to "node"', (_name, l) => ({ ...l, job: 'node' })),
  // Targets scraped without their pair label.
  derive(byName('planned-work'), 'pair-label-missing', 'the pair label dropped', (_name, { pair: _drop, ...l }) => l),
];
const fixtures = [...recorded, ...derived, ...HAND_WRITTEN];

// Every fixture is a promtool run over up to an hour of 1 s series: about 70 s alone here, more beside
// the rest of the suite on 2 cores, which tap's 120 s default per file does not leave.
t.setTimeout(10 * 60_000);

t.test('every fixture has an expectation, and every rule fires in some fixture', async (t) => {
  for (const fx of fixtures) t.ok(EXPECTATIONS[fx.scenario], `${fx.scenario}: expectation in series-expectations.ts`);
  for (const name of Object.keys(EXPECTATIONS)) t.ok(fixtures.some((f) => f.scenario === name), `${name}: its fixture exists`);
  const firing = new Set(fixtures.flatMap((fx) => EXPECTATIONS[fx.scenario]?.fires.map((f) => f.alert) ?? []));
  for (const rule of loadRules()) t.ok(firing.has(rule.alert), `${rule.alert} fires in some fixture`);
  for (const fx of fixtures.filter((f) => f.kind === 'routine')) {
    const allowed = EXPECTATIONS[fx.scenario]?.fires.map((f) => f.alert) ?? [];
    t.same([...new Set(allowed)].filter((a) => a !== 'ColoFailoverHappened'), [], `${fx.scenario}: a routine path allows nothing but ColoFailoverHappened`);
    t.same(EXPECTATIONS[fx.scenario]?.mayFire ?? [], [], `${fx.scenario}: a routine path tolerates nothing`);
  }
  t.ok(recorded.some((f) => f.kind === 'routine') && recorded.some((f) => f.kind === 'fault'), 'routine and fault recordings exist');
});

t.test('the recordings hold the metrics the rules read, and stay small', async (t) => {
  const wanted = ruleMetricNames();
  const seen = new Set<string>();
  for (const fx of recorded) {
    t.equal(fx.source, 'lab', `${fx.scenario}: recorded on the lab`);
    t.ok(Object.keys(fx.markers).length > 0, `${fx.scenario}: its steps are marked`);
    for (const key of Object.keys(fx.series)) seen.add(metricOf(key));
  }
  // The recorder keeps what alerts.yml reads when it runs: a rule that starts reading another metric
  // needs the recordings made again (npm run record:series) before it is tested on real series.
  t.same([...wanted].filter((n) => !seen.has(n)), [], 'every metric alerts.yml reads is in some recording');
  const bytes = readdirSync(FIXTURE_DIR).reduce((n, f) => n + statSync(join(FIXTURE_DIR, f)).size, 0);
  t.ok(bytes < 400 * 1024, `test/fixtures/series is ${Math.round(bytes / 1024)} KiB (< 400 KiB)`);
});

const promtool = findExecutable('promtool');
const skip = promtool ? false : 'promtool not found: apt-get install prometheus';

for (const fx of fixtures) {
  const exp = EXPECTATIONS[fx.scenario];
  if (!exp) continue;
  const what = exp.fires.length ? exp.fires.map((f) => `${f.alert}${f.instance ? `@${f.instance}` : ''}`).join(', ') : 'nothing';
  t.test(`${fx.scenario} (${fx.kind}, ${fx.source})`, { skip }, async (t) => {
    t.comment(`expected: ${what} fires, nothing else`);
    const file = join(shortTempDir(t, 'alert-series-'), `${fx.scenario}.test.yml`);
    writeFileSync(file, promtoolTest(fx, exp));
    const res = await runCommand(promtool!, ['test', 'rules', file]);
    t.equal(res.code, 0, `promtool test rules: ${fx.description}`, { output: res.output });
  });
}

// The checks can fail: the real switch-overs of the routine failback paused the guest 70-80 ms
// (test/fixtures/series/failback-both-ways.json); with ColoAgentSwitchoverPauseHigh's bound lowered
// from 0.5 s to 0.05 s they page, and the routine check must say so.
t.test('a rule that pages on a routine path fails the check', { skip }, async (t) => {
  const dir = shortTempDir(t, 'alert-series-');
  const rules = join(dir, 'alerts.yml');
  const text = readFileSync(ALERTS_FILE, 'utf8');
  const broken = text.replace(/(rate\(colo_agent_switchover_pause_seconds_bucket\[1h\]\)\) > )0\.5/, '$10.05');
  t.not(broken, text, 'the mutation applies');
  writeFileSync(rules, broken);
  const file = join(dir, 'failback.test.yml');
  writeFileSync(file, promtoolTest(byName('failback-both-ways'), EXPECTATIONS['failback-both-ways']!, rules));
  const res = await runCommand(promtool!, ['test', 'rules', file]);
  t.not(res.code, 0, 'promtool fails');
  t.match(res.output, /ColoAgentSwitchoverPauseHigh/, 'and names the alert that fired', { output: res.output });
});
