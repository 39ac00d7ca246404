/**
 * deploy/grafana: the dashboard and the alert rules query only metrics colo-agent exports (so a renamed
 * metric breaks a test, not a dashboard at 3 a.m.), every exported colo_agent_* metric is on the
 * dashboard, every query honours the pair and instance variables, the layout is sound, and the
 * provisioning files point where deploy/README.md says.
 *
 * The metric names are read out of PromQL by a small tokenizer (metricSelectors below, tested here
 * too); promtool, when installed, additionally checks that every dashboard expression parses.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry, collectDefaultMetrics } from 'prom-client';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { METRIC_NAMES } from '../../src/metrics/names.js';
import { findExecutable, runCommand } from '../helpers/run-command.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD = join(root, 'deploy/grafana/colo-agent.json');
const ALERTS = join(root, 'deploy/prometheus/alerts.yml');
const PROVIDER = join(root, 'deploy/grafana/provisioning/dashboards/colo-agent.yaml');
const DATASOURCE = join(root, 'deploy/grafana/provisioning/datasources/prometheus.yaml');

/** Series Prometheus itself adds to every target. */
const SCRAPE_SERIES = ['up'];

/**
 * Every series name a query may use. A histogram exposes name_bucket/_sum/_count: for prom-client's
 * default metrics the type is known; for colo_agent_* names (a plain list) any listed name is allowed
 * those suffixes, which lets a typo like colo_agent_state_count through but nothing unlisted.
 */
function knownSeries(): { exact: Set<string>; histogramBases: Set<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const defaults = registry.getMetricsAsArray().map((m) => ({ name: m.name, type: String(m.type) }));
  registry.clear();
  return {
    exact: new Set([...METRIC_NAMES, ...SCRAPE_SERIES, ...defaults.filter((d) => d.type !== 'histogram').map((d) => d.name)]),
    histogramBases: new Set([...METRIC_NAMES, ...defaults.filter((d) => d.type === 'histogram').map((d) => d.name)]),
  };
}

function isKnownSeries(name: string, known: ReturnType<typeof knownSeries>): boolean {
  if (known.exact.has(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return m !== null && known.histogramBases.has(m[1]!);
}

// ------------------------------------------------------------------------------------------ PromQL reading

/** Words that are PromQL syntax, never metric names, even when not followed by "(". */
const PROMQL_WORDS = new Set([
  'and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'atan2', 'inf', 'nan',
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio',
]);
/** Keywords whose parenthesised argument is a list of label names, not an expression. */
const LABEL_LIST_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

interface MetricSelector {
  /** Series name, e.g. colo_agent_heartbeat_rtt_seconds_bucket. */
  name: string;
  /** The text between the braces, '' when there are none. */
  matchers: string;
}

/** Index just past the string literal starting at s[i] (", ' or `). */
function skipString(s: string, i: number): number {
  const quote = s[i]!;
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\' && quote !== '`') j++;
    else if (s[j] === quote) return j + 1;
  }
  return s.length;
}

/** Index just past the bracket that closes the one at s[i], skipping strings inside. */
function skipBalanced(s: string, i: number, open: string, close: string): number {
  let depth = 0;
  for (let j = i; j < s.length; ) {
    const c = s[j]!;
    if (c === '"' || c === "'" || c === '`') {
      j = skipString(s, j);
      continue;
    }
    if (c === open) depth++;
    if (c === close && --depth === 0) return j + 1;
    j++;
  }
  return s.length;
}

function skipSpace(s: string, i: number): number {
  while (i < s.length && /\s/.test(s[i]!)) i++;
  return i;
}

/**
 * The metric selectors of a PromQL expression (Grafana variables allowed): identifiers that are not
 * functions, keywords or label names, with their matchers. `{__name__="x"}` counts as metric x.
 */
