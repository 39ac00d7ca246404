/**
 * Real colo-agent processes driving a real QEMU COLO pair (colo-pair.ts): the pieces the failover
 * e2e test (test/e2e/failover.test.ts) and the failover benchmark (test/bench/failover.ts) share.
 *
 * - coloSets(): a ColoConfig (pair.colo) as `--set colo.KEY=VALUE` arguments, every key, so the
 *   agents see exactly the topology (ports, ids) the harness brought up;
 * - startColoAgents(): a primary agent (127.0.0.1) and a secondary agent (127.0.0.2) on the
 *   example configs, each with its own state dir and the QMP socket the harness reserved for it,
 *   waiting until both see the peer up and their QEMU in its COLO mode;
 * - journal helpers: read the agent's failover journal, and act the moment it shows a state
 *   (synchronously inside the fs.watch callback, so a SIGSTOP lands as early as possible);
 * - failoverTiming(): what the survivor logged about its failover, with wall-clock latencies;
 * - arbitration (the split-brain tests): `arbiter: { mode: 'witness' }` also starts a witness
 *   (a third `colo-agent run`, config/examples/witness.yaml, on 127.0.0.3 with a free port, its own
 *   state dir, the same key) and points both agents at it; `arbiter: { mode: 'etcd', endpoints }`
 *   points them at an etcd under a prefix of their own; `statusEndpoints` turns each agent's
 *   metrics endpoint on, for /status.
 *
 * Every agent runs the built CLI (dist/): `npm test` and `npm run bench:failover` build first.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AgentStatus } from '../../src/agent.js';
import { keygen } from '../../src/commands/keygen.js';
import { JOURNAL_FILE_NAME, type JournalDecision, type JournalRoleRecord } from '../../src/colo/journal.js';
import type { ColoConfig } from '../../src/config/types.js';
import {
  AGENT_HOSTS,
  AgentPortInUseError,
  EXAMPLE_CONFIGS,
  freePort,
  logMsg,
  logTimeMs,
  startAgent,
  type AgentProcess,
  type LogEntry,
  type LogPredicate,
  type LogRecord,
  type StartAgentOptions,
} from './agent-process.js';
import type { ColoRole, ColoSide } from './colo-pair.js';
import { httpRequest } from './http.js';
import type { Teardownable } from './short-temp-dir.js';

export { AGENT_HOSTS };
/** The witness's host in the loopback topology (config/examples/witness.yaml). */
export const WITNESS_HOST = '127.0.0.3';
export const WITNESS_CONFIG = EXAMPLE_CONFIGS.primary.replace(/primary\.yaml$/, 'witness.yaml');
export const otherSide = (side: ColoRole): ColoRole => (side === 'primary' ? 'secondary' : 'primary');

/** Every key of the `colo` section as `colo.KEY=VALUE` (ids as `colo.ids.KEY=VALUE`). */
export function coloSets(colo: ColoConfig): string[] {
  const sets: string[] = [];
  for (const [key, value] of Object.entries(colo)) {
    if (key === 'ids') continue;
    sets.push(`colo.${key}=${String(value)}`);
  }
  for (const [key, value] of Object.entries(colo.ids)) sets.push(`colo.ids.${key}=${value}`);
  return sets;
}

export interface ColoAgentHeartbeat {
  intervalMs: number;
  missThreshold: number;
  suspectMisses: number;
  startupGraceMs: number;
}

/** 100 ms x 3, suspect after 2: the configuration the failover targets are stated for. */
export const FAST_HEARTBEAT: ColoAgentHeartbeat = { intervalMs: 100, missThreshold: 3, suspectMisses: 2, startupGraceMs: 2000 };

