/**
 * The agent: the state machine that ties config, heartbeat links, failure detectors and the QMP
 * client together. Data flows one way: config -> components -> this state machine -> actions
 * (QMP) and observations (logs, later metrics).
 *
 * Every state change goes through setState(), which logs the transition (as ioredis does with
 * its connection status): an operator reading the log sees every step the agent took and why.
 */
import { EventEmitter } from 'node:events';
import { ColoStatusPoller, type ColoStatus } from './colo/status-poller.js';
import type { AgentConfig } from './config/index.js';
import { FailureDetector, type DetectorState, type StateChange } from './heartbeat/detector.js';
import { HeartbeatLinks, type HeartbeatEvent } from './heartbeat/links.js';
import type { Logger } from './log.js';
import { QmpClient } from './qmp/index.js';
import { systemClock, type Clock, type TimerHandle } from './util/clock.js';

/**
 * - starting: components are coming up;
 * - waiting-for-peer: no valid heartbeat yet since start;
 * - peer-up / peer-suspect / peer-down: the peer-wide failure detector's verdict;
 * - stopping / stopped: shutdown (a planned stop tells the peer with GOODBYE).
 */
export type AgentState = 'starting' | 'waiting-for-peer' | 'peer-up' | 'peer-suspect' | 'peer-down' | 'stopping' | 'stopped';

export interface AgentStateChange {
  from: AgentState;
  to: AgentState;
  reason: string;
  at: number;
}

export interface AgentDeps {
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

export interface AgentStatus {
  node: string;
  role: string;
  state: AgentState;
  peer: { name?: string; session?: string; state: DetectorState; silentForMs?: number };
  links: LinkStatus[];
  qemu: { qmp: string; version?: string; colo: ColoStatus };
}

/** How often the agent logs a summary of link RTTs: often enough to watch, rare enough to read. */
const RTT_LOG_PERIOD_MS = 10_000;
const COLO_POLL_MS = 1000;

const PEER_TO_AGENT: Record<DetectorState, AgentState> = {
  unknown: 'waiting-for-peer',
  up: 'peer-up',
  suspect: 'peer-suspect',
  down: 'peer-down',
};

export class Agent extends EventEmitter<{ state: [AgentStateChange] }> {
  readonly links: HeartbeatLinks;
  readonly peer: FailureDetector;
  readonly qmp: QmpClient;
  readonly colo: ColoStatusPoller;

  private current: AgentState = 'starting';
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly linkDetectors = new Map<string, FailureDetector>();
  /** RTT samples since the last RTT log line, per link. */
  private readonly rtts = new Map<string, number[]>();
  private readonly lastRtt = new Map<string, number>();
  private peerName: string | undefined;
  private peerSession: string | undefined;
  /** Newest peer send time fed to the peer detector, so one round seen on several links counts once. */
  private lastFedSentAt = -Infinity;
  private rttTimer: TimerHandle | undefined;

  constructor(
    private readonly cfg: AgentConfig,
    deps: AgentDeps,
  ) {
    super();
    this.log = deps.logger.child({ component: 'agent' });
    this.clock = deps.clock ?? systemClock;
    const hb = cfg.heartbeat;

    this.qmp = new QmpClient({
      address: cfg.qemu.qmp,
      connectTimeoutMs: cfg.qemu.connectTimeoutMs,
      commandTimeoutMs: cfg.qemu.commandTimeoutMs,
      reconnect: { initialMs: cfg.qemu.reconnectInitialMs, maxMs: cfg.qemu.reconnectMaxMs },
      clock: this.clock,
      logger: deps.logger,
    });
    this.colo = new ColoStatusPoller({ qmp: this.qmp, periodMs: COLO_POLL_MS, clock: this.clock, logger: deps.logger });

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
      summary: () => ({
        role: cfg.node.role,
        coloMode: this.colo.status.mode,
        qemuReachable: this.qmp.status === 'ready',
        agentState: this.current,
      }),
      clock: this.clock,
      logger: deps.logger,
    });
    this.wire();
  }

  get state(): AgentState {
    return this.current;
  }

  async start(): Promise<void> {
    await this.links.start();
    this.log.info(
      { listen: this.links.listenAddresses(), peers: this.cfg.heartbeat.peers, intervalMs: this.cfg.heartbeat.intervalMs },
      'heartbeat links started',
    );
    // QEMU may not be up yet (or ever, in a heartbeat-only run): connect in the background.
    this.qmp.connect().catch(() => undefined);
    this.colo.start();
    this.scheduleRttLog();
    this.setState(PEER_TO_AGENT[this.peer.state], 'started');
  }

  /** A planned stop: the peer is told (GOODBYE) so it does not mistake us for a failure. */
  async stop(reason = 'planned stop'): Promise<void> {
    if (this.current === 'stopping' || this.current === 'stopped') return;
    this.setState('stopping', reason);
    this.clock.clearTimeout(this.rttTimer);
    this.colo.stop();
    this.peer.stop();
    for (const d of this.linkDetectors.values()) d.stop();
    await Promise.allSettled([this.links.close({ goodbye: reason }), this.qmp.close()]);
    this.setState('stopped', reason);
  }

  status(): AgentStatus {
    const version = this.qmp.version;
    return {
      node: this.cfg.node.name,
      role: this.cfg.node.role,
      state: this.current,
      peer: {
        name: this.peerName,
        session: this.peerSession,
        state: this.peer.state,
        silentForMs: this.peer.lastBeatAt === undefined ? undefined : Math.round(this.peer.silentForMs()),
      },
      links: [...this.linkDetectors].map(([link, d]) => ({ link, state: d.state, rttMs: this.lastRtt.get(link) })),
      qemu: {
        qmp: this.cfg.qemu.qmp,
        version: version ? `${version.major}.${version.minor}.${version.micro}` : undefined,
        colo: this.colo.status,
      },
    };
  }

  private detectorTunables() {
    const hb = this.cfg.heartbeat;
    return {
      intervalMs: hb.intervalMs,
      missThreshold: hb.missThreshold,
      suspectMisses: hb.suspectMisses,
      recoverBeats: hb.recoverBeats,
      startupGraceMs: hb.startupGraceMs,
      phiThreshold: hb.phiThreshold,
    };
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
      // The peer's clock origin changed with its process: its send times start over.
      this.lastFedSentAt = -Infinity;
    });
    this.links.on('goodbye', (e) => this.log.info(e, 'peer said goodbye (planned stop)'));
    this.peer.on('state', (c) => this.onPeerState(c));
    this.qmp.on('status', (c) => {
      if (c.to === 'ready' || c.from === 'ready') this.log.info({ from: c.from, to: c.to, reason: c.reason }, 'QMP status');
    });
  }

  private onHeartbeat(e: HeartbeatEvent): void {
    this.linkDetector(e.link).beat(e.receivedAt);
    if (e.peerSession !== this.peerSession) return; // a stale session's last frames
    if (e.sentAt <= this.lastFedSentAt) return;
    this.lastFedSentAt = e.sentAt;
    this.peer.beat(e.receivedAt);
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
    if (this.current === 'stopping' || this.current === 'stopped' || this.current === 'starting') return;
    this.setState(PEER_TO_AGENT[c.to], `peer ${c.reason}`);
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
