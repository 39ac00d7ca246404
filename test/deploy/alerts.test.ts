/**
 * deploy/prometheus/alerts.yml: every alert is labelled, annotated with a runbook that exists, and
 * unit-tested both ways in alerts.test.yml; promtool accepts the rules, passes those unit tests and
 * accepts the scrape configuration shown in deploy/README.md.
 *
 * The promtool parts skip when promtool is not installed (Debian: apt-get install prometheus).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { findExecutable, runCommand } from '../helpers/run-command.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS = join(root, 'deploy/prometheus/alerts.yml');
const ALERTS_TEST = join(root, 'deploy/prometheus/alerts.test.yml');
const README = join(root, 'deploy/README.md');

/** The alerts the deployment promises (deploy/README.md lists them); more may exist. */
const REQUIRED_ALERTS = [
  'ColoPeerDown',
  'ColoReplicationNotRunning',
  'ColoCheckpointStalled',
  'ColoFailoverHappened',
  'ColoFailoverFailed',
  'ColoRunningSoloTooLong',
  'ColoHeartbeatAuthFailures',
  'ColoSplitBrainRisk',
  'ColoAgentDown',
  'ColoQemuUnreachable',
];

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleTestFile {
  rule_files: string[];
  tests: { name?: string; alert_rule_test?: { eval_time: string; alertname: string; exp_alerts?: unknown[] }[] }[];
}

function loadAlerts(): AlertRule[] {
  const doc = parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to dashes. */
function anchorOf(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

t.test('every required alert exists, once, in one group', async (t) => {
  const names = loadAlerts().map((r) => r.alert);
  for (const name of REQUIRED_ALERTS) t.ok(names.includes(name), `${name} is defined`);
  t.same(names.filter((n, i) => names.indexOf(n) !== i), [], 'no alert name is defined twice');
});

t.test('every alert has a severity, a summary and a description with a runbook hint that exists', async (t) => {
  const anchors = new Set(
    readFileSync(README, 'utf8')
      .split('\n')
      .filter((l) => /^#{1,6} /.test(l))
      .map((l) => anchorOf(l.replace(/^#+ /, ''))),
  );
  for (const rule of loadAlerts()) {
    t.match(rule.alert, /^Colo[A-Z][A-Za-z]+$/, `${rule.alert}: name`);
    t.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity is critical, warning or info`);
    t.ok(rule.annotations?.summary, `${rule.alert}: summary`);
    t.match(rule.annotations?.description ?? '', /Runbook:/, `${rule.alert}: description has a runbook hint`);
    const refs = [...(rule.annotations?.description ?? '').matchAll(/deploy\/README\.md#([\w-]+)/g)].map((m) => m[1]!);
    t.ok(refs.length > 0, `${rule.alert}: description points into deploy/README.md`);
    for (const ref of refs) t.ok(anchors.has(ref), `${rule.alert}: deploy/README.md has a heading for #${ref}`);
  }
});

t.test('alerts.test.yml tests alerts.yml and has a firing and a quiet case for every alert', async (t) => {
  const tests = parse(readFileSync(ALERTS_TEST, 'utf8')) as RuleTestFile;
  t.same(tests.rule_files, ['alerts.yml']);
  const cases = tests.tests.flatMap((g) => g.alert_rule_test ?? []);
  const known = new Set(loadAlerts().map((r) => r.alert));
  for (const c of cases) t.ok(known.has(c.alertname), `test case at ${c.eval_time} names a defined alert (${c.alertname})`);
  for (const name of known) {
    const mine = cases.filter((c) => c.alertname === name);
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name} fires in some case`);
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name} stays quiet in some case`);
  }
});

const promtool = findExecutable('promtool');
const skip = promtool ? false : 'promtool not found: apt-get install prometheus';

/** Asserts a promtool run succeeded; its whole output is in the failure message. */
async function promtoolOk(t: Test, args: string[], what: string): Promise<void> {
  const res = await runCommand(promtool!, args);
  t.equal(res.code, 0, `${what}: promtool ${args.join(' ')} exits 0`, { output: res.output });
}

t.test('promtool check rules accepts alerts.yml', { skip }, async (t) => {
  await promtoolOk(t, ['check', 'rules', ALERTS], 'check rules');
});

t.test('promtool test rules passes alerts.test.yml', { skip }, async (t) => {
  await promtoolOk(t, ['test', 'rules', ALERTS_TEST], 'unit tests');
});

/** The prometheus.yml example in deploy/README.md: the yaml block right after its marker comment. */
function readmePrometheusExample(): string | undefined {
  return /<!-- prometheus\.yml -->\s*```yaml\n([\s\S]*?)```/.exec(readFileSync(README, 'utf8'))?.[1];
}

t.test('the prometheus.yml example in deploy/README.md scrapes as the rules expect', async (t) => {
  const config = readmePrometheusExample();
  t.ok(config, 'deploy/README.md has the example after its <!-- prometheus.yml --> marker');
  t.match(config ?? '', /alerts\.yml/, 'it loads the rules');
  t.match(config ?? '', /job_name: colo-agent\b/, 'the job is named as ColoAgentDown expects');
  t.match(config ?? '', /target_label: pair/, 'it sets the pair label by relabeling');
});

t.test('promtool check config accepts the prometheus.yml example', { skip }, async (t) => {
  const file = join(t.testdir(), 'prometheus.yml');
  writeFileSync(file, readmePrometheusExample() ?? '');
  // --syntax-only: the rule and target files it names are where an operator puts them, not in this tree.
  await promtoolOk(t, ['check', 'config', '--syntax-only', file], 'README example');
});
