/**
 * The split-brain rig shared by test/e2e/split-brain.test.ts and split-brain-trials.test.ts: a
 * real QEMU COLO pair, its two real agents, their arbiter (a witness process on 127.0.0.3, or an
 * etcd), and iptables partitions (partition.ts) between any of them; plus the observer that says,
 * from QEMU itself, which side runs the guest as primary, now and at every moment so far.
 *
 * Partitions, by port (every loopback connection leaves from 127.0.0.1 unless bound, see
 * partition.ts):
 * - the pair link: both agents' heartbeat ports and every port that crosses between the hosts
 *   (NBD, migration, mirror0, compare1, and the secondary's own mirror0/compare1 for after a
 *   takeover, see below). The compare0/compare_out chardev pairs are local to one host: a real
 *   partition does not touch them, so neither do we. The agents' TCP probe of the peer QEMU hits
 *   one of these ports and so goes silent, as in a real partition;
 * - a node's arbiter link: witness: its connections from its heartbeat.listen address to the
 *   witness port; etcd: its own forwarder to etcd (both agents would reach etcd from 127.0.0.1,
 *   so each dials etcd through an in-process forwarder on its own host and port).
 *
 * One loopback artefact: after a secondary takeover, the new primary's QEMU adds listeners on
 * 0.0.0.0:mirrorPort/compare1Port and 127.0.0.1:compare0Port/compareOutPort, which on one machine
 * clash with the old primary's (alive in a partition, paused). So the secondary agent gets its own
 * free ports for these four keys, as the demo's partition drill does; its probe of the primary then
 * targets its own mirrorPort, which nothing listens on while the pair is joined (`refused` instead
 * of `alive`). That port is in the pair cut, so during a partition the probe is `silent` as on two
 * hosts; while joined, the arbiter still refuses a takeover against a live lease holder.
 *
 * "Running primary" (the tests' outcome): query-status says running AND query-colo-status mode is
 * not `secondary` (a COLO secondary's VM also says running). PrimaryWatch follows the same from
 * QEMU's own events (STOP/RESUME/COLO_EXIT, stamped by QEMU on the host clock) to find any moment
 * at which both sides ran the guest as primary.
 */
import net from 'node:net';
import { ColoAgentError } from '../../src/errors.js';
import type { QmpClient, QmpEvent } from '../../src/qmp/index.js';
import { FaultProxy } from './fault-proxy.js';
import { AGENT_HOSTS, sleep, type LogPredicate } from './agent-process.js';
import {
  FAST_HEARTBEAT,
  startColoAgents,
  WITNESS_HOST,
  type AgentStatusJson,
  type ColoAgents,
  type ColoAgentsOptions,
} from './colo-agents.js';
import { queryColoStatus, queryStatus, startColoPairOrSkip, type ColoPair, type ColoRole, type SkippableTest } from './colo-pair.js';
import type { RunningEtcd } from './etcd-server.js';
import { dropFlow, dropPorts, iptablesAvailable, Partition, type DropRule } from './partition.js';

export const SIDES: readonly ColoRole[] = ['primary', 'secondary'];

export class SplitBrainRigError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_SPLIT_BRAIN_RIG', message);
  }
}

export type ArbiterKind = 'witness' | 'etcd';

export interface RigOptions {
  arbiter: ArbiterKind;
  /** Required with arbiter etcd (startEtcd({ fast: true }) for a 1 s TTL). */
  etcd?: RunningEtcd;
  /** More agent options (heartbeat, failover, sets). */
  agents?: Omit<ColoAgentsOptions, 't' | 'arbiter' | 'statusEndpoints'>;
  /** arbiter.leaseMs with a witness. Default 500. */
  leaseMs?: number;
  /** arbiter.etcd.leaseTtlSeconds. Default 1. */
  leaseTtlSeconds?: number;
  /** How long to wait for the steady state (peers up, arbiter reachable, the primary's lease held). Default 20000. */
  steadyTimeoutMs?: number;
}

