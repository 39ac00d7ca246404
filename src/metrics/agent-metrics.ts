/**
 * Keeps AgentMetrics current from the events of a running agent and its components: heartbeat
 * links, the peer failure detector, the QMP client, the COLO monitor and the agent itself.
 *
 * Counters and histograms change on events; state-set gauges are set on events and once at
 * attach time; the few values that change without an event (current outage length, checkpoint in
 * progress) are read at scrape time through AgentMetrics.sources. Nothing here acts on the agent:
 * data flows one way, from the agent into the metrics.
 */
import type { Agent, AgentStateChange, GuestStopEvent, SelfFenceEvent } from '../agent.js';
import type { ResumeOutcome } from '../colo/resume-executor.js';
import type { ResyncProgress } from '../colo/resume-runner.js';
import type { EpochSnapshot } from '../arbiter/epoch-store.js';
import type { ArbitrationEvent, FenceEvent } from '../arbiter/takeover-gate.js';
import type { FailoverOutcome } from '../colo/failover-executor.js';
import type { MaintenanceInfo } from '../commands/maintenance.js';
import type { CheckpointEvent, ColoExitEvent, ColoMonitorEvents, ColoStatus, StallEvent } from '../colo/monitor-events.js';
import type { StateChange, DetectorState } from '../heartbeat/detector.js';
import type { HeartbeatEvent, LinkDownEvent, LinkUpEvent, RejectedEvent, RttEvent, SentEvent } from '../heartbeat/links.js';
import type { QmpClientStatus, QmpCommandRecord, QmpStatusChange } from '../qmp/events.js';
import type { QemuExitedEvent } from '../qemu/supervisor.js';
import { systemClock, type Clock } from '../util/clock.js';
import { AGENT_STATES, COLO_EXIT_REASONS, PEER_STATES, ROLES, setStateSet, type AgentMetrics } from './registry.js';
import { COLO_MODES } from '../heartbeat/messages.js';

/**
 * The COLO monitor as the metrics see it: the events of monitor-events.ts (what src/colo/monitor.ts
 * emits, as an EventEmitter<ColoMonitorEvents>) and its getters, each optional.
 */
export interface ColoMonitorLike {
  readonly status?: ColoStatus;
  readonly inProgress?: boolean;
  readonly stalled?: boolean;
  on(event: 'change', listener: (prev: ColoStatus, next: ColoStatus) => void): unknown;
  on(event: 'checkpoint', listener: (e: CheckpointEvent) => void): unknown;
  on(event: 'stalled', listener: (e: StallEvent) => void): unknown;
  on(event: 'stall-cleared', listener: (e: { stoppedForMs: number }) => void): unknown;
  on(event: 'colo-exit', listener: (e: ColoExitEvent) => void): unknown;
  off(event: keyof ColoMonitorEvents, listener: (...args: never[]) => void): unknown;
}

/** What of the Agent the binding uses. */
export type MetricsAgent = Pick<Agent, 'state' | 'status' | 'links' | 'peer' | 'qmp' | 'colo' | 'arbiter' | 'on' | 'off'> & Partial<Pick<Agent, 'launcher'>>;

export interface AttachOptions {
  /** The agent's clock (monotonic ms), for the current outage length. Default systemClock. */
  clock?: Clock;
  /** Wall-clock epoch ms, for *_timestamp_seconds. Default Date.now. */
  now?: () => number;
}

export interface AgentMetricsBinding {
  /** Stops updating (removes every listener and scrape source). Idempotent. */
  detach(): void;
}

/** Our error code, or QEMU's error class when QEMU refused the command. */
export function qmpErrorLabel(rec: QmpCommandRecord): string {
  return rec.code === 'QMP_COMMAND_FAILED' && rec.errorClass ? rec.errorClass : (rec.code ?? 'unknown');
}

export function coloExitReason(reason: string): (typeof COLO_EXIT_REASONS)[number] {
  return reason === 'request' || reason === 'error' ? reason : 'other';
}

const qemuUp = (s: QmpClientStatus): number => (s === 'ready' || s === 'unhealthy' ? 1 : 0);
const peerUp = (s: DetectorState): number => (s === 'up' || s === 'suspect' ? 1 : 0);
const coloMode = (mode: string | undefined): string => (mode !== undefined && (COLO_MODES as readonly string[]).includes(mode) ? mode : 'unknown');

type Unsubscribe = () => void;

