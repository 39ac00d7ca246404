/**
 * The agent: the state machine that ties config, heartbeat links, failure detectors and the QMP
 * client together. Data flows one way: config -> components -> this state machine -> actions
 * (QMP) and observations (logs, later metrics).
 *
 * Every state change goes through setState(), which logs the transition (as ioredis does with
 * its connection status): an operator reading the log sees every step the agent took and why.
 * Likewise every change of the running config after construction goes through reload() and its
 * one setter, setConfig(), which logs what changed, what was applied and what waits for a restart.
 */
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import type { Arbiter } from './arbiter/arbiter.js';
import { createArbiter } from './arbiter/create-arbiter.js';
import { EpochStore, type EpochSnapshot } from './arbiter/epoch-store.js';
import { probePeerQemuAndHost, type PeerQemuProbeResult } from './arbiter/peer-qemu-probe.js';
import { hungQemuVerdict, selfFenceQemu } from './arbiter/self-fence.js';
import { TakeoverGate, type ArbitrationEvent, type FenceEvent } from './arbiter/takeover-gate.js';
import { decideTakeover, type TakeoverTrigger } from './arbiter/takeover-rule.js';
import { MAINTENANCE_FILE_NAME, readMaintenance, type MaintenanceInfo } from './commands/maintenance.js';
import { FailoverExecutor, type FailoverOutcome } from './colo/failover-executor.js';
import { parseReadySecondary, type ReadySecondaryBody } from './colo/ready-secondary.js';
import { isResumeDecision, ResumeExecutor, runSecondaryPrepare, type ResumeOutcome } from './colo/resume-executor.js';
import type { ResyncProgress } from './colo/resume-runner.js';
import type { ResumeSequenceName } from './colo/resume-sequences.js';
import { currentRole, currentTopology, ownNbdEndpoint, peerQemuEndpoint, resumeTargets, type PairRole, type Topology } from './core/topology.js';
import { clearResumeRequest, resumeRequested } from './commands/resume.js';
import { Backoff } from './util/backoff.js';
import { Journal } from './colo/journal.js';
import { readProtectionState, writeProtectionState, type ProtectionState } from './colo/protection-state.js';
import { ColoMonitor } from './colo/monitor.js';
import type { ColoStatus } from './colo/monitor-events.js';
import type { AgentConfig, HeartbeatConfig, NodeRole } from './config/index.js';
import { changedConfigKeys, configValue, withConfigKeys } from './config/reload.js';
import { parseHostPort } from './heartbeat/address.js';
import { FailureDetector, type DetectorState, type StateChange } from './heartbeat/detector.js';
import { HeartbeatLinks, type HeartbeatEvent, type PeerMessageEvent } from './heartbeat/links.js';
import type { HealthSummary } from './heartbeat/messages.js';
import type { Logger } from './log.js';
import { QmpClient, type QmpEvent, type QmpStatusChange } from './qmp/index.js';
import { QemuLaunchController, type LaunchFacts } from './qemu/launch-controller.js';
import type { QemuSupervisorStatus } from './qemu/supervisor.js';
import { systemClock, type Clock, type TimerHandle } from './util/clock.js';

/**
 * - starting: components are coming up;
 * - waiting-for-peer: no valid heartbeat yet since start;
 * - peer-up / peer-suspect / peer-down: the peer-wide failure detector's verdict while we watch;
 * - peer-agent-lost: the peer's agent is silent but its QEMU still answers: no takeover, re-probing;
 * - arbitrating: a takeover is wanted but not (yet) cleared: the arbiter has not granted it (it is
 *   unreachable, or the other node holds the lease) or no gateway answers; asking again periodically;
 * - stale: another node was granted a newer epoch: this node stays passive for good (an operator,
 *   or a resume as the new secondary, ends it); a guest it ran as primary was stopped;
 * - qemu-lost: our own QEMU went away; the peer was told (fast path); we never fail over on it;
 * - failing-over: a failover sequence is running on our QEMU;
 * - solo: failover done: our QEMU runs the VM alone (unprotected until replication resumes);
 * - resuming: solo, and replicating to the peer's fresh secondary (drive-mirror, then the switch-over);
 * - ready-secondary: our QEMU is a fresh secondary (incoming migration, NBD export ready) and the
 *   primary was told; replication starts when the primary resumes into it;
 * - failed: a failover sequence failed; nothing more happens automatically: an operator must look;
 * - stopping / stopped: shutdown (a planned stop tells the peer with GOODBYE).
 */
export type AgentState =
  | 'starting'
  | 'waiting-for-peer'
  | 'peer-up'
  | 'peer-suspect'
  | 'peer-down'
  | 'peer-agent-lost'
  | 'arbitrating'
  | 'stale'
  | 'qemu-lost'
  | 'failing-over'
  | 'solo'
  | 'resuming'
  | 'ready-secondary'
  | 'failed'
  | 'stopping'
  | 'stopped';

/** How often a COLO primary takes its block graph again (it changes only with drive_add / failover). */
const BLOCK_GRAPH_REFRESH_MS = 30_000;

/** States in which the peer's heartbeat verdict drives the state and may start a takeover. */
const WATCHING: ReadonlySet<AgentState> = new Set(['waiting-for-peer', 'peer-up', 'peer-suspect', 'peer-down', 'peer-agent-lost', 'arbitrating']);

export interface AgentStateChange {
  from: AgentState;
  to: AgentState;
  reason: string;
  at: number;
}

export interface AgentDeps {
  /**
   * The root logger: reload() sets its level from log.level, and pino's child loggers (one per
   * component) follow it, as none of ours sets a level of its own.
   */
  logger: Logger;
  /** The shared heartbeat key; undefined only with heartbeat.insecure. */
  key: Buffer | undefined;
  clock?: Clock;
}

export interface LinkStatus {
  link: string;
  state: DetectorState;
  rttMs?: number;
}

export interface LastFailover {
  sequence: string;
  trigger: TakeoverTrigger | 'journal';
  ok: boolean;
  durationMs: number;
  /** The step that failed, with QEMU's error. */
  error?: string;
}

export interface AgentStatus {
  node: string;
  /** The role this node plays now (core/topology.ts: a stale epoch, else the COLO mode, else the journal, else node.role). */
  role: string;
  /** Which host runs the primary and which the secondary now, and which fact said so (absent from an older agent's /status). */
  topology?: { self: string; peer: string; primaryHost: string; secondaryHost: string; source: string };
  state: AgentState;
  /**
   * qemuReachable: while the peer is up, its own word (its heartbeats); otherwise the last probe of
   * its QEMU (alive or not), whose verdict and age are in `probe`: a silent peer's last heartbeat
   * says nothing about now.
   */
  peer: {
    name?: string;
    session?: string;
    state: DetectorState;
    silentForMs?: number;
    qemuReachable?: boolean;
    probe?: { verdict: PeerQemuProbeResult['verdict']; agoMs: number; target: string };
  };
  links: LinkStatus[];
  qemu: { qmp: string; status: string; version?: string; colo: ColoStatus; launch?: QemuSupervisorStatus };
  lastFailover?: LastFailover;
  /** Maintenance mode (`colo-agent maintenance on`): no automatic takeover starts while on. */
  maintenance: { on: boolean; reason?: string; since?: string };
  /** Our epoch as persisted (undefined before start). */
  epoch?: Pick<EpochSnapshot, 'epoch' | 'newestSeen' | 'newestSeenFrom' | 'stale' | 'holder' | 'updatedAt'>;
  arbiter: { mode: string; reachable: boolean; leaseRemainingMs?: number };
  /** Set while our guest is paused by the agent: 'lease' (cut off, lease ran out) or 'stale'. */
  guestStopped?: GuestStopReason;
  /** Continuous replication: since when the guest runs unprotected, the resync in flight, the last resume. */
  failback?: {
    unprotectedForMs?: number;
    peerReady?: { epoch: number; nbd: string; qemu: string };
    progress?: { percent: number; offset: number; len: number };
    lastResume?: LastResume;
    nextAttemptInMs?: number;
  };
}

export interface LastResume {
  sequence: ResumeSequenceName;
  ok: boolean;
  rolledBack: boolean;
  pauseMs?: number;
  resyncMs?: number;
  bytes?: number;
  error?: string;
}

export type GuestStopReason = 'lease' | 'stale';

export interface GuestStopEvent {
  reason: GuestStopReason;
  ok: boolean;
  error?: string;
}

export interface SelfFenceEvent {
  killed: boolean;
  reason: string;
}

/** What reload() did with the changed keys. */
export interface ReloadResult {
  /** Changed keys now in effect, in schema order. */
  applied: string[];
  /** Changed keys NOT applied: the running agent keeps their old value until it is restarted. */
  needsRestart: string[];
}

/**
 * The config keys reload() applies to a running agent. Every other key needs a restart, because
 * it is baked into something that lives as long as the process:
 * - node.name/role/stateDir: our identity to the peer (its session) and the journal's place;
 * - heartbeat.listen/peers/keyFile/insecure, frame and connection limits, hello timeout, redial
 *   backoff: the links' sockets and key, fixed when HeartbeatLinks is built (re-binding or
 *   re-keying would drop the links, which a reload must never do);
 * - heartbeat.startupGraceMs: it only matters before the first beat after start;
 * - qemu.*: the QMP client's address, timeouts and backoff;
 * - colo.* topology (hosts, ports, ids, disk nodes): it must match the command lines QEMU runs with;
 * - colo.statusPollMs/checkpointStallMs: ColoMonitor takes them at construction and has no setter;
 * - metrics.listen: the HTTP server's socket; arbiter.mode: the takeover rule's premise.
 * The failover keys need no component to be told: they are read from the config when used.
 */