export interface Rig {
  readonly arbiter: ArbiterKind;
  readonly pair: ColoPair;
  readonly agents: ColoAgents;
  readonly partition: Partition;
  readonly watch: PrimaryWatch;
  /** Every port of the pair link (see the file comment). */
  readonly pairPorts: readonly number[];
  /** Rules that cut the pair link. */
  pairRules(): DropRule[];
  /** Rules that cut one node from its arbiter. */
  arbiterRules(side: ColoRole): DropRule[];
  /** Cut the pair link (group 'pair'). */
  cutPair(): Promise<void>;
  /** Cut one node from the peer AND the arbiter, in one transaction (group 'isolate-<side>'). */
  isolate(side: ColoRole): Promise<void>;
  /** Remove every cut. */
  heal(): Promise<void>;
  /** SIGKILL a side's QEMU and agent in the same tick (a crashed host); the watch records it. */
  killHost(side: ColoRole): void;
  /** Which side runs the guest as primary now, and what each agent says. */
  observe(): Promise<Observation>;
  /** Poll observe() until `predicate` holds; the last observation either way. */
  waitFor(predicate: (o: Observation) => boolean, timeoutMs: number, pollMs?: number): Promise<{ ok: boolean; obs: Observation }>;
  /** Stops everything (also done at teardown). */
  stop(): Promise<void>;
}

// ---- observation ----

export interface QemuView {
  alive: boolean;
  running?: boolean;
  status?: string;
  mode?: string;
  /** The harness's query failed or hung (error says which). */
  error?: string;
  /**
   * running/mode come from QEMU's events (PrimaryWatch), not from a query: QEMU's QMP did not
   * answer (7.2 blocks its main loop in `stop` while the replication disk flushes to a secondary
   * it cannot reach, having already paused the vCPUs and sent STOP).
   */
  fromEvents?: boolean;
}

export interface SideView {
  qemu: QemuView;
  /** The agent's /status, undefined when it is dead or does not answer. */
  agent: AgentStatusJson | undefined;
  agentAlive: boolean;
  runningPrimary: boolean;
}

export interface Observation {
  at: number;
  sides: Record<ColoRole, SideView>;
  runningPrimaries: ColoRole[];
}

export const isRunningPrimary = (q: QemuView): boolean => q.alive && q.running === true && q.mode !== undefined && q.mode !== 'secondary';

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** One line per side, for comments and failure messages. */
export function describeObservation(o: Observation): string {
  return SIDES.map((side) => {
    const v = o.sides[side];
    const q = v.qemu.alive ? `qemu ${v.qemu.status ?? '?'}${v.qemu.error ? ` (${v.qemu.error})` : ''} colo=${v.qemu.mode ?? '?'}` : 'qemu gone';
    const a = v.agent
      ? `agent ${v.agent.state} epoch=${v.agent.epoch?.epoch}${v.agent.epoch?.stale ? ' STALE' : ''} newestSeen=${v.agent.epoch?.newestSeen}` +
        `${v.agent.guestStopped ? ` guestStopped=${v.agent.guestStopped}` : ''} arbiter=${v.agent.arbiter.reachable ? 'reachable' : 'unreachable'}` +
        `${v.agent.arbiter.leaseRemainingMs !== undefined ? ` lease=${v.agent.arbiter.leaseRemainingMs}ms` : ''}`
      : v.agentAlive
        ? 'agent (no /status answer)'
        : 'agent gone';
    return `${side}: ${q}; ${a}${v.runningPrimary ? ' => RUNNING PRIMARY' : ''}`;
  }).join(' | ');
}

// ---- the event-based watch ----

interface SideTrack {
  running: boolean;
  mode: string;
  alive: boolean;
  poller?: NodeJS.Timeout;
  /** [QEMU time ms, running primary after it] for every change. */
  changes: Array<[number, boolean]>;
  events: string[];
}

/**
 * Follows each side's "running primary" from QEMU's events: STOP/RESUME (running), COLO_EXIT
 * with reason `request` (a failover: mode none from then on) and the kills this process made.
 * Times are QEMU's event stamps (host wall clock), and Date.now() for kills and polls, so both
 * sides are on one clock.
 *
 * COLO_EXIT with reason `error` (the replication stream broke) does NOT end COLO mode: QEMU then
 * waits, still in its mode, for a failover command (x-colo-lost-heartbeat), whose completion emits
 * no second event. So after such an event the side's mode is polled (every POLL_MS) until it
 * leaves `secondary`, and the change is stamped at the last poll that still saw `secondary`: the
 * earliest it can have happened, so that an overlap is never hidden (it may be over-reported by
 * up to one poll period).
 */
