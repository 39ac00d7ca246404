/**
 * The shape of colo-agent's effective configuration: what `loadConfig()` returns.
 *
 * This interface is written out by hand so it reads well; `schema.ts` is typed as `SchemaOf<AgentConfig>`,
 * so the compiler rejects a schema key that is missing here, extra here, or has a default of another type.
 * Components never import this: the agent maps it onto each component's own options.
 */
import type { LOG_LEVELS } from '../log.js';

/** `witness` is reserved for the arbitration issue: a third node that only votes, runs no QEMU. */
export const NODE_ROLES = ['primary', 'secondary', 'witness'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

/** `none` is unsafe against network partitions (both sides may take over); see the schema doc. */
export const ARBITER_MODES = ['none', 'witness', 'etcd'] as const;
export const FENCE_FAILURE_POLICIES = ['abort', 'wait'] as const;
export const LEASE_LOSS_POLICIES = ['stop', 'keep-running'] as const;
/** When a QEMU the agent launched (qemu.launch) is started again after it exits, as systemd's Restart=. */
export const QEMU_RESTART_POLICIES = ['no', 'on-failure', 'always'] as const;
export type QemuRestartPolicy = (typeof QEMU_RESTART_POLICIES)[number];
export type ArbiterMode = (typeof ARBITER_MODES)[number];

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface NodeConfig {
  /** Never empty here: an empty `node.name` in the sources is replaced by os.hostname() at load time. */
  name: string;
  role: NodeRole;
  stateDir: string;
}

export interface QemuConfig {
  /** "unix:PATH" or "tcp:HOST:PORT"; parse with `parseQmpAddress()`. */
  qmp: string;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  /** "auto" or "MAJOR.MINOR[.MICRO]". */
  profile: string;
  /** QEMU's -pidfile, for self-fencing; "" when unknown. */
  pidFile: string;
  launch: QemuLaunchConfig;
}

/**
 * The agent starting its own QEMU. It only ever launches a fresh secondary (`-incoming`): a primary is
 * brought up by the operator, and a recovered host comes back as secondary.
 */
export interface QemuLaunchConfig {
  /** false (default): attach to a QEMU someone else started. */
  enabled: boolean;
  /** argv of the secondary QEMU: the binary first, then its arguments; [] when not set. */
  secondaryCommand: string[];
  restart: QemuRestartPolicy;
  maxRestarts: number;
  restartWindowMs: number;
  restartDelayMs: number;
}

export interface HeartbeatConfig {
  /** "HOST:PORT"; parse with `parseHostPort()`. */
  listen: string;
  /** One "HOST:PORT" per network path to the peer. */
  peers: string[];
  /** Empty only when `insecure` is true. */
  keyFile: string;
  insecure: boolean;
  intervalMs: number;
  missThreshold: number;
  suspectMisses: number;
  recoverBeats: number;
  startupGraceMs: number;
  /** 0 = phi accrual off. */
  phiThreshold: number;
  maxFrameBytes: number;
  maxConnectionsPerSource: number;
  helloTimeoutMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

/**
 * QEMU object and chardev ids of the documented COLO proxy. Keys are the documented names, with
 * "compare0-0" spelled `compare0_0` (a key cannot hold "-" comfortably); values default to the documented names.
 */
export interface ColoIdsConfig {
  comp0: string;
  iothread1: string;
  m0: string;
  redire0: string;
  redire1: string;
  f1: string;
  f2: string;
  rew0: string;
  red0: string;
  red1: string;
  mirror0: string;
  compare1: string;
  compare0: string;
  compare0_0: string;
  compare_out: string;
  compare_out0: string;
}

export interface ColoConfig {
  primaryHost: string;
  secondaryHost: string;
  disk: string;
  replicationNode: string;
  quorumChild: string;
  nbdExport: string;
  nbdPort: number;
  migrationPort: number;
  mirrorPort: number;
  compare1Port: number;
  compare0Port: number;
  compareOutPort: number;
  /** The guest NIC's netdev id (documented: hn0). */
  netdev: string;
  checkpointDelayMs: number;
  statusPollMs: number;
  checkpointStallMs: number;
  ids: ColoIdsConfig;
}

export interface FailoverConfig {
  enabled: boolean;
  stepTimeoutMs: number;
  probeTimeoutMs: number;
  reprobeIntervalMs: number;
  unresponsivePeerMs: number;
  /** Shell command run against the peer before a takeover; "" for none. */
  fenceCommand: string;
  fenceTimeoutMs: number;
  onFenceFailure: (typeof FENCE_FAILURE_POLICIES)[number];
  fenceMaxWaitMs: number;
  autoResume: boolean;
  resyncTimeoutMs: number;
  resumeRetryInitialMs: number;
  resumeRetryMaxMs: number;
  selfFence: boolean;
  selfFenceAfterMs: number;
}

export interface EtcdArbiterConfig {
  endpoints: string[];
  prefix: string;
  leaseTtlSeconds: number;
}

export interface ArbiterConfig {
  mode: ArbiterMode;
  /** "HOST:PORT" of the witness's heartbeat listeners. */
  witness: string[];
  leaseMs: number;
  requestTimeoutMs: number;
  bothAskWindowMs: number;
  onLeaseLoss: (typeof LEASE_LOSS_POLICIES)[number];
  gateways: string[];
  gatewayTimeoutMs: number;
  etcd: EtcdArbiterConfig;
}

export interface MetricsConfig {
  /** "HOST:PORT", or "" when metrics are off. */
  listen: string;
}

export interface LogConfig {
  level: LogLevel;
}

export interface AgentConfig {
  node: NodeConfig;
  qemu: QemuConfig;
  heartbeat: HeartbeatConfig;
  colo: ColoConfig;
  failover: FailoverConfig;
  arbiter: ArbiterConfig;
  metrics: MetricsConfig;
  log: LogConfig;
}