/** Checkpoint, stall, exit and mode metrics from a COLO monitor. Returns its detach function. */
export function bindColoMetrics(colo: ColoMonitorLike, m: AgentMetrics): Unsubscribe {
  setStateSet(m.coloMode, 'mode', COLO_MODES, coloMode(colo.status?.mode));
  m.sources.checkpointInProgress = () => colo.inProgress;
  m.sources.checkpointStalled = () => colo.stalled;
  const onChange = (_prev: ColoStatus, next: ColoStatus) => setStateSet(m.coloMode, 'mode', COLO_MODES, coloMode(next.mode));
  const onCheckpoint = (e: CheckpointEvent) => {
    if (e.kind === 'colo-start') {
      m.coloStarts.inc();
      return;
    }
    m.checkpoints.inc();
    m.checkpointPause.observe(Math.max(0, e.pauseMs) / 1000);
    m.lastCheckpoint.set(e.resumeAt / 1000);
  };
  const onStalled = () => {
    m.checkpointStalls.inc();
    m.checkpointStalled.set(1);
  };
  const onStallCleared = () => m.checkpointStalled.set(0);
  const onExit = (e: ColoExitEvent) => m.coloExits.inc({ reason: coloExitReason(e.reason) });
  colo.on('change', onChange);
  colo.on('checkpoint', onCheckpoint);
  colo.on('stalled', onStalled);
  colo.on('stall-cleared', onStallCleared);
  colo.on('colo-exit', onExit);
  return () => {
    colo.off('change', onChange);
    colo.off('checkpoint', onCheckpoint);
    colo.off('stalled', onStalled);
    colo.off('stall-cleared', onStallCleared);
    colo.off('colo-exit', onExit);
    delete m.sources.checkpointInProgress;
    delete m.sources.checkpointStalled;
  };
}

/** Anything with on/off for one listener shape (our typed emitters and FailureDetector). */
interface Listenable<A extends unknown[]> {
  on(event: string, fn: (...args: A) => void): unknown;
  off(event: string, fn: (...args: A) => void): unknown;
}

/**
 * Subscribes `m` to `agent` and everything in it. Call right after constructing the agent (before
 * start()) so that no event is missed; attaching later works too, from the current values on.
 */