const POLL_MS = 10;

/**
 * What the watch follows: a QMP client per role key. A ColoPair, or any two QEMUs (e.g. after a
 * failback with the roles swapped, the new primary and the fresh secondary of the lab's hosts).
 */
export interface WatchedPair {
  side(role: ColoRole): { readonly qmp: QmpClient };
}

export class PrimaryWatch {
  private readonly track: Record<ColoRole, SideTrack>;
  private readonly off: Array<() => void> = [];
  readonly startedAt: number;

  private constructor(
    private readonly pair: WatchedPair,
    initial: Record<ColoRole, { running: boolean; mode: string }>,
    at: number,
  ) {
    this.startedAt = at;
    const mk = (s: { running: boolean; mode: string }): SideTrack => ({
      ...s,
      alive: true,
      changes: [[at, s.running && s.mode !== 'secondary']],
      events: [],
    });
    this.track = { primary: mk(initial.primary), secondary: mk(initial.secondary) };
  }

  /** Subscribes to both harness QMP clients, then reads the current state. */
  static async start(pair: WatchedPair): Promise<PrimaryWatch> {
    const buffered: Array<[ColoRole, QmpEvent]> = [];
    let watch: PrimaryWatch | undefined;
    const offs: Array<() => void> = [];
    for (const side of SIDES) {
      const onEvent = (e: QmpEvent) => (watch ? watch.onEvent(side, e) : buffered.push([side, e]));
      pair.side(side).qmp.on('event', onEvent);
      offs.push(() => pair.side(side).qmp.off('event', onEvent));
    }
    const at = Date.now();
    const initial = {} as Record<ColoRole, { running: boolean; mode: string }>;
    for (const side of SIDES) {
      const [st, colo] = await Promise.all([queryStatus(pair.side(side)), queryColoStatus(pair.side(side))]);
      initial[side] = { running: st.running, mode: colo.mode };
    }
    watch = new PrimaryWatch(pair, initial, at);
    watch.off.push(...offs);
    for (const [side, e] of buffered) if (e.timestampMs >= at) watch.onEvent(side, e);
    return watch;
  }

  close(): void {
    for (const f of this.off.splice(0)) f();
    for (const side of SIDES) this.stopPolling(side);
  }

  /** This process SIGKILLed the side's QEMU at `at` (Date.now()): it runs nothing from then on. */
  killed(side: ColoRole, at: number): void {
    const s = this.track[side];
    this.stopPolling(side);
    s.alive = false;
    s.events.push(`${at} killed`);
    this.change(side, at);
  }

  private onEvent(side: ColoRole, e: QmpEvent): void {
    const s = this.track[side];
    if (!s.alive) return;
    if (e.event === 'STOP') s.running = false;
    else if (e.event === 'RESUME') s.running = true;
    else if (e.event === 'COLO_EXIT' && e.data.reason === 'request') s.mode = 'none';
    else if (e.event === 'COLO_EXIT') this.pollMode(side, e.timestampMs);
    else return;
    s.events.push(`${e.timestampMs.toFixed(1)} ${e.event}${e.event === 'COLO_EXIT' ? ` ${JSON.stringify(e.data)}` : ''}`);
    this.change(side, e.timestampMs);
  }