export const LIVE_CONFIG_KEYS: ReadonlySet<string> = new Set([
  'log.level',
  'heartbeat.intervalMs',
  'heartbeat.missThreshold',
  'heartbeat.suspectMisses',
  'heartbeat.recoverBeats',
  'heartbeat.phiThreshold',
  'failover.enabled',
  'failover.stepTimeoutMs',
  'failover.probeTimeoutMs',
  'failover.reprobeIntervalMs',
  'failover.unresponsivePeerMs',
  'failover.autoResume',
  'failover.resyncTimeoutMs',
]);

/** The detector thresholds a reload changes (startupGraceMs is left as each detector has it). */
function liveDetectorTunables(hb: HeartbeatConfig) {
  return {
    intervalMs: hb.intervalMs,
    missThreshold: hb.missThreshold,
    suspectMisses: hb.suspectMisses,
    recoverBeats: hb.recoverBeats,
    phiThreshold: hb.phiThreshold,
  };
}

/** How often the agent logs a summary of link RTTs: often enough to watch, rare enough to read. */
const RTT_LOG_PERIOD_MS = 10_000;
/** After our QEMU's COLO_EXIT(error) or the peer's QEMU-gone notice, how often and how many times to probe the peer again. */
const QUICK_RETRY_MS = 50;
const QUICK_RETRIES = 10;

function pickEpoch(s: EpochSnapshot): NonNullable<AgentStatus['epoch']> {
  return { epoch: s.epoch, newestSeen: s.newestSeen, newestSeenFrom: s.newestSeenFrom, stale: s.stale, holder: s.holder, updatedAt: s.updatedAt };
}

const PEER_TO_AGENT: Record<DetectorState, AgentState> = {
  unknown: 'waiting-for-peer',
  up: 'peer-up',
  suspect: 'peer-suspect',
  down: 'peer-down',
};

export type AgentEvents = {
  state: [AgentStateChange];
  failover: [FailoverOutcome];
  maintenance: [MaintenanceInfo | undefined];
  arbitration: [ArbitrationEvent];
  fence: [FenceEvent];
  'self-fence': [SelfFenceEvent];
  'guest-stop': [GuestStopEvent];
  /** Our epoch or the newest one seen changed. */
  epoch: [EpochSnapshot];
  /** A resume ended (success, rolled back, or failed). */
  resume: [ResumeOutcome];
  'resync-progress': [ResyncProgress];
  /** The guest is replicated again after `unprotectedMs` without a replica. */
  protected: [{ unprotectedMs: number }];
};

export class Agent extends EventEmitter<AgentEvents> {
  readonly links: HeartbeatLinks;
  readonly arbiter: Arbiter;
  readonly peer: FailureDetector;
  readonly qmp: QmpClient;
  readonly colo: ColoMonitor;

  private current: AgentState = 'starting';
  /** The host this node is (node.role): fixed for the pair's life; roles move, hosts do not. */
  private readonly installedAs: PairRole;
  /** The role the journal recorded (the last failover's, or a rejoin's): one fact of topology(). */
  private recordedRole: PairRole | undefined;
  private journal: Journal | undefined;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly linkDetectors = new Map<string, FailureDetector>();
  /** RTT samples since the last RTT log line, per link. */
  private readonly rtts = new Map<string, number[]>();
  private readonly lastRtt = new Map<string, number>();
  private peerName: string | undefined;
  private peerSession: string | undefined;
  private peerSummary: HealthSummary | undefined;
  /** The heartbeat interval the peer's frames announce (its pace); undefined until one arrives. */
  private peerIntervalMs: number | undefined;
  /** The peer session that announced a planned stop: its silence is not a failure. */
  private peerSaidGoodbye: string | undefined;
  /** Newest peer send time fed to the peer detector, so one round seen on several links counts once. */
  private lastFedSentAt = -Infinity;
  private rttTimer: TimerHandle | undefined;
  private reprobeTimer: TimerHandle | undefined;
  /** The last probe of the peer's QEMU, for status (clock ms). */
  private lastProbe: { verdict: PeerQemuProbeResult['verdict']; at: number; target: string } | undefined;
  /** The probe started when the peer became suspect, so the verdict is ready when it is declared down. */
  private earlyProbe: Promise<PeerQemuProbeResult> | undefined;
  /** A takeover decision or sequence is under way: every other trigger waits for its outcome. */
  private deciding = false;
  private pendingTrigger: TakeoverTrigger | undefined;
  private quickRetries = 0;
  private lastFailover: LastFailover | undefined;
  /** The maintenance file's content as last read; undefined while maintenance is off. */
  private maintenance: MaintenanceInfo | undefined;
  private maintenanceWatcher: FSWatcher | undefined;
  private epochs: EpochStore | undefined;
  private gate: TakeoverGate | undefined;
  /** Why we paused our guest, while it is paused by us. */
  private guestStoppedBy: GuestStopReason | undefined;
  private guardTimer: TimerHandle | undefined;
  /** Since when QMP has been unhealthy / checkpoints stalled (self-fence evidence). */
  private unhealthySince: number | undefined;
  private stalledSince: number | undefined;
  private selfFenced = false;
  /** The peer's epoch as its frames carry it. */
  private peerEpoch: number | undefined;
  /** The peer's last "ready to be secondary" announcement (clock time it arrived). */
  private peerReady: (ReadySecondaryBody & { epoch: number; at: number }) | undefined;
  private resumeBackoff!: Backoff;
  private nextResumeAt = 0;
  private lastResume: LastResume | undefined;
  private resyncProgress: ResyncProgress | undefined;
  /** Clock time the guest became unprotected (a failover finished); undefined while replicated. Set by setUnprotected(). */
  private unprotectedSince: number | undefined;
  /** protection.json as last written: unprotected-since and the last failover, kept across restarts. */
  private protection: ProtectionState = {};
  private protectionWrite: Promise<void> = Promise.resolve();
  /** Fresh-secondary check in flight / last done (clock ms): one query-status per second at most. */
  private preparing = false;
  private lastPrepareCheck = -Infinity;
  private announceTimer: TimerHandle | undefined;
  /** The block graph of our QEMU as a COLO primary, for the failover's yank (cachedBlockGraph). */
  private blockGraph: unknown;
  private blockGraphAt = -Infinity;
  private blockGraphFetching = false;
  /** Bumped when the graph is dropped: a fetch that began before must not bring the old one back. */
  private blockGraphGeneration = 0;
  /** Clock time a stale node last asked the launcher for a fresh secondary. */
  private lastLaunchCheck = -Infinity;
  /** qemu.launch: the agent starts its own (fresh secondary) QEMU; undefined when off. */
  readonly launcher: QemuLaunchController | undefined;

  /** The running config: changed after construction by setConfig() only. */
  private cfg: AgentConfig;

  constructor(
    cfg: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    super();
    this.cfg = cfg;
    this.log = deps.logger.child({ component: 'agent' });
    this.clock = deps.clock ?? systemClock;
    if (cfg.node.role === 'witness') throw new Error('an Agent runs beside a QEMU: node.role must be primary or secondary');
    this.installedAs = cfg.node.role;
    const hb = cfg.heartbeat;

    this.qmp = new QmpClient({
      address: cfg.qemu.qmp,
      connectTimeoutMs: cfg.qemu.connectTimeoutMs,
      commandTimeoutMs: cfg.qemu.commandTimeoutMs,
      reconnect: { initialMs: cfg.qemu.reconnectInitialMs, maxMs: cfg.qemu.reconnectMaxMs },
      clock: this.clock,
      logger: deps.logger,
    });
    this.colo = new ColoMonitor({
      qmp: this.qmp,
      pollPeriodMs: cfg.colo.statusPollMs,
      stallAfterMs: cfg.colo.checkpointStallMs,
      clock: this.clock,
      logger: deps.logger,
    });

    if (cfg.qemu.launch.enabled) {
      this.launcher = new QemuLaunchController({
        launch: cfg.qemu.launch,
        stateDir: cfg.node.stateDir,
        qmp: cfg.qemu.qmp,
        facts: () => this.launchFacts(),
        clock: this.clock,
        logger: deps.logger,
      });
    }

    this.peer = new FailureDetector({ ...this.detectorTunables(), name: 'peer', clock: this.clock, logger: deps.logger });
    this.links = new HeartbeatLinks({
      nodeName: cfg.node.name,
      role: cfg.node.role,
      listen: hb.listen,
      peers: hb.peers,
      ...(deps.key ? { key: deps.key } : { insecure: true }),
      intervalMs: hb.intervalMs,
      helloTimeoutMs: hb.helloTimeoutMs,
      maxFrameBytes: hb.maxFrameBytes,
      maxConnectionsPerSource: hb.maxConnectionsPerSource,
      reconnectInitialMs: hb.reconnectInitialMs,
      reconnectMaxMs: hb.reconnectMaxMs,
      summary: () => this.summary(),
      epoch: () => this.epochs?.epoch ?? 0,
      clock: this.clock,
      logger: deps.logger,
    });
    this.resumeBackoff = new Backoff({ initialMs: cfg.failover.resumeRetryInitialMs, maxMs: cfg.failover.resumeRetryMaxMs });
    this.arbiter = createArbiter(cfg, {
      key: deps.key,
      summary: () => this.summary(),
      epoch: () => this.epochs?.epoch ?? 0,
      isPrimary: () => this.topology().self.role === 'primary',
      clock: this.clock,
      logger: deps.logger,
    });
    this.wire();
  }

