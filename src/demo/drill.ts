/**
 * Running a failover drill on the demo's pair: inject the fault, wait for the agents to act, ask
 * QEMU how each side ended, and hand the lot to timeline.ts.
 *
 * - kill-primary / kill-secondary: SIGKILL that side's QEMU and its agent in the same tick, a host
 *   lost (the kernel closes their sockets, which a power loss would not: the survivor's COLO_EXIT
 *   fast path may beat the heartbeat);
 * - partition: cut every link between the sides (partition.ts); both agents decide on their own.
 *   The witness's links are not cut: this is the "pair link only" row of docs/concepts.md, where
 *   the primary is granted its solo continuation and the secondary is refused.
 *
 * With the witness, its records join the timeline (requests and verdicts), and the agents' grants,
 * refusals and stale epochs are in theirs.
 */
import type { ColoPair } from '../qemu/colo-launch.js';
import { queryColoStatus, queryStatus } from '../qemu/colo-queries.js';
import type { DemoAgent, LogRecord } from './agent-child.js';
import { leaseGuardMs } from '../arbiter/witness-server.js';
import type { PartitionWiring } from './partition.js';
import { DEMO_LEASE_MS, DEMO_SIDES, otherSide, type DemoArbiter, type DemoSide } from './plan.js';
import { observerEvents, witnessEvents, type DrillKind, type DrillReport, type SideOutcome, type TimelineEvent, type TimelineSource } from './timeline.js';

export interface DrillTargets {
  pair: ColoPair;
  agents: Readonly<Record<DemoSide, DemoAgent>>;
  /** Required for the partition drill. */
  partition?: PartitionWiring;
  /** The agents' arbiter.mode. Default none. */
  arbiter?: DemoArbiter;
  /** The witness process, with arbiter witness: its records join the timeline. */
  witness?: DemoAgent;
}

export interface DrillOptions {
  /** How long the agents get to finish acting after the fault. Default 20000 (kills), 12000 (partition). */
  timeoutMs?: number;
  /** QMP timeout for the end-state queries. Default 3000. */
  queryTimeoutMs?: number;
}

const ended = (r: LogRecord) =>
  r.component === 'agent' && typeof r.msg === 'string' && (r.msg.startsWith('failover done') || r.msg === 'failover FAILED' || r.msg === 'failover aborted: journal error');

/** A side that learnt of a newer epoch stays passive for good: nothing more to wait for. */
const stoodDown = (r: LogRecord) => r.component === 'agent' && typeof r.msg === 'string' && r.msg.startsWith('stale epoch');

/** Resolves when `agent` logs a record `until` matches from `since` on, or after timeoutMs (false). */
async function logged(agent: DemoAgent, what: string, until: (r: LogRecord) => boolean, since: number, timeoutMs: number): Promise<boolean> {
  try {
    await agent.waitFor(what, until, timeoutMs, since);
    return true;
  } catch {
    return false;
  }
}

const failoverEnded = (agent: DemoAgent, since: number, timeoutMs: number) => logged(agent, 'end of a failover', ended, since, timeoutMs);

async function outcomeOf(pair: ColoPair, side: DemoSide, timeoutMs: number): Promise<SideOutcome> {
  const s = pair.side(side);
  if (!s.alive()) return { side, qemuAlive: false };
  const within = <T>(p: Promise<T>) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref())]);
  try {
    const [st, colo] = await Promise.all([within(queryStatus(s)), within(queryColoStatus(s))]);
    return { side, qemuAlive: true, status: st.status, running: st.running, coloMode: colo.mode, lastMode: colo['last-mode'] };
  } catch (err) {
    return { side, qemuAlive: s.alive(), error: (err as Error).message };
  }
}

export async function runDrill(kind: DrillKind, targets: DrillTargets, opts: DrillOptions = {}): Promise<DrillReport> {
  const { pair, agents } = targets;
  const queryTimeoutMs = opts.queryTimeoutMs ?? 3000;
  const arbiter = targets.arbiter ?? 'none';
  const witness = targets.witness;
  const since: Record<DemoSide, number> = { primary: agents.primary.cursor(), secondary: agents.secondary.cursor() };
  const witnessSince = witness?.cursor() ?? 0;
  let fault: string;
  let observers: DemoSide[];
  const notes: string[] = [];
  let t0: number;

  if (kind === 'partition') {
    const wiring = targets.partition;
    if (!wiring) throw new Error('the partition drill needs the demo started with its proxies');
    observers = [...DEMO_SIDES];
    fault = 'cut heartbeat and replication links both ways (fault proxies blackholed, their listeners closed)';
    t0 = Date.now();
    await wiring.cut();
    const timeoutMs = opts.timeoutMs ?? 12_000;
    // Without an arbiter both sides end a failover. With one, the side that was refused and then
    // learnt the new epoch (stale) is done too; one that is only refused keeps asking until the
    // timeout, which the timeline then shows.
    const settled = (r: LogRecord) => ended(r) || (arbiter !== 'none' && stoodDown(r));
    await Promise.all(observers.map((side) => logged(agents[side], 'end of a failover or a stale epoch', settled, since[side], timeoutMs)));
    notes.push(
      'on one machine a cut link refuses new connections where a real partition drops them silently: ' +
        `the probes say "refused" instead of "silent"; ${arbiter === 'none' ? 'without an arbiter both lead to a takeover' : 'both lead to asking the arbiter'}`,
    );
    if (arbiter === 'witness') notes.push('only the link between the sides is cut; both still reach the witness (the "pair link only" partition of docs/concepts.md)');
  } else {
    const victim: DemoSide = kind === 'kill-primary' ? 'primary' : 'secondary';
    const survivor = otherSide(victim);
    observers = [survivor];
    const q = pair.side(victim);
    const a = agents[victim];
    fault = `SIGKILL ${victim} QEMU (pid ${q.pid}) and its agent (pid ${a.pid}): the ${victim} host is lost`;
    t0 = Date.now();
    q.kill('SIGKILL');
    a.kill('SIGKILL');
    const finished = await failoverEnded(agents[survivor], since[survivor], opts.timeoutMs ?? 20_000);
    if (!finished) notes.push(`the ${survivor} agent logged no end of a failover within ${opts.timeoutMs ?? 20_000} ms`);
    await q.qemu.exited;
    if (arbiter === 'witness' && victim === 'primary') {
      notes.push(
        `with the witness the secondary may take over only once the primary's lease ran out there: arbiter.leaseMs ${DEMO_LEASE_MS} ms ` +
          `+ a guard of ${leaseGuardMs(DEMO_LEASE_MS)} ms after the primary's last heartbeat to it (the price of never running the guest twice)`,
      );
    }
    if (arbiter === 'witness' && victim === 'secondary') notes.push('the primary holds the lease: the witness grants its solo continuation at once');
  }

  const events: TimelineEvent[] = [{ at: t0, label: 'injected', detail: fault }];
  for (const side of observers) events.push(...observerEvents(side, agents[side].records(since[side]), t0));
  if (witness) events.push(...witnessEvents(witness.records(witnessSince), t0));
  events.sort((x, y) => x.at - y.at);
  const outcomes = await Promise.all(DEMO_SIDES.map((side) => outcomeOf(pair, side, queryTimeoutMs)));
  const sources: TimelineSource[] = witness ? [...observers, 'witness'] : observers;
  return { kind, arbiter, t0, fault, observers: sources, events, outcomes, notes };
}