  /** Poll the mode after a COLO_EXIT(error) until it is no longer `secondary` (see the class comment). */
  private pollMode(side: ColoRole, since: number): void {
    const s = this.track[side];
    if (s.poller || s.mode !== 'secondary') return;
    let lastSecondaryAt = since;
    let inFlight = false;
    s.poller = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      const askedAt = Date.now();
      queryColoStatus(this.pair.side(side))
        .then(
          (c) => {
            if (!s.alive || !s.poller) return;
            if (c.mode === 'secondary') {
              lastSecondaryAt = askedAt;
              return;
            }
            this.stopPolling(side);
            s.mode = c.mode;
            s.events.push(`${lastSecondaryAt.toFixed(1)} mode ${c.mode} (polled; still secondary at this time, ${c.mode} at ${askedAt})`);
            this.change(side, lastSecondaryAt);
          },
          () => undefined, // QEMU gone or busy: the next poll (or the kill) tells
        )
        .finally(() => (inFlight = false));
    }, POLL_MS);
  }

  private stopPolling(side: ColoRole): void {
    clearInterval(this.track[side].poller);
    this.track[side].poller = undefined;
  }

  private change(side: ColoRole, at: number): void {
    const s = this.track[side];
    const rp = s.alive && s.running && s.mode !== 'secondary';
    const last = s.changes[s.changes.length - 1];
    // Never before the previous change (a polled stamp can be earlier than a later-arriving event).
    if (!last || last[1] !== rp) s.changes.push([Math.max(at, last?.[0] ?? at), rp]);
  }

  /** Whether the side's VM runs now, as its events say. */
  running(side: ColoRole): boolean {
    const s = this.track[side];
    return s.alive && s.running;
  }

  /** The side's COLO mode as its events (and polls) say. */
  mode(side: ColoRole): string {
    return this.track[side].mode;
  }

  /** Whether the side runs the guest as primary now, as its events say. */
  runningPrimary(side: ColoRole): boolean {
    const c = this.track[side].changes;
    return c[c.length - 1]?.[1] ?? false;
  }

  /** Each side's [start, end) spans as running primary (end Infinity while it lasts). */
  spans(side: ColoRole): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let open: number | undefined;
    for (const [at, rp] of this.track[side].changes) {
      if (rp && open === undefined) open = at;
      if (!rp && open !== undefined) {
        out.push([open, at]);
        open = undefined;
      }
    }
    if (open !== undefined) out.push([open, Infinity]);
    return out;
  }

  /**
   * Pauses of at least `minMs` between two running-primary spans of a side: its guest stopped and
   * ran again as primary (a failover's own STOP/RESUME pair lasts well under a millisecond).
   */
  pauses(side: ColoRole, minMs = 50): Array<[number, number]> {
    const spans = this.spans(side);
    const out: Array<[number, number]> = [];
    for (let i = 1; i < spans.length; i++) {
      const gap: [number, number] = [spans[i - 1]![1], spans[i]![0]];
      if (gap[1] - gap[0] >= minMs) out.push(gap);
    }
    return out;
  }

  /** Every moment both sides ran the guest as primary: [start, end) spans (empty = never). */
  overlaps(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const [a0, a1] of this.spans('primary')) {
      for (const [b0, b1] of this.spans('secondary')) {
        const s = Math.max(a0, b0);
        const e = Math.min(a1, b1);
        if (s < e) out.push([s, e]);
      }
    }
    return out;
  }

  /**
   * When the guest moved from one side to the other: the gap between the end of one side's
   * running-primary span and the start of the other's (negative = they overlapped), or undefined
   * when it never moved.
   */
  handoverGapMs(): number | undefined {
    let best: number | undefined;
    for (const from of SIDES) {
      const to = from === 'primary' ? 'secondary' : 'primary';
      for (const [, end] of this.spans(from)) {
        if (end === Infinity) continue;
        for (const [start] of this.spans(to)) {
          if (start < this.startedAt + 1) continue; // running primary from the start: not a handover
          const gap = start - end;
          if (best === undefined || Math.abs(gap) < Math.abs(best)) best = gap;
        }
      }
    }
    return best;
  }

  /** The events seen, per side, for failure messages. */
  describe(): string {
    return SIDES.map((s) => `${s}: ${this.track[s].events.join(', ') || '(no events)'}`).join('\n');
  }
}

// ---- the rig ----

/**
 * Ports free on each host now, distinct from each other and from `exclude`: every listener stays
 * open until all are picked (one freePort() after another can hand out the same port twice).
 */
