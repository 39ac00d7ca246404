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
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keygen } from '../../src/commands/keygen.js';
import { DOCUMENTED_COLO } from '../../src/qemu/colo-cmdline.js';
import { EXAMPLE_CONFIGS, logMsg, startAgent, type AgentProcess, type StartAgentOptions } from '../helpers/agent-process.js';
import { coloSets, FAST_HEARTBEAT, WITNESS_CONFIG, type AgentStatusJson } from '../helpers/colo-agents.js';
import { startColoPair, type ColoPair, type SkippableTest } from '../helpers/colo-pair.js';
import { httpRequest } from '../helpers/http.js';
import { startLabOrSkip, type Lab } from './netns.js';

export type PairHost = 'a' | 'b';
export const PAIR_HOSTS: readonly PairHost[] = ['a', 'b'];
export const peerOf = (h: PairHost): PairHost => (h === 'a' ? 'b' : 'a');

export const HEARTBEAT_PORT = 7410;
export const METRICS_PORT = 9464;
export const LAB_LEASE_MS = 500;

export type LabArbiter = 'witness' | 'none';

export interface LabColoOptions {
  arbiter: LabArbiter;
  /** Every disk image's size. Default 32 (the resume's drive-mirror copies all of it). */
  diskSizeMb?: number;
  /** More `key=value` overrides for both agents. */
  sets?: string[];
}

export interface LabColo {
  readonly lab: Lab;
  readonly pair: ColoPair;
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
}

/** The agent installed on each host: a as primary, b as secondary. */
const INSTALLED: Record<PairHost, 'primary' | 'secondary'> = { a: 'primary', b: 'secondary' };

/** The lab, the pair up in COLO (a primary, b secondary) and the witness when asked; or undefined after a skip. Agents are started by the caller. */
export async function startLabColoOrSkip(t: SkippableTest, opts: LabColoOptions): Promise<LabColo | undefined> {
  const lab = await startLabOrSkip(t);
  if (!lab) return undefined;
  const { mirrorPort, compare1Port, compare0Port, compareOutPort, nbdPort, migrationPort } = DOCUMENTED_COLO;
  const r = await startColoPair({
    t,
    colo: { primaryHost: lab.addr('a', 'rep'), secondaryHost: lab.addr('b', 'rep'), mirrorPort, compare1Port, compare0Port, compareOutPort, nbdPort, migrationPort },
    wrap: { primary: lab.wrap('a', []), secondary: lab.wrap('b', []) },
    diskSizeMb: opts.diskSizeMb ?? 32,
  });
  if (!r.ok) {
    t.pass('COLO pair', { skip: r.reason });
    return undefined;
  }
  const pair = r.pair;
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
        ...coloSets(pair.colo),
        'failover.reprobeIntervalMs=200',
        ...arbiterSets(h),
        ...(opts.sets ?? []),
        ...extra,
      ],
    };
  };

  const labColo: LabColo = {
    lab,
    pair,
    arbiter: opts.arbiter,
    dir,
    agents,
    witness,
    stateDir,
    agentOptions,
    startAgent: async (h, qmp, extra) => {
      const a = await startAgent(agentOptions(h, qmp, extra));
      agents[h] = a;
      history.push(a);
      return a;
    },
    status: async (h, timeoutMs = 1500) => {
      const reply = await httpRequest(hostPort(lab.controlAddr(h), METRICS_PORT), '/status', { timeoutMs });
      if (reply.status !== 200) throw new Error(`GET /status of ${h}: HTTP ${reply.status}`);
      return JSON.parse(reply.body) as AgentStatusJson;
    },
    transcript: (lines = 60) => history.map((a) => `--- ${a.name}, pid ${a.pid}${a.alive ? '' : ' (ended)'}:\n${a.tail(lines)}`).join('\n'),
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
