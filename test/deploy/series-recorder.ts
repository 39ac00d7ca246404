/**
 * Records what a Prometheus would scrape from the agents of a lab pair during a scenario: every
 * second, GET /metrics of each target (the agents' control-link addresses, lab-colo.ts
 * metricsAddress; the witness's too), the samples of the metrics the alert rules read, and `up`
 * (1 when the scrape answered 200, 0 otherwise: a powered-off host, a dead agent, a timeout), all
 * with the labels a scrape config adds: job="colo-agent", instance, pair.
 *
 * Why once a second and not every 15 s like the documented Prometheus: promtool gets the series at
 * their real 1 s resolution (interval: 1s), so the rules' `for:` and range windows see the states
 * exactly as long as they lasted; a coarser cadence would only hide short states, never invent any.
 *
 * Scrapes are started on a fixed schedule (t0 + i s), each with its own timeout, so a slow answer
 * never shifts the ticks after it: tick i is what the target said at t0 + i s, or up=0.
 */
import { httpRequest } from '../helpers/http.js';
import { encodeRuns, JOB, PAIR, seriesKey, type SeriesFixture } from './series-fixture.js';

export interface ScrapeTarget {
  /** The `instance` label (a stable name like `a:9464`, not the lab's per-run address). */
  instance: string;
  /** HOST:PORT to GET /metrics from. */
  address: string;
}

interface Scrape {
  up: boolean;
  samples: Map<string, number>;
}

/** Gauges holding a Unix time: stored relative to the recording's start, the clock promtool's time() runs on (0 = tick 0). */
const isTimestamp = (name: string): boolean => name.endsWith('_timestamp_seconds');

export class SeriesRecorder {
  private readonly ticks: Array<Map<string, Scrape>> = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly markers: Record<string, number> = {};
  private timer: NodeJS.Timeout | undefined;
  private t0 = 0;
  private next = 0;

  constructor(
    private readonly targets: readonly ScrapeTarget[],
    /** Metric names to keep (ruleMetricNames()). */
    private readonly keep: ReadonlySet<string>,
    private readonly intervalMs = 1000,
    private readonly timeoutMs = 2500,
  ) {}

  start(): void {
    this.t0 = Date.now();
    this.schedule();
  }

  /** The tick now being recorded: a scenario step is marked at the tick of its start. */
  get tick(): number {
    return this.next;
  }

  mark(name: string): void {
    this.markers[name] = this.next;
  }

  /** Stop scraping; resolves once every scrape started has ended. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.all([...this.inFlight]);
  }

  private schedule(): void {
    const i = this.next++;
    const tick = new Map<string, Scrape>();
    this.ticks[i] = tick;
    for (const target of this.targets) {
      const p = this.scrape(target.address).then((s) => void tick.set(target.instance, s));
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    }
    const due = this.t0 + this.next * this.intervalMs;
    this.timer = setTimeout(() => this.schedule(), Math.max(0, due - Date.now()));
  }

  private async scrape(address: string): Promise<Scrape> {
    try {
      const r = await httpRequest(address, '/metrics', { timeoutMs: this.timeoutMs });
      if (r.status !== 200) return { up: false, samples: new Map() };
      return { up: true, samples: this.parse(r.body) };
    } catch {
      return { up: false, samples: new Map() };
    }
  }

  /** The kept samples of one exposition (prom-client's text format: `name{labels} value`), by name{labels} without the target labels. */
  private parse(body: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const line of body.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
      if (!m || !this.keep.has(m[1]!)) continue;
      const name = m[1]!;
      const labels = parseLabels(m[2] ?? '{}');
      let value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
      if (isTimestamp(name) && value > 0) value = Math.round((value - this.t0 / 1000) * 1000) / 1000;
      out.set(JSON.stringify([name, labels]), value);
    }
    return out;
  }

  /** The recording as a fixture (every series the targets ever exported, plus `up`). */
  fixture(meta: Pick<SeriesFixture, 'scenario' | 'kind' | 'description'> & { qemu?: string }): SeriesFixture {
    const n = this.ticks.length;
    const series = new Map<string, (number | null)[]>();
    const column = (key: string) => {
      let c = series.get(key);
      if (!c) series.set(key, (c = Array<number | null>(n).fill(null)));
      return c;
    };
    this.ticks.forEach((tick, i) => {
      for (const { instance } of this.targets) {
        const s = tick.get(instance) ?? { up: false, samples: new Map<string, number>() };
        const target = { job: JOB, instance, pair: PAIR };
        column(seriesKey('up', target))[i] = s.up ? 1 : 0;
        for (const [k, v] of s.samples) {
          const [name, labels] = JSON.parse(k) as [string, Record<string, string>];
          column(seriesKey(name, { ...labels, ...target }))[i] = v;
        }
      }
    });
    return {
      scenario: meta.scenario,
      kind: meta.kind,
      description: meta.description,
      source: 'lab',
      recorded: { at: new Date(this.t0).toISOString(), ...(meta.qemu && { qemu: meta.qemu }), seconds: Math.round((n * this.intervalMs) / 1000) },
      intervalSeconds: this.intervalMs / 1000,
      ticks: n,
      markers: { ...this.markers },
      series: Object.fromEntries([...series.keys()].sort().map((k) => [k, encodeRuns(series.get(k)!)])),
    };
  }
}

/** `{a="x",b="y\"z"}` as prom-client writes it. */
function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const m of text.matchAll(re)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  return labels;
}