function metricSelectors(expr: string): MetricSelector[] {
  const out: MetricSelector[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === '`') {
      i = skipString(expr, i);
    } else if (c === '[') {
      i = skipBalanced(expr, i, '[', ']'); // range or subquery: durations and $__rate_interval
    } else if (c === '$') {
      i += /^\$(\{[^}]*\}|\w+)/.exec(expr.slice(i))?.[0].length ?? 1; // a Grafana variable outside a string
    } else if (c === '{') {
      const end = skipBalanced(expr, i, '{', '}');
      const matchers = expr.slice(i + 1, end - 1);
      const name = /__name__\s*=\s*"([^"]+)"/.exec(matchers)?.[1];
      if (name) out.push({ name, matchers });
      i = end;
    } else if (/[0-9.]/.test(c)) {
      i += /^[0-9.][\w.]*/.exec(expr.slice(i))![0].length; // numbers and durations (15m, 1e3, 0x1f)
    } else if (/[A-Za-z_:]/.test(c)) {
      const word = /^[A-Za-z_:][\w:]*/.exec(expr.slice(i))![0];
      const after = skipSpace(expr, i + word.length);
      if (LABEL_LIST_WORDS.has(word) && expr[after] === '(') {
        i = skipBalanced(expr, after, '(', ')');
      } else if (PROMQL_WORDS.has(word) || expr[after] === '(') {
        i += word.length; // keyword or function call
      } else if (expr[after] === '{') {
        const end = skipBalanced(expr, after, '{', '}');
        out.push({ name: word, matchers: expr.slice(after + 1, end - 1) });
        i = end;
      } else {
        out.push({ name: word, matchers: '' });
        i += word.length;
      }
    } else {
      i++;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------ the files

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  type: string;
  name: string;
  query?: string | { query?: string };
  definition?: string;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
  annotations: { list: { name: string; expr?: string; datasource?: { uid?: string } }[] };
}

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

/** All panels, including those inside (collapsed) rows. */
function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** Every PromQL expression on the dashboard, with where it is. */
function dashboardExprs(d: Dashboard): { where: string; expr: string }[] {
  const fromPanels = allPanels(d).flatMap((p) =>
    (p.targets ?? []).filter((x) => x.expr).map((x) => ({ where: `panel "${p.title}" ${x.refId ?? ''}`, expr: x.expr! })),
  );
  const fromAnnotations = d.annotations.list.filter((a) => a.expr).map((a) => ({ where: `annotation "${a.name}"`, expr: a.expr! }));
  return [...fromPanels, ...fromAnnotations];
}

function alertExprs(): { where: string; expr: string }[] {
  const doc = parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: { alert?: string; record?: string; expr: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ where: `alerts.yml ${r.alert ?? r.record}`, expr: r.expr })));
}

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? v.definition ?? '');
}

// ------------------------------------------------------------------------------------------ tests

t.test('metricSelectors reads names and matchers out of PromQL', async (t) => {
  t.same(
    metricSelectors(
      'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{pair=~"$pair", x="by{(}"}[$__rate_interval]))) ' +
        'unless on (job, instance) b offset 15m and absent(up{job="j"}) or time() - c > 15 * 60 ' +
        '* on (instance) group_left (node) d and {__name__="e", k="v"} and sum without (x) (max(f)) > bool 1e3 or atan2 inf',
    ),
    [
      { name: 'a_bucket', matchers: 'pair=~"$pair", x="by{(}"' },
      { name: 'b', matchers: '' },
      { name: 'up', matchers: 'job="j"' },
      { name: 'c', matchers: '' },
      { name: 'd', matchers: '' },
      { name: 'e', matchers: '__name__="e", k="v"' },
      { name: 'f', matchers: '' },
    ],
  );
  t.same(metricSelectors('count(x) by (le) + group(y)'), [
    { name: 'x', matchers: '' },
    { name: 'y', matchers: '' },
  ]);
});

t.test('the dashboard is a Grafana 10/11 dashboard with datasource, pair and instance variables', async (t) => {
  const d = loadDashboard();
  t.equal(d.uid, 'colo-agent');
  t.ok(d.schemaVersion >= 36 && d.schemaVersion <= 41, `schemaVersion ${d.schemaVersion} is Grafana 10/11`);
  const vars = new Map(d.templating.list.map((v) => [v.name, v]));
  t.match(vars.get('datasource'), { type: 'datasource', query: 'prometheus' }, 'a Prometheus data source variable');
  const pair = vars.get('pair');
  const instance = vars.get('instance');
  t.ok(pair && instance, 'pair and instance variables exist');
  if (!pair || !instance) return;
  t.match(variableQuery(pair), /^label_values\(colo_agent_build_info\s*,\s*pair\)$/, 'pair lists the pairs');
  t.match(variableQuery(instance), /^label_values\(colo_agent_build_info\{pair=~"\$pair"\}\s*,\s*instance\)$/, 'instance lists the agents of the chosen pairs');
  for (const v of [pair, instance]) {
    t.match(v, { type: 'query', multi: true, includeAll: true }, `${v.name} allows several values and All`);
    // '.*' and not Grafana's default alternation of values, so All also matches targets without a pair label.
    t.equal(v.allValue, '.*', `${v.name}: All means any value`);
  }
});

