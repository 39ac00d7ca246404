/**
 * Real colo-agent processes for e2e tests and benchmarks.
 *
 * Each agent is `node dist/cli.js run` (the built CLI, not tsx: tsx would add startup time and
 * CPU noise to what is measured), with a generated key, its own temp dir, QMP pointed at a unix
 * socket that does not exist (no QEMU needed) and metrics off. Its stdout is read as pino JSON
 * lines (non-JSON lines and stderr are kept too), so a test can wait for a log record.
 *
 * dist/ must exist: `npm test` runs `npm run build` before tap, and `npm run bench:detect` builds
 * first. cliPath() fails with a clear message when it does not.
 *
 * No child outlives the process that started it: every child is in a process-wide registry that
 * SIGKILLs leftovers on exit and on SIGINT/SIGTERM/SIGHUP, tests pass `t` so teardown stops
 * them, and each agent also exits by itself when its stdin pipe closes, which covers a parent
 * that was SIGKILLed (nothing else runs then).
 *
 * startPair() wires a primary (127.0.0.1) and a secondary (127.0.0.2) to each other directly or
 * through fault proxies: one proxy per direction per path, so every path has two TCP
 * connections (one dialled by each side), each through its own proxy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { keygen } from '../../src/commands/keygen.js';
import { ColoAgentError } from '../../src/errors.js';
import type { DetectorState } from '../../src/heartbeat/detector.js';
import { onProcessEnd, type EndCause } from './exit-hooks.js';
import { FaultProxy, type DirectionSpec, type FaultProxyStats } from './fault-proxy.js';
import { freePort } from './free-port.js';
import type { Teardownable } from './short-temp-dir.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_PATH = join(ROOT, 'dist', 'cli.js');
export const EXAMPLE_CONFIGS = { primary: join(ROOT, 'config/examples/primary.yaml'), secondary: join(ROOT, 'config/examples/secondary.yaml') };

// ---- errors ----

export class AgentProcessError extends ColoAgentError {}

export class AgentCliMissingError extends AgentProcessError {
  constructor() {
    super('ERR_AGENT_CLI_MISSING', `${CLI_PATH} does not exist: run \`npm run build\` first (\`npm test\` does it before tap)`);
  }
}

/** The agent exited (or did not report ready) during startup. */
export class AgentStartError extends AgentProcessError {
  constructor(message: string, code = 'ERR_AGENT_START') {
    super(code, message);
  }
}

/** The agent could not bind its heartbeat port (another process took the free port first). */
export class AgentPortInUseError extends AgentStartError {
  constructor(message: string) {
    super(message, 'ERR_AGENT_PORT_IN_USE');
  }
}

export class AgentLogTimeoutError extends AgentProcessError {
  constructor(message: string) {
    super('ERR_AGENT_LOG_TIMEOUT', message);
  }
}

/** The agent ended before the awaited log record appeared. */
export class AgentExitedError extends AgentProcessError {
  constructor(message: string) {
    super('ERR_AGENT_EXITED', message);
  }
}

/** The built CLI; throws AgentCliMissingError when dist/ has not been built. */
export function cliPath(): string {
  if (!existsSync(CLI_PATH)) throw new AgentCliMissingError();
  return CLI_PATH;
}

/** Why dist/ may be older than src/ (a hint for test output), or undefined when it looks current. */
export function staleBuildHint(): string | undefined {
  if (!existsSync(CLI_PATH)) return undefined;
  const built = statSync(CLI_PATH).mtimeMs;
  const newest = newestMtime(join(ROOT, 'src'));
  return newest > built ? 'src/ has files newer than dist/cli.js: run `npm run build` (npm test does) or the agents run old code' : undefined;
}

/** What requireBuiltCli() needs of a tap Test. */
export interface BuiltCliReporter {
  fail(message: string): unknown;
  comment(message: string): unknown;
}

/**
 * For a test file that runs the built CLI: fails `t` and returns false when dist/cli.js is
 * missing; otherwise returns true, with a warning comment when src/ looks newer than the build.
 */