  get state(): AgentState {
    return this.current;
  }

  /**
   * Where things run now (core/topology.ts): every peer address, probe target, fence target and
   * resume target is derived from this, never from node.role or the COLO mode alone.
   */
  private topology(): Topology {
    return currentTopology(
      { installedAs: this.installedAs, coloMode: this.colo.status.mode, stale: this.epochs?.stale ?? false, recordedRole: this.recordedRole },
      this.cfg.colo,
    );
  }

  /** What our heartbeats tell the peer and the witness. */
  private summary(): HealthSummary {
    return {
      role: this.topology().self.role,
      coloMode: this.colo.status.mode,
      // unhealthy = a command timed out but the socket is open: QEMU exists.
      qemuReachable: this.qmp.status === 'ready' || this.qmp.status === 'unhealthy',
      agentState: this.current,
    };
  }

  async start(): Promise<void> {
    const journal = await Journal.open(this.cfg.node.stateDir, { logger: this.deps.logger });
    this.journal = journal;
    this.protection = readProtectionState(this.cfg.node.stateDir, this.log);
    const lf = this.protection.lastFailover;
    if (lf) this.lastFailover = { sequence: lf.sequence, trigger: lf.trigger as LastFailover['trigger'], ok: lf.ok, durationMs: lf.durationMs, ...(lf.error !== undefined && { error: lf.error }) };
    const recorded = journal.role();
    this.recordedRole = recorded?.role;
    if (recorded && recorded.role !== this.installedAs) {
      this.log.warn({ configured: this.installedAs, recorded: recorded.role, since: recorded.since, reason: recorded.reason }, 'role from the journal overrides node.role');
    }
    this.watchMaintenance();
    const epochs = await EpochStore.open(this.cfg.node.stateDir, { logger: this.deps.logger });
    this.epochs = epochs;
    this.gate = new TakeoverGate({
      nodeName: this.cfg.node.name,
      arbiter: this.arbiter,
      epochs,
      gateways: this.cfg.arbiter.gateways.map((g) => parseHostPort(g)),
      gatewayTimeoutMs: this.cfg.arbiter.gatewayTimeoutMs,
      requestTimeoutMs: this.cfg.arbiter.requestTimeoutMs,
      fence: {
        command: this.cfg.failover.fenceCommand,
        timeoutMs: this.cfg.failover.fenceTimeoutMs,
        policy: this.cfg.failover.onFenceFailure,
        maxWaitMs: this.cfg.failover.fenceMaxWaitMs,
      },
      peer: () => ({ name: this.peerName, host: this.topology().peer.host }),
      clock: this.clock,
      logger: this.deps.logger,
    });
    this.gate.on('arbitration', (e) => this.emit('arbitration', e));
    this.gate.on('fence', (e) => this.emit('fence', e));
    this.log.info({ epoch: epochs.snapshot(), arbiter: this.arbiter.mode }, 'epoch');
    await this.arbiter.start();
    await this.links.start();
    this.log.info(
      { listen: this.links.listenAddresses(), peers: this.cfg.heartbeat.peers, intervalMs: this.cfg.heartbeat.intervalMs },
      'heartbeat links started',
    );
    // QEMU may not be up yet (or ever, in a heartbeat-only run): connect in the background.
    this.qmp.connect().catch(() => undefined);
    this.colo.start();
    this.scheduleRttLog();
    this.scheduleGuard();
    if (this.launcher) void this.startLauncher();

    const open = journal.unfinished();
    const last = journal.current();
    if (open && isResumeDecision(open)) {
      // We crashed mid-resume: never continue a half switch-over; undo it once QEMU answers.
      this.setState('resuming', `rolling back the ${open.sequence} the journal holds unfinished`);
      this.deciding = true;
      void this.qmp
        .waitUntilReady(60_000)
        .then(() => this.resumeExecutor().recover())
        .then((outcome) => {
          if (outcome) this.onResumeOutcome(outcome);
          else this.setState('solo', 'nothing to roll back');
        })
        .catch((err: unknown) => this.setState('failed', `cannot roll back the unfinished resume: ${(err as Error).message}`))
        .finally(() => (this.deciding = false));
    } else if (open?.status === 'failed') {
      this.setState('failed', `the journal holds a failed ${open.sequence} (${open.error?.message ?? 'no error recorded'}): an operator must look`);
    } else if (open?.status === 'running') {
      // We crashed mid-sequence: finish that failover (and no other) once QEMU answers.
      this.setState('failing-over', `resuming ${open.sequence} from the journal`);
      this.deciding = true;
      void this.qmp
        .waitUntilReady(60_000)
        .then(() => this.execute(open.sequence as 'primary-failover' | 'secondary-failover', 'journal', 'unfinished in the journal'))
        .catch((err: unknown) => this.setState('failed', `cannot resume ${open.sequence}: ${(err as Error).message}`))
        .finally(() => (this.deciding = false));
    } else if (epochs.stale) {
      this.becomeStale(epochs.snapshot().newestSeenFrom ?? 'the epoch file');
    } else if ((last?.status === 'finished' && !isResumeDecision(last)) || (last?.status === 'abandoned' && isResumeDecision(last))) {
      // Unprotected since before the restart (protection.json), else since the decision ended.
      const since = this.protection.unprotectedSince ?? last.endedAt;
      this.setUnprotected(since === undefined ? this.clock.now() : this.clock.now() - Math.max(0, Date.now() - Date.parse(since)));
      this.setState('solo', `${last.sequence} ${last.status} ${last.endedAt ?? ''}: running without a peer`);
    } else {
      this.setState(PEER_TO_AGENT[this.peer.state], 'started');
    }
  }

  /** A planned stop: the peer is told (GOODBYE) so it does not mistake us for a failure. */
  async stop(reason = 'planned stop'): Promise<void> {
    if (this.current === 'stopping' || this.current === 'stopped') return;
    this.setState('stopping', reason);
    this.clock.clearTimeout(this.rttTimer);
    this.clock.clearTimeout(this.reprobeTimer);
    this.clock.clearTimeout(this.guardTimer);
    this.clock.clearTimeout(this.announceTimer);
    this.maintenanceWatcher?.close();
    this.maintenanceWatcher = undefined;
    this.colo.stop();
    this.peer.stop();
    for (const d of this.linkDetectors.values()) d.stop();
    // The launched QEMU outlives a planned stop: the guest must not go down with the agent.
    await Promise.allSettled([this.links.close({ goodbye: reason }), this.qmp.close(), this.arbiter.close(), this.launcher?.stop(), this.protectionWrite]);
    this.setState('stopped', reason);
  }

  /**
   * Applies a newly loaded (valid) config to the running agent: the LIVE_CONFIG_KEYS that changed
   * take effect now, every other changed key is reported as needing a restart and keeps its
   * running value. Heartbeat links stay up throughout: the interval changes on live connections,
   * and the detectors keep their state and last beat. A detector refusing the new thresholds
   * (DetectorOptionsError, thrown before anything changed) leaves the agent as it was.
   */
  reload(next: AgentConfig): ReloadResult {
    if (this.current === 'stopping' || this.current === 'stopped') {
      this.log.info({ state: this.current }, 'config reload ignored: the agent is stopping');
      return { applied: [], needsRestart: [] };
    }
    const changed = changedConfigKeys(this.cfg, next);
    const result: ReloadResult = {
      applied: changed.filter((k) => LIVE_CONFIG_KEYS.has(k)),
      needsRestart: changed.filter((k) => !LIVE_CONFIG_KEYS.has(k)),
    };
    const target = withConfigKeys(this.cfg, next, result.applied);
    if (result.applied.some((k) => k.startsWith('heartbeat.'))) {
      // The peer detector first (inside): if it refuses the thresholds, nothing has changed yet.
      this.applyDetectorTunables(target.heartbeat);
      // Our links announce the new interval in their next frame, sent at once: the peer's detector follows it.
      if (target.heartbeat.intervalMs !== this.cfg.heartbeat.intervalMs) this.links.updateInterval(target.heartbeat.intervalMs);
    }
    this.setConfig(target, next, changed, result);
    return result;
  }

  /** The operator's failover (`colo-agent failover`): runs even with failover.enabled=false. */
  requestFailover(): Promise<void> {
    return this.considerTakeover('manual');
  }