t.test('every panel uses the datasource variable, has a unique id and a place on the grid no other takes', async (t) => {
  const panels = allPanels(loadDashboard());
  const ids = panels.map((p) => p.id);
  t.same(ids.filter((id, i) => ids.indexOf(id) !== i), [], 'panel ids are unique');
  for (const p of panels) {
    const { x, y, w, h } = p.gridPos;
    t.ok(x >= 0 && w > 0 && h > 0 && x + w <= 24, `"${p.title}" fits the 24 columns`);
    if (p.type === 'row') continue;
    t.equal(p.datasource?.uid, '${datasource}', `"${p.title}": panel data source`);
    t.ok((p.targets ?? []).length > 0, `"${p.title}" has queries`);
    for (const q of p.targets ?? []) t.equal(q.datasource?.uid, '${datasource}', `"${p.title}" ${q.refId}: query data source`);
  }
  const overlaps: string[] = [];
  for (const [i, a] of panels.entries()) {
    for (const b of panels.slice(i + 1)) {
      const ga = a.gridPos;
      const gb = b.gridPos;
      if (ga.x < gb.x + gb.w && gb.x < ga.x + ga.w && ga.y < gb.y + gb.h && gb.y < ga.y + ga.h) overlaps.push(`"${a.title}" / "${b.title}"`);
    }
  }
  t.same(overlaps, [], 'no two panels overlap');
});

t.test('every dashboard query selects by the pair and instance variables', async (t) => {
  for (const { where, expr } of dashboardExprs(loadDashboard())) {
    const selectors = metricSelectors(expr);
    t.ok(selectors.length > 0, `${where} queries a metric`);
    for (const s of selectors) {
      t.ok(s.matchers.includes('pair=~"$pair"') && s.matchers.includes('instance=~"$instance"'), `${where}: ${s.name} is filtered by $pair and $instance`);
    }
  }
});

t.test('the dashboard and alerts.yml use only metrics colo-agent exports', async (t) => {
  const known = knownSeries();
  const uses = [...dashboardExprs(loadDashboard()), ...alertExprs()].flatMap(({ where, expr }) =>
    metricSelectors(expr).map((s) => ({ where, name: s.name })),
  );
  t.ok(uses.length > 50, `found ${uses.length} metric uses`);
  const unknown = uses.filter((u) => !isKnownSeries(u.name, known)).map((u) => `${u.where}: ${u.name}`);
  t.same(unknown, [], 'every series name is exported by colo-agent, prom-client defaults, or the scrape itself');
});

t.test('every colo_agent_* metric is on the dashboard', async (t) => {
  const used = new Set(dashboardExprs(loadDashboard()).flatMap(({ expr }) => metricSelectors(expr).map((s) => s.name.replace(/_(bucket|sum|count)$/, ''))));
  t.same(METRIC_NAMES.filter((n) => !used.has(n)), [], 'a metric added to src/metrics needs a panel too');
});

t.test('the provisioning files point where deploy/README.md says', async (t) => {
  const provider = parse(readFileSync(PROVIDER, 'utf8')) as { apiVersion: number; providers: { type: string; options: { path: string } }[] };
  t.equal(provider.apiVersion, 1);
  t.match(provider.providers, [{ type: 'file', options: { path: '/var/lib/grafana/dashboards/colo-agent' } }]);
  const datasources = parse(readFileSync(DATASOURCE, 'utf8')) as { apiVersion: number; datasources: { type: string; uid: string }[] };
  t.equal(datasources.apiVersion, 1);
  t.match(datasources.datasources, [{ type: 'prometheus', uid: 'prometheus' }]);
  const readme = readFileSync(join(root, 'deploy/README.md'), 'utf8');
  t.ok(readme.includes('/var/lib/grafana/dashboards/colo-agent'), 'the README names the dashboard directory');
});

const promtool = findExecutable('promtool');

t.test('every dashboard expression is valid PromQL (promtool)', { skip: promtool ? false : 'promtool not found: apt-get install prometheus' }, async (t) => {
  // Grafana's variables replaced the way Grafana would, each expression as a recording rule.
  const rules = dashboardExprs(loadDashboard()).map(({ expr }, i) => ({
    record: `dashboard:expr_${i}`,
    expr: expr.replace(/\$__\w+/g, '5m').replace(/\$\{?\w+\}?/g, '.*'),
  }));
  const file = join(t.testdir(), 'dashboard-rules.yml');
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
  const res = await runCommand(promtool!, ['check', 'rules', file]);
  t.equal(res.code, 0, 'promtool check rules exits 0', { output: res.output });
});
