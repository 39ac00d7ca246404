/**
 * Recorded metric series (issue 14): what test/deploy/series-recorder.ts scraped from the agents of
 * a lab pair once a second during a scenario, as stored in test/fixtures/series/<scenario>.json and
 * read by test/deploy/series-promtool.ts to feed promtool.
 *
 * Compact on purpose (the fixtures are committed): only the series the alert rules read are kept
 * (`ruleMetricNames()`: every metric name alerts.yml mentions, `up` included), and each series is
 * run-length encoded, `[value, count]` per run of equal samples, `null` for ticks without a sample
 * (the target was not scraped, or the agent did not export the series then).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ALERTS_FILE = join(ROOT, 'deploy/prometheus/alerts.yml');
export const FIXTURE_DIR = join(ROOT, 'test/fixtures/series');

/** What every recorded series carries besides its own labels: the scrape job the rules select, and the pair. */
export const JOB = 'colo-agent';
export const PAIR = 'lab';

/** One run of equal samples: the value (null: no sample) and how many ticks it lasts. */
export type Run = [value: number | null, count: number];

export interface SeriesFixture {
  scenario: string;
  /** routine: no alert may fire (but `allowed`); fault: the expected alerts fire. */
  kind: 'routine' | 'fault';
  /** What happened, in order, in plain words. */
  description: string;
  /** Where the data came from: 'lab' (a real run), 'derived' (a real run relabelled), or 'hand-written' (why in `note`). */
  source: 'lab' | 'derived' | 'hand-written';
  note?: string;
  recorded?: { at: string; qemu?: string; seconds: number };
  /** Seconds between two samples (the recorder's cadence). */
  intervalSeconds: number;
  /** Samples per series. */
  ticks: number;
  /** Scenario steps by name: the tick at which each happened (the fault, the repair...). */
  markers: Record<string, number>;
  /** Series by `name{label="value",...}` (labels sorted), run-length encoded. */
  series: Record<string, Run[]>;
}

/** Every metric name the rules in alerts.yml read (what the recorder keeps). */
export function ruleMetricNames(alertsFile = ALERTS_FILE): Set<string> {
  const doc = parse(readFileSync(alertsFile, 'utf8')) as { groups: { rules: { expr: string }[] }[] };
  const names = new Set<string>();
  for (const rule of doc.groups.flatMap((g) => g.rules)) {
    // Metric names in these expressions: colo_agent_* and Prometheus's own `up`; PromQL functions
    // and keywords (increase, offset, on, ...) never start so.
    for (const m of rule.expr.matchAll(/\b(colo_agent_[a-z_]+|up)\b/g)) names.add(m[1]!);
  }
  return names;
}

/** The series key: name{labels sorted by name}, as promtool's input_series writes it. */
export function seriesKey(name: string, labels: Record<string, string>): string {
  const inner = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',');
  return `${name}{${inner}}`;
}

/** The metric name of a series key. */
export function metricOf(key: string): string {
  return key.slice(0, key.indexOf('{'));
}

export function encodeRuns(values: readonly (number | null)[]): Run[] {
  const runs: Run[] = [];
  for (const v of values) {
    const last = runs.at(-1);
    if (last && last[0] === v) last[1]++;
    else runs.push([v, 1]);
  }
  return runs;
}

export function decodeRuns(runs: readonly Run[]): (number | null)[] {
  return runs.flatMap(([v, n]) => Array<number | null>(n).fill(v));
}

export function readFixture(path: string): SeriesFixture {
  return JSON.parse(readFileSync(path, 'utf8')) as SeriesFixture;
}
