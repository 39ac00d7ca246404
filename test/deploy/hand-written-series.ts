/**
 * HAND-WRITTEN series, for the rules no lab run here can make fire (each says why), and DERIVED
 * series: a real recording relabelled the way a scrape-config mistake would (the rules about the
 * scrape itself). Both come out in the shape of a recorded fixture (series-fixture.ts) so that they
 * go through the same promtool generator and the same "exactly these alerts, ever" check.
 */
import { JOB, PAIR, encodeRuns, seriesKey, type Run, type SeriesFixture } from './series-fixture.js';

/** A recording with every series' labels rewritten by `relabel` (undefined keeps the series out). */
export function derive(
  fx: SeriesFixture,
  scenario: string,
  note: string,
  relabel: (name: string, labels: Record<string, string>) => Record<string, string>,
): SeriesFixture {
  const series: Record<string, Run[]> = {};
  for (const [key, runs] of Object.entries(fx.series)) {
    const m = /^([^{]+)\{(.*)\}$/.exec(key)!;
    const labels = Object.fromEntries([...m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)=("(?:[^"\\]|\\.)*")/g)].map((x) => [x[1]!, JSON.parse(x[2]!) as string]));
    series[seriesKey(m[1]!, relabel(m[1]!, labels))] = runs;
  }
  return { ...fx, scenario, kind: 'fault', source: 'derived', note: `${note} (from the ${fx.scenario} recording)`, series };
}

const target = (host: string) => ({ job: JOB, instance: `${host}:9464`, pair: PAIR });

/** A hand-written fixture: `ticks` 1 s samples, `build` gives each series as a list of [value, count] runs. */
function handWritten(
  scenario: string,
  note: string,
  description: string,
  markers: Record<string, number>,
  series: Array<[name: string, labels: Record<string, string>, runs: Run[]]>,
): SeriesFixture {
  const ticks = series[0]![2].reduce((n, [, c]) => n + c, 0);
  for (const [name, , runs] of series) {
    const n = runs.reduce((s, [, c]) => s + c, 0);
    if (n !== ticks) throw new Error(`${scenario}: ${name} has ${n} ticks, not ${ticks}`);
  }
  return {
    scenario,
    kind: 'fault',
    description,
    source: 'hand-written',
    note,
    intervalSeconds: 1,
    ticks,
    markers,
    series: Object.fromEntries(series.map(([name, labels, runs]) => [seriesKey(name, labels), encodeRuns(runs.flatMap(([v, c]) => Array<number | null>(c).fill(v)))])),
  };
}

const a = target('a');
const up: [string, Record<string, string>, Run[]] = ['up', a, [[1, 240]]];

/** The SWITCHOVER_BUCKETS of src/metrics/registry.ts, as the agent exports them. */
const SWITCHOVER_LE = ['0.01', '0.025', '0.05', '0.1', '0.15', '0.2', '0.3', '0.5', '1', '2.5', '5', '10', '+Inf'];

export const HAND_WRITTEN: SeriesFixture[] = [
  // A resume whose rollback fails too: it needs a rollback step that QEMU refuses (the COLO proxy
  // objects or the replication node half removed), which no fault of this lab produces on demand.
  handWritten(
    'resume-failed',
    'hand-written: a rollback that fails cannot be provoked on the lab; the counter and the state as the agent exports them then',
    'a solo primary starts a resume at 60 s, the resume fails and so does its rollback: resyncs_total{result="failed"} 0 -> 1, state resuming -> failed',
    { resume: 60, failed: 90 },
    [
      up,
      ['colo_agent_resyncs_total', { ...a, result: 'failed' }, [[0, 90], [1, 150]]],
      ['colo_agent_resyncs_total', { ...a, result: 'rolled-back' }, [[0, 240]]],
      ['colo_agent_resyncs_total', { ...a, result: 'success' }, [[0, 240]]],
      ['colo_agent_state', { ...a, state: 'solo' }, [[1, 60], [0, 180]]],
      ['colo_agent_state', { ...a, state: 'resuming' }, [[0, 60], [1, 30], [0, 150]]],
      ['colo_agent_state', { ...a, state: 'failed' }, [[0, 90], [1, 150]]],
    ],
  ),
  // Three rolled-back resumes in 30m: each needs a fresh secondary that then breaks during the copy
  // or the switch-over (the secondary's QEMU relaunched each time), which would take a throttled
  // copy and a fault per attempt; the campaign's during-resync trials roll back one at a time.
  handWritten(
    'resume-rolled-back',
    'hand-written: three rolled-back resumes in a row are not reproducible on demand here; the counter as the agent exports it',
    'a solo primary rolls back a resume at 30 s, 90 s and 150 s (the retry backoff between them); it stays solo',
    { first: 30, third: 150 },
    [
      up,
      ['colo_agent_resyncs_total', { ...a, result: 'rolled-back' }, [[0, 30], [1, 60], [2, 60], [3, 90]]],
      ['colo_agent_resyncs_total', { ...a, result: 'failed' }, [[0, 240]]],
    ],
  ),
  // A switch-over that pauses the guest for 0.8 s: the lab's guest is tiny and its memory moves in
  // about 0.1 s (bench:failback), so a real slow switch-over would need a big guest on a slow link.
  handWritten(
    'switchover-pause-high',
    'hand-written: the lab guest switches over in ~0.1 s; one resume whose pause lands in the (0.5, 1] bucket',
    'a resume at 60 s paused the guest for 0.8 s',
    { resume: 60 },
    [
      up,
      ...SWITCHOVER_LE.map((le): [string, Record<string, string>, Run[]] => [
        'colo_agent_switchover_pause_seconds_bucket',
        { ...a, le },
        Number(le) >= 1 || le === '+Inf' ? [[0, 60], [1, 180]] : [[0, 240]],
      ]),
    ],
  ),
];
