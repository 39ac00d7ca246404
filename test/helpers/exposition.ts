/**
 * An agent's /metrics read strictly as the Prometheus text exposition format 0.0.4 (HELP and TYPE
 * once per family and before its samples, every sample in the family its TYPE announced, no series
 * twice, values as the format spells them: a malformed line throws ExpositionError naming it), and
 * the scrapes that return it. Shared by the e2e tests that read agents' metrics over HTTP.
 */
import { fetchMetrics } from './http.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

export class ExpositionError extends Error {}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SUFFIXES: Record<string, string[]> = { counter: [''], gauge: [''], untyped: [''], histogram: ['_bucket', '_sum', '_count'], summary: ['', '_sum', '_count'] };

function parseValue(s: string, line: number): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new ExpositionError(`line ${line}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

/** `{a="x",b="y\"z"}` starting at text[i] === '{'; returns the labels and the index after '}'. */
function parseLabels(text: string, i: number, line: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // '{'
  for (;;) {
    if (text[i] === '}') return [labels, i + 1];
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new ExpositionError(`line ${line}: label without '='`);
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) throw new ExpositionError(`line ${line}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new ExpositionError(`line ${line}: label ${name} twice`);
    if (text[eq + 1] !== '"') throw new ExpositionError(`line ${line}: label ${name}: value not quoted`);
    let value = '';
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new ExpositionError(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const e = text[j + 1];
        if (e === 'n') value += '\n';
        else if (e === '\\' || e === '"') value += e;
        else throw new ExpositionError(`line ${line}: bad escape \\${e}`);
        j += 2;
      } else {
        value += c;
        j++;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new ExpositionError(`line ${line}: expected ',' or '}' after label ${name}`);
  }
}

/**
 * Prometheus text format 0.0.4: HELP and TYPE once per family and before its samples, every
 * sample in the family its TYPE line announced (histograms: _bucket, _sum, _count), no series
 * twice. Throws ExpositionError naming the line otherwise.
 */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new ExpositionError('the exposition does not end with a newline');
  lines.forEach((raw, idx) => {
    const n = idx + 1;
    const line = raw.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a comment
      const [, kind, name, rest = ''] = m as unknown as [string, 'HELP' | 'TYPE', string, string | undefined];
      if (!METRIC_NAME.test(name)) throw new ExpositionError(`line ${n}: bad metric name ${name}`);
      let fam = families.get(name);
      if (!fam) {
        fam = { name, type: '', help: '', samples: [] };
        families.set(name, fam);
      } else if (fam.samples.length > 0) throw new ExpositionError(`line ${n}: ${kind} for ${name} after its samples`);
      if (kind === 'TYPE') {
        if (fam.type) throw new ExpositionError(`line ${n}: second TYPE for ${name}`);
        if (!(rest in SUFFIXES)) throw new ExpositionError(`line ${n}: unknown type ${rest}`);
        fam.type = rest;
      } else {
        if (fam.help) throw new ExpositionError(`line ${n}: second HELP for ${name}`);
        fam.help = rest;
      }
      current = fam;
      return;
    }
    const nameEnd = line.search(/[{\s]/);
    if (nameEnd <= 0) throw new ExpositionError(`line ${n}: no value`);
    const name = line.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) throw new ExpositionError(`line ${n}: bad metric name ${name}`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') [labels, i] = parseLabels(line, i, n);
    const fields = line.slice(i).trim().split(/\s+/);
    if (fields.length < 1 || fields.length > 2 || fields[0] === '') throw new ExpositionError(`line ${n}: expected a value and an optional timestamp`);
    const value = parseValue(fields[0]!, n);
    if (!current || !current.type) throw new ExpositionError(`line ${n}: sample ${name} before any TYPE line`);
    if (!SUFFIXES[current.type]!.some((s) => `${current!.name}${s}` === name)) {
      throw new ExpositionError(`line ${n}: sample ${name} inside family ${current.name} (${current.type})`);
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new ExpositionError(`line ${n}: series ${name}${JSON.stringify(labels)} twice`);
    seen.add(key);
    current.samples.push({ name, labels, value });
  });
  return families;
}

/** One scrape of an agent's /metrics. */
export class Exposition {
  readonly families: Map<string, Family>;
  constructor(readonly text: string) {
    this.families = parseExposition(text);
  }

  /** Samples named `name` whose labels include `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    const family = this.families.get(name) ?? this.families.get(name.replace(/_(bucket|sum|count)$/, ''));
    return (family?.samples ?? []).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The value of the one series named `name` with these labels (throws when none or several match). */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.find(name, labels);
    if (found.length !== 1) throw new Error(`${found.length} series match ${name}${JSON.stringify(labels)}`);
    return found[0]!.value;
  }

  /** The label value that is 1 in a state-set gauge (colo_agent_state{state=...} and the like). */
  stateOf(name: string, label: string): string[] {
    return this.find(name)
      .filter((s) => s.value === 1)
      .map((s) => s.labels[label] ?? '');
  }
}

// ---- HTTP ----

/** GET /metrics of the agent at `address` (HOST:PORT), parsed strictly; throws on a malformed exposition. */
export async function scrape(address: string): Promise<Exposition> {
  const r = await fetchMetrics(address);
  const type = String(r.headers['content-type']);
  if (!type.startsWith('text/plain') || !type.includes('version=0.0.4')) throw new Error(`unexpected content type ${type}`);
  return new Exposition(r.body);
}

/** Scrapes until `ok` holds (or timeoutMs passes) and returns the last scrape either way. */
export async function scrapeUntil(address: string, ok: (e: Exposition) => boolean, timeoutMs: number): Promise<Exposition> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const e = await scrape(address);
    if (ok(e) || Date.now() > until) return e;
    await new Promise((r) => setTimeout(r, 100));
  }
}
