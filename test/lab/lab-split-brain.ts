/**
 * The split-brain rig on the lab of separate hosts, shared by test/e2e/split-brain.test.ts and
 * split-brain-trials.test.ts: the real QEMU COLO pair and its two real agents in the lab's
 * namespaces (lab-colo.ts: host a runs the primary, host b the secondary), their arbiter on host
 * w (the witness of lab-colo.ts, or a real etcd started there), and the lab's faults between any
 * of them; plus the observer and the watch of split-brain.ts, which say from QEMU itself which
 * side runs the guest as primary, now and at every moment so far.
 *
 * Sides keep their bring-up names: `primary` is host a, `secondary` host b (the roles may move,
 * the names do not).
 *
 * The faults are what they say (netns.ts):
 * - cutPair: partition(a, b): both links between the hosts (replication and management), on both
 *   ends; each still reaches w;
 * - isolate(side): everything of the host but its control link (the peer and the arbiter);
 * - cutFromArbiter(side): partition(host, w);
 * - crashHost(side): SIGKILL of every process of the host (the kernel sends FIN/RST);
 *   powerLoss(side): the host's links dropped, then every process SIGKILLed behind the drop (no
 *   FIN, no RST reaches anyone); the watch records the QEMU's death either way;
 * - killWitness(): SIGKILL of the witness process; freezeArbiter()/thawArbiter(): SIGSTOP/SIGCONT
 *   of every process of w (the arbiter hung: its port still completes handshakes in w's kernel).
 *
 * etcd runs in w on its own fixed ports (etcd-server.ts `netns`); each agent dials it at w's
 * address on the agent's own link to w, so cutting one node from the arbiter is
 * partition(host, w), as for the witness.
 */
import { randomBytes } from 'node:crypto';
import { logMsg, sleep, startAgent, type AgentProcess } from '../helpers/agent-process.js';
import { WITNESS_CONFIG } from '../helpers/colo-agents.js';
import type { ColoPair, ColoRole, SkippableTest } from '../helpers/colo-pair.js';
import { etcdAvailable, startEtcd, type RunningEtcd } from '../helpers/etcd-server.js';
import { pairObserver, PrimaryWatch, SIDES, SplitBrainRigError, type ArbiterKind, type PairObserver } from '../helpers/split-brain.js';
import { startLabColoOrSkip, type LabColo, type PairHost } from './lab-colo.js';
import type { Lab } from './netns.js';

/** The host each side was brought up on. */
export const HOST_OF: Readonly<Record<ColoRole, PairHost>> = { primary: 'a', secondary: 'b' };

export const ETCD_CLIENT_PORT = 2379;
/** How long an agent may take to start (to log that its heartbeat links started): generous, the machine is shared. */
const AGENT_START_MS = 60_000;

export interface LabRigOptions {
  arbiter: ArbiterKind;
  /** More `key=value` overrides for both agents. */
  sets?: string[];
  /** arbiter.etcd.leaseTtlSeconds (etcd runs with fast elections, so 1 is accepted). Default 1. */
  leaseTtlSeconds?: number;
  /** How long to wait for the steady state (peers up, arbiter reachable, the primary's lease held). Default 20000. */
  steadyTimeoutMs?: number;
}

export interface LabRig extends PairObserver {
  readonly arbiter: ArbiterKind;
  readonly lc: LabColo;
  readonly lab: Lab;
  readonly pair: ColoPair;
  readonly watch: PrimaryWatch;
  /** The etcd in w (arbiter etcd). */
  readonly etcd: RunningEtcd | undefined;
  /** The witness process now (arbiter witness; replaced by restartWitness()). */
  readonly witness: AgentProcess | undefined;
  /** The side's agent. */
  agent(side: ColoRole): AgentProcess;
  /** The cuts in force (cutPair, isolate, cutFromArbiter) until heal(). */
  readonly cuts: readonly string[];
  cutPair(): Promise<void>;
  isolate(side: ColoRole): Promise<void>;
  cutFromArbiter(side: ColoRole): Promise<void>;
  /** Remove every cut (not a power loss). */
  heal(): Promise<void>;
  crashHost(side: ColoRole): Promise<void>;
  powerLoss(side: ColoRole): Promise<void>;
  killWitness(): void;
  /** Start the witness again with the same config and state dir (SIGKILLing it first if it still runs). */
  restartWitness(): Promise<AgentProcess>;
  freezeArbiter(): Promise<void>;
  thawArbiter(): Promise<void>;
  /** Every process's last lines (agents, witnesses, etcd), for a failure message. */
  tails(lines?: number): string;
  /** Stops everything (also done at teardown). */
  stop(): Promise<void>;
}