export interface ColoAgentsOptions {
  t?: Teardownable;
  heartbeat?: Partial<ColoAgentHeartbeat>;
  /** failover.* keys, e.g. { stepTimeoutMs: 500, reprobeIntervalMs: 200 }. */
  failover?: Partial<Record<'enabled' | 'stepTimeoutMs' | 'probeTimeoutMs' | 'reprobeIntervalMs', number | boolean>>;
  /** More `key=value` overrides for both agents. */
  sets?: string[];
  /** Overrides for one side only (e.g. its own metrics.listen), applied after `sets`. */
  setsFor?: (side: ColoRole) => string[];
  /** Default 'info' (every record the tests read is logged at info or above). */
  logLevel?: string;
  /** Wait until both agents see the peer up and their QEMU in COLO mode. Default true. */
  waitReady?: boolean;
  /** Default 20000. */
  readyTimeoutMs?: number;
  /** Arbitration: a witness started with the agents, or an etcd they use. Default: none (arbiter.mode as in the example configs). */
  arbiter?: WitnessArbiterSpec | EtcdArbiterSpec;
  /** Turn each agent's metrics endpoint on (a free port on its host), for status(). Default false. */
  statusEndpoints?: boolean;
}

export interface WitnessArbiterSpec {
  mode: 'witness';
  /** arbiter.leaseMs on the witness and both agents. Default 500. */
  leaseMs?: number;
  /** More `key=value` overrides for the witness. */
  sets?: string[];
}

export interface EtcdArbiterSpec {
  mode: 'etcd';
  /** etcd client URLs, the same for both agents or per side (e.g. each through its own forwarder). */
  endpoints: string[] | ((side: ColoRole) => string[]);
  /** Default: a new unique prefix per pair of agents. */
  prefix?: string;
  /** arbiter.etcd.leaseTtlSeconds. Default 1 (needs startEtcd({ fast: true }); etcd raises it to 2 otherwise). */
  leaseTtlSeconds?: number;
}

/** An agent's (or the witness's) GET /status, as JSON. */
export type AgentStatusJson = Omit<AgentStatus, 'epoch'> & { epoch?: NonNullable<AgentStatus['epoch']> };

export interface WitnessStatusJson {
  node: string;
  role: 'witness';
  state: string;
  epoch: number;
  holder?: string;
  leaseRemainingMs?: number;
  pending: string[];
  links: Array<{ link: string; peer?: string; state: string; rttMs?: number }>;
}

export interface ColoAgents {
  primary: AgentProcess;
  secondary: AgentProcess;
  agent(side: ColoRole): AgentProcess;
  /** Temp dir holding the key and both state dirs; removed by stop(). */
  readonly dir: string;
  stateDir(side: ColoRole): string;
  journalPath(side: ColoRole): string;
  /** The agent's start options (config file and --set list), for a restart by hand. */
  startOptions(side: ColoRole): StartAgentOptions;
  /** HOST:PORT of each agent's heartbeat listener. */
  readonly heartbeatListen: Readonly<Record<ColoRole, string>>;
  /** The witness process (with `arbiter.mode` witness); replaced by restartWitness(). */
  witness: AgentProcess | undefined;
  /** HOST:PORT the agents dial for the witness (with `arbiter.mode` witness). */
  readonly witnessAddress: string | undefined;
  /** HOST:PORT of each agent's /status (with statusEndpoints). */
  statusAddress(side: ColoRole): string | undefined;
  /** GET /status of an agent; rejects without statusEndpoints or when it does not answer. */
  status(side: ColoRole, timeoutMs?: number): Promise<AgentStatusJson>;
  /** GET /status of the witness. */
  witnessStatus(timeoutMs?: number): Promise<WitnessStatusJson>;
  /** Start the witness again (SIGKILLing it first if it still runs), with its state dir as it was. */
  restartWitness(): Promise<AgentProcess>;
  /**
   * SIGKILL this side's agent (if it still runs), then start a fresh process with the same config
   * and state dir. Resolves once it has started its heartbeat links.
   */
  restart(side: ColoRole): Promise<AgentProcess>;
  /** Stop both agents and the witness (SIGTERM, then SIGKILL) and remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** The agent's COLO monitor saw its QEMU in COLO mode `mode`. */
export function coloModeSeen(mode: string): LogPredicate {
  return (r) => r.component === 'colo-monitor' && r.msg === 'COLO status changed' && (r.to as { mode?: string } | undefined)?.mode === mode;
}

/** Both agents see the peer up, and each saw its own QEMU in its COLO mode. */
export async function waitColoReady(agents: Pick<ColoAgents, 'primary' | 'secondary'>, timeoutMs = 20_000): Promise<void> {
  await Promise.all(
    (['primary', 'secondary'] as const).map(async (side) => {
      const a = agents[side];
      await a.waitForPeerState('up', timeoutMs);
      await a.waitForLog(coloModeSeen(side), timeoutMs);
    }),
  );
}

/**
 * What the agents need of a pair: its `colo` section and each side's agent QMP address. A ColoPair,
 * or the same known ahead of it (agents started before the pair, to see its migration into COLO).
 */
export interface ColoAgentsTarget {
  readonly colo: ColoConfig;
  side(role: ColoRole): Pick<ColoSide, 'agentQmpAddress'>;
}

/** Start both agents for `pair`; retries with new heartbeat ports if one was taken meanwhile. */
export async function startColoAgents(pair: ColoAgentsTarget, opts: ColoAgentsOptions = {}): Promise<ColoAgents> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(pair, opts);
    } catch (err) {
      lastErr = err;
      if (!(err instanceof AgentPortInUseError)) throw err;
    }
  }
  throw lastErr;
}