  status(): AgentStatus {
    const version = this.qmp.version;
    const m = this.current === 'stopped' ? this.maintenance : this.refreshMaintenance(true);
    const topo = this.topology();
    return {
      node: this.cfg.node.name,
      role: topo.self.role,
      topology: { self: topo.self.host, peer: topo.peer.host, primaryHost: topo.primaryHost, secondaryHost: topo.secondaryHost, source: topo.source },
      state: this.current,
      peer: {
        name: this.peerName,
        session: this.peerSession,
        state: this.peer.state,
        silentForMs: this.peer.lastBeatAt === undefined ? undefined : Math.round(this.peer.silentForMs()),
        qemuReachable: this.peer.state === 'up' ? this.peerSummary?.qemuReachable : this.lastProbe ? this.lastProbe.verdict === 'alive' : undefined,
        ...(this.peer.state !== 'up' &&
          this.lastProbe && { probe: { verdict: this.lastProbe.verdict, agoMs: Math.round(this.clock.now() - this.lastProbe.at), target: this.lastProbe.target } }),
      },
      links: [...this.linkDetectors].map(([link, d]) => ({ link, state: d.state, rttMs: this.lastRtt.get(link) })),
      qemu: {
        qmp: this.cfg.qemu.qmp,
        status: this.qmp.status,
        version: version ? `${version.major}.${version.minor}.${version.micro}` : undefined,
        colo: this.colo.status,
        ...(this.launcher && { launch: this.launcher.status() }),
      },
      lastFailover: this.lastFailover,
      maintenance: m ? { on: true, reason: m.reason, since: m.since } : { on: false },
      ...(this.epochs && { epoch: pickEpoch(this.epochs.snapshot()) }),
      arbiter: { mode: this.arbiter.mode, reachable: this.arbiter.reachable(), leaseRemainingMs: this.arbiter.leaseRemainingMs() },
      ...(this.guestStoppedBy && { guestStopped: this.guestStoppedBy }),
      failback: {
        ...(this.unprotectedSince !== undefined && { unprotectedForMs: Math.round(this.clock.now() - this.unprotectedSince) }),
        ...(this.peerReady && { peerReady: { epoch: this.peerReady.epoch, nbd: this.peerReady.nbd, qemu: this.peerReady.qemu } }),
        ...(this.resyncProgress && this.current === 'resuming' && {
          progress: { percent: this.resyncProgress.percent, offset: this.resyncProgress.offset, len: this.resyncProgress.len },
        }),
        ...(this.lastResume && { lastResume: this.lastResume }),
        ...(this.current === 'solo' && this.nextResumeAt > this.clock.now() && { nextAttemptInMs: Math.round(this.nextResumeAt - this.clock.now()) }),
      },
    };
  }

  /** True while maintenance mode is on (as of the last look at the file). */
  get inMaintenance(): boolean {
    return this.maintenance !== undefined;
  }

  /**
   * Reads the maintenance file once, then watches the state dir for it. The watch only makes the
   * change visible promptly (log, /status, metric); considerTakeover() looks at the file itself, so
   * a missed or coalesced watch event can never let an automatic failover through.
   */
  private watchMaintenance(): void {
    this.refreshMaintenance(false);
    try {
      this.maintenanceWatcher = watch(this.cfg.node.stateDir, { persistent: false }, (_event, file) => {
        // Some platforms give no file name: look anyway, it is one stat.
        if (file === null || file === MAINTENANCE_FILE_NAME) this.refreshMaintenance(true);
      });
      this.maintenanceWatcher.on('error', (err) => this.log.warn({ err }, 'maintenance file watch failed: checked before each takeover only'));
    } catch (err) {
      this.log.warn({ err }, 'cannot watch the state dir for the maintenance file: checked before each takeover only');
    }
  }

  /**
   * Looks at the maintenance file; logs and announces an on/off change. When maintenance ends
   * while the peer is still down (or its QEMU reported gone), the trigger that was refused is gone
   * (the heartbeat verdict does not repeat, our COLO_EXIT was already consumed): with `reevaluate`
   * the decision is taken again now, as if the trigger had just arrived.
   */
  private refreshMaintenance(reevaluate: boolean): MaintenanceInfo | undefined {
    const before = this.maintenance;
    const now = readMaintenance(this.cfg.node.stateDir);
    this.maintenance = now;
    if ((before === undefined) === (now === undefined)) return now;
    if (now) {
      this.log.warn({ reason: now.reason, since: now.since, by: now.by }, 'maintenance mode on: automatic failover suspended');
    } else {
      this.log.warn({ was: before?.reason }, 'maintenance mode off: automatic failover resumed');
    }
    this.emit('maintenance', now);
    if (!now && reevaluate && WATCHING.has(this.current)) {
      if (this.peer.state === 'down' && !(this.peerSaidGoodbye !== undefined && this.peerSaidGoodbye === this.peerSession)) {
        void this.considerTakeover('peer-down');
      } else if (this.peerSummary?.qemuReachable === false) {
        void this.considerTakeover('peer-qemu-gone');
      }
    }
    return now;
  }

  private detectorTunables() {
    const hb = this.cfg.heartbeat;
    return { ...this.peerTunables(hb), startupGraceMs: hb.startupGraceMs };
  }

  /**
   * What our detectors of the peer use: our thresholds (how many missed beats we tolerate is our
   * policy) at the PEER's pace, the interval its heartbeats announce (as BFD detects at the
   * remote's transmit interval). Until it has announced one, our own interval.
   */
  private peerTunables(hb: HeartbeatConfig) {
    return { ...liveDetectorTunables(hb), intervalMs: this.peerIntervalMs ?? hb.intervalMs };
  }

  /** Our detectors of the peer take `hb`'s thresholds at the peer's announced pace; the peer detector first, so a refusal changes nothing. */
  private applyDetectorTunables(hb: HeartbeatConfig): void {
    const tunables = this.peerTunables(hb);
    this.peer.updateOptions(tunables);
    for (const d of this.linkDetectors.values()) d.updateOptions(tunables);
  }

  private wire(): void {
    this.links.on('heartbeat', (e) => this.onHeartbeat(e));
    this.links.on('rtt', ({ link, rttMs }) => {
      this.lastRtt.set(link, rttMs);
      const list = this.rtts.get(link) ?? [];
      if (list.length < 10_000) list.push(rttMs);
      this.rtts.set(link, list);
    });
    // Link up/down, rejections and the detector's transitions are logged where they happen
    // (HeartbeatLinks, FailureDetector); the agent logs only its own decisions.
    this.links.on('peer-session', (e) => {
      this.log.info(e, e.kind === 'new' ? 'peer session' : 'peer restarted (new session)');
      this.peerName = e.name;
      this.peerSession = e.session;
      this.peerSummary = undefined;
      // The peer's clock origin changed with its process: its send times start over.
      this.lastFedSentAt = -Infinity;
    });
    this.links.on('goodbye', (e) => {
      this.log.info(e, 'peer said goodbye (planned stop)');
      this.peerSaidGoodbye = e.peerSession;
    });
    this.links.on('message', (e) => this.onPeerMessage(e));
    this.links.on('epoch', (e) => {
      this.peerEpoch = e.epoch;
      void this.observeEpoch(e.epoch, `peer ${e.peerName}`);
    });
    this.colo.on('change', (_prev, next) => {
      // A resume adds a new NBD node: the graph is taken again once COLO runs. Dropped only on a
      // known other mode: 'unknown' (a poll timed out) is exactly when a stuck QEMU needs it.
      if (next.mode === 'none' || next.mode === 'secondary') {
        this.blockGraph = undefined;
        this.blockGraphGeneration++;
      }
      if (next.mode === 'primary') this.blockGraphAt = -Infinity;
      if (this.current === 'ready-secondary' && next.mode === 'secondary') {
        this.clock.clearTimeout(this.announceTimer);
        this.setState(PEER_TO_AGENT[this.peer.state], 'replicating again: our QEMU is the secondary in COLO');
      }
    });
    this.arbiter.on('epoch', (e) => {
      // Our own grant in flight (the witness announces it before its verdict reaches us).
      if (e.holder === this.cfg.node.name) return;
      void this.observeEpoch(e.epoch, `${this.arbiter.mode} arbiter${e.holder ? ` (holder ${e.holder})` : ''}`);
    });
    this.colo.on('stalled', () => (this.stalledSince = this.clock.now() - this.cfg.colo.checkpointStallMs));
    this.colo.on('stall-cleared', () => (this.stalledSince = undefined));
    this.peer.on('state', (c) => this.onPeerState(c));
    this.qmp.on('status', (c) => this.onQmpStatus(c));
    this.qmp.on('event', (e) => this.onQemuEvent(e));
  }

  private onHeartbeat(e: HeartbeatEvent): void {
    // The peer's pace first, so this beat is judged against the interval it was sent at.
    const announced = e.summary.intervalMs;
    if (announced !== undefined && announced !== this.peerIntervalMs && e.peerSession === this.peerSession) {
      this.log.info({ from: this.peerIntervalMs ?? this.cfg.heartbeat.intervalMs, to: announced }, "the peer's heartbeat interval: our detectors follow it");
      const before = this.peerIntervalMs;
      this.peerIntervalMs = announced;
      try {
        this.applyDetectorTunables(this.cfg.heartbeat);
      } catch (err) {
        // Our thresholds at its pace fail the detector's own checks (its timer limit): keep the old pace.
        this.peerIntervalMs = before;
        this.rateLimitedInfo('peer-interval', { err: (err as Error).message, announced }, "cannot follow the peer's announced heartbeat interval; keeping the old one");
      }
    }
    this.linkDetector(e.link).beat(e.receivedAt);
    if (e.peerSession !== this.peerSession) return; // a stale session's last frames
    if (e.sentAt <= this.lastFedSentAt) return;
    this.lastFedSentAt = e.sentAt;
    const before = this.peerSummary;
    this.peerSummary = e.summary;
    this.peer.beat(e.receivedAt);
    // Paused for a lost lease, and the peer is back as our secondary at our epoch: it did not
    // take over (a takeover raises the epoch it sends), so the guest is still ours to run.
    // Only once the detector counts the peer up again (a single frame through a flapping link
    // would resume the guest that the guard pauses again a moment later), and only while the peer
    // itself is simply watching (peer-up): a peer that is arbitrating may still be granted the
    // takeover its request is waiting for.
    if (
      this.guestStoppedBy === 'lease' &&
      this.peer.state === 'up' &&
      e.summary.agentState === 'peer-up' &&
      this.epochs &&
      e.epoch <= this.epochs.epoch &&
      e.summary.coloMode === 'secondary'
    ) {
      void this.resumeGuest('the peer is back as our secondary at our epoch');
    }
    // The heartbeat carries the same news as the peer-qemu-gone message, in case that was lost.
    if (before?.qemuReachable && !e.summary.qemuReachable) {
      this.quickRetries = 0;
      void this.considerTakeover('peer-qemu-gone');
    }
  }

