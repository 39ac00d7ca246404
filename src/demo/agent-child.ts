/**
 * One colo-agent process started by the demo: `node dist/cli.js run ...` with its JSON log lines
 * read as they come, so the demo can wait for a record (ready, metrics address) and build a drill
 * timeline from the records' own timestamps.
 *
 * The child gets its own process group (a Ctrl-C in the terminal reaches the demo only, which then
 * stops everything in order) and no COLO_AGENT_* variables (they would override the demo's config).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ColoAgentError } from '../errors.js';

/** One pino JSON line as parsed. */
export type LogRecord = Record<string, unknown> & { level?: string; time?: string | number; msg?: string; component?: string };

export interface LogEntry {
  /** Position in the agent's entry list (never reused, also after old entries are dropped). */
  seq: number;
  line: string;
  stream: 'stdout' | 'stderr';
  /** The parsed JSON object, or undefined for any other line. */
  record: LogRecord | undefined;
}

/** Wall-clock ms of a record (pino's `time`, written by the agent when it logged). */
export function recordTimeMs(record: LogRecord): number {
  const t = record.time;
  return typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : Number.NaN;
}

export class DemoAgentError extends ColoAgentError {}

export class DemoAgentExitedError extends DemoAgentError {
  constructor(name: string, how: string, tail: string) {
    super('DEMO_AGENT_EXITED', `the ${name} agent exited (${how}) before the awaited log record\n${tail}`);
  }
}

export class DemoAgentTimeoutError extends DemoAgentError {
  constructor(name: string, what: string, ms: number, tail: string) {
    super('DEMO_AGENT_TIMEOUT', `the ${name} agent: no ${what} within ${ms} ms\n${tail}`);
  }
}

export interface DemoAgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Entries kept per agent: a long live demo must not grow without bound. */
const MAX_ENTRIES = 5000;

export class DemoAgent {
  readonly child: ChildProcess;
  readonly exited: Promise<DemoAgentExit>;
  private readonly list: LogEntry[] = [];
  private nextSeq = 0;
  private readonly listeners = new Set<(e: LogEntry) => void>();
  private status: DemoAgentExit | undefined;
  private stopping: Promise<DemoAgentExit> | undefined;

  constructor(
    /** e.g. "primary". */
    readonly name: string,
    cli: string,
    args: readonly string[],
  ) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('COLO_AGENT_')));
    this.child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
    for (const stream of ['stdout', 'stderr'] as const) {
      const input = this.child[stream];
      if (input) createInterface({ input }).on('line', (line) => this.onLine(stream, line));
    }
    this.exited = new Promise((resolve) => {
      const done = (s: DemoAgentExit) => {
        if (this.status) return;
        this.status = s;
        resolve(s);
        for (const l of [...this.listeners]) l({ seq: -1, line: '', stream: 'stderr', record: undefined });
      };
      // 'close': every line the agent wrote has been read by then.
      this.child.once('close', (code, signal) => done({ code, signal }));
      this.child.once('error', () => {
        if (this.child.pid === undefined) done({ code: null, signal: null });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.status === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get exitStatus(): DemoAgentExit | undefined {
    return this.status;
  }

  /** The seq the next entry will get: pass it as `since` to look only at what comes next. */
  cursor(): number {
    return this.nextSeq;
  }

  /** Entries kept so far (the oldest are dropped beyond a few thousand). */
  entries(since = 0): LogEntry[] {
    return this.list.filter((e) => e.seq >= since);
  }

  /** Records from `since` on. */
  records(since = 0): LogRecord[] {
    return this.entries(since).flatMap((e) => (e.record ? [e.record] : []));
  }

  /** Called for every new entry (and once with seq -1 when the agent has exited). Returns an unsubscribe. */
  onEntry(listener: (e: LogEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The first record from `since` on that matches; waits for it. Rejects on timeout or exit. */
  waitFor(what: string, predicate: (r: LogRecord) => boolean, timeoutMs: number, since = 0): Promise<LogRecord> {
    return new Promise((resolve, reject) => {
      const hit = this.records(since).find(predicate);
      if (hit) return resolve(hit);
      if (this.status) return reject(new DemoAgentExitedError(this.name, this.describeExit(), this.tail()));
      const timer = setTimeout(() => {
        off();
        reject(new DemoAgentTimeoutError(this.name, what, timeoutMs, this.tail()));
      }, timeoutMs);
      const off = this.onEntry((e) => {
        if (e.seq === -1) {
          clearTimeout(timer);
          off();
          reject(new DemoAgentExitedError(this.name, this.describeExit(), this.tail()));
        } else if (e.seq >= since && e.record && predicate(e.record)) {
          clearTimeout(timer);
          off();
          resolve(e.record);
        }
      });
    });
  }

  /** Send a signal; ignored once exited. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.alive || this.child.pid === undefined) return;
    try {
      process.kill(this.child.pid, signal);
    } catch {
      // exited between the check and the kill
    }
  }

  /** SIGTERM (a planned stop), SIGKILL after graceMs; resolves after exit. Idempotent. */
  stop(graceMs = 3000): Promise<DemoAgentExit> {
    this.stopping ??= (async () => {
      this.kill('SIGTERM');
      this.kill('SIGCONT');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exited, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      this.kill('SIGKILL');
      return this.exited;
    })();
    return this.stopping;
  }

  describeExit(): string {
    const s = this.status;
    return s ? (s.signal ? `signal ${s.signal}` : `code ${s.code}`) : 'running';
  }

  /** The last lines, for error messages. */
  tail(lines = 20): string {
    return this.list
      .slice(-lines)
      .map((e) => `  [${this.name}${e.stream === 'stderr' ? ' stderr' : ''}] ${e.line}`)
      .join('\n');
  }

  private onLine(stream: 'stdout' | 'stderr', line: string): void {
    let record: LogRecord | undefined;
    if (line.startsWith('{')) {
      try {
        const parsed: unknown = JSON.parse(line);
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) record = parsed as LogRecord;
      } catch {
        // not JSON: kept as a plain line
      }
    }
    const entry: LogEntry = { seq: this.nextSeq++, line, stream, record };
    this.list.push(entry);
    if (this.list.length > MAX_ENTRIES) this.list.splice(0, this.list.length - MAX_ENTRIES);
    for (const l of [...this.listeners]) l(entry);
  }
}