export function requireBuiltCli(t: BuiltCliReporter): boolean {
  if (!existsSync(CLI_PATH)) {
    t.fail(`${CLI_PATH} is missing: these tests run the built CLI. Run \`npm run build\` (npm test does it before tap).`);
    return false;
  }
  const stale = staleBuildHint();
  if (stale) t.comment(`warning: ${stale}`);
  return true;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

// ---- process-wide safety net ----

const liveChildren = new Set<ChildProcess>();
/** Temp dirs of pairs not yet stopped: removed on exit too (stop() removes them normally). */
const liveDirs = new Set<string>();

/** SIGKILL every tracked child now (synchronous: safe in an 'exit' handler). */
export function killAllChildren(): void {
  for (const c of liveChildren) {
    try {
      if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
}

function removeLiveDirs(): void {
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  liveDirs.clear();
}

/** Children are killed on exit and on a signal; the pairs' temp dirs are removed on exit only. */
function cleanupOnEnd(cause: EndCause): void {
  killAllChildren();
  if (cause === 'exit') removeLiveDirs();
}

/** Track any child (agent, proxy process, CPU hog) so that it is killed when this process ends. */
export function trackChild(child: ChildProcess): void {
  onProcessEnd(cleanupOnEnd);
  if (child.pid === undefined) return;
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

/**
 * Preloaded into each agent: exit when our end of its stdin pipe closes, i.e. when the process
 * that started it has died, even by SIGKILL. unref() keeps the pipe from holding the agent alive.
 */
const EXIT_WITH_PARENT = `data:text/javascript,${encodeURIComponent(
  'const s=process.stdin;if(typeof s.unref==="function"){s.on("end",()=>process.kill(process.pid,"SIGKILL"));s.resume();s.unref();}',
)}`;

// ---- small utilities ----

/** Re-exported: the agent helpers' callers pick their ports with it. */
export { freePort };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- log records ----

/** One pino JSON line as parsed. */
export type LogRecord = Record<string, unknown> & {
  level?: string;
  time?: string | number;
  msg?: string;
  component?: string;
};

export interface LogEntry {
  /** Position in the agent's entry list (stdout and stderr interleaved in arrival order). */
  index: number;
  stream: 'stdout' | 'stderr';
  line: string;
  /** The parsed JSON, or undefined for a line that is not a JSON object. */
  record: LogRecord | undefined;
  /** Date.now() when this process read the line. */
  arrivedAt: number;
  /** performance.now() when this process read the line. */
  arrivedMono: number;
}

export type LogPredicate = (record: LogRecord, entry?: LogEntry) => boolean;

/** Wall-clock ms of a record (pino's `time`, written by the agent when it logged). */
export function logTimeMs(record: LogRecord): number {
  const t = record.time;
  return typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : Number.NaN;
}

/** A transition of the peer-wide failure detector, optionally to / from given states. */
export function peerTransition(to?: DetectorState, from?: DetectorState): LogPredicate {
  return (r) =>
    // Transitions only: the detector also logs other records (e.g. its options after a reload).
    r.component === 'failure-detector' &&
    r.detector === 'peer' &&
    typeof r.to === 'string' &&
    (to === undefined || r.to === to) &&
    (from === undefined || r.from === from);
}

/** The agent state machine entering `to`. */
export function agentState(to: string): LogPredicate {
  return (r) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('agent state ') && r.to === to;
}

/** A record with exactly this msg, and optionally these field values. */
export function logMsg(msg: string, fields: Record<string, unknown> = {}): LogPredicate {
  return (r) => r.msg === msg && Object.entries(fields).every(([k, v]) => r[k] === v);
}

export const linkUp = (link?: string): LogPredicate => (r) => r.msg === 'heartbeat link up' && (link === undefined || r.link === link);
export const linkDown = (link?: string): LogPredicate => (r) => r.msg === 'heartbeat link down' && (link === undefined || r.link === link);
/** A connection refused by the heartbeat layer (bad MAC, malformed frame, hello timeout, ...). */
export const rejected: LogPredicate = (r) => r.component === 'heartbeat' && typeof r.msg === 'string' && r.msg.startsWith('heartbeat connection rejected');

// ---- one agent process ----

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartAgentOptions {
  /** Shown in errors, e.g. "primary". */
  name: string;
  /** YAML config file (e.g. EXAMPLE_CONFIGS.primary). */
  config: string;
  /** `key=value` overrides, each passed as --set. */
  sets: string[];
  /** Stop the agent at this test's teardown. */
  t?: Teardownable;
  /** How long to wait for the ready record. Default 15000. */
  readyTimeoutMs?: number;
  /** The record that says the process is ready. Default: "heartbeat links started" (an agent; a witness logs "witness listening"). */
  ready?: LogPredicate;
  /**
   * A command the agent runs under, e.g. `['ip', 'netns', 'exec', NS]` for a host that is a network
   * namespace (test/lab/): it must exec the agent, so that `pid` is the agent's own. Default: none.
   */
  wrap?: readonly string[];
}

export class AgentProcess {
  readonly name: string;
  readonly args: readonly string[];
  readonly child: ChildProcess;
  /** Settles once the process has exited and its output has been read to the end. */
  readonly exited: Promise<AgentExit>;
  private readonly list: LogEntry[] = [];
  private readonly waiters = new Set<() => void>();
  private status: AgentExit | undefined;
  private stopping: Promise<AgentExit> | undefined;

  private constructor(name: string, args: string[], wrap: readonly string[] = []) {
    this.name = name;
    this.args = args;
    // COLO_AGENT_* variables would override the test's config: keep them out.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('COLO_AGENT_')));
    const [file, ...argv] = [...wrap, process.execPath, '--import', EXIT_WITH_PARENT, ...args];
    this.child = spawn(file!, argv, { stdio: ['pipe', 'pipe', 'pipe'], env });
    trackChild(this.child);
    this.child.stdin?.on('error', () => {}); // EPIPE once the agent is gone
    for (const stream of ['stdout', 'stderr'] as const) {
      const input = this.child[stream];
      if (input) createInterface({ input }).on('line', (line) => this.onLine(stream, line));
    }
    this.exited = new Promise((resolve) => {
      const done = (s: AgentExit) => {
        if (this.status) return;
        this.status = s;
        resolve(s);
        this.notify();
      };
      // 'close' (not 'exit'): every line the agent wrote has been read by then.
      this.child.once('close', (code, signal) => done({ code, signal }));
      this.child.once('error', () => {
        if (this.child.pid === undefined) done({ code: null, signal: null });
      });
    });
  }

  /** Spawn an agent and wait until it has bound its listener and started dialling. */
  static async start(opts: StartAgentOptions): Promise<AgentProcess> {
    const args = [cliPath(), 'run', '--config', opts.config, ...opts.sets.flatMap((s) => ['--set', s])];
    const agent = new AgentProcess(opts.name, args, opts.wrap);
    opts.t?.teardown(() => agent.stop());
    try {
      await agent.waitForLog(opts.ready ?? logMsg('heartbeat links started'), opts.readyTimeoutMs ?? 15_000);
    } catch (err) {
      await agent.stop();
      const detail = `${opts.name} agent did not start: ${(err as Error).message}\nstderr: ${agent.stderrText().trim() || '(empty)'}`;
      throw /EADDRINUSE/.test(agent.stderrText()) ? new AgentPortInUseError(detail) : new AgentStartError(detail);
    }
    return agent;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Undefined while running. */
  get exitStatus(): AgentExit | undefined {
    return this.status;
  }

  get alive(): boolean {
    return this.status === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Every line so far, in arrival order. */
  get entries(): readonly LogEntry[] {
    return this.list;
  }

  /** The number of entries so far: pass it as `since` to look only at what comes next. */
  cursor(): number {
    return this.list.length;
  }

  /** JSON records matching the predicate, from entry `since` on. */
  filter(predicate: LogPredicate, since = 0): LogEntry[] {
    return this.list.slice(since).filter((e) => e.record !== undefined && predicate(e.record, e));
  }

  find(predicate: LogPredicate, since = 0): LogEntry | undefined {
    for (let i = since; i < this.list.length; i++) {
      const e = this.list[i]!;
      if (e.record !== undefined && predicate(e.record, e)) return e;
    }
    return undefined;
  }

  /** The peer detector's state after its last logged transition (undefined before the first). */
  peerState(): DetectorState | undefined {
    for (let i = this.list.length - 1; i >= 0; i--) {
      const r = this.list[i]!.record;
      if (r !== undefined && peerTransition()(r)) return r.to as DetectorState;
    }
    return undefined;
  }

  /**
   * The first record from entry `since` on that matches, with its arrival time; waits for it if
   * needed. Rejects after timeoutMs, or when the agent ends first (both with the log's tail).
   */
  waitForLog(predicate: LogPredicate, timeoutMs = 10_000, opts: { since?: number } = {}): Promise<LogEntry> {
    let scanned = opts.since ?? 0;
    return new Promise<LogEntry>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      const check = () => {
        const hit = this.find(predicate, scanned);
        scanned = this.list.length;
        if (hit) finish(() => resolve(hit));
        else if (this.status) {
          const s = this.status;
          finish(() => reject(new AgentExitedError(`${this.name} agent exited (code ${s.code}, signal ${s.signal}) before the awaited log record\n${this.tail()}`)));
        }
      };
      timer = setTimeout(
        () => finish(() => reject(new AgentLogTimeoutError(`${this.name} agent: no matching log record within ${timeoutMs} ms\n${this.tail()}`))),
        timeoutMs,
      );
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves at once when the peer detector is in `state`, else at its next transition to it. */
  async waitForPeerState(state: DetectorState, timeoutMs = 10_000): Promise<void> {
    if (this.peerState() === state) return;
    await this.waitForLog(peerTransition(state), timeoutMs, { since: this.cursor() });
  }

  /** Send a signal (SIGSTOP freezes, SIGCONT thaws, SIGKILL crashes); ignored once exited. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.alive || this.child.pid === undefined) return;
    try {
      process.kill(this.child.pid, signal);
    } catch {
      // exited between the check and the kill
    }
  }

  /** SIGTERM (with SIGCONT, in case it is stopped), SIGKILL after graceMs; resolves after exit. Idempotent. */
  stop(graceMs = 3000): Promise<AgentExit> {
    this.stopping ??= (async () => {
      this.kill('SIGTERM');
      this.kill('SIGCONT');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([this.exited, late]);
      clearTimeout(timer);
      this.kill('SIGKILL');
      return this.exited;
    })();
    return this.stopping;
  }

  stderrText(): string {
    return this.list
      .filter((e) => e.stream === 'stderr')
      .map((e) => e.line)
      .join('\n');
  }

  /** The last lines, for error messages. */
  tail(lines = 25): string {
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
    this.list.push({ index: this.list.length, stream, line, record, arrivedAt: Date.now(), arrivedMono: performance.now() });
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

export function startAgent(opts: StartAgentOptions): Promise<AgentProcess> {
  return AgentProcess.start(opts);
}

// ---- proxies between the agents ----

export type Side = 'primary' | 'secondary';

/** A fault proxy on one direction of one path, driven the same way in or out of process. */
export interface PairProxy {
  /** e.g. "path0 primary->secondary". */
  readonly name: string;
  readonly path: number;
  /** The side that dials through this proxy. */
  readonly from: Side;
  /** HOST:PORT in the dialling side's heartbeat.peers (also that side's link name). */
  readonly address: string;
  blackhole(): Promise<void>;
  cut(): Promise<void>;
  heal(): Promise<void>;
  halfOpen(direction: DirectionSpec): Promise<void>;
  delay(ms: number, jitterMs?: number, direction?: DirectionSpec): Promise<void>;
  drop(probability: number, direction?: DirectionSpec): Promise<void>;
  stats(): Promise<FaultProxyStats>;
  close(): Promise<void>;
}

export interface ProxySpec {
  name: string;
  path: number;
  from: Side;
  listenHost: string;
  targetHost: string;
  targetPort: number;
}

export type ProxyFactory = (spec: ProxySpec) => Promise<PairProxy>;

/** An in-process FaultProxy; `fault` gives the proxy itself (synchronous control, stats). */
export interface InlinePairProxy extends PairProxy {
  readonly fault: FaultProxy;
}

export async function inlineProxy(spec: ProxySpec): Promise<InlinePairProxy> {
  const fault = await FaultProxy.start({ listenHost: spec.listenHost, targetHost: spec.targetHost, targetPort: spec.targetPort, name: spec.name });
  return {
    name: spec.name,
    path: spec.path,
    from: spec.from,
    address: fault.address,
    fault,
    blackhole: async () => void fault.blackhole(),
    cut: async () => void fault.cut(),
    heal: async () => void fault.heal(),
    halfOpen: async (d) => void fault.halfOpen(d),
    delay: async (ms, jitterMs = 0, d = 'both') => void fault.delay(ms, jitterMs, d),
    drop: async (p, d = 'both') => void fault.drop(p, d),
    stats: async () => fault.stats(),
    close: () => fault.close(),
  };
}

// ---- a wired pair ----

export interface HeartbeatTimings {
  intervalMs: number;
  missThreshold: number;
  suspectMisses: number;
  recoverBeats: number;
  startupGraceMs: number;
  helloTimeoutMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

export interface PairOptions {
  t?: Teardownable;
  /** Default 'direct'. */
  wiring?: 'direct' | 'proxy';
  /** Network paths (each a peers entry on both sides, through its own proxies). Default 1; > 1 needs proxies. */
  paths?: number;
  heartbeat?: Partial<HeartbeatTimings>;
  /** More `key=value` overrides for both agents. */
  sets?: string[];
  /** Overrides for one side only (e.g. its own metrics.listen), applied after `sets`. */
  setsFor?: (side: Side) => string[];
  /** Default 'info' (the transitions the tests read are logged at info). */
  logLevel?: string;
  /** How proxies are made; default in-process FaultProxy (inlineProxy). */
  proxyFactory?: ProxyFactory;
  /** Wait until both agents' peer detectors are up. Default true. */
  waitUp?: boolean;
  /** Default 15000. */
  upTimeoutMs?: number;
}

export interface AgentPair {
  primary: AgentProcess;
  secondary: AgentProcess;
  readonly dir: string;
  readonly keyFile: string;
  /** HOST:PORT each agent's heartbeat listens on (the peer address the other side dials when wired directly). */
  readonly heartbeatListen: Readonly<Record<Side, string>>;
  /** Every proxy, by path, then primary->secondary before secondary->primary. */
  readonly proxies: readonly PairProxy[];
  proxiesOfPath(path: number): PairProxy[];
  agent(side: Side): AgentProcess;
  /** Start a fresh process for this side with the same config (killing the old one if it still runs). */
  restart(side: Side): Promise<AgentProcess>;
  /** Stops both agents and every proxy, and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Where each side's agent listens: the primary on 127.0.0.1, the secondary on 127.0.0.2. */
export const AGENT_HOSTS: Readonly<Record<Side, string>> = { primary: '127.0.0.1', secondary: '127.0.0.2' };

function agentSets(side: Side, dir: string, keyFile: string, listen: string, peers: string[], o: PairOptions): string[] {
  const stateDir = join(dir, side);
  mkdirSync(stateDir, { recursive: true });
  const hb = o.heartbeat ?? {};
  return [
    `heartbeat.keyFile=${keyFile}`,
    `heartbeat.listen=${listen}`,
    `heartbeat.peers=${peers.join(',')}`,
    `node.stateDir=${stateDir}`,
    // Nothing listens here: the agent keeps retrying QMP in the background, which is all we need.
    `qemu.qmp=unix:${join(dir, `${side}-qmp.sock`)}`,
    'metrics.listen=',
    `log.level=${o.logLevel ?? 'info'}`,
    ...Object.entries(hb).map(([k, v]) => `heartbeat.${k}=${v}`),
    ...(o.sets ?? []),
    ...(o.setsFor?.(side) ?? []),
  ];
}

/** Start a primary and a secondary agent wired to each other; see PairOptions. */
export async function startPair(opts: PairOptions = {}): Promise<AgentPair> {
  cliPath();
  const paths = opts.paths ?? 1;
  const wiring = opts.wiring ?? 'direct';
  if (!Number.isInteger(paths) || paths < 1) throw new RangeError(`paths must be an integer >= 1, got ${paths}`);
  if (paths > 1 && wiring !== 'proxy') throw new RangeError('more than one path needs wiring: proxy (each path is its own proxy)');
  let lastErr: unknown;
  // A "free" port can be taken by someone else before the agent binds it: retry with new ports.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startPairOnce(opts, paths, wiring);
    } catch (err) {
      lastErr = err;
      if (!(err instanceof AgentPortInUseError)) throw err;
    }
  }
  throw lastErr;
}

/** HOST:PORT of each agent's metrics endpoint. */
export type MetricsAddresses = Record<Side, string>;

/**
 * Start agents with their metrics endpoints on (startPair() and startColoAgents() turn them off),
 * each on a free port of its own host: `start` gets the per-side `metrics.listen=` overrides, for
 * its setsFor option. A port taken before its agent bound it (AgentPortInUseError) means new
 * ports and another try, 3 in all.
 */
export async function withMetricsEndpoints<T>(start: (metricsSets: (side: Side) => string[]) => Promise<T>): Promise<{ started: T; metrics: MetricsAddresses }> {
  for (let attempt = 1; ; attempt++) {
    const metrics: MetricsAddresses = {
      primary: `${AGENT_HOSTS.primary}:${await freePort(AGENT_HOSTS.primary)}`,
      secondary: `${AGENT_HOSTS.secondary}:${await freePort(AGENT_HOSTS.secondary)}`,
    };
    try {
      return { started: await start((side) => [`metrics.listen=${metrics[side]}`]), metrics };
    } catch (err) {
      if (!(err instanceof AgentPortInUseError) || attempt >= 3) throw err;
    }
  }
}

async function startPairOnce(opts: PairOptions, paths: number, wiring: 'direct' | 'proxy'): Promise<AgentPair> {
  onProcessEnd(cleanupOnEnd);
  const dir = mkdtempSync(join(tmpdir(), 'colo-e2e-'));
  liveDirs.add(dir);
  const keyFile = join(dir, 'heartbeat.key');
  await keygen(keyFile, false);
  const proxies: PairProxy[] = [];
  const procs: Partial<Record<Side, AgentProcess>> = {};
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await Promise.allSettled([procs.primary?.stop(), procs.secondary?.stop()]);
      await Promise.allSettled(proxies.map((p) => p.close()));
      rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    })();
    return stopped;
  };
  opts.t?.teardown(stop);

  try {
    const port: Record<Side, number> = { primary: await freePort(AGENT_HOSTS.primary), secondary: await freePort(AGENT_HOSTS.secondary) };
    const peers: Record<Side, string[]> = { primary: [], secondary: [] };
    if (wiring === 'direct') {
      peers.primary.push(`${AGENT_HOSTS.secondary}:${port.secondary}`);
      peers.secondary.push(`${AGENT_HOSTS.primary}:${port.primary}`);
    } else {
      const factory = opts.proxyFactory ?? inlineProxy;
      for (let path = 0; path < paths; path++) {
        for (const from of ['primary', 'secondary'] as const) {
          const to: Side = from === 'primary' ? 'secondary' : 'primary';
          // The proxy stands on the target's address, as a router on the way to it would.
          const proxy = await factory({
            name: `path${path} ${from}->${to}`,
            path,
            from,
            listenHost: AGENT_HOSTS[to],
            targetHost: AGENT_HOSTS[to],
            targetPort: port[to],
          });
          proxies.push(proxy);
          peers[from].push(proxy.address);
        }
      }
    }
    const heartbeatListen: Record<Side, string> = { primary: `${AGENT_HOSTS.primary}:${port.primary}`, secondary: `${AGENT_HOSTS.secondary}:${port.secondary}` };
    const argsFor = (side: Side): StartAgentOptions => ({
      name: side,
      config: EXAMPLE_CONFIGS[side],
      sets: agentSets(side, dir, keyFile, heartbeatListen[side], peers[side], opts),
    });
    const started = await Promise.allSettled((['primary', 'secondary'] as const).map(async (side) => (procs[side] = await AgentProcess.start(argsFor(side)))));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    const pair: AgentPair = {
      primary: procs.primary!,
      secondary: procs.secondary!,
      dir,
      keyFile,
      heartbeatListen,
      proxies,
      proxiesOfPath: (path) => proxies.filter((p) => p.path === path),
      agent: (side) => pair[side],
      restart: async (side) => {
        await pair[side].stop(1000);
        const next = await AgentProcess.start(argsFor(side));
        pair[side] = next;
        procs[side] = next;
        return next;
      },
      stop,
    };
    if (opts.waitUp !== false) {
      const timeout = opts.upTimeoutMs ?? 15_000;
      await Promise.all([pair.primary.waitForPeerState('up', timeout), pair.secondary.waitForPeerState('up', timeout)]);
    }
    return pair;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `--set` values for one agent alone on 127.0.0.1, heartbeat-only (insecure, a peer that never
 * answers, no QEMU), with its metrics/status endpoint on `metricsPort`: for CLI tests that talk to
 * a running agent.
 */
export async function loneAgentSets(dir: string, stateDir: string, metricsPort: number): Promise<string[]> {
  return [
    'heartbeat.insecure=true',
    'heartbeat.keyFile=',
    `heartbeat.listen=127.0.0.1:${await freePort()}`,
    'heartbeat.peers=127.0.0.2:9',
    `node.stateDir=${stateDir}`,
    `qemu.qmp=unix:${join(dir, 'absent.sock')}`,
    `metrics.listen=127.0.0.1:${metricsPort}`,
  ];
}
