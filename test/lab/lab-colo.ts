/**
 * A real QEMU COLO pair and its real agents on the lab's separate hosts (netns.ts): host a runs
 * the primary QEMU and the agent installed as primary (config/examples/primary.yaml), host b the
 * secondary and the agent installed as secondary, host w the witness (arbiter `witness`) or
 * nothing (arbiter `none`). The loopback harness (colo-pair.ts, colo-agents.ts) is reused: the
 * launcher runs each QEMU under `lab.wrap(host)`, AgentProcess runs each agent under it.
 *
 * Each host has its own port space, so everything uses the documented fixed ports (COLO 9001,
 * 9003-9005, 9998, 9999; heartbeat 7410; metrics 9464 on 0.0.0.0). Addresses:
 * - colo.primaryHost = a's replication address, colo.secondaryHost = b's (the hosts' addresses
 *   as installed; they never move, the roles do);
 * - heartbeat.listen 0.0.0.0:7410, heartbeat.peers = the peer's replication AND management addresses;
 * - arbiter.witness = w's address on the host's own link to w;
 * - /status and /metrics: the host's control address, port 9464, from this process.
 * QMP is unix sockets (files): this process talks to every QEMU, wherever it runs.
 *
 * Agents log at info; `transcript()` gives what each said, for a failure message.
 *
 * Two ways in: startLabColoOrSkip() brings the pair up into COLO and leaves the agents to the
 * caller; prepareLabColoOrSkip() gives the same harness BEFORE the pair exists (its `colo`
 * section known ahead, the agents startable), and its startPair() brings the pair up then, for
 * agents that must see the migration into COLO. startPairAgents() starts both agents on a pair
 * that is up and waits until each sees its peer and its QEMU's COLO mode; restartAgent(h)
 * starts h's agent again as it was last started.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keygen } from '../../src/commands/keygen.js';
import { JOURNAL_FILE_NAME } from '../../src/colo/journal.js';
import type { ColoConfig } from '../../src/config/types.js';
import { DOCUMENTED_COLO, resolveColoConfig, type ColoOverrides, type ColoPorts } from '../../src/qemu/colo-cmdline.js';
import { EXAMPLE_CONFIGS, logMsg, startAgent, type AgentProcess, type StartAgentOptions } from '../helpers/agent-process.js';
import { coloSets, FAST_HEARTBEAT, waitColoReady, WITNESS_CONFIG, type AgentStatusJson } from '../helpers/colo-agents.js';
import { startColoPair, type ColoPair, type ColoRole, type SkippableTest } from '../helpers/colo-pair.js';
import { httpRequest } from '../helpers/http.js';
import { startLabOrSkip, type Lab } from './netns.js';

export type PairHost = 'a' | 'b';
export const PAIR_HOSTS: readonly PairHost[] = ['a', 'b'];
export const peerOf = (h: PairHost): PairHost => (h === 'a' ? 'b' : 'a');

export const HEARTBEAT_PORT = 7410;
export const METRICS_PORT = 9464;
export const LAB_LEASE_MS = 500;
/** How long an agent (or the witness) may take to start: a bound for a loaded 2-core machine, not a target. */
export const AGENT_START_TIMEOUT_MS = 60_000;

export type LabArbiter = 'witness' | 'none';

export interface LabColoOptions {
  arbiter: LabArbiter;
  /** Every disk image's size. Default 32 (the resume's drive-mirror copies all of it). */
  diskSizeMb?: number;
  /** More `key=value` overrides for both agents. */
  sets?: string[];
  /** More of the pair's `colo` settings (e.g. checkpointDelayMs); the hosts and ports are always the lab's. */
  colo?: Omit<ColoOverrides, 'primaryHost' | 'secondaryHost' | keyof ColoPorts>;
}

