/**
 * Turns a recorded series fixture (series-fixture.ts) and what must fire on it into a promtool unit
 * test of deploy/prometheus/alerts.yml (`promtool test rules FILE`).
 *
 * The checks read Prometheus's own ALERTS series, which promtool writes as the rules are evaluated:
 * - "ever fired": at the end, `group by (alertname, instance) (max_over_time(ALERTS{alertstate="firing"}[all]))`
 *   must be exactly the expected alerts: one query sees every alert that fired at ANY evaluation of
 *   the whole timeline, and promtool's failure message names what fired unexpectedly;
 * - "fires at": each expected alert is firing at a time computed from the recording (the tick of the
 *   marker it follows, plus the rule's `for:`, plus a margin for detection and scraping).
 * ALERTS carries no annotations, so the real alerts.yml is tested as it is.
 *
 * The recorded final state is held for EXTEND_SECONDS after the last sample (every series repeats its
 * last value; a clock gauge that was counting up keeps counting, one second per second): the routine
 * paths last minutes, the rules' `for:` windows up to 30m, and "nothing fires" must mean "nothing
 * fires even once every pending alert had its whole window". A fault recording ends in the state
 * the fault left, so its long-window alerts (running solo for 30m) fire in the extension.
 */
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { ALERTS_FILE, decodeRuns, metricOf, type Run, type SeriesFixture } from './series-fixture.js';

/** How long the final state is held: more than the longest `for:` (30m) plus the 5m of the longest `> 1800` gauge rule. */
export const EXTEND_SECONDS = 40 * 60;
/** Rule evaluation step (Prometheus's evaluation_interval): finer than the documented 15s, so short states are evaluated too. */
export const EVALUATION_INTERVAL_S = 5;
/** After the marker and the rule's `for:`: detection (a few seconds), the state reaching /metrics, evaluation steps. */
export const DEFAULT_MARGIN_S = 20;
/** Gauges that are a running clock while above 0: extended by one second per second. */
const CLOCK_GAUGES = new Set(['colo_agent_unprotected_seconds']);

/** `a` -> `a:9464`; a full instance is kept. */
export const instanceOf = (host: string): string => (host.includes(':') ? host : `${host}:9464`);

export interface ExpectedAlert {
  alert: string;
  /** The target the alert is about (`a`, `b`, `w` or a full instance); omitted for alerts aggregated per pair or about no target. */
  instance?: string;
  /** It fires by `marker` (a recorded step; `start` is tick 0) + the rule's `for:` + `marginSeconds` (or exactly `atSeconds` after the marker). */
  marker: string;
  marginSeconds?: number;
  atSeconds?: number;
}

export interface SeriesExpectation {
  /** Exactly these alerts fire (at their time, and nothing else ever: see mayFire). Routine: usually none. */
  fires: ExpectedAlert[];
  /** Alerts whose firing depends on timing the recording does not control: neither required nor forbidden (say why). */
  mayFire?: { alert: string; why: string }[];
}

interface RuleInfo {
  alert: string;
  forSeconds: number;
}

function seconds(d: string | undefined): number {
  if (!d) return 0;
  let total = 0;
  for (const m of d.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 'ms']!;
  return total;
}

