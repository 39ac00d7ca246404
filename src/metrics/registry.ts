/**
 * The agent's Prometheus metrics: one prom-client Registry of our own (never the global one, so
 * that two agents in one process, as in tests, never share series), Node's default process
 * metrics, and the colo_agent_* set named in names.ts.
 *
 * This file only creates the metrics and pre-creates the series whose label values are known, so
 * a dashboard shows 0 instead of "no data" and `rate()` sees the first increment. Keeping them
 * current from the agent's events is agent-metrics.ts's job.
 *
 * Units are base units (seconds, bytes); timestamps are Unix seconds. Label values come from
 * small fixed sets, or pass through a LabelLimiter that folds anything past a cap into `other`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AgentState } from '../agent.js';
import type { NodeRole } from '../config/types.js';
import type { DetectorState } from '../heartbeat/detector.js';
import { REJECT_REASONS } from '../heartbeat/errors.js';
import { COLO_MODES } from '../heartbeat/messages.js';
import { SEQUENCE_NAMES } from '../colo/sequences.js';
import { collectDefinedDefaultMetrics } from './default-metrics.js';
import type { MetricName } from './names.js';

// Exhaustive by construction: adding a state to the type without adding it here fails to compile.
const AGENT_STATE_SET: Record<AgentState, true> = {
  starting: true,
  'waiting-for-peer': true,
  'peer-up': true,
  'peer-suspect': true,
  'peer-down': true,
  'peer-agent-lost': true,
  arbitrating: true,
  stale: true,
  'qemu-lost': true,
  'failing-over': true,
  solo: true,
  resuming: true,
  'ready-secondary': true,
  failed: true,
  stopping: true,
  stopped: true,
};
const ROLE_SET: Record<NodeRole, true> = { primary: true, secondary: true, witness: true };
const PEER_STATE_SET: Record<DetectorState, true> = { unknown: true, up: true, suspect: true, down: true };

export const AGENT_STATES = Object.keys(AGENT_STATE_SET) as AgentState[];
export const ROLES = Object.keys(ROLE_SET) as NodeRole[];
export const PEER_STATES = Object.keys(PEER_STATE_SET) as DetectorState[];
export const COLO_EXIT_REASONS = ['request', 'error', 'other'] as const;
export const FAILOVER_RESULTS = ['success', 'failure'] as const;
export const ARBITRATION_ACTIONS = ['takeover', 'continue'] as const;
export const ARBITRATION_RESULTS = ['granted', 'denied', 'unavailable'] as const;
export const FENCE_KINDS = ['peer', 'self'] as const;
export const GUEST_STOP_REASONS = ['lease', 'stale'] as const;
export const RESYNC_RESULTS = ['success', 'rolled-back', 'failed'] as const;
/** qemu.launch: a QEMU started; the program could not be started; not started because another QEMU answers on qemu.qmp. */
export const QEMU_LAUNCH_RESULTS = ['launched', 'failed', 'skipped'] as const;
export const QEMU_EXITS = ['clean', 'failure'] as const;
/** A disk copy to a new secondary: seconds for a small disk here, an hour for a large one on a slow link. */
export const RESYNC_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
/** The guest pause of a resume's switch-over: ~100 ms target, seconds mean trouble. */
export const SWITCHOVER_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10];

/** Checkpoint pauses are milliseconds normally; seconds mean trouble. */
export const CHECKPOINT_PAUSE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Loopback RTT is ~0.1 ms, a LAN a few ms; a second is a link about to be declared dead. */
export const RTT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** intervalMs * missThreshold: 20 ms at the tightest settings, 300 ms by default, minutes at most. */
export const DETECTION_BUCKETS = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60];
/** From a blip to a host that stays down for a day. */
export const OUTAGE_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400];
/** A whole failover sequence (tens of ms on the reference machines; step timeouts bound it). */
export const FAILOVER_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** One QMP command or failover step. */
export const COMMAND_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** prom-client default metrics that `promtool check metrics` rejects. */
const LINT_FAILING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * Values the agent reads at scrape time through collect() callbacks. agent-metrics.ts fills
 * these in while attached; undefined leaves the gauge as it is.
 */
export interface ScrapeSources {
  /** Seconds since the peer was declared down; 0 while it is not down. */
  peerOutageSeconds?: () => number;
  arbiterReachable?: () => boolean;
  /** Seconds since the last failover left the guest unprotected; 0 while replicated. */
  unprotectedSeconds?: () => number;
  checkpointInProgress?: () => boolean | undefined;
  checkpointStalled?: () => boolean | undefined;
}

export interface AgentMetricsOptions {
  /** The agent's version (package.json). */
  version: string;
  /** node.name. */
  node: string;
  /** Node's process_* and nodejs_* metrics. Default true. */
  defaultMetrics?: boolean;
  /** Distinct `link` label values before the rest fold into `other`. Default 32. */
  maxLinks?: number;
  /** Distinct QMP command names (and error codes) before the rest fold into `other`. Default 64. */
  maxCommands?: number;
}