/** Everything of a LabColo but the pair (see prepareLabColoOrSkip). */
export interface LabColoHarness {
  readonly lab: Lab;
  readonly arbiter: LabArbiter;
  /** Temp dir: the key, every state dir. */
  readonly dir: string;
  /** Each host's agent as last started (undefined before the first start). */
  readonly agents: Partial<Record<PairHost, AgentProcess>>;
  readonly witness: AgentProcess | undefined;
  stateDir(host: PairHost): string;
  /** The agent's config for `host`: its QMP address, then `extra` (e.g. qemu.launch keys). */
  agentOptions(host: PairHost, qmp: string, extra?: string[]): StartAgentOptions;
  /** Start `host`'s agent (inside the host); replaces agents[host]. */
  startAgent(host: PairHost, qmp: string, extra?: string[]): Promise<AgentProcess>;
  /** GET /status of `host`'s agent over the control link. */
  status(host: PairHost, timeoutMs?: number): Promise<AgentStatusJson>;
  /** Every line each agent (and the witness) wrote, every process of it so far, for failure messages. */
  transcript(lines?: number): string;
  /** The agent's failover journal in its state dir. */
  journalPath(host: PairHost): string;
  /** HOST:PORT of `host`'s agent's /metrics and /status, on the control link (reachable from this process). */
  metricsAddress(host: PairHost): string;
  /** SIGKILL `host`'s agent (if it runs; SIGCONT too, in case it is stopped), then start it again as last started. */
  restartAgent(host: PairHost): Promise<AgentProcess>;
}

export interface LabColo extends LabColoHarness {
  readonly pair: ColoPair;
}

/** The harness before the pair: agents can be started on `colo` (their QMP not there yet). */
export interface LabColoAhead extends LabColoHarness {
  /** The `colo` section the pair will run, as predicted before it exists (startPair() brings up exactly this; the agents get the pair's own once it is up). */
  readonly colo: ColoConfig;
  /** Bring the pair up into COLO (a primary, b secondary); undefined after marking the test skipped when this QEMU cannot do COLO. */
  startPair(): Promise<LabColo | undefined>;
}

/** The agent installed on each host: a as primary, b as secondary. */
const INSTALLED: Record<PairHost, 'primary' | 'secondary'> = { a: 'primary', b: 'secondary' };
/** Where each role's QEMU runs at bring-up (the inverse of INSTALLED). */
export const BRING_UP_HOST: Readonly<Record<ColoRole, PairHost>> = { primary: 'a', secondary: 'b' };

/** The pair's `colo` overrides on this lab: the hosts' replication addresses, the documented ports, then opts.colo. */
function labColoOverrides(lab: Lab, opts: LabColoOptions): { overrides: ColoOverrides; ports: ColoPorts } {
  const { mirrorPort, compare1Port, compare0Port, compareOutPort, nbdPort, migrationPort } = DOCUMENTED_COLO;
  const ports: ColoPorts = { mirrorPort, compare1Port, compare0Port, compareOutPort, nbdPort, migrationPort };
  return { overrides: { ...opts.colo, primaryHost: lab.addr('a', 'rep'), secondaryHost: lab.addr('b', 'rep'), ...ports }, ports };
}

/** The pair in the lab's namespaces, or undefined after marking `t` skipped with the reason. */
async function startLabPair(t: SkippableTest, lab: Lab, opts: LabColoOptions): Promise<ColoPair | undefined> {
  const r = await startColoPair({
    t,
    colo: labColoOverrides(lab, opts).overrides,
    wrap: { primary: lab.wrap('a', []), secondary: lab.wrap('b', []) },
    diskSizeMb: opts.diskSizeMb ?? 32,
  });
  if (!r.ok) {
    t.pass('COLO pair', { skip: r.reason });
    return undefined;
  }
  return r.pair;
}

/** The lab, the pair up in COLO (a primary, b secondary) and the witness when asked; or undefined after a skip. Agents are started by the caller. */
export async function startLabColoOrSkip(t: SkippableTest, opts: LabColoOptions): Promise<LabColo | undefined> {
  const lab = await startLabOrSkip(t);
  if (!lab) return undefined;
  const pair = await startLabPair(t, lab, opts);
  if (!pair) return undefined;
  const harness = await startHarness(t, lab, opts, () => pair.colo);
  return Object.assign(harness, { pair });
}

/**
 * The lab and the harness (key, state dirs, the witness when asked) before the pair: start agents
 * on `colo` (e.g. with qemu.qmp at a path that appears later), then startPair(). Undefined after a
 * skip (no lab here).
 */
export async function prepareLabColoOrSkip(t: SkippableTest, opts: LabColoOptions): Promise<LabColoAhead | undefined> {
  const lab = await startLabOrSkip(t);
  if (!lab) return undefined;
  const { overrides, ports } = labColoOverrides(lab, opts);
  let colo = resolveColoConfig(overrides, ports);
  const harness = await startHarness(t, lab, opts, () => colo);
  const ahead: LabColoAhead = Object.assign(harness, {
    colo,
    startPair: async (): Promise<LabColo | undefined> => {
      const pair = await startLabPair(t, lab, opts);
      if (!pair) return undefined;
      colo = pair.colo;
      return Object.assign(harness, { pair });
    },
  });
  return ahead;
}