async function heldFreePorts(hosts: readonly string[], exclude: ReadonlySet<number>): Promise<number[]> {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  try {
    for (const host of hosts) {
      for (;;) {
        const s = net.createServer();
        servers.push(s);
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.listen(0, host, () => resolve());
        });
        const port = (s.address() as net.AddressInfo).port;
        if (!exclude.has(port)) {
          ports.push(port);
          break;
        }
      }
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
  return ports;
}

const COLO_KEYS_OF_NEW_PRIMARY = ['mirrorPort', 'compare1Port', 'compare0Port', 'compareOutPort'] as const;

/**
 * Starts the rig, or skips `t` (printing why) and returns undefined when QEMU cannot do COLO or
 * iptables cannot be used. Everything is stopped at t's teardown.
 */
export async function startRig(t: SkippableTest & { comment(...m: unknown[]): unknown }, opts: RigOptions): Promise<Rig | undefined> {
  const ipt = iptablesAvailable();
  if (!ipt.available) {
    t.pass('partitions', { skip: ipt.reason });
    return undefined;
  }
  if (opts.arbiter === 'etcd' && !opts.etcd) throw new SplitBrainRigError('arbiter etcd needs opts.etcd');

  const pair = await startColoPairOrSkip(t);
  if (!pair) return undefined;
  // The new primary's listeners after a takeover (see the file comment): free on every address,
  // picked once the pair holds its own (the config refuses two colo keys on one port).
  const [mirrorPort, compare1Port, compare0Port, compareOutPort] = await heldFreePorts(['0.0.0.0', '0.0.0.0', '127.0.0.1', '127.0.0.1'], new Set(Object.values(pair.ports)));
  const own = { mirrorPort: mirrorPort!, compare1Port: compare1Port!, compare0Port: compare0Port!, compareOutPort: compareOutPort! };

  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const c of cleanups.splice(0).reverse()) {
        try {
          await c();
        } catch {
          // best effort: the rest must still go
        }
      }
    })();
    return stopped;
  };
  t.teardown(stop);

  try {
    const partition = await Partition.create();
    cleanups.push(() => partition.close());

    // etcd: each agent through its own forwarder, so that one can be cut alone.
    const forwarders: Partial<Record<ColoRole, FaultProxy>> = {};
    if (opts.arbiter === 'etcd') {
      for (const side of SIDES) {
        const f = await FaultProxy.start({ name: `etcd via ${side}`, listenHost: AGENT_HOSTS[side], targetHost: '127.0.0.1', targetPort: opts.etcd!.clientPort });
        forwarders[side] = f;
        cleanups.push(() => f.close());
      }
    }

    const agentOpts = opts.agents ?? {};
    const agents = await startColoAgents(pair, {
      heartbeat: { ...FAST_HEARTBEAT, ...agentOpts.heartbeat },
      failover: { reprobeIntervalMs: 200, ...agentOpts.failover },
      ...agentOpts,
      statusEndpoints: true,
      arbiter:
        opts.arbiter === 'witness'
          ? { mode: 'witness', leaseMs: opts.leaseMs ?? 500 }
          : { mode: 'etcd', endpoints: (side) => [`http://${forwarders[side]!.address}`], leaseTtlSeconds: opts.leaseTtlSeconds ?? 1 },
      setsFor: (side) => [
        ...(side === 'secondary' ? COLO_KEYS_OF_NEW_PRIMARY.map((k) => `colo.${k}=${own[k]}`) : []),
        ...(agentOpts.setsFor?.(side) ?? []),
      ],
    });
    cleanups.push(() => agents.stop());

    const hbPort = (side: ColoRole) => Number(agents.heartbeatListen[side].split(':').pop());
    const p = pair.ports;
    const pairPorts = [hbPort('primary'), hbPort('secondary'), p.nbdPort, p.migrationPort, p.mirrorPort, p.compare1Port, own.mirrorPort, own.compare1Port];
    const witnessPort = agents.witnessAddress ? Number(agents.witnessAddress.split(':').pop()) : undefined;
    const pairRules = () => [dropPorts(pairPorts)];
    const arbiterRules = (side: ColoRole): DropRule[] =>
      opts.arbiter === 'witness' ? [dropFlow(AGENT_HOSTS[side], WITNESS_HOST, witnessPort!)] : [dropPorts([forwarders[side]!.port])];

    // A QEMU whose QMP hangs (see QemuView.fromEvents) gets no new query until the last one answered.
    const pending: Partial<Record<ColoRole, Promise<unknown>>> = {};
    let watchRef: PrimaryWatch | undefined;
    const queryQemu = async (side: ColoRole): Promise<QemuView> => {
      const s = pair.side(side);
      if (!s.alive()) return { alive: false };
      const fromEvents = (error: string): QemuView => ({
        alive: s.alive(),
        error,
        ...(watchRef && { fromEvents: true, running: watchRef.running(side), mode: watchRef.mode(side), status: watchRef.running(side) ? 'running (events)' : 'paused (events)' }),
      });
      if (pending[side]) return fromEvents('QMP busy: an earlier query is still unanswered');
      const q = Promise.all([queryStatus(s), queryColoStatus(s)]);
      pending[side] = q;
      void q.then(
        () => (pending[side] = undefined),
        () => (pending[side] = undefined),
      );
      try {
        const [st, colo] = await withTimeout(q, 1000, `${side} QEMU`);
        return { alive: true, running: st.running, status: st.status, mode: colo.mode };
      } catch (err) {
        return fromEvents((err as Error).message);
      }
    };
    const observe = async (): Promise<Observation> => {
      const at = Date.now();
      const entries = await Promise.all(
        SIDES.map(async (side): Promise<[ColoRole, SideView]> => {
          const agentAlive = agents.agent(side).alive;
          const agentP = agentAlive ? agents.status(side, 1500).catch(() => undefined) : Promise.resolve(undefined);
          const [qemu, agent] = await Promise.all([queryQemu(side), agentP]);
          return [side, { qemu, agent, agentAlive, runningPrimary: isRunningPrimary(qemu) }];
        }),
      );
      const sides = Object.fromEntries(entries) as Record<ColoRole, SideView>;
      return { at, sides, runningPrimaries: SIDES.filter((s) => sides[s].runningPrimary) };
    };

    const steady = await waitSteady(agents, opts.steadyTimeoutMs ?? 20_000);
    if (!steady.ok) throw new SplitBrainRigError(`no steady state within ${opts.steadyTimeoutMs ?? 20_000} ms: ${steady.why}`);

    const watch = await PrimaryWatch.start(pair);
    watchRef = watch;
    cleanups.push(() => watch.close());

    const rig: Rig = {
      arbiter: opts.arbiter,
      pair,
      agents,
      partition,
      watch,
      pairPorts,
      pairRules,
      arbiterRules,
      cutPair: () => partition.cut('pair', pairRules()),
      isolate: (side) => partition.cut(`isolate-${side}`, [...pairRules(), ...arbiterRules(side)]),
      heal: () => partition.heal(),
      killHost: (side) => {
        const at = Date.now();
        pair.side(side).kill('SIGKILL');
        agents.agent(side).kill('SIGKILL');
        watch.killed(side, at);
      },
      observe,
      waitFor: async (predicate, timeoutMs, pollMs = 150) => {
        const end = Date.now() + timeoutMs;
        for (;;) {
          const obs = await observe();
          if (predicate(obs)) return { ok: true, obs };
          if (Date.now() >= end) return { ok: false, obs };
          await sleep(pollMs);
        }
      },
      stop,
    };
    return rig;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Both peers up, both agents reach the arbiter, the primary holds its lease. */
async function waitSteady(agents: ColoAgents, timeoutMs: number): Promise<{ ok: boolean; why: string }> {
  const end = Date.now() + timeoutMs;
  let why = '';
  for (;;) {
    try {
      const [p, s] = await Promise.all([agents.status('primary'), agents.status('secondary')]);
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

// ---- log predicates the split-brain tests read ----

export const guestStopped: LogPredicate = (r) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('guest STOPPED');
export const guestResumed: LogPredicate = (r) => r.component === 'agent' && r.msg === 'guest resumed (cont)';
export const grantedTakeover: LogPredicate = (r) => r.component === 'takeover-gate' && r.msg === 'arbiter granted the takeover';
export const staleEpoch: LogPredicate = (r) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('stale epoch');