type RigTest = SkippableTest & { comment(...m: unknown[]): unknown };

/**
 * Starts the rig, or skips `t` (printing why) and returns undefined when the lab, QEMU that can do
 * COLO or (arbiter etcd) etcd is unavailable. Everything is stopped at t's teardown.
 */
export async function startLabRigOrSkip(t: RigTest, opts: LabRigOptions): Promise<LabRig | undefined> {
  if (opts.arbiter === 'etcd') {
    const avail = etcdAvailable();
    if (!avail.available) {
      t.pass('etcd', { skip: avail.reason });
      return undefined;
    }
  }
  const lc = await startLabColoOrSkip(t, { arbiter: opts.arbiter === 'witness' ? 'witness' : 'none' });
  if (!lc) return undefined;
  const { lab, pair } = lc;
  const ownCleanups: Array<() => Promise<unknown> | unknown> = [];
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const c of ownCleanups.splice(0).reverse()) await Promise.resolve().then(c).catch(() => undefined);
      await lab.destroy().catch(() => undefined);
      await pair.stop().catch(() => undefined);
    })();
    return stopped;
  };
  t.teardown(stop);

  try {
    let etcd: RunningEtcd | undefined;
    let extra = (_h: PairHost): string[] => [];
    if (opts.arbiter === 'etcd') {
      const e = await startEtcd({ t, fast: true, netns: { wrap: lab.wrap('w', []), reachHost: lab.controlAddr('w'), clientPort: ETCD_CLIENT_PORT } });
      etcd = e;
      ownCleanups.push(() => e.stop());
      const prefix = `/colo-test/${process.pid}-${randomBytes(4).toString('hex')}`;
      extra = (h) => [
        'arbiter.mode=etcd',
        `arbiter.etcd.endpoints=http://${lab.addr('w', h === 'a' ? 'aw' : 'bw')}:${ETCD_CLIENT_PORT}`,
        `arbiter.etcd.prefix=${prefix}`,
        `arbiter.etcd.leaseTtlSeconds=${opts.leaseTtlSeconds ?? 1}`,
      ];
    }
    // lab-colo's config for each host, with a generous start bound (a loaded machine).
    const agents = {} as Record<ColoRole, AgentProcess>;
    await Promise.all(
      SIDES.map(async (side) => {
        const options = lc.agentOptions(HOST_OF[side], pair.side(side).agentQmpAddress, [...(opts.sets ?? []), ...extra(HOST_OF[side])]);
        agents[side] = await startAgent({ ...options, readyTimeoutMs: AGENT_START_MS });
      }),
    );
    const agent = (side: ColoRole): AgentProcess => agents[side];
    const describe = (a: AgentProcess, lines: number) => `--- ${a.name}, pid ${a.pid}${a.alive ? '' : ' (ended)'}:\n${a.tail(lines)}`;
    let watchRef: PrimaryWatch | undefined;
    const observer = pairObserver(
      (side) => ({ qemu: pair.side(side), agentAlive: () => agent(side).alive, status: (ms) => lc.status(HOST_OF[side], ms) }),
      () => watchRef,
    );

    const steadyMs = opts.steadyTimeoutMs ?? 20_000;
    const steady = await waitSteady(lc, steadyMs);
    if (!steady.ok) throw new SplitBrainRigError(`no steady state within ${steadyMs} ms: ${steady.why}\n${SIDES.map((s) => describe(agents[s], 40)).join('\n')}`);

    const watch = await PrimaryWatch.start(pair);
    watchRef = watch;
    ownCleanups.push(() => watch.close());

    let witness = lc.witness;
    const laterWitnesses: AgentProcess[] = [];
    const cuts: string[] = [];
    const hostDown = async (side: ColoRole, how: 'crash' | 'powerLoss') => {
      await (how === 'crash' ? lab.crash(HOST_OF[side]) : lab.powerLoss(HOST_OF[side]));
      // Stamped once every process of the host is gone: never earlier than the QEMU's real death.
      watch.killed(side, Date.now());
    };
    const killWitness = () => {
      if (witness?.alive) lab.killProcess(witness.pid);
    };

    const rig: LabRig = {
      ...observer,
      arbiter: opts.arbiter,
      lc,
      lab,
      pair,
      watch,
      etcd,
      get witness() {
        return witness;
      },
      agent,
      cuts,
      cutPair: async () => {
        await lab.partition('a', 'b');
        cuts.push('pair');
      },
      isolate: async (side) => {
        await lab.isolate(HOST_OF[side]);
        cuts.push(`isolate ${side}`);
      },
      cutFromArbiter: async (side) => {
        await lab.partition(HOST_OF[side], 'w');
        cuts.push(`${side} from the arbiter`);
      },
      heal: async () => {
        await lab.heal();
        cuts.splice(0);
      },
      crashHost: (side) => hostDown(side, 'crash'),
      powerLoss: (side) => hostDown(side, 'powerLoss'),
      killWitness,
      restartWitness: async () => {
        const old = witness;
        if (!old) throw new SplitBrainRigError('no witness in this rig (arbiter etcd)');
        killWitness();
        await old.exited;
        const sets = old.args.flatMap((arg, i) => (old.args[i - 1] === '--set' ? [arg] : []));
        witness = await startAgent({ t, name: 'witness (w)', config: WITNESS_CONFIG, ready: logMsg('witness listening'), wrap: lab.wrap('w', []), sets, readyTimeoutMs: AGENT_START_MS });
        laterWitnesses.push(witness);
        return witness;
      },
      freezeArbiter: async () => {
        await lab.freeze('w');
      },
      thawArbiter: async () => {
        await lab.thaw('w');
      },
      tails: (lines = 30) =>
        [
          ...[agents.primary, agents.secondary, ...(lc.witness ? [lc.witness] : []), ...laterWitnesses].map((a) => describe(a, lines)),
          ...(etcd ? [`--- etcd (w), pid ${etcd.pid}:\n${etcd.output().trim().split('\n').slice(-lines).join('\n')}`] : []),
        ].join('\n'),
      stop,
    };
    return rig;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Both peers up, both agents reach the arbiter, epoch 0, the primary (host a) holds its lease. */
async function waitSteady(lc: LabColo, timeoutMs: number): Promise<{ ok: boolean; why: string }> {
  const end = Date.now() + timeoutMs;
  let why = '';
  for (;;) {
    try {
      const [p, s] = await Promise.all([lc.status(HOST_OF.primary), lc.status(HOST_OF.secondary)]);
      const problems: string[] = [];
      for (const [side, st] of [['primary', p], ['secondary', s]] as const) {
        if (st.state !== 'peer-up') problems.push(`${side} state ${st.state}`);
        if (!st.arbiter.reachable) problems.push(`${side} arbiter unreachable`);
        if (st.epoch?.epoch !== 0) problems.push(`${side} epoch ${st.epoch?.epoch}`);
      }
      if (!((p.arbiter.leaseRemainingMs ?? 0) > 0)) problems.push(`primary lease ${p.arbiter.leaseRemainingMs}`);
      if (problems.length === 0) return { ok: true, why: '' };
      why = problems.join(', ');
    } catch (err) {
      why = (err as Error).message;
    }
    if (Date.now() >= end) return { ok: false, why };
    await sleep(100);
  }
}