/** Both agents on a pair that is up (a on the primary's agent socket, b on the secondary's), once each sees the peer up and its QEMU in its COLO mode. */
export async function startPairAgents(lc: LabColo, timeoutMs = 30_000): Promise<Record<PairHost, AgentProcess>> {
  const [a, b] = await Promise.all([lc.startAgent('a', lc.pair.side('primary').agentQmpAddress), lc.startAgent('b', lc.pair.side('secondary').agentQmpAddress)]);
  await waitColoReady({ primary: a, secondary: b }, timeoutMs);
  return { a, b };
}

/** startLabColoOrSkip() then startPairAgents(): the pair in COLO and both agents ready; undefined after a skip. */
export async function startLabColoAgentsOrSkip(t: SkippableTest, opts: LabColoOptions, readyTimeoutMs?: number): Promise<LabColo | undefined> {
  const lc = await startLabColoOrSkip(t, opts);
  if (!lc) return undefined;
  await startPairAgents(lc, readyTimeoutMs);
  return lc;
}

async function startHarness(t: SkippableTest, lab: Lab, opts: LabColoOptions, colo: () => ColoConfig): Promise<LabColoHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'colo-lab-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'heartbeat.key');
  await keygen(keyFile, false);
  const stateDir = (h: PairHost | 'w') => join(dir, h);
  for (const h of ['a', 'b', 'w'] as const) mkdirSync(stateDir(h), { recursive: true });
  const agents: Partial<Record<PairHost, AgentProcess>> = {};
  const history: AgentProcess[] = [];
  const hostPort = (address: string, port: number) => `${address}:${port}`;

  let witness: AgentProcess | undefined;
  if (opts.arbiter === 'witness') {
    witness = await startAgent({
      t,
      name: 'witness (w)',
      config: WITNESS_CONFIG,
      ready: logMsg('witness listening'),
      readyTimeoutMs: AGENT_START_TIMEOUT_MS,
      wrap: lab.wrap('w', []),
      sets: [
        `node.stateDir=${stateDir('w')}`,
        `heartbeat.keyFile=${keyFile}`,
        `heartbeat.listen=0.0.0.0:${HEARTBEAT_PORT}`,
        `heartbeat.intervalMs=${FAST_HEARTBEAT.intervalMs}`,
        `metrics.listen=0.0.0.0:${METRICS_PORT}`,
        'log.level=info',
        `arbiter.leaseMs=${LAB_LEASE_MS}`,
      ],
    });
    history.push(witness);
  }

  const arbiterSets = (h: PairHost): string[] =>
    opts.arbiter === 'witness'
      ? ['arbiter.mode=witness', `arbiter.witness=${hostPort(lab.addr('w', h === 'a' ? 'aw' : 'bw'), HEARTBEAT_PORT)}`, `arbiter.leaseMs=${LAB_LEASE_MS}`]
      : ['arbiter.mode=none'];
  const agentOptions = (h: PairHost, qmp: string, extra: string[] = []): StartAgentOptions => {
    const peer = peerOf(h);
    return {
      t,
      name: `${h} (installed ${INSTALLED[h]})`,
      config: EXAMPLE_CONFIGS[INSTALLED[h]],
      readyTimeoutMs: AGENT_START_TIMEOUT_MS,
      wrap: lab.wrap(h, []),
      sets: [
        `node.stateDir=${stateDir(h)}`,
        `qemu.qmp=${qmp}`,
        `heartbeat.keyFile=${keyFile}`,
        `heartbeat.listen=0.0.0.0:${HEARTBEAT_PORT}`,
        `heartbeat.peers=${hostPort(lab.addr(peer, 'rep'), HEARTBEAT_PORT)},${hostPort(lab.addr(peer, 'mgmt'), HEARTBEAT_PORT)}`,
        ...Object.entries(FAST_HEARTBEAT).map(([k, v]) => `heartbeat.${k}=${v}`),
        `metrics.listen=0.0.0.0:${METRICS_PORT}`,
        'log.level=info',
        ...coloSets(colo()),
        'failover.reprobeIntervalMs=200',
        ...arbiterSets(h),
        ...(opts.sets ?? []),
        ...extra,
      ],
    };
  };

  const lastStart: Partial<Record<PairHost, { qmp: string; extra: string[] | undefined }>> = {};
  const startOne = async (h: PairHost, qmp: string, extra?: string[]): Promise<AgentProcess> => {
    lastStart[h] = { qmp, extra };
    const a = await startAgent(agentOptions(h, qmp, extra));
    agents[h] = a;
    history.push(a);
    return a;
  };
  const metricsAddress = (h: PairHost): string => hostPort(lab.controlAddr(h), METRICS_PORT);
  const labColo: LabColoHarness = {
    lab,
    arbiter: opts.arbiter,
    dir,
    agents,
    witness,
    stateDir,
    agentOptions,
    startAgent: startOne,
    status: async (h, timeoutMs = 1500) => {
      const reply = await httpRequest(metricsAddress(h), '/status', { timeoutMs });
      if (reply.status !== 200) throw new Error(`GET /status of ${h}: HTTP ${reply.status}`);
      return JSON.parse(reply.body) as AgentStatusJson;
    },
    transcript: (lines = 60) => history.map((a) => `--- ${a.name}, pid ${a.pid}${a.alive ? '' : ' (ended)'}:\n${a.tail(lines)}`).join('\n'),
    journalPath: (h) => join(stateDir(h), JOURNAL_FILE_NAME),
    metricsAddress,
    restartAgent: async (h) => {
      const last = lastStart[h];
      if (!last) throw new Error(`restartAgent(${h}): its agent was never started`);
      const old = agents[h];
      if (old) {
        old.kill('SIGKILL');
        old.kill('SIGCONT');
        await old.exited;
      }
      return startOne(h, last.qmp, last.extra);
    },
  };
  return labColo;
}