export function attachAgentMetrics(agent: MetricsAgent, m: AgentMetrics, opts: AttachOptions = {}): AgentMetricsBinding {
  const clock = opts.clock ?? systemClock;
  const now = opts.now ?? Date.now;
  const link = (name: string) => ({ link: m.links.label(name) });
  const updateRole = () => setStateSet(m.role, 'role', ROLES, agent.status().role);

  // The peer outage in progress: the clock time the peer was declared down.
  let downAt: number | undefined = agent.peer.state === 'down' ? clock.now() : undefined;
  m.sources.peerOutageSeconds = () => (downAt === undefined ? 0 : Math.max(0, clock.now() - downAt) / 1000);

  setStateSet(m.state, 'state', AGENT_STATES, agent.state);
  updateRole();
  m.maintenance.set(agent.status().maintenance?.on ? 1 : 0);
  m.qemuUp.set(qemuUp(agent.qmp.status));
  m.peerUp.set(peerUp(agent.peer.state));
  setStateSet(m.peerState, 'state', PEER_STATES, agent.peer.state);
  const setEpoch = (e: Pick<EpochSnapshot, 'epoch' | 'stale'> | undefined) => {
    m.epoch.set(e?.epoch ?? 0);
    m.epochStale.set(e?.stale ? 1 : 0);
  };
  setEpoch(agent.status().epoch);
  m.sources.arbiterReachable = () => agent.arbiter.reachable();
  m.sources.unprotectedSeconds = () => (agent.status().failback?.unprotectedForMs ?? 0) / 1000;

  const onPeerState = (c: StateChange) => {
    m.peerUp.set(peerUp(c.to));
    setStateSet(m.peerState, 'state', PEER_STATES, c.to);
    if (c.to === 'down' && c.from !== 'down') {
      m.peerOutages.inc();
      downAt = c.at;
      // From unknown (no beat within the startup grace) nothing was detected: there was no peer yet.
      if (c.from === 'up' || c.from === 'suspect') m.detectionLatency.observe(c.silentForMs / 1000);
    } else if (c.to === 'up' && downAt !== undefined) {
      m.peerOutageDuration.observe(Math.max(0, c.at - downAt) / 1000);
      downAt = undefined;
    }
  };
  const onState = (c: AgentStateChange) => {
    setStateSet(m.state, 'state', AGENT_STATES, c.to);
    // start() reads the epoch file before its first state change.
    if (c.from === 'starting') setEpoch(agent.status().epoch);
    // The role changes only with a failover, which always ends in a state change.
    updateRole();
  };
  const onMaintenance = (info: MaintenanceInfo | undefined) => m.maintenance.set(info ? 1 : 0);
  const onFailover = (o: FailoverOutcome) => {
    const r = o.result;
    m.failovers.inc({ sequence: r.sequence, result: o.ok ? 'success' : 'failure' });
    m.failoverDuration.observe({ sequence: r.sequence }, r.durationMs / 1000);
    for (const s of r.steps) {
      if (s.outcome !== 'skipped') m.failoverStepDuration.observe({ sequence: r.sequence, step: s.name }, s.durationMs / 1000);
    }
    m.lastFailover.set(now() / 1000);
  };
  const onEpoch = (e: EpochSnapshot) => setEpoch(e);
  const onArbitration = (e: ArbitrationEvent) => m.arbitrations.inc({ action: e.action, result: e.result });
  const onFence = (e: FenceEvent) => m.fencing.inc({ kind: 'peer', result: e.ok ? 'success' : 'failure' });
  const onSelfFence = (e: SelfFenceEvent) => m.fencing.inc({ kind: 'self', result: e.killed ? 'success' : 'failure' });
  const onGuestStop = (e: GuestStopEvent) => {
    if (e.ok) m.guestStops.inc({ reason: e.reason });
  };
  const onResyncProgress = (p: ResyncProgress) => m.resyncProgress.set(p.len > 0 ? p.offset / p.len : 0);
  const onResume = (o: ResumeOutcome) => {
    m.resyncs.inc({ result: o.ok ? 'success' : o.rolledBack ? 'rolled-back' : 'failed' });
    if (o.ok && o.resyncMs !== undefined) m.resyncDuration.observe(o.resyncMs / 1000);
    if (o.bytes !== undefined && o.resyncMs !== undefined) m.resyncBytes.inc(o.bytes);
    if (o.ok && o.pauseMs !== undefined) m.switchoverPause.observe(o.pauseMs / 1000);
  };
  const onProtected = (e: { unprotectedMs: number }) => m.unprotectedDuration.observe(e.unprotectedMs / 1000);
  const onLinkUp = (e: LinkUpEvent) => m.linkUp.set(link(e.link), 1);
  const onLinkDown = (e: LinkDownEvent) => m.linkUp.set(link(e.link), 0);
  const onHeartbeat = (e: HeartbeatEvent) => m.heartbeatsReceived.inc(link(e.link));
  const onSent = (e: SentEvent) => {
    for (const l of e.links) m.heartbeatsSent.inc(link(l));
  };
  const onRtt = (e: RttEvent) => m.heartbeatRtt.observe(link(e.link), e.rttMs / 1000);
  const onRejected = (e: RejectedEvent) => m.heartbeatRejected.inc({ reason: e.reason });
  const onQmpStatus = (c: QmpStatusChange) => m.qemuUp.set(qemuUp(c.to));
  const onCommand = (rec: QmpCommandRecord) => {
    m.qmpCommandDuration.observe({ command: m.commands.label(rec.command) }, rec.durationMs / 1000);
    if (!rec.ok) m.qmpErrors.inc({ code: m.errorCodes.label(qmpErrorLabel(rec)) });
  };

  // Each subscription is recorded with its own undo, so detach() cannot miss one.
  const offs: Array<() => void> = [];
  const listen = <A extends unknown[]>(target: Listenable<A>, event: string, fn: (...args: A) => void) => {
    target.on(event, fn);
    offs.push(() => target.off(event, fn));
  };
  listen(agent.peer, 'state', onPeerState);
  listen(agent, 'state', onState);
  listen(agent, 'failover', onFailover);
  listen(agent, 'maintenance', onMaintenance);
  listen(agent, 'epoch', onEpoch);
  listen(agent, 'arbitration', onArbitration);
  listen(agent, 'fence', onFence);
  listen(agent, 'self-fence', onSelfFence);
  listen(agent, 'guest-stop', onGuestStop);
  listen(agent, 'resync-progress', onResyncProgress);
  listen(agent, 'resume', onResume);
  listen(agent, 'protected', onProtected);
  listen(agent.links, 'link-up', onLinkUp);
  listen(agent.links, 'link-down', onLinkDown);
  listen(agent.links, 'heartbeat', onHeartbeat);
  listen(agent.links, 'sent', onSent);
  listen(agent.links, 'rtt', onRtt);
  listen(agent.links, 'rejected', onRejected);
  listen(agent.qmp, 'status', onQmpStatus);
  listen(agent.qmp, 'command', onCommand);
  offs.push(bindColoMetrics(agent.colo, m));
  // qemu.launch: the supervisor's launches, exits and give-up.
  const launcher = agent.launcher?.supervisor;
  if (launcher) {
    m.qemuLaunchGaveUp.set(launcher.status().gaveUp ? 1 : 0);
    listen(launcher, 'launched', () => m.qemuLaunches.inc({ result: 'launched' }));
    listen(launcher, 'launch-failed', () => m.qemuLaunches.inc({ result: 'failed' }));
    listen(launcher, 'launch-skipped', () => m.qemuLaunches.inc({ result: 'skipped' }));
    listen(launcher, 'exited', (e: QemuExitedEvent) => m.qemuExits.inc({ exit: e.failed ? 'failure' : 'clean' }));
    listen(launcher, 'gave-up', () => m.qemuLaunchGaveUp.set(1));
  }

  let attached = true;
  return {
    detach() {
      if (!attached) return;
      attached = false;
      for (const off of offs) off();
      delete m.sources.peerOutageSeconds;
      delete m.sources.arbiterReachable;
      delete m.sources.unprotectedSeconds;
    },
  };
}