async function startOnce(pair: ColoAgentsTarget, opts: ColoAgentsOptions): Promise<ColoAgents> {
  const dir = mkdtempSync(join(tmpdir(), 'colo-fo-'));
  const keyFile = join(dir, 'heartbeat.key');
  const procs: Partial<Record<ColoRole | 'witness', AgentProcess>> = {};
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await Promise.allSettled([procs.primary?.stop(), procs.secondary?.stop(), procs.witness?.stop()]);
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  opts.t?.teardown(stop);
  try {
    await keygen(keyFile, false);
    const port: Record<ColoRole, number> = { primary: await freePort(AGENT_HOSTS.primary), secondary: await freePort(AGENT_HOSTS.secondary) };
    const hb = { ...FAST_HEARTBEAT, ...opts.heartbeat };
    const stateDir = (side: ColoRole) => join(dir, side);
    const heartbeatListen: Record<ColoRole, string> = { primary: `${AGENT_HOSTS.primary}:${port.primary}`, secondary: `${AGENT_HOSTS.secondary}:${port.secondary}` };
    const metrics: Partial<Record<ColoRole, string>> = {};
    if (opts.statusEndpoints) {
      for (const side of ['primary', 'secondary'] as const) metrics[side] = `${AGENT_HOSTS[side]}:${await freePort(AGENT_HOSTS[side])}`;
    }
    const arb = opts.arbiter;
    const leaseMs = arb?.mode === 'witness' ? (arb.leaseMs ?? 500) : undefined;
    const witnessAddress = arb?.mode === 'witness' ? `${WITNESS_HOST}:${await freePort(WITNESS_HOST)}` : undefined;
    const witnessMetrics = arb?.mode === 'witness' ? `${WITNESS_HOST}:${await freePort(WITNESS_HOST)}` : undefined;
    const etcdPrefix = arb?.mode === 'etcd' ? (arb.prefix ?? `/colo-test/${process.pid}-${randomBytes(4).toString('hex')}`) : undefined;
    const arbiterSets = (side: ColoRole): string[] => {
      if (arb?.mode === 'witness') return ['arbiter.mode=witness', `arbiter.witness=${witnessAddress}`, `arbiter.leaseMs=${leaseMs}`];
      if (arb?.mode === 'etcd') {
        const endpoints = typeof arb.endpoints === 'function' ? arb.endpoints(side) : arb.endpoints;
        return ['arbiter.mode=etcd', `arbiter.etcd.endpoints=${endpoints.join(',')}`, `arbiter.etcd.prefix=${etcdPrefix}`, `arbiter.etcd.leaseTtlSeconds=${arb.leaseTtlSeconds ?? 1}`];
      }
      return [];
    };
    const startOptions = (side: ColoRole): StartAgentOptions => {
      const peer = otherSide(side);
      return {
        name: side,
        config: EXAMPLE_CONFIGS[side],
        sets: [
          `node.stateDir=${stateDir(side)}`,
          `qemu.qmp=${pair.side(side).agentQmpAddress}`,
          `heartbeat.keyFile=${keyFile}`,
          `heartbeat.listen=${heartbeatListen[side]}`,
          `heartbeat.peers=${heartbeatListen[peer]}`,
          ...Object.entries(hb).map(([k, v]) => `heartbeat.${k}=${v}`),
          `metrics.listen=${metrics[side] ?? ''}`,
          `log.level=${opts.logLevel ?? 'info'}`,
          ...coloSets(pair.colo),
          ...Object.entries(opts.failover ?? {}).map(([k, v]) => `failover.${k}=${String(v)}`),
          ...arbiterSets(side),
          ...(opts.sets ?? []),
          ...(opts.setsFor?.(side) ?? []),
        ],
      };
    };
    const witnessStartOptions = (): StartAgentOptions => ({
      name: 'witness',
      config: WITNESS_CONFIG,
      ready: logMsg('witness listening'),
      sets: [
        `node.stateDir=${join(dir, 'witness')}`,
        `heartbeat.keyFile=${keyFile}`,
        `heartbeat.listen=${witnessAddress}`,
        `heartbeat.intervalMs=${hb.intervalMs}`,
        `metrics.listen=${witnessMetrics}`,
        `log.level=${opts.logLevel ?? 'info'}`,
        `arbiter.leaseMs=${leaseMs}`,
        ...(arb?.mode === 'witness' ? (arb.sets ?? []) : []),
      ],
    });
    for (const side of ['primary', 'secondary'] as const) mkdirSync(stateDir(side), { recursive: true });
    // The witness first, so that the agents find it at their first dial.
    if (witnessAddress) {
      mkdirSync(join(dir, 'witness'), { recursive: true });
      procs.witness = await startAgent(witnessStartOptions());
    }
    const started = await Promise.allSettled(
      (['primary', 'secondary'] as const).map(async (side) => (procs[side] = await startAgent(startOptions(side)))),
    );
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    const agents: ColoAgents = {
      primary: procs.primary!,
      secondary: procs.secondary!,
      agent: (side) => agents[side],
      dir,
      stateDir,
      journalPath: (side) => join(stateDir(side), JOURNAL_FILE_NAME),
      startOptions,
      heartbeatListen,
      witness: procs.witness,
      witnessAddress,
      statusAddress: (side) => metrics[side],
      status: (side, timeoutMs = 2000) => {
        const at = metrics[side];
        if (!at) return Promise.reject(new Error('no status endpoint: start the agents with statusEndpoints: true'));
        return getJson<AgentStatusJson>(at, timeoutMs);
      },
      witnessStatus: (timeoutMs = 2000) => {
        if (!witnessMetrics) return Promise.reject(new Error('no witness: start the agents with arbiter: { mode: "witness" }'));
        return getJson<WitnessStatusJson>(witnessMetrics, timeoutMs);
      },
      restartWitness: async () => {
        if (!witnessAddress) throw new Error('no witness: start the agents with arbiter: { mode: "witness" }');
        const old = procs.witness;
        if (old) {
          old.kill('SIGKILL');
          old.kill('SIGCONT');
          await old.exited;
        }
        const next = await startAgent(witnessStartOptions());
        procs.witness = next;
        agents.witness = next;
        return next;
      },
      restart: async (side) => {
        const old = agents[side];
        old.kill('SIGKILL');
        old.kill('SIGCONT'); // a stopped process takes its SIGKILL only when scheduled; be sure
        await old.exited;
        const next = await startAgent(startOptions(side));
        agents[side] = next;
        procs[side] = next;
        return next;
      },
      stop,
    };
    if (opts.waitReady !== false) await waitColoReady(agents, opts.readyTimeoutMs ?? 20_000);
    return agents;
  } catch (err) {
    await stop();
    throw err;
  }
}