export function loadRules(file = ALERTS_FILE): RuleInfo[] {
  const doc = parse(readFileSync(file, 'utf8')) as { groups: { rules: { alert: string; for?: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules).map((r) => ({ alert: r.alert, forSeconds: seconds(r.for) }));
}

const num = (v: number): string => (Number.isInteger(v) ? String(v) : String(Math.round(v * 1e6) / 1e6));

/** promtool's expanding notation for one series, the final state held for `extend` more ticks. */
export function promtoolValues(key: string, runs: readonly Run[], extend: number, step: number): string {
  const out: string[] = [];
  let present = false;
  for (const [v, n] of runs) {
    if (v === null) {
      // A series that vanishes from a scrape (or a failed scrape) is marked stale by Prometheus.
      if (present) out.push('stale', ...(n > 1 ? [`_x${n - 1}`] : []));
      else out.push(`_x${n}`);
      present = false;
    } else {
      out.push(n > 1 ? `${num(v)}x${n - 1}` : num(v));
      present = true;
    }
  }
  if (extend > 0) {
    const values = decodeRuns(runs);
    const last = values.at(-1) ?? null;
    const prev = values.at(-2) ?? null;
    if (last === null) out.push(`_x${extend}`);
    else if (CLOCK_GAUGES.has(metricOf(key)) && prev !== null && last > prev) out.push(`${num(last + step)}+${num(step)}x${extend - 1}`);
    else out.push(`${num(last)}x${extend - 1}`);
  }
  return out.join(' ');
}

const alertLabels = (alert: string, instance?: string): string =>
  `{alertname=${JSON.stringify(alert)}${instance ? `, instance=${JSON.stringify(instanceOf(instance))}` : ''}}`;

/** The promtool test file (YAML text) for one fixture and its expectation; alerts.yml is named by absolute path. */
export function promtoolTest(fx: SeriesFixture, exp: SeriesExpectation, rulesFile = ALERTS_FILE): string {
  const rules = new Map(loadRules(rulesFile).map((r) => [r.alert, r]));
  const step = fx.intervalSeconds;
  const extend = Math.ceil(EXTEND_SECONDS / step);
  const horizon = (fx.ticks + extend) * step;
  const end = Math.floor(horizon / EVALUATION_INTERVAL_S) * EVALUATION_INTERVAL_S - EVALUATION_INTERVAL_S;
  const tolerated = (exp.mayFire ?? []).map((m) => m.alert);
  const everFired = [...new Map(exp.fires.map((f) => [alertLabels(f.alert, f.instance), f])).keys()].sort();
  const notTolerated = tolerated.length ? `, alertname!~${JSON.stringify(tolerated.join('|'))}` : '';

  const timed = exp.fires.map((f) => {
    const rule = rules.get(f.alert);
    if (!rule) throw new Error(`${fx.scenario}: no rule ${f.alert} in ${rulesFile}`);
    const marker = f.marker === 'start' ? 0 : fx.markers[f.marker];
    if (marker === undefined) throw new Error(`${fx.scenario}: no marker ${f.marker} (has ${Object.keys(fx.markers).join(', ')})`);
    const at = marker * step + (f.atSeconds ?? rule.forSeconds + (f.marginSeconds ?? DEFAULT_MARGIN_S));
    const evalAt = Math.ceil(at / EVALUATION_INTERVAL_S) * EVALUATION_INTERVAL_S;
    const sel = `alertstate="firing", alertname=${JSON.stringify(f.alert)}${f.instance ? `, instance=${JSON.stringify(instanceOf(f.instance))}` : ''}`;
    return {
      expr: `group by (alertname, instance) (ALERTS{${sel}})`,
      eval_time: `${evalAt}s`,
      exp_samples: [{ labels: alertLabels(f.alert, f.instance), value: 1 }],
    };
  });

  const doc = {
    rule_files: [rulesFile],
    evaluation_interval: `${EVALUATION_INTERVAL_S}s`,
    tests: [
      {
        name: `${fx.scenario} (${fx.source}, ${fx.kind})`,
        interval: `${step}s`,
        input_series: Object.entries(fx.series).map(([series, runs]) => ({ series, values: promtoolValues(series, runs, extend, step) })),
        promql_expr_test: [
          {
            expr: `group by (alertname, instance) (max_over_time(ALERTS{alertstate="firing"${notTolerated}}[${end + EVALUATION_INTERVAL_S}s]))`,
            eval_time: `${end}s`,
            exp_samples: everFired.map((labels) => ({ labels, value: 1 })),
          },
          ...timed,
        ],
      },
    ],
  };
  return stringify(doc, { lineWidth: 0 });
}