  private onPeerMessage(e: PeerMessageEvent): void {
    if (e.type === 'ready-to-be-secondary') {
      try {
        const body = parseReadySecondary(e.body);
        const first = this.peerReady === undefined;
        this.peerReady = { ...body, epoch: e.epoch, at: this.clock.now() };
        if (first) this.log.info({ peer: e.peerName, epoch: e.epoch, ...body }, "the peer's fresh secondary is ready");
        void this.maybeResume();
      } catch (err) {
        this.log.warn({ peer: e.peerName, err: (err as Error).message }, 'ignored a malformed ready-to-be-secondary message');
      }
      return;
    }
    if (e.type !== 'peer-qemu-gone') return;
    this.log.warn({ peer: e.peerName, body: e.body }, "peer's agent reports its QEMU gone");
    if (this.peerSummary) this.peerSummary = { ...this.peerSummary, qemuReachable: false };
    this.quickRetries = 0;
    void this.considerTakeover('peer-qemu-gone');
  }

  /** Our QMP socket closing means our QEMU is gone: tell the peer at once (the fast path). */
  private onQmpStatus(c: QmpStatusChange): void {
    if (c.to === 'ready' || c.from === 'ready') this.log.info({ from: c.from, to: c.to, reason: c.reason }, 'QMP status');
    const wasUp = c.from === 'ready' || c.from === 'unhealthy';
    const down = c.to === 'disconnected' || c.to === 'reconnecting';
    if (wasUp && down && this.current !== 'stopping' && this.current !== 'stopped') {
      const sent = this.links.send('peer-qemu-gone', { reason: c.reason });
      this.log.error({ reason: c.reason, toldPeerOnLinks: sent }, 'our QEMU is gone');
      if (this.current !== 'failing-over') this.setState('qemu-lost', `QMP closed: ${c.reason}`);
      this.maybeLaunch('our QEMU is gone');
    }
    if (c.to === 'ready' && this.current === 'qemu-lost') this.setState(PEER_TO_AGENT[this.peer.state], 'QEMU reachable again');
  }

  private onQemuEvent(e: QmpEvent): void {
    // Logged once, by the COLO monitor (component colo-monitor, with mode and reason).
    if (e.event !== 'COLO_EXIT') return;
    if (e.data.reason === 'error') {
      this.quickRetries = 0;
      void this.considerTakeover('colo-exit-error');
    }
  }

  private linkDetector(link: string): FailureDetector {
    let d = this.linkDetectors.get(link);
    if (!d) {
      d = new FailureDetector({ ...this.detectorTunables(), startupGraceMs: 0, name: `link ${link}`, clock: this.clock });
      d.on('state', (c) => this.log.info({ link, from: c.from, to: c.to, reason: c.reason }, 'link liveness'));
      this.linkDetectors.set(link, d);
    }
    return d;
  }

  private onPeerState(c: StateChange): void {
    if (c.to === 'suspect' && !this.earlyProbe) this.earlyProbe = this.probePeer();
    if (c.to === 'up') {
      this.earlyProbe = undefined;
      this.clock.clearTimeout(this.reprobeTimer);
    }
    if (!WATCHING.has(this.current) || this.deciding) return;
    this.followPeerVerdict(c.to, `peer ${c.reason}`);
  }

  /** The watching state takes the detector's verdict; a peer down (and not by a planned stop) starts a takeover decision. */
  private followPeerVerdict(to: DetectorState, reason: string): void {
    const planned = to !== 'up' && this.peerSaidGoodbye !== undefined && this.peerSaidGoodbye === this.peerSession;
    this.setState(PEER_TO_AGENT[to], planned ? 'peer stopped (planned: it said goodbye)' : reason);
    // A planned stop is not a failure: its silence starts no takeover. If its QEMU dies after
    // all, our QEMU's COLO_EXIT or the peer's own notice still does.
    if (to === 'down' && !planned) void this.considerTakeover('peer-down');
  }

  /** Where the peer's QEMU listens: the primary's mirror0 server, the secondary's NBD export, on the peer's host. */
  private probePeer(): Promise<PeerQemuProbeResult> {
    const { host, port } = peerQemuEndpoint(this.topology(), this.cfg.colo);
    const hostPorts = this.cfg.heartbeat.peers.map((p) => parseHostPort(p));
    return probePeerQemuAndHost({ host, port }, hostPorts, this.cfg.failover.probeTimeoutMs).then((r) => {
      this.lastProbe = { verdict: r.verdict, at: this.clock.now(), target: `${host}:${port}` };
      this.log.info({ host, port, ...r }, 'probed the peer QEMU');
      return r;
    });
  }

  /**
   * Gathers the facts, asks the takeover rule, and runs the sequence when it says so. At most one
   * decision at a time; once a sequence ran (solo/failed) no trigger starts another.
   */
  private async considerTakeover(trigger: TakeoverTrigger): Promise<void> {
    if (this.deciding) {
      // Whatever is being decided may end in "no": this trigger gets its turn then.
      this.pendingTrigger = trigger;
      return;
    }
    if (!WATCHING.has(this.current)) {
      this.log.debug({ trigger, state: this.current }, 'takeover trigger ignored');
      return;
    }
    // Maintenance suspends automatic takeovers only: an operator's request still goes through.
    // The file itself is looked at (not only the watch's last news).
    const maintenance = trigger === 'manual' ? undefined : this.refreshMaintenance(false);
    if (maintenance) {
      this.log.warn(
        { trigger, reason: `maintenance mode: automatic failover suspended (${maintenance.reason || 'no reason given'})`, since: maintenance.since },
        'no takeover',
      );
      return;
    }
    this.deciding = true;
    let acted = false;
    try {
      const colo = await this.colo.poll();
      const facts = {
        trigger,
        qemuReachable: this.qmp.status === 'ready',
        coloMode: colo.mode,
        failoverEnabled: this.cfg.failover.enabled,
        peerReportsQemuReachable: this.peer.state === 'up' ? this.peerSummary?.qemuReachable : undefined,
        unresponsivePeerMs: this.cfg.failover.unresponsivePeerMs,
        fenceConfigured: this.cfg.failover.fenceCommand !== '',
      };
      let decision = decideTakeover(facts);
      let probe: PeerQemuProbeResult | undefined;
      if (!decision.act && decision.retry) {
        // Only the probe is missing.
        probe = this.earlyProbe ? await this.earlyProbe : undefined;
        // An early "alive" may predate the QEMU's death; only a fresh look can say it is still there.
        if (!probe || probe.verdict === 'alive') probe = await this.probePeer();
        this.earlyProbe = undefined;
        decision = decideTakeover({
          ...facts,
          probe: probe.verdict,
          ...(probe.agent !== undefined && { peerAgentPort: probe.agent }),
          ...(this.peer.lastBeatAt !== undefined && { peerSilentForMs: this.peer.silentForMs() }),
        });
      }
      if (!decision.act) {
        this.log.warn({ trigger, reason: decision.reason, colo, probe }, 'no takeover');
        // A retry after "not now" from the gate: the reason to take over is gone, so is arbitrating.
        if (this.current === 'arbitrating') this.setState(PEER_TO_AGENT[this.peer.state], `no takeover: ${decision.reason}`);
        if (decision.retry && this.peer.state === 'down') {
          this.setState('peer-agent-lost', decision.reason);
          this.scheduleReprobe(decision.recheckInMs);
        } else if (decision.retry && (trigger === 'colo-exit-error' || trigger === 'peer-qemu-gone') && this.quickRetries < QUICK_RETRIES) {
          // A dying QEMU's sockets (replication stream, QMP) can close a moment before its
          // listeners do: look again shortly rather than wait for the heartbeat timeout.
          this.quickRetries++;
          this.clock.setTimeout(() => void this.considerTakeover(trigger), QUICK_RETRY_MS);
        }
        return;
      }
      this.quickRetries = 0;
      // Maintenance may have been turned on while the facts were gathered (the probe takes time).
      const late = trigger === 'manual' ? undefined : this.refreshMaintenance(false);
      if (late) {
        this.log.warn({ trigger, reason: `maintenance mode: automatic failover suspended (${late.reason || 'no reason given'})`, since: late.since }, 'no takeover');
        return;
      }
      const action = decision.sequence === 'secondary-failover' ? 'takeover' : 'continue';
      // Visible while the witness holds the request (it waits out the primary's lease).
      if (this.arbiter.mode !== 'none') this.setState('arbitrating', `asking the ${this.arbiter.mode} arbiter for epoch ${this.epochs!.epoch + 1} (${action}): ${decision.reason}`);
      const gate = await this.gate!.pass(action, { fenceRequired: decision.fenceRequired === true });
      if (!gate.pass) {
        this.log.warn({ trigger, step: gate.step, reason: gate.reason }, 'no takeover');
        if (gate.step === 'stale') this.becomeStale(this.epochs!.snapshot().newestSeenFrom ?? 'the arbiter');
        else if (gate.step === 'fence') this.setState('failed', gate.reason);
        else {
          this.setState('arbitrating', gate.reason);
          this.scheduleRetry(trigger);
        }
        return;
      }
      acted = true;
      this.emit('epoch', this.epochs!.snapshot());
      await this.execute(decision.sequence, trigger, `${decision.reason}; epoch ${gate.epoch} granted by ${gate.by}`);
    } finally {
      this.deciding = false;
      const pending = this.pendingTrigger;
      this.pendingTrigger = undefined;
      if (pending && !acted) void this.considerTakeover(pending);
      else if (!acted) this.catchUpPeerState();
    }
  }