async function getJson<T>(hostPort: string, timeoutMs: number): Promise<T> {
  const reply = await httpRequest(hostPort, '/status', { timeoutMs });
  if (reply.status !== 200) throw new Error(`GET http://${hostPort}/status: HTTP ${reply.status}`);
  return JSON.parse(reply.body) as T;
}

// ---- the failover journal ----

export interface JournalSnapshot {
  role: JournalRoleRecord | null;
  decision: JournalDecision | null;
}

/** The journal as on disk now, or undefined when there is none yet (it is replaced atomically, never half-written). */
export function readJournal(path: string): JournalSnapshot | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = JSON.parse(text) as JournalSnapshot;
  return { role: parsed.role, decision: parsed.decision };
}

export interface JournalWatch {
  /** Settles with the first snapshot that matched (after `action` ran on it). */
  readonly matched: Promise<JournalSnapshot>;
  close(): void;
}

/**
 * Calls `action` synchronously the first time the journal in `stateDir` matches `predicate`:
 * inside the fs.watch callback (inotify, woken by the rename that replaces the journal), with a
 * 1 ms poll as a backstop. Close it when done (also done on the first match).
 */
export function onJournal(stateDir: string, predicate: (j: JournalSnapshot) => boolean, action: (j: JournalSnapshot) => void = () => undefined): JournalWatch {
  const path = join(stateDir, JOURNAL_FILE_NAME);
  let watcher: FSWatcher | undefined;
  let poll: NodeJS.Timeout | undefined;
  let done = false;
  let resolve!: (j: JournalSnapshot) => void;
  const matched = new Promise<JournalSnapshot>((r) => (resolve = r));
  const close = () => {
    done = true;
    watcher?.close();
    clearInterval(poll);
  };
  const check = () => {
    if (done) return;
    let j: JournalSnapshot | undefined;
    try {
      j = readJournal(path);
    } catch {
      return; // unreadable for an instant: the next event or poll looks again
    }
    if (j && predicate(j)) {
      close();
      action(j);
      resolve(j);
    }
  };
  watcher = watch(stateDir, () => check());
  poll = setInterval(check, 1);
  check();
  return { matched, close };
}