/**
 * Admits label values until `max` distinct ones were seen, then answers `other`: a defence
 * against unbounded series if a label source ever turns out less fixed than assumed.
 */
export class LabelLimiter {
  private readonly seen = new Set<string>();

  constructor(private readonly max: number) {}

  label(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(value);
    return value;
  }
}

/** Sets a state-set gauge: 1 for `current`, 0 for every other known value. */
export function setStateSet<L extends string>(gauge: Gauge<L>, label: L, values: readonly string[], current: string | undefined): void {
  for (const v of values) gauge.set({ [label]: v } as Partial<Record<L, string>>, v === current ? 1 : 0);
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly sources: ScrapeSources = {};
  readonly links: LabelLimiter;
  readonly commands: LabelLimiter;
  readonly errorCodes: LabelLimiter;

  readonly buildInfo: Gauge<'version' | 'node'>;
  readonly state: Gauge<'state'>;
  readonly role: Gauge<'role'>;
  readonly maintenance: Gauge;
  readonly coloMode: Gauge<'mode'>;
  readonly checkpoints: Counter;
  readonly checkpointPause: Histogram;
  readonly lastCheckpoint: Gauge;
  readonly checkpointInProgress: Gauge;
  readonly checkpointStalled: Gauge;
  readonly checkpointStalls: Counter;
  readonly coloStarts: Counter;
  readonly coloExits: Counter<'reason'>;
  readonly qemuUp: Gauge;
  readonly peerUp: Gauge;
  readonly peerState: Gauge<'state'>;
  readonly linkUp: Gauge<'link'>;
  readonly heartbeatsSent: Counter<'link'>;
  readonly heartbeatsReceived: Counter<'link'>;
  readonly heartbeatRtt: Histogram<'link'>;
  readonly heartbeatRejected: Counter<'reason'>;
  readonly peerOutages: Counter;
  readonly peerOutageDuration: Histogram;
  readonly peerOutage: Gauge;
  readonly detectionLatency: Histogram;
  readonly failovers: Counter<'sequence' | 'result'>;
  readonly failoverDuration: Histogram<'sequence'>;
  readonly failoverStepDuration: Histogram<'sequence' | 'step'>;
  readonly lastFailover: Gauge;
  readonly qmpCommandDuration: Histogram<'command'>;
  readonly qmpErrors: Counter<'code'>;
  readonly epoch: Gauge;
  readonly epochStale: Gauge;
  readonly arbiterReachable: Gauge;
  readonly arbitrations: Counter<'action' | 'result'>;
  readonly fencing: Counter<'kind' | 'result'>;
  readonly guestStops: Counter<'reason'>;
  readonly resyncs: Counter<'result'>;
  readonly resyncDuration: Histogram;
  readonly resyncBytes: Counter;
  readonly resyncProgress: Gauge;
  readonly switchoverPause: Histogram;
  readonly unprotected: Gauge;
  readonly unprotectedDuration: Histogram;
  readonly qemuLaunches: Counter<'result'>;
  readonly qemuExits: Counter<'exit'>;
  readonly qemuLaunchGaveUp: Gauge;

  constructor(opts: AgentMetricsOptions) {
    const registers = [this.registry];
    const sources = this.sources;
    this.links = new LabelLimiter(opts.maxLinks ?? 32);
    this.commands = new LabelLimiter(opts.maxCommands ?? 64);
    this.errorCodes = new LabelLimiter(opts.maxCommands ?? 64);
    const gauge = <L extends string = never>(name: MetricName, help: string, labelNames: readonly L[] = [], collect?: (this: Gauge<L>) => void) =>
      new Gauge<L>({ name, help, labelNames, registers, ...(collect ? { collect } : {}) });
    const counter = <L extends string = never>(name: MetricName, help: string, labelNames: readonly L[] = []) =>
      new Counter<L>({ name, help, labelNames, registers });
    const histogram = <L extends string = never>(name: MetricName, help: string, buckets: number[], labelNames: readonly L[] = []) =>
      new Histogram<L>({ name, help, buckets, labelNames, registers });

    this.buildInfo = gauge('colo_agent_build_info', 'Always 1; the labels carry the agent version and node name.', ['version', 'node']);
    this.buildInfo.set({ version: opts.version, node: opts.node }, 1);

    this.state = gauge('colo_agent_state', "The agent's state machine state: 1 for the current state, 0 for the others.", ['state']);
    setStateSet(this.state, 'state', AGENT_STATES, 'starting');
    this.role = gauge('colo_agent_role', "The node's effective role (after a failover: primary): 1 for the current one.", ['role']);
    setStateSet(this.role, 'role', ROLES, undefined);
    this.maintenance = gauge('colo_agent_maintenance', '1 while maintenance mode is on (colo-agent maintenance on): automatic failover is suspended.');
    this.coloMode = gauge('colo_agent_colo_mode', "Our QEMU's COLO mode (query-colo-status; unknown when QEMU cannot be asked).", ['mode']);
    setStateSet(this.coloMode, 'mode', COLO_MODES, 'unknown');

    this.checkpoints = counter('colo_agent_checkpoints_total', 'COLO checkpoints completed (STOP/RESUME pairs in COLO mode).');
    this.checkpointPause = histogram('colo_agent_checkpoint_pause_seconds', 'How long the guest was paused per checkpoint (RESUME minus STOP).', CHECKPOINT_PAUSE_BUCKETS);
    this.lastCheckpoint = gauge('colo_agent_last_checkpoint_timestamp_seconds', 'Unix time of the last completed checkpoint (its RESUME); 0 before the first.');
    this.checkpointInProgress = gauge('colo_agent_checkpoint_in_progress', '1 while the guest is stopped for a checkpoint.', [], function () {
      const v = sources.checkpointInProgress?.();
      if (v !== undefined) this.set(v ? 1 : 0);
    });
    this.checkpointStalled = gauge('colo_agent_checkpoint_stalled', '1 while a checkpoint has kept the guest stopped longer than the stall bound.', [], function () {
      const v = sources.checkpointStalled?.();
      if (v !== undefined) this.set(v ? 1 : 0);
    });
    this.checkpointStalls = counter('colo_agent_checkpoint_stalls_total', 'Checkpoints declared stalled (STOP with no RESUME within the bound).');
    this.coloStarts = counter('colo_agent_colo_starts_total', 'Migrations into COLO completed (the STOP/RESUME pair that starts replication).');
    this.coloExits = counter('colo_agent_colo_exits_total', 'COLO_EXIT events by reason (request: planned or failover; error: replication broke).', ['reason']);
    for (const reason of COLO_EXIT_REASONS) this.coloExits.inc({ reason }, 0);

    this.qemuUp = gauge('colo_agent_qemu_up', '1 while our QMP session is up (ready, or unhealthy: connected but a command timed out).');
    this.peerUp = gauge('colo_agent_peer_up', "1 while the peer's failure detector says up (suspect still counts as up).");
    this.peerState = gauge('colo_agent_peer_state', "The peer-wide failure detector's state: 1 for the current one.", ['state']);
    setStateSet(this.peerState, 'state', PEER_STATES, 'unknown');

    this.linkUp = gauge('colo_agent_link_up', '1 while the heartbeat link is established (authenticated), 0 after it went down.', ['link']);
    this.heartbeatsSent = counter('colo_agent_heartbeats_sent_total', 'Heartbeats written to an established link.', ['link']);
    this.heartbeatsReceived = counter('colo_agent_heartbeats_received_total', 'Valid heartbeats received on the link.', ['link']);
    this.heartbeatRtt = histogram('colo_agent_heartbeat_rtt_seconds', 'Heartbeat round-trip time (HEARTBEAT to its ACK) per link.', RTT_BUCKETS, ['link']);
    this.heartbeatRejected = counter('colo_agent_heartbeat_rejected_total', 'Heartbeat connections ended because their input was refused, by reason.', ['reason']);
    for (const reason of REJECT_REASONS) this.heartbeatRejected.inc({ reason }, 0);

    this.peerOutages = counter('colo_agent_peer_outages_total', 'Times the peer was declared down.');
    this.peerOutageDuration = histogram('colo_agent_peer_outage_duration_seconds', 'Ended peer outages: from the peer being declared down until it was up again.', OUTAGE_BUCKETS);
    this.peerOutage = gauge('colo_agent_peer_outage_seconds', 'How long the current peer outage has lasted (since declared down); 0 while the peer is not down.', [], function () {
      const v = sources.peerOutageSeconds?.();
      if (v !== undefined) this.set(v);
    });
    this.detectionLatency = histogram('colo_agent_detection_latency_seconds', 'Silence since the last heartbeat when the peer was declared down (after having been up).', DETECTION_BUCKETS);

    this.failovers = counter('colo_agent_failovers_total', 'Failover sequences run, by sequence and result (success: the VM runs again).', ['sequence', 'result']);
    this.failoverDuration = histogram('colo_agent_failover_duration_seconds', 'Duration of a failover sequence (all its steps).', FAILOVER_BUCKETS, ['sequence']);
    this.failoverStepDuration = histogram('colo_agent_failover_step_duration_seconds', 'Duration of each failover step that was sent to QEMU.', COMMAND_BUCKETS, ['sequence', 'step']);
    for (const sequence of SEQUENCE_NAMES) {
      for (const result of FAILOVER_RESULTS) this.failovers.inc({ sequence, result }, 0);
      this.failoverDuration.zero({ sequence });
    }
    this.lastFailover = gauge('colo_agent_last_failover_timestamp_seconds', 'Unix time the last failover sequence ended; 0 before the first.');

    this.qmpCommandDuration = histogram('colo_agent_qmp_command_duration_seconds', 'QMP command time from send to reply (or to failure), by command.', COMMAND_BUCKETS, ['command']);
    this.qmpErrors = counter('colo_agent_qmp_errors_total', "Failed QMP commands by our error code, or QEMU's error class (e.g. GenericError) for commands QEMU refused.", ['code']);

    this.epoch = gauge('colo_agent_epoch', "This node's arbitration epoch (persisted; each granted takeover or solo continuation adds one).");
    this.epochStale = gauge('colo_agent_epoch_stale', '1 while a newer epoch than ours exists: another node holds the guest and this one stays passive.');
    this.arbiterReachable = gauge('colo_agent_arbiter_reachable', '1 while the arbiter (witness or etcd) answers; always 1 with arbiter.mode none.', [], function () {
      const v = sources.arbiterReachable?.();
      if (v !== undefined) this.set(v ? 1 : 0);
    });
    this.arbitrations = counter('colo_agent_arbitrations_total', 'Arbitration requests by action (takeover, continue) and result (granted, denied, unavailable: no answer).', ['action', 'result']);
    for (const action of ARBITRATION_ACTIONS) for (const result of ARBITRATION_RESULTS) this.arbitrations.inc({ action, result }, 0);
    this.fencing = counter('colo_agent_fencing_total', 'Fencing done: kind peer (failover.fenceCommand before a takeover) or self (our hung QEMU killed), by result.', ['kind', 'result']);
    for (const kind of FENCE_KINDS) for (const result of FAILOVER_RESULTS) this.fencing.inc({ kind, result }, 0);
    this.guestStops = counter('colo_agent_guest_stops_total', 'Times the agent paused its guest (QMP stop): lease (cut off, lease ran out) or stale (a newer epoch exists).', ['reason']);
    for (const reason of GUEST_STOP_REASONS) this.guestStops.inc({ reason }, 0);

    this.resyncs = counter('colo_agent_resyncs_total', 'Resume attempts (replication to a new secondary) by result: success, rolled-back (the primary runs solo as before), failed (rollback failed too).', ['result']);
    for (const result of RESYNC_RESULTS) this.resyncs.inc({ result }, 0);
    this.resyncDuration = histogram('colo_agent_resync_duration_seconds', 'Disk copy to the new secondary (drive-mirror until BLOCK_JOB_READY) of successful resumes.', RESYNC_BUCKETS);
    this.resyncBytes = counter('colo_agent_resync_bytes_total', 'Bytes copied to new secondaries by drive-mirror.');
    this.resyncProgress = gauge('colo_agent_resync_progress_ratio', 'Progress of the disk copy in flight (0..1); 1 after the last one completed, 0 before any.');
    this.switchoverPause = histogram('colo_agent_switchover_pause_seconds', 'How long a resume paused the guest (stop until it runs again in COLO).', SWITCHOVER_BUCKETS);
    this.unprotected = gauge('colo_agent_unprotected_seconds', 'How long the guest has run without replication since the last failover; 0 while replicated.', [], function () {
      const v = sources.unprotectedSeconds?.();
      if (v !== undefined) this.set(v);
    });
    this.unprotectedDuration = histogram('colo_agent_unprotected_duration_seconds', 'Ended unprotected periods: from a failover to replication resumed.', OUTAGE_BUCKETS);

    this.qemuLaunches = counter('colo_agent_qemu_launches_total', 'qemu.launch: secondary QEMU launches by result: launched, failed (the program could not be started), skipped (another QEMU answers on qemu.qmp).', ['result']);
    for (const result of QEMU_LAUNCH_RESULTS) this.qemuLaunches.inc({ result }, 0);
    this.qemuExits = counter('colo_agent_qemu_exits_total', 'qemu.launch: exits of a QEMU the agent launched: clean (exit code 0) or failure (non-zero, a signal, or unknown for one launched by an earlier agent run).', ['exit']);
    for (const exit of QEMU_EXITS) this.qemuExits.inc({ exit }, 0);
    this.qemuLaunchGaveUp = gauge('colo_agent_qemu_launch_gave_up', 'qemu.launch: 1 once the restart budget (qemu.launch.maxRestarts per restartWindowMs) is spent and no more launches follow until the agent restarts.');

    if (opts.defaultMetrics !== false) {
      collectDefinedDefaultMetrics(this.registry);
      // Gauges with a counter's suffix (promtool flags them); nodejs_active_{handles,requests,
      // resources}{type} carry the same numbers per type.
      for (const name of LINT_FAILING_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