  /**
   * onPeerState() leaves the state alone while a decision is in progress, and the decision, when it
   * did not act, set the state from what it saw when it began (peer-agent-lost for a peer that was
   * down). A change of the detector's verdict in between (the peer came back while the probe ran)
   * would stay hidden until the next change: take it now, as onPeerState would have.
   */
  private catchUpPeerState(): void {
    if (this.deciding || !WATCHING.has(this.current) || this.current === 'arbitrating') return;
    if (this.current === 'peer-agent-lost' && this.peer.state === 'down') return;
    if (PEER_TO_AGENT[this.peer.state] === this.current) return;
    this.followPeerVerdict(this.peer.state, `peer ${this.peer.state} (its detector changed while a decision was in progress)`);
  }

  /** Probe again after reprobeIntervalMs, or sooner when the rule says when its answer changes. */
  private scheduleReprobe(recheckInMs?: number): void {
    this.clock.clearTimeout(this.reprobeTimer);
    this.reprobeTimer = this.clock.setTimeout(() => {
      if (this.current === 'peer-agent-lost' && this.peer.state === 'down') void this.considerTakeover('peer-down');
    }, Math.min(this.cfg.failover.reprobeIntervalMs, recheckInMs ?? Infinity));
  }

  /** After the gate said "not now": ask again while the reason to take over lasts. */
  private scheduleRetry(trigger: TakeoverTrigger): void {
    this.clock.clearTimeout(this.reprobeTimer);
    this.reprobeTimer = this.clock.setTimeout(() => {
      if (this.current !== 'arbitrating') return;
      const peerStillUp = this.peer.state === 'up' && this.peerSummary?.qemuReachable !== false;
      if (peerStillUp && trigger !== 'manual') {
        this.setState('peer-up', 'the peer is back: no takeover wanted any more');
        return;
      }
      void this.considerTakeover(trigger);
    }, this.cfg.failover.reprobeIntervalMs);
  }

  /** Another node holds a newer epoch (or we learnt so at start): passive from now on. */
  private becomeStale(from: string): void {
    const e = this.epochs!;
    if (this.current === 'stale' || this.current === 'stopping' || this.current === 'stopped') return;
    this.clock.clearTimeout(this.reprobeTimer);
    // Routine after every takeover by the peer (this node comes back as its secondary): a warning,
    // not an error. The error, and the guest-stop metric, are for a guest that was really running.
    this.log.warn(
      { epoch: e.epoch, newestSeen: e.newestSeen, from },
      'stale epoch: another node was granted the guest; staying passive (no failover, no resume as primary)',
    );
    this.setState('stale', `epoch ${e.newestSeen} (from ${from}) is newer than ours (${e.epoch})`);
    // The guest is the other node's now: its time unprotected is counted there, not here.
    this.setUnprotected(undefined);
    // Our guest running as primary beside the holder of the newer epoch is the split brain itself.
    // (Asked as if not stale: the role our QEMU had before the newer epoch was seen.)
    const before = currentRole({ installedAs: this.installedAs, coloMode: this.colo.status.mode, stale: false, recordedRole: this.recordedRole });
    const mode = this.colo.status.mode;
    if (mode === 'primary' || (mode === 'none' && before.role === 'primary')) void this.stopGuest('stale');
    this.maybeLaunch('our epoch is stale: this host comes back as the new secondary');
  }

  /** What the launcher asks before it launches or restarts a QEMU (launch-controller.ts). */
  private launchFacts(): LaunchFacts {
    const busy =
      this.journal?.unfinished() !== undefined
        ? 'a sequence is unfinished in the journal'
        : this.current === 'failing-over' || this.current === 'resuming' || this.current === 'failed' || this.current === 'stopping' || this.current === 'stopped'
          ? `the agent is ${this.current}`
          : this.deciding
            ? 'a takeover decision is in progress'
            : undefined;
    return { role: this.topology().self.role, stale: this.epochs?.stale ?? false, ...(busy !== undefined && { busy }) };
  }

  /** At start: adopt the QEMU an earlier run launched, else launch one if this node is to be secondary. */
  private async startLauncher(): Promise<void> {
    const l = this.launcher!;
    await l.adopt();
    if (l.status().running) return;
    await l.ensure('agent start');
  }

  /**
   * Our QEMU is gone, or this node just became stale: launch a fresh secondary, unless a QEMU
   * answers, or the supervisor had one of ours whose exit its restart policy did not want
   * restarted (a restart it wanted but could not make then, deferred, is made now).
   */
  private maybeLaunch(why: string): void {
    const l = this.launcher;
    if (!l || this.current === 'stopping' || this.current === 'stopped') return;
    if (this.qmp.status === 'ready' || this.qmp.status === 'unhealthy') return;
    const s = l.status();
    if (s.running || s.gaveUp || s.restartPending || (s.lastExit && !s.restartDeferred)) return;
    void l.ensure(why);
  }

  private async observeEpoch(epoch: number, from: string): Promise<void> {
    const e = this.epochs;
    if (!e || epoch <= e.newestSeen) return;
    try {
      const r = await e.observe(epoch, from);
      if (r.changed) this.emit('epoch', e.snapshot());
      if (r.stale && this.current !== 'failing-over') this.becomeStale(from);
    } catch (err) {
      this.log.error({ err, epoch, from }, 'cannot record a newer epoch');
    }
  }

  /** QMP stop: the guest pauses (its state kept), so it never runs beside the other node's. */
  private async stopGuest(reason: GuestStopReason): Promise<void> {
    if (this.guestStoppedBy) return;
    this.guestStoppedBy = reason;
    try {
      if (reason === 'stale') {
        // A stale node's QEMU is often a fresh secondary (inmigrate) or already paused: no guest to stop.
        const st = await this.qmp.execute<{ status: string }>('query-status', undefined, { timeoutMs: this.cfg.failover.stepTimeoutMs });
        if (st.status !== 'running') {
          this.guestStoppedBy = undefined;
          this.log.info({ status: st.status }, 'stale epoch: our QEMU runs no guest, nothing to pause');
          return;
        }
      }
      await this.stopAndSeeStop();
      this.log.error({ reason }, reason === 'lease' ? 'guest STOPPED: cut off from the peer and the arbiter, and our lease ran out' : 'guest STOPPED: our epoch is stale');
      this.emit('guest-stop', { reason, ok: true });
    } catch (err) {
      this.log.error({ err, reason }, 'could not stop the guest');
      this.emit('guest-stop', { reason, ok: false, error: (err as Error).message });
    }
  }

  /**
   * QMP stop, done as soon as QEMU says the VM stopped (its STOP event) or replies. A primary cut
   * off from its peer answers late: QEMU 7.2 emitted STOP 9 ms after the command and replied 27 s
   * later, once the link healed (recorded by the alert series' isolated-primary run), so waiting for
   * the reply alone reported a paused guest as a failed stop.
   */
  private async stopAndSeeStop(): Promise<void> {
    let onEvent: ((e: QmpEvent) => void) | undefined;
    const stopEvent = new Promise<void>((resolve) => {
      onEvent = (e) => e.event === 'STOP' && resolve();
      this.qmp.on('event', onEvent);
    });
    try {
      await Promise.race([this.qmp.execute('stop', undefined, { timeoutMs: this.cfg.failover.stepTimeoutMs }), stopEvent]);
    } finally {
      this.qmp.off('event', onEvent!);
    }
  }

  private async resumeGuest(why: string): Promise<void> {
    const was = this.guestStoppedBy;
    if (!was) return;
    this.guestStoppedBy = undefined;
    try {
      await this.qmp.execute('cont', undefined, { timeoutMs: this.cfg.failover.stepTimeoutMs });
      this.log.warn({ was, why }, 'guest resumed (cont)');
    } catch (err) {
      this.guestStoppedBy = was;
      this.log.error({ err, was, why }, 'could not resume the guest');
    }
  }

  /**
   * Runs every heartbeat interval: the lease guard (a primary that lost its peer and whose lease
   * ran out pauses its guest before the arbiter can give it to the peer) and the self-fence check.
   */
  private scheduleGuard(): void {
    this.guardTimer = this.clock.setTimeout(() => {
      this.guard();
      if (this.current !== 'stopping' && this.current !== 'stopped') this.scheduleGuard();
    }, Math.min(this.cfg.heartbeat.intervalMs, 100));
  }

