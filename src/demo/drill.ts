/**
 * Running a failover drill on the demo's pair: inject the fault, wait for the agents to act, ask
 * QEMU how each side ended, and hand the lot to timeline.ts.
 *
 * - kill-primary / kill-secondary: SIGKILL that side's QEMU and its agent in the same tick, a host
 *   lost (the kernel closes their sockets, which a power loss would not: the survivor's COLO_EXIT
 *   fast path may beat the heartbeat);
 * - partition: cut every link between the sides (partition.ts); both agents decide on their own.
 */
import type { ColoPair } from '../qemu/colo-launch.js';
import { queryColoStatus, queryStatus } from '../qemu/colo-queries.js';
import type { DemoAgent, LogRecord } from './agent-child.js';
import type { PartitionWiring } from './partition.js';
import { DEMO_SIDES, otherSide, type DemoSide } from './plan.js';
import { observerEvents, type DrillKind, type DrillReport, type SideOutcome, type TimelineEvent } from './timeline.js';

export interface DrillTargets {
  pair: ColoPair;
  agents: Readonly<Record<DemoSide, DemoAgent>>;
  /** Required for the partition drill. */
  partition?: PartitionWiring;
}

export interface DrillOptions {
  /** How long the agents get to finish acting after the fault. Default 20000 (kills), 12000 (partition). */
  timeoutMs?: number;
  /** QMP timeout for the end-state queries. Default 3000. */
  queryTimeoutMs?: number;
}

const ended = (r: LogRecord) =>
  r.component === 'agent' && typeof r.msg === 'string' && (r.msg.startsWith('failover done') || r.msg === 'failover FAILED' || r.msg === 'failover aborted: journal error');

/** Resolves when `agent` logs the end of a failover from `since` on, or after timeoutMs (false). */
async function failoverEnded(agent: DemoAgent, since: number, timeoutMs: number): Promise<boolean> {
  try {
    await agent.waitFor('end of a failover', ended, timeoutMs, since);
    return true;
  } catch {
    return false;
  }
}

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
  const since: Record<DemoSide, number> = { primary: agents.primary.cursor(), secondary: agents.secondary.cursor() };
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
    await Promise.all(observers.map((side) => failoverEnded(agents[side], since[side], timeoutMs)));
    notes.push(
      'on one machine a cut link refuses new connections where a real partition drops them silently: ' +
        'the probes say "refused" instead of "silent"; without an arbiter both lead to a takeover',
    );
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
  }

  const events: TimelineEvent[] = [{ at: t0, label: 'injected', detail: fault }];
  for (const side of observers) events.push(...observerEvents(side, agents[side].records(since[side]), t0));
  events.sort((x, y) => x.at - y.at);
  const outcomes = await Promise.all(DEMO_SIDES.map((side) => outcomeOf(pair, side, queryTimeoutMs)));
  return { kind, t0, fault, observers, events, outcomes, notes };
}