export const runningDecision = (j: JournalSnapshot): boolean => j.decision?.status === 'running';

// ---- what the agents logged about a failover ----

/** The agent's "failover done: running solo as primary" record. */
export const failoverDone: LogPredicate = (r) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('failover done');
export const failoverFailed: LogPredicate = (r) => r.component === 'agent' && r.msg === 'failover FAILED';
/** The executor's "failover starting" (a fresh decision) record. */
export const failoverStarting: LogPredicate = (r) => r.component === 'failover' && r.msg === 'failover starting';
export const failoverResuming: LogPredicate = (r) => r.component === 'failover' && r.msg === 'resuming the unfinished failover from the journal';
export const noTakeover: LogPredicate = (r) => r.component === 'agent' && r.msg === 'no takeover';

/** The trigger named at the front of the executor's reason ("colo-exit-error: ..."). */
export function triggerOf(record: LogRecord | undefined): string | undefined {
  const reason = record?.reason;
  return typeof reason === 'string' ? reason.split(':')[0] : undefined;
}

export interface FailoverTiming {
  sequence: string;
  trigger: string | undefined;
  /** The sequence's own duration as the agent logged it ('failover done' durationMs). */
  sequenceMs: number;
  /** Fault (wall clock here) to the agent's 'failover starting' log time. */
  faultToStartMs: number;
  /** Fault (wall clock here) to the agent's 'failover done' log time. */
  faultToDoneMs: number;
  done: LogEntry;
  starting: LogEntry | undefined;
}

/**
 * Waits for the survivor's 'failover done' after entry `since` and measures it against the wall
 * clock time of the fault. Rejects with the log tail when the failover fails or does not come.
 */
export async function waitFailoverDone(survivor: AgentProcess, since: number, faultAtMs: number, timeoutMs = 20_000): Promise<FailoverTiming> {
  const end = await survivor.waitForLog((r) => failoverDone(r) || failoverFailed(r), timeoutMs, { since });
  if (failoverFailed(end.record!)) throw new Error(`${survivor.name} agent: failover FAILED\n${survivor.tail(40)}`);
  const starting = survivor.find(failoverStarting, since);
  return {
    sequence: String(end.record?.sequence),
    trigger: triggerOf(starting?.record),
    sequenceMs: Number(end.record?.durationMs),
    faultToStartMs: starting ? logTimeMs(starting.record!) - faultAtMs : Number.NaN,
    faultToDoneMs: logTimeMs(end.record!) - faultAtMs,
    done: end,
    starting,
  };
}