  private guard(): void {
    const now = this.clock.now();
    void this.maybeResume();
    void this.checkFreshSecondary();
    this.refreshBlockGraph(now);
    // A launch refused while a decision was in flight is tried again once it is over.
    if (this.launcher && this.current === 'stale' && now - this.lastLaunchCheck >= 5000) {
      this.lastLaunchCheck = now;
      this.maybeLaunch('our epoch is stale: this host comes back as the new secondary');
    }
    if (this.qmp.status === 'unhealthy') this.unhealthySince ??= now;
    else this.unhealthySince = undefined;

    const peerLost = this.peer.state === 'suspect' || this.peer.state === 'down';
    if (
      this.arbiter.mode !== 'none' &&
      this.cfg.arbiter.onLeaseLoss === 'stop' &&
      !this.guestStoppedBy &&
      WATCHING.has(this.current) &&
      this.colo.status.mode === 'primary' &&
      peerLost &&
      // Never granted a lease counts as run out: a primary the witness never heard of has none.
      (this.arbiter.leaseRemainingMs() ?? 0) === 0
    ) {
      void this.stopGuest('lease');
    }

    if (this.cfg.failover.selfFence && !this.selfFenced && this.peer.state === 'up' && this.peerSummary?.qemuReachable) {
      const v = hungQemuVerdict({
        qmpStatus: this.qmp.status,
        ...(this.unhealthySince !== undefined && { unhealthyForMs: now - this.unhealthySince }),
        ...(this.stalledSince !== undefined && { checkpointStalledForMs: now - this.stalledSince }),
        hungAfterMs: this.cfg.failover.selfFenceAfterMs,
      });
      if (v.hung) {
        this.selfFenced = true;
        this.log.error({ reason: v.reason, pidFile: this.cfg.qemu.pidFile }, 'our QEMU is hung: killing it so that the peer takes over');
        void selfFenceQemu({ pidFile: this.cfg.qemu.pidFile, graceMs: 2000, clock: this.clock, logger: this.deps.logger }).then((r) => {
          this.log.error({ ...r }, r.killed ? 'self-fenced: our QEMU is killed' : 'self-fence did not kill our QEMU');
          this.emit('self-fence', { killed: r.killed, reason: v.reason });
          if (!r.killed) this.selfFenced = false;
        });
      }
    }
  }

  /**
   * A COLO primary keeps a recent block graph: on QEMU 7.2 a `stop` during a partition can leave
   * the main loop stuck on the dead secondary's NBD socket, and the failover's yank then cannot
   * ask for the graph that names the NBD node it must yank to unstick it.
   */
  private refreshBlockGraph(now: number): void {
    if (this.blockGraphFetching || this.colo.status.mode !== 'primary' || this.qmp.status !== 'ready') return;
    if (now - this.blockGraphAt < BLOCK_GRAPH_REFRESH_MS) return;
    this.blockGraphFetching = true;
    this.blockGraphAt = now;
    const generation = this.blockGraphGeneration;
    this.qmp
      .execute('x-debug-query-block-graph', undefined, { timeoutMs: this.cfg.failover.stepTimeoutMs })
      .then((g) => {
        if (generation === this.blockGraphGeneration && this.colo.status.mode === 'primary') this.blockGraph = g;
      })
      .catch((err: unknown) => this.rateLimitedInfo('block-graph', { err: (err as Error).message }, 'x-debug-query-block-graph failed: a failover yank may not name the NBD node'))
      .finally(() => (this.blockGraphFetching = false));
  }

  private async execute(sequence: 'primary-failover' | 'secondary-failover', trigger: TakeoverTrigger | 'journal', reason: string): Promise<void> {
    const journal = this.journal;
    if (!journal) throw new Error('execute() before start()');
    this.setState('failing-over', `${sequence}: ${reason}`);
    const executor = new FailoverExecutor({
      qmp: this.qmp,
      journal,
      colo: this.cfg.colo,
      profile: this.cfg.qemu.profile,
      stepTimeoutMs: this.cfg.failover.stepTimeoutMs,
      clock: this.clock,
      logger: this.deps.logger,
      cachedBlockGraph: () => this.blockGraph,
    });
    try {
      const outcome = await executor.run({ sequence, reason: `${trigger}: ${reason}` });
      void this.colo.poll(); // the mode changed; status and metrics should not wait for the next period
      const r = outcome.result;
      this.lastFailover = {
        sequence: r.sequence,
        trigger,
        ok: outcome.ok,
        durationMs: Number(r.durationMs.toFixed(3)),
        ...(r.error && { error: r.error.message }),
      };
      this.protection = { ...this.protection, lastFailover: { ...this.lastFailover, at: new Date().toISOString() } };
      this.persistProtection();
      this.emit('failover', outcome);
      const steps = r.steps.map((s) => ({ step: s.name, outcome: s.outcome, ms: Number(s.durationMs.toFixed(3)) }));
      if (outcome.ok) {
        this.recordedRole = 'primary'; // the journal recorded it with the finished decision
        // Paused while we waited for the grant: ours to run now.
        if (this.guestStoppedBy === 'lease') await this.resumeGuest(`${r.sequence} done under a new epoch`);
        this.setUnprotected(this.clock.now());
        this.peerReady = undefined;
        this.resumeBackoff.reset();
        this.nextResumeAt = 0;
        this.log.warn({ sequence: r.sequence, durationMs: this.lastFailover.durationMs, steps }, 'failover done: running solo as primary');
        this.setState('solo', `${r.sequence} done (${trigger})`);
      } else {
        this.log.error({ sequence: r.sequence, err: r.error, steps, running: outcome.running }, 'failover FAILED');
        this.setState('failed', `${r.sequence} failed: ${r.error?.message ?? 'the VM did not run again'}`);
      }
    } catch (err) {
      // The journal could not be read or written: acting without it could repeat a failover.
      this.log.error({ err }, 'failover aborted: journal error');
      this.setState('failed', `journal error: ${(err as Error).message}`);
    }
  }

  // ---- continuous replication (failback) ----

  private resumeExecutor(): ResumeExecutor {
    const cfg = this.cfg;
    return new ResumeExecutor({
      qmp: this.qmp,
      journal: this.journal!,
      colo: cfg.colo,
      profile: cfg.qemu.profile,
      stepTimeoutMs: cfg.failover.stepTimeoutMs,
      netdev: cfg.colo.netdev,
      timeouts: { resyncMs: cfg.failover.resyncTimeoutMs },
      clock: this.clock,
      logger: this.deps.logger,
      onProgress: (p) => {
        this.resyncProgress = p;
        this.emit('resync-progress', p);
      },
    });
  }

  /**
   * The primary side of the handshake: resume into the peer's fresh secondary when everything
   * says it is safe and wanted. Called on each announcement and from the guard timer.
   */
  private async maybeResume(): Promise<void> {
    if (this.current !== 'solo' || this.deciding || !this.epochs || this.epochs.stale) return;
    const ready = this.peerReady;
    const now = this.clock.now();
    // The announcement repeats every interval; an old one means the secondary went away.
    if (!ready || now - ready.at > Math.max(3000, 10 * this.cfg.heartbeat.intervalMs)) return;
    if (ready.epoch !== this.epochs.epoch) {
      this.rateLimitedInfo('resume-epoch', { peerEpoch: ready.epoch, epoch: this.epochs.epoch }, "no resume: the peer's secondary is not at our epoch");
      return;
    }
    const requested = resumeRequested(this.cfg.node.stateDir);
    if (!this.cfg.failover.autoResume && !requested) {
      this.rateLimitedInfo('resume-manual', {}, "the peer's secondary is ready: run `colo-agent resume` (failover.autoResume is false)");
      return;
    }
    if (!requested && now < this.nextResumeAt) return;
    if (this.qmp.status !== 'ready' || this.colo.status.mode !== 'none') return;
    if (requested) await clearResumeRequest(this.cfg.node.stateDir).catch(() => undefined);
    await this.resume(requested ? 'requested by the operator' : 'the peer announced a ready secondary (failover.autoResume)');
  }

  private async resume(reason: string): Promise<void> {
    this.deciding = true;
    try {
      // A primary that was a secondary keeps its filter-rewriter: its proxy filters go before it.
      const objects = await this.qmp.execute<Array<{ name: string }>>('qom-list', { path: '/objects' }, { timeoutMs: this.cfg.failover.stepTimeoutMs });
      const sequence: ResumeSequenceName = objects.some((o) => o.name === this.cfg.colo.ids.rew0) ? 'secondary-resume' : 'primary-resume';
      this.resyncProgress = undefined;
      const target = resumeTargets(this.topology(), this.cfg.colo);
      this.setState('resuming', `${sequence} to ${target.peerHost}: ${reason}`);
      const outcome = await this.resumeExecutor().run({ sequence, reason, ...target, epoch: this.epochs!.epoch });
      this.onResumeOutcome(outcome);
    } catch (err) {
      this.log.error({ err }, 'resume aborted');
      if (this.current === 'resuming') this.setState('failed', `resume aborted: ${(err as Error).message}`);
    } finally {
      this.deciding = false;
    }
  }