/** One line per host: what its agent's /status says (or why it does not answer). */
export async function describeAgents(lc: LabColo): Promise<string> {
  const parts = await Promise.all(
    PAIR_HOSTS.map(async (h) => {
      const a = lc.agents[h];
      if (!a?.alive) return `${h}: agent not running`;
      try {
        const s = await lc.status(h, 1000);
        return (
          `${h}: ${s.state} role=${s.role} colo=${s.qemu.colo?.mode ?? '?'} peer=${s.peer.state} epoch=${s.epoch?.epoch}` +
          `${s.epoch?.stale ? ' STALE' : ''} arbiter=${s.arbiter.mode}/${s.arbiter.reachable ? 'reachable' : 'unreachable'}` +
          `${s.arbiter.leaseRemainingMs !== undefined ? ` lease=${s.arbiter.leaseRemainingMs}ms` : ''}` +
          `${s.topology ? ` topology(self=${s.topology.self} peer=${s.topology.peer} from ${s.topology.source})` : ''}`
        );
      } catch (err) {
        return `${h}: agent alive, /status: ${(err as Error).message}`;
      }
    }),
  );
  return parts.join(' | ');
}

/** Polls both agents' /status until `problemsOf` finds none: '' then, else at the timeout the last problems (why not). */
export async function waitAgentStatuses(lc: Pick<LabColo, 'status'>, timeoutMs: number, problemsOf: (st: Record<PairHost, AgentStatusJson>) => string[]): Promise<string> {
  const end = Date.now() + timeoutMs;
  let why = '';
  for (;;) {
    try {
      const [a, b] = await Promise.all([lc.status('a'), lc.status('b')]);
      const problems = problemsOf({ a, b });
      if (problems.length === 0) return '';
      why = problems.join(', ');
    } catch (err) {
      why = (err as Error).message;
    }
    if (Date.now() >= end) return why;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What keeps a pair from its steady state: both agents peer-up, the witness reachable, `primary` holding the lease. */
export function steadyProblems(arbiter: LabArbiter, primary: PairHost, st: Record<PairHost, AgentStatusJson>): string[] {
  const problems: string[] = [];
  for (const h of PAIR_HOSTS) {
    if (st[h].state !== 'peer-up') problems.push(`${h} state ${st[h].state}`);
    if (arbiter === 'witness' && !st[h].arbiter.reachable) problems.push(`${h} arbiter unreachable`);
  }
  if (arbiter === 'witness' && !((st[primary].arbiter.leaseRemainingMs ?? 0) > 0)) problems.push(`${primary} holds no lease`);
  return problems;
}
