/**
 * What an operator sees of a running agent, read the way an operator reads it: its log lines as
 * written (raw text and pino levels) and one sample of its /metrics (the text exposition format).
 */
import type { AgentProcess, LogEntry } from './agent-process.js';
import { fetchMetrics, type HttpTarget } from './http.js';

/** pino's numbers for its level labels (the agents log labels: src/log.ts). */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** The record's pino level as a number (a label or a number in the line), undefined when it has none. */
export function levelOf(entry: LogEntry): number | undefined {
  const l = entry.record?.level as unknown;
  return typeof l === 'number' ? l : typeof l === 'string' ? LEVELS[l] : undefined;
}

/** The agent's JSON lines at level error or above (pino >= 50) among entries [since, until). */
export function errorLines(agent: AgentProcess, since = 0, until = agent.cursor()): LogEntry[] {
  return agent.entries.slice(since, until).filter((e) => (levelOf(e) ?? 0) >= 50);
}

/** How many times the raw line carries the JSON key `component` (pino writes a duplicate key twice). */
export function componentKeys(line: string): number {
  return line.match(/"component":/g)?.length ?? 0;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The value of one sample (`name{labels}`, labels in any order, exactly those) in a text
 * exposition; undefined when the sample is absent.
 */
export function sampleIn(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  const re = new RegExp(`^${escapeRe(name)}(?:\\{([^}]*)\\})?\\s+(\\S+)`, 'gm');
  for (const m of text.matchAll(re)) {
    const got = (m[1] ?? '')
      .split(',')
      .filter((p) => p !== '')
      .sort()
      .join(',');
    if (got === want) return Number(m[2]);
  }
  return undefined;
}

/** GET /metrics of the agent at `target` and the sample's value (undefined when absent). */
export async function scrapeSample(target: HttpTarget, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const r = await fetchMetrics(target);
  return sampleIn(r.body, name, labels);
}