  private onResumeOutcome(o: ResumeOutcome): void {
    this.lastResume = {
      sequence: o.sequence,
      ok: o.ok,
      rolledBack: o.rolledBack,
      ...(o.pauseMs !== undefined && { pauseMs: Math.round(o.pauseMs * 1000) / 1000 }),
      ...(o.resyncMs !== undefined && { resyncMs: Math.round(o.resyncMs) }),
      ...(o.bytes !== undefined && { bytes: o.bytes }),
      ...(o.error && { error: o.error.message }),
    };
    this.emit('resume', o);
    void this.colo.poll();
    if (o.ok) {
      const unprotectedMs = this.unprotectedSince === undefined ? 0 : this.clock.now() - this.unprotectedSince;
      this.setUnprotected(undefined);
      this.peerReady = undefined;
      this.resumeBackoff.reset();
      this.nextResumeAt = 0;
      this.log.warn({ ...this.lastResume, unprotectedMs: Math.round(unprotectedMs) }, 'replication resumed: the guest is protected again');
      this.emit('protected', { unprotectedMs });
      this.setState(PEER_TO_AGENT[this.peer.state], `${o.sequence} done: protected again`);
    } else if (o.rolledBack) {
      const wait = this.resumeBackoff.next();
      this.nextResumeAt = this.clock.now() + wait;
      this.peerReady = undefined;
      this.log.error({ ...this.lastResume, retryInMs: wait }, 'resume FAILED and was rolled back: running solo as before');
      this.setState('solo', `${o.sequence} rolled back (${o.error?.message ?? 'failed'}); next attempt in ${wait} ms`);
    } else {
      this.log.error({ ...this.lastResume, rollbackError: o.rollbackError?.message }, 'resume FAILED and its rollback failed: an operator must look');
      this.setState('failed', `${o.sequence} failed and could not be rolled back: ${o.rollbackError?.message ?? o.error?.message ?? '?'}`);
    }
  }

  /**
   * The secondary side: our QEMU waits for an incoming migration (a fresh secondary started on a
   * recovered host). Prepare it (NBD export, x-colo), take the peer's epoch (safe: no guest runs
   * here yet; it also ends staleness), and announce it until the primary resumes into it.
   */
  private async checkFreshSecondary(): Promise<void> {
    const now = this.clock.now();
    if (this.preparing || now - this.lastPrepareCheck < 1000) return;
    // solo too: a node whose journal says it last ran solo, now with a fresh secondary QEMU (query-status tells).
    const eligible = WATCHING.has(this.current) || this.current === 'stale' || this.current === 'solo';
    if (!eligible || this.qmp.status !== 'ready' || this.colo.status.mode !== 'none' || !this.epochs) return;
    if (this.peer.state !== 'up' || this.peerEpoch === undefined || this.peerSummary?.coloMode !== 'none') return;
    // Only a peer running solo resumes into a fresh secondary. During an operator's first bring-up
    // (both QEMUs fresh, the primary not yet in COLO) the documented sequence starts the NBD export
    // itself: preparing it here too would make that step fail with "NBD server already running".
    if (this.peerSummary.agentState !== 'solo') return;
    this.lastPrepareCheck = now;
    this.preparing = true;
    try {
      const st = await this.qmp.execute<{ status: string }>('query-status', undefined, { timeoutMs: this.cfg.failover.stepTimeoutMs });
      if (st.status !== 'inmigrate') return;
      const epochs = this.epochs;
      const peerEpoch = this.peerEpoch;
      if (epochs.stale || peerEpoch > epochs.epoch) {
        await epochs.clearStale({ adoptEpoch: Math.max(peerEpoch, epochs.newestSeen), reason: 'rejoined as a fresh secondary' });
        this.emit('epoch', epochs.snapshot());
      } else if (peerEpoch < epochs.epoch) {
        this.rateLimitedInfo('prepare-epoch', { peerEpoch, epoch: epochs.epoch }, 'not announcing a fresh secondary: the peer is at an older epoch than ours');
        return;
      }
      const nbd = ownNbdEndpoint(this.topology(), this.cfg.colo);
      const r = await runSecondaryPrepare({ qmp: this.qmp, colo: this.cfg.colo, profile: this.cfg.qemu.profile, ownHost: nbd.host, stepTimeoutMs: this.cfg.failover.stepTimeoutMs, clock: this.clock, logger: this.deps.logger });
      if (!r.ok) {
        this.log.error({ err: r.error }, 'preparing our fresh secondary failed; trying again');
        return;
      }
      if (this.recordedRole !== 'secondary') {
        await this.journal!.setRole('secondary', 'rejoined as a fresh secondary');
        this.recordedRole = 'secondary';
      }
      this.guestStoppedBy = undefined;
      this.setUnprotected(undefined);
      this.setState('ready-secondary', `our QEMU waits as a fresh secondary (NBD ${nbd.host}:${nbd.port}); told the primary`);
      this.announceReady();
    } catch (err) {
      this.log.warn({ err }, 'fresh secondary check failed');
    } finally {
      this.preparing = false;
    }
  }

  private announceReady(): void {
    this.clock.clearTimeout(this.announceTimer);
    if (this.current !== 'ready-secondary') return;
    const v = this.qmp.version;
    const nbd = ownNbdEndpoint(this.topology(), this.cfg.colo);
    this.links.send('ready-to-be-secondary', {
      nbd: `${nbd.host}:${nbd.port}`,
      qemu: v ? `${v.major}.${v.minor}.${v.micro}` : '0.0.0',
    });
    this.announceTimer = this.clock.setTimeout(() => this.announceReady(), Math.max(100, this.cfg.heartbeat.intervalMs * 5));
  }

  /** The one place unprotectedSince changes: persisted (protection.json) so a restart keeps counting. */
  private setUnprotected(since: number | undefined): void {
    this.unprotectedSince = since;
    const { unprotectedSince: _old, ...rest } = this.protection;
    this.protection = since === undefined ? rest : { ...rest, unprotectedSince: new Date(Date.now() - (this.clock.now() - since)).toISOString() };
    this.persistProtection();
  }

  /** Writes protection.json, one write at a time, each with the state as it is when its turn comes (so the last write is the newest state). */
  private persistProtection(): void {
    this.protectionWrite = this.protectionWrite
      .then(() => writeProtectionState(this.cfg.node.stateDir, this.protection))
      .catch((err: unknown) => this.log.warn({ err }, 'cannot write protection.json: unprotected time and last failover would start over after a restart'));
  }

  private readonly infoLogged = new Map<string, number>();

  /** One info line per key per minute: conditions re-checked every tick must not flood the log. */
  private rateLimitedInfo(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.clock.now();
    if ((this.infoLogged.get(key) ?? -Infinity) + 60_000 > now) return;
    this.infoLogged.set(key, now);
    this.log.info(fields, msg);
  }

  private scheduleRttLog(): void {
    this.rttTimer = this.clock.setTimeout(() => {
      for (const [link, list] of this.rtts) {
        if (list.length === 0) continue;
        const sorted = [...list].sort((a, b) => a - b);
        const pick = (q: number) => Number((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(3));
        this.log.info({ link, samples: list.length, p50Ms: pick(0.5), p99Ms: pick(0.99), maxMs: pick(1) }, 'link RTT');
        list.length = 0;
      }
      this.scheduleRttLog();
    }, RTT_LOG_PERIOD_MS);
  }

  /**
   * The one place the running config changes after construction; logs the reload. `requested` is
   * the config as loaded (its restart-only values are logged, not kept).
   */
  private setConfig(next: AgentConfig, requested: AgentConfig, changed: string[], r: ReloadResult): void {
    const before = this.cfg;
    this.cfg = next;
    const changes = Object.fromEntries(changed.map((k) => [k, { from: configValue(before, k), to: configValue(requested, k) }]));

    // Log the reload at whichever of the old and new levels shows more, so that turning the
    // level down (or up from warn) still leaves a record of the reload that did it.
    const root = this.deps.logger;
    const levelChanged = r.applied.includes('log.level');
    const louder = levelChanged && (root.levels.values[next.log.level] ?? Infinity) < root.levelVal;
    if (louder) root.level = next.log.level;
    const fields = { applied: r.applied, needsRestart: r.needsRestart, changes };
    if (r.needsRestart.length > 0) this.log.warn(fields, 'config reloaded (some changes need a restart)');
    else this.log.info(fields, changed.length > 0 ? 'config reloaded' : 'config reloaded: nothing changed');
    if (levelChanged && !louder) root.level = next.log.level;

    if (next.heartbeat.intervalMs !== before.heartbeat.intervalMs) {
      // Our frames announce the interval (HealthSummary.intervalMs) and the peer's detector follows
      // it, so either side may change it first. A peer of an older version would not: say so.
      this.log.info(
        { fromMs: before.heartbeat.intervalMs, toMs: next.heartbeat.intervalMs, peerAnnounces: this.peerIntervalMs !== undefined },
        'heartbeat interval changed: announced to the peer in our next frame, its detector follows',
      );
    }
    if (!before.failover.enabled && next.failover.enabled && this.current === 'peer-down') {
      // A reload is not a failure signal: enabling failover does not act on a silence seen before.
      this.log.warn({ state: this.current }, 'failover enabled while the peer is down: the reload starts no takeover (`colo-agent failover` does)');
    }
  }

  /** The one place the agent's state changes. */
  private setState(next: AgentState, reason: string): void {
    const from = this.current;
    if (from === next) return;
    this.current = next;
    const change: AgentStateChange = { from, to: next, reason, at: this.clock.now() };
    this.log.info({ from, to: next, reason }, `agent state ${from} -> ${next}`);
    this.emit('state', change);
  }
}
