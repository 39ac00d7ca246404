/**
 * The one configuration schema of colo-agent, in convict's notation.
 *
 * Every key has `doc`, `format` (a name from formats.ts), `default` and `env`
 * (COLO_AGENT_<SECTION>_<KEY> in upper snake case); `min`/`max` bound the range formats and
 * `sensitive` hides a value in check-config output and in error messages.
 * The order of keys here is the order of the reference, of default.yaml and of reported problems.
 */
import type { FormatName } from './formats.js';
import type { AgentConfig } from './types.js';

export interface LeafSpec<T> {
  doc: string;
  format: FormatName;
  default: T;
  env: string;
  sensitive?: boolean;
  min?: number;
  max?: number;
}

type Leaf = string | number | boolean | readonly unknown[];

/** A schema with exactly the keys of T, each leaf's default of the leaf's type. */
export type SchemaOf<T> = { [K in keyof T]: T[K] extends Leaf ? LeafSpec<T[K]> : SchemaOf<T[K]> };

/** Shared bounds for durations in milliseconds. */
const MS = { min: 10, max: 600_000 } as const;
const PORT = { min: 1, max: 65535 } as const;

function coloId(name: string, key: string, what: string): LeafSpec<string> {
  return {
    doc: `QEMU id of ${what} (documented name "${name}").`,
    format: 'qemu-id',
    default: name,
    env: `COLO_AGENT_COLO_IDS_${key.toUpperCase()}`,
  };
}

export const configSchema: SchemaOf<AgentConfig> = {
  node: {
    name: {
      doc:
        'Name of this node in heartbeats, logs and metrics; must differ from the peer\'s. ' +
        'Empty means the host name (os.hostname()), filled in at load time.',
      format: 'node-name',
      default: '',
      env: 'COLO_AGENT_NODE_NAME',
    },
    role: {
      doc:
        'Role this node starts in: primary (runs the VM and the COLO proxy) or secondary (runs the replica). ' +
        'After a failover the surviving node is the primary whatever this says. ' +
        'witness is reserved for arbitration (a third node that only votes and runs no QEMU); it needs arbiter.mode witness.',
      format: 'node-role',
      default: 'primary',
      env: 'COLO_AGENT_NODE_ROLE',
    },
    stateDir: {
      doc: 'Directory for the agent\'s persistent state (for example the last known role). Two agents on one machine need two directories.',
      format: 'absolute-path',
      default: '/var/lib/colo-agent',
      env: 'COLO_AGENT_NODE_STATE_DIR',
    },
  },
  qemu: {
    qmp: {
      doc:
        'QMP socket of the local QEMU: unix:PATH (QEMU -qmp unix:PATH,server=on,wait=off) or tcp:HOST:PORT. ' +
        'A QMP socket serves one client at a time, so give the agent its own -qmp socket.',
      format: 'qmp-address',
      default: 'unix:/run/colo-agent/qmp.sock',
      env: 'COLO_AGENT_QEMU_QMP',
    },
    commandTimeoutMs: {
      doc: 'A QMP command without a reply after this long counts as failed (and as evidence that QEMU is stuck).',
      format: 'int-range',
      default: 3000,
      env: 'COLO_AGENT_QEMU_COMMAND_TIMEOUT_MS',
      min: 100,
      max: MS.max,
    },
    connectTimeoutMs: {
      doc: 'Give up one attempt to connect to QMP (and receive its greeting) after this long.',
      format: 'int-range',
      default: 2000,
      env: 'COLO_AGENT_QEMU_CONNECT_TIMEOUT_MS',
      min: 100,
      max: MS.max,
    },
    reconnectInitialMs: {
      doc: 'First delay before reconnecting to QMP; it doubles (with jitter) up to qemu.reconnectMaxMs. Must not exceed it.',
      format: 'int-range',
      default: 100,
      env: 'COLO_AGENT_QEMU_RECONNECT_INITIAL_MS',
      ...MS,
    },
    reconnectMaxMs: {
      doc: 'Longest delay between QMP reconnect attempts.',
      format: 'int-range',
      default: 5000,
      env: 'COLO_AGENT_QEMU_RECONNECT_MAX_MS',
      ...MS,
    },
    profile: {
      doc:
        'Which QEMU version\'s documented command differences to use (object-add flat properties since 6.0, ' +
        'x-colo on the secondary since 8.1, reconnect-ms since 9.2, ...): auto reads the version from the QMP greeting; ' +
        'an explicit version such as "7.2", "8.1", "9.2" or "10.0.7" overrides it. Quote it in YAML.',
      format: 'qemu-profile',
      default: 'auto',
      env: 'COLO_AGENT_QEMU_PROFILE',
    },
    pidFile: {
      doc:
        "QEMU's -pidfile. Needed only for failover.selfFence: the agent kills its own hung QEMU by this pid " +
        '(after checking that the process is a QEMU, so a stale file never kills anything else).',
      format: 'optional-absolute-path',
      default: '',
      env: 'COLO_AGENT_QEMU_PID_FILE',
    },
    launch: {
      enabled: {
        doc:
          'Let the agent start its own QEMU, always as a fresh secondary (qemu.launch.secondaryCommand, which waits with -incoming ' +
          'until the primary replicates into it); it never starts a primary. false: attach to a QEMU someone else started. ' +
          'The launched QEMU runs in its own session, so it outlives the agent (a crash or a planned stop of the agent never ' +
          'stops the guest); its pid is kept in node.stateDir (qemu-launch.json) so a restarted agent adopts it instead of ' +
          'launching a second one, and its output goes to qemu.log there. Under systemd, keep it out of the agent\'s cgroup ' +
          '(start the command with systemd-run --scope, or KillMode=process) or stopping the agent kills it.',
        format: 'flag',
        default: false,
        env: 'COLO_AGENT_QEMU_LAUNCH_ENABLED',
      },
      secondaryCommand: {
        doc:
          'The secondary QEMU\'s command line as a list: the binary first (a path, or a name looked up on PATH), then one ' +
          'entry per argument, no shell. It must contain -incoming (a fresh secondary that waits for the primary) and ' +
          'must not contain -daemonize (the agent watches the process it started). Give the agent a -qmp socket of its own ' +
          '(qemu.qmp) and do not use stdio for a monitor or serial port (stdin is /dev/null). Required when qemu.launch.enabled is true.',
        format: 'argv-list',
        default: [],
        env: 'COLO_AGENT_QEMU_LAUNCH_SECONDARY_COMMAND',
      },
      restart: {
        doc:
          'When a launched QEMU exits: no (report it only), on-failure (launch it again after a non-zero exit, a signal, ' +
          'or an exit the agent could not see the status of because it launched that QEMU in an earlier run) or always. ' +
          'It comes back as a fresh secondary, whatever it was when it exited.',
        format: 'qemu-restart-policy',
        default: 'on-failure',
        env: 'COLO_AGENT_QEMU_LAUNCH_RESTART',
      },
      maxRestarts: {
        doc:
          'A launched QEMU is started again at most this many times within qemu.launch.restartWindowMs; when it exits once ' +
          'more, the agent gives up (logged as an error) until the agent itself is restarted.',
        format: 'int-range',
        default: 5,
        env: 'COLO_AGENT_QEMU_LAUNCH_MAX_RESTARTS',
        min: 1,
        max: 1000,
      },
      restartWindowMs: {
        doc: 'The sliding window in which qemu.launch.maxRestarts counts restarts.',
        format: 'int-range',
        default: 600_000,
        env: 'COLO_AGENT_QEMU_LAUNCH_RESTART_WINDOW_MS',
        min: 1000,
        max: 86_400_000,
      },
      restartDelayMs: {
        doc: 'Wait this long after a launched QEMU exited before launching it again (its sockets and ports are freed meanwhile).',
        format: 'int-range',
        default: 2000,
        env: 'COLO_AGENT_QEMU_LAUNCH_RESTART_DELAY_MS',
        min: 0,
        max: MS.max,
      },
    },
  },
  heartbeat: {
    listen: {
      doc: 'Address the heartbeat server listens on for the peer\'s links.',
      format: 'host-port',
      default: '0.0.0.0:7410',
      env: 'COLO_AGENT_HEARTBEAT_LISTEN',
    },
    peers: {
      doc:
        'The peer\'s heartbeat addresses, one per independent network path; the peer is down only when every path is silent. ' +
        'Required (at least one) for primary and secondary.',
      format: 'host-port-list',
      default: [],
      env: 'COLO_AGENT_HEARTBEAT_PEERS',
    },
    keyFile: {
      doc:
        'File holding the shared secret that authenticates heartbeats (same file on both nodes, readable only by the agent). ' +
        'Empty is allowed only with heartbeat.insecure.',
      format: 'optional-absolute-path',
      default: '/etc/colo-agent/heartbeat.key',
      env: 'COLO_AGENT_HEARTBEAT_KEY_FILE',
      sensitive: true,
    },
    insecure: {
      doc:
        'Allow running without a key file: heartbeats are then not authenticated, so anyone who reaches heartbeat.listen ' +
        'can fake a live peer and so prevent a failover. For tests only; the agent warns loudly when it is on.',
      format: 'flag',
      default: false,
      env: 'COLO_AGENT_HEARTBEAT_INSECURE',
    },
    intervalMs: {
      doc: 'Time between heartbeats sent on each link.',
      format: 'int-range',
      default: 100,
      env: 'COLO_AGENT_HEARTBEAT_INTERVAL_MS',
      min: 10,
      max: 60_000,
    },
    missThreshold: {
      doc: 'The peer is declared down after intervalMs * missThreshold of silence on every link.',
      format: 'int-range',
      default: 3,
      env: 'COLO_AGENT_HEARTBEAT_MISS_THRESHOLD',
      min: 2,
      max: 1000,
    },
    suspectMisses: {
      doc: 'The peer is suspect after intervalMs * suspectMisses of silence; must be less than missThreshold.',
      format: 'int-range',
      default: 2,
      env: 'COLO_AGENT_HEARTBEAT_SUSPECT_MISSES',
      min: 1,
      max: 999,
    },
    recoverBeats: {
      doc: 'Consecutive good heartbeats needed before a peer that was down counts as up again (hysteresis against flapping).',
      format: 'int-range',
      default: 3,
      env: 'COLO_AGENT_HEARTBEAT_RECOVER_BEATS',
      min: 1,
      max: 1000,
    },
    startupGraceMs: {
      doc: 'After start, silence is not held against the peer for this long, so both agents can come up.',
      format: 'int-range',
      default: 3000,
      env: 'COLO_AGENT_HEARTBEAT_STARTUP_GRACE_MS',
      min: 0,
      max: MS.max,
    },
    phiThreshold: {
      doc:
        '0 turns the phi accrual detector off (fixed thresholds only). Otherwise the peer is also declared down when ' +
        'phi (Hayashibara 2004) exceeds this value; 8 is a common choice.',
      format: 'number-range',
      default: 0,
      env: 'COLO_AGENT_HEARTBEAT_PHI_THRESHOLD',
      min: 0,
      max: 100,
    },
    maxFrameBytes: {
      doc: 'Largest heartbeat frame accepted; a longer frame closes the connection.',
      format: 'int-range',
      default: 4096,
      env: 'COLO_AGENT_HEARTBEAT_MAX_FRAME_BYTES',
      min: 256,
      max: 1_048_576,
    },
    maxConnectionsPerSource: {
      doc: 'Most simultaneous heartbeat connections accepted from one source address; more are refused.',
      format: 'int-range',
      default: 4,
      env: 'COLO_AGENT_HEARTBEAT_MAX_CONNECTIONS_PER_SOURCE',
      min: 1,
      max: 1024,
    },
    helloTimeoutMs: {
      doc: 'An accepted connection that has not completed its authenticated hello after this long is closed.',
      format: 'int-range',
      default: 2000,
      env: 'COLO_AGENT_HEARTBEAT_HELLO_TIMEOUT_MS',
      ...MS,
    },
    reconnectInitialMs: {
      doc: 'First delay before redialling a lost heartbeat link; it doubles (with jitter) up to heartbeat.reconnectMaxMs. Must not exceed it.',
      format: 'int-range',
      default: 50,
      env: 'COLO_AGENT_HEARTBEAT_RECONNECT_INITIAL_MS',
      ...MS,
    },
    reconnectMaxMs: {
      doc: 'Longest delay between redials of a heartbeat link.',
      format: 'int-range',
      default: 1000,
      env: 'COLO_AGENT_HEARTBEAT_RECONNECT_MAX_MS',
      ...MS,
    },
  },
  colo: {
    primaryHost: {
      doc: 'Address of the primary host, as the secondary and the COLO proxy reach it (documented: 127.0.0.1).',
      format: 'host',
      default: '127.0.0.1',
      env: 'COLO_AGENT_COLO_PRIMARY_HOST',
    },
    secondaryHost: {
      doc: 'Address of the secondary host, for the NBD export and the migration stream (documented: 127.0.0.2).',
      format: 'host',
      default: '127.0.0.2',
      env: 'COLO_AGENT_COLO_SECONDARY_HOST',
    },
    disk: {
      doc: 'Node name of the quorum drive the guest sees (documented: colo-disk0).',
      format: 'qemu-id',
      default: 'colo-disk0',
      env: 'COLO_AGENT_COLO_DISK',
    },
    replicationNode: {
      doc: 'Node name of the primary\'s replication driver, the NBD client of the secondary\'s export (documented: replication0).',
      format: 'qemu-id',
      default: 'replication0',
      env: 'COLO_AGENT_COLO_REPLICATION_NODE',
    },
    quorumChild: {
      doc: 'Quorum child name under which the replication node hangs; primary failover removes it (documented: children.1).',
      format: 'qemu-id',
      default: 'children.1',
      env: 'COLO_AGENT_COLO_QUORUM_CHILD',
    },
    nbdExport: {
      doc: 'Name of the secondary\'s NBD export of its disk copy (documented: parent0).',
      format: 'qemu-id',
      default: 'parent0',
      env: 'COLO_AGENT_COLO_NBD_EXPORT',
    },
    nbdPort: {
      doc: 'Port of the secondary\'s NBD server (documented: 9999).',
      format: 'int-range',
      default: 9999,
      env: 'COLO_AGENT_COLO_NBD_PORT',
      ...PORT,
    },
    migrationPort: {
      doc: 'Port of the secondary\'s -incoming migration listener (documented: 9998).',
      format: 'int-range',
      default: 9998,
      env: 'COLO_AGENT_COLO_MIGRATION_PORT',
      ...PORT,
    },
    mirrorPort: {
      doc: 'Port of the primary\'s mirror0 chardev server that the secondary\'s red0 connects to (documented: 9003).',
      format: 'int-range',
      default: 9003,
      env: 'COLO_AGENT_COLO_MIRROR_PORT',
      ...PORT,
    },
    compare1Port: {
      doc: 'Port of the primary\'s compare1 chardev server that the secondary\'s red1 connects to (documented: 9004).',
      format: 'int-range',
      default: 9004,
      env: 'COLO_AGENT_COLO_COMPARE1_PORT',
      ...PORT,
    },
    compare0Port: {
      doc: 'Port of the primary\'s local compare0 / compare0-0 chardev pair (documented: 9001).',
      format: 'int-range',
      default: 9001,
      env: 'COLO_AGENT_COLO_COMPARE0_PORT',
      ...PORT,
    },
    compareOutPort: {
      doc: 'Port of the primary\'s local compare_out / compare_out0 chardev pair (documented: 9005).',
      format: 'int-range',
      default: 9005,
      env: 'COLO_AGENT_COLO_COMPARE_OUT_PORT',
      ...PORT,
    },
    netdev: {
      doc: "The guest NIC's netdev id on both QEMUs (documented: hn0): the COLO proxy filters a resume adds are attached to it.",
      format: 'qemu-id',
      default: 'hn0',
      env: 'COLO_AGENT_COLO_NETDEV',
    },
    checkpointDelayMs: {
      doc:
        'Idle checkpoint period set with migrate-set-parameters x-checkpoint-delay before migrate (QEMU default 20000). ' +
        'Tests set it large: QEMU 7.2 under TCG deadlocks at the end of its first checkpoint.',
      format: 'int-range',
      default: 20_000,
      env: 'COLO_AGENT_COLO_CHECKPOINT_DELAY_MS',
      min: 1,
      max: 86_400_000,
    },
    statusPollMs: {
      doc: "How often the agent asks its QEMU query-colo-status (the mode it reports to the peer and to metrics). Events (STOP, RESUME, COLO_EXIT) are watched continuously besides.",
      format: 'int-range',
      default: 1000,
      env: 'COLO_AGENT_COLO_STATUS_POLL_MS',
      min: 50,
      max: MS.max,
    },
    checkpointStallMs: {
      doc:
        'A checkpoint (STOP while in COLO mode) with no RESUME for longer than this is reported as stalled: evidence that our QEMU ' +
        'is unhealthy (QEMU 7.2 under TCG deadlocks this way). Keep it well above the longest normal checkpoint pause.',
      format: 'int-range',
      default: 5000,
      env: 'COLO_AGENT_COLO_CHECKPOINT_STALL_MS',
      min: 100,
      max: MS.max,
    },
    ids: {
      comp0: coloId('comp0', 'comp0', 'the primary\'s colo-compare object'),
      iothread1: coloId('iothread1', 'iothread1', 'the primary\'s iothread for colo-compare'),
      m0: coloId('m0', 'm0', 'the primary\'s filter-mirror'),
      redire0: coloId('redire0', 'redire0', 'the primary\'s first filter-redirector'),
      redire1: coloId('redire1', 'redire1', 'the primary\'s second filter-redirector'),
      f1: coloId('f1', 'f1', 'the secondary\'s first filter-redirector'),
      f2: coloId('f2', 'f2', 'the secondary\'s second filter-redirector'),
      rew0: coloId('rew0', 'rew0', 'the secondary\'s filter-rewriter'),
      red0: coloId('red0', 'red0', 'the secondary\'s chardev to the primary\'s mirror0'),
      red1: coloId('red1', 'red1', 'the secondary\'s chardev to the primary\'s compare1'),
      mirror0: coloId('mirror0', 'mirror0', 'the primary\'s chardev server on colo.mirrorPort'),
      compare1: coloId('compare1', 'compare1', 'the primary\'s chardev server on colo.compare1Port'),
      compare0: coloId('compare0', 'compare0', 'the primary\'s chardev server on colo.compare0Port'),
      compare0_0: coloId('compare0-0', 'compare0_0', 'the primary\'s chardev client of compare0'),
      compare_out: coloId('compare_out', 'compare_out', 'the primary\'s chardev server on colo.compareOutPort'),
      compare_out0: coloId('compare_out0', 'compare_out0', 'the primary\'s chardev client of compare_out'),
    },
  },
  failover: {
    enabled: {
      doc: 'Run the documented failover sequence when the peer is declared down. false only observes and reports.',
      format: 'flag',
      default: true,
      env: 'COLO_AGENT_FAILOVER_ENABLED',
    },
    stepTimeoutMs: {
      doc: 'Each QMP command of a failover sequence that takes longer than this fails the step.',
      format: 'int-range',
      default: 2000,
      env: 'COLO_AGENT_FAILOVER_STEP_TIMEOUT_MS',
      min: 100,
      max: MS.max,
    },
    probeTimeoutMs: {
      doc:
        "When the peer falls silent, the agent opens a TCP connection to a port the peer's QEMU listens on " +
        '(the primary\'s colo.mirrorPort, the secondary\'s colo.nbdPort) to tell a crashed agent (port answers: no takeover) ' +
        'from a dead QEMU (refused) or a lost host (no answer within this time). Longer is more patient with a slow network, ' +
        'but adds to the failover time after a power loss.',
      format: 'int-range',
      default: 250,
      env: 'COLO_AGENT_FAILOVER_PROBE_TIMEOUT_MS',
      min: 10,
      max: MS.max,
    },
    reprobeIntervalMs: {
      doc: "While the peer's agent is silent but its QEMU still answers the probe, probe again this often; the takeover starts as soon as the QEMU is gone.",
      format: 'int-range',
      default: 1000,
      env: 'COLO_AGENT_FAILOVER_REPROBE_INTERVAL_MS',
      min: 50,
      max: MS.max,
    },
    unresponsivePeerMs: {
      doc:
        "A gray failure: the peer's agent has sent nothing for this long, yet its host still completes TCP handshakes on its QEMU's " +
        "and its agent's ports (a frozen host, or a hung agent, whose kernel answers for it). With failover.fenceCommand set, " +
        'such a peer is fenced and then taken over; without one the agent only waits and says so (taking over a host that may ' +
        'thaw would run the guest twice). 0: never treat a peer as frozen.',
      format: 'int-range',
      default: 2000,
      env: 'COLO_AGENT_FAILOVER_UNRESPONSIVE_PEER_MS',
      min: 0,
      max: MS.max,
    },
    fenceCommand: {
      doc:
        'Shell command run (sh -c) against the peer after the arbiter granted a takeover and before the failover sequence, ' +
        'e.g. a power-off through the peer host\'s BMC. Exit 0 means the peer is fenced. It gets COLO_AGENT_PEER_NAME, ' +
        'COLO_AGENT_PEER_HOST, COLO_AGENT_EPOCH and COLO_AGENT_ACTION in its environment. Empty: no fencing.',
      format: 'shell-command',
      default: '',
      env: 'COLO_AGENT_FAILOVER_FENCE_COMMAND',
    },
    fenceTimeoutMs: {
      doc: 'A fence command still running after this long is killed (with its children) and counts as failed.',
      format: 'int-range',
      default: 10_000,
      env: 'COLO_AGENT_FAILOVER_FENCE_TIMEOUT_MS',
      min: 100,
      max: MS.max,
    },
    onFenceFailure: {
      doc:
        'When the fence command fails: abort (no takeover; the agent goes to the failed state for an operator) or wait ' +
        '(retry with backoff for up to failover.fenceMaxWaitMs, then abort). Never takes over unfenced.',
      format: 'fence-failure-policy',
      default: 'abort',
      env: 'COLO_AGENT_FAILOVER_ON_FENCE_FAILURE',
    },
    fenceMaxWaitMs: {
      doc: 'With onFenceFailure wait: how long to keep retrying the fence command before aborting the takeover.',
      format: 'int-range',
      default: 60_000,
      env: 'COLO_AGENT_FAILOVER_FENCE_MAX_WAIT_MS',
      min: 100,
      max: MS.max,
    },
    autoResume: {
      doc:
        'Resume replication by itself (the documented "resume replication" sequence: drive-mirror, then a short pause to switch ' +
        'over) as soon as the peer\'s agent announces a fresh secondary QEMU ready at our epoch. false: wait for `colo-agent resume`.',
      format: 'flag',
      default: true,
      env: 'COLO_AGENT_FAILOVER_AUTO_RESUME',
    },
    resyncTimeoutMs: {
      doc: 'How long the disk copy to a new secondary (drive-mirror until BLOCK_JOB_READY) may take before the resume is rolled back.',
      format: 'int-range',
      default: 1_800_000,
      env: 'COLO_AGENT_FAILOVER_RESYNC_TIMEOUT_MS',
      min: 1000,
      max: 86_400_000,
    },
    resumeRetryInitialMs: {
      doc: 'After a failed (rolled back) resume, wait this long before the next attempt; doubled per failure up to failover.resumeRetryMaxMs.',
      format: 'int-range',
      default: 5000,
      env: 'COLO_AGENT_FAILOVER_RESUME_RETRY_INITIAL_MS',
      min: 100,
      max: MS.max,
    },
    resumeRetryMaxMs: {
      doc: 'The longest wait between two resume attempts.',
      format: 'int-range',
      default: 300_000,
      env: 'COLO_AGENT_FAILOVER_RESUME_RETRY_MAX_MS',
      min: 100,
      max: MS.max,
    },
    selfFence: {
      doc:
        'Kill our own QEMU (by qemu.pidFile) when it hangs: QMP commands time out, or its checkpoints stall, for ' +
        'failover.selfFenceAfterMs. Its death tells the peer at once (the fast path), which then takes over; ' +
        'a hung QEMU otherwise holds the guest without serving it.',
      format: 'flag',
      default: false,
      env: 'COLO_AGENT_FAILOVER_SELF_FENCE',
    },
    selfFenceAfterMs: {
      doc: 'How long our QEMU must stay hung (QMP unhealthy or checkpoints stalled) before failover.selfFence kills it.',
      format: 'int-range',
      default: 10_000,
      env: 'COLO_AGENT_FAILOVER_SELF_FENCE_AFTER_MS',
      min: 500,
      max: MS.max,
    },
  },
  arbiter: {
    mode: {
      doc:
        'Who breaks the tie when the nodes lose each other: none, witness (a third colo-agent with node.role witness) or etcd. ' +
        'none is unsafe against network partitions: both nodes can take over and the VM runs twice (split brain).',
      format: 'arbiter-mode',
      default: 'none',
      env: 'COLO_AGENT_ARBITER_MODE',
    },
    witness: {
      doc: "With mode witness: the witness's heartbeat addresses (its heartbeat.listen), one per network path. Uses heartbeat.keyFile.",
      format: 'host-port-list',
      default: [],
      env: 'COLO_AGENT_ARBITER_WITNESS',
    },
    leaseMs: {
      doc:
        'The primary\'s lease with the witness, renewed by each of its heartbeats. The witness gives the guest to the other ' +
        'node only after the lease ran out (plus a guard of max(100 ms, leaseMs / 5)), and a primary that can reach neither ' +
        'its peer nor the witness stops its guest when its lease runs out. Longer tolerates a slower witness path; it ' +
        'delays a takeover after a primary host loss by about leaseMs - heartbeat timeout. Set it on the witness; ' +
        'the agents take the witness\'s value.',
      format: 'int-range',
      default: 500,
      env: 'COLO_AGENT_ARBITER_LEASE_MS',
      min: 50,
      max: MS.max,
    },
    requestTimeoutMs: {
      doc: 'How long an agent waits for the arbiter\'s verdict on one takeover request before asking again.',
      format: 'int-range',
      default: 3000,
      env: 'COLO_AGENT_ARBITER_REQUEST_TIMEOUT_MS',
      min: 50,
      max: MS.max,
    },
    bothAskWindowMs: {
      doc: 'On the witness, when it knows no holder (first start, lost state): how long it collects requests before choosing, preferring the node that is already primary.',
      format: 'int-range',
      default: 200,
      env: 'COLO_AGENT_ARBITER_BOTH_ASK_WINDOW_MS',
      min: 0,
      max: MS.max,
    },
    onLeaseLoss: {
      doc:
        'What a primary does when it can reach neither its peer nor the arbiter and its lease runs out: stop (QMP stop: ' +
        'the guest pauses, so it never runs beside a promoted secondary) or keep-running (UNSAFE: it may run beside one). ' +
        'A grant later resumes the guest (cont).',
      format: 'lease-loss-policy',
      default: 'stop',
      env: 'COLO_AGENT_ARBITER_ON_LEASE_LOSS',
    },
    gateways: {
      doc:
        'HOST:PORT targets on the clients\' network (a router, a service the guest serves). Before a takeover, the agent ' +
        'connects to each: if none answers (a refusal counts as an answer), it is cut off from its clients and does not take over. Empty: no check.',
      format: 'host-port-list',
      default: [],
      env: 'COLO_AGENT_ARBITER_GATEWAYS',
    },
    gatewayTimeoutMs: {
      doc: 'How long each gateway check connection may take.',
      format: 'int-range',
      default: 500,
      env: 'COLO_AGENT_ARBITER_GATEWAY_TIMEOUT_MS',
      min: 10,
      max: MS.max,
    },
    etcd: {
      endpoints: {
        doc: 'With mode etcd: the etcd cluster\'s client URLs (http://HOST:2379, ...).',
        format: 'url-list',
        default: [],
        env: 'COLO_AGENT_ARBITER_ETCD_ENDPOINTS',
      },
      prefix: {
        doc: 'With mode etcd: the key prefix of this VM pair (both agents of a pair use the same, each pair its own).',
        format: 'etcd-prefix',
        default: '/colo-agent/colo-pair',
        env: 'COLO_AGENT_ARBITER_ETCD_PREFIX',
      },
      leaseTtlSeconds: {
        doc: 'With mode etcd: the primary\'s etcd lease TTL in whole seconds (etcd enforces a minimum of about 2 s), playing leaseMs\'s part.',
        format: 'int-range',
        default: 2,
        env: 'COLO_AGENT_ARBITER_ETCD_LEASE_TTL_SECONDS',
        min: 1,
        max: 3600,
      },
    },
  },
  metrics: {
    listen: {
      doc: 'Address of the Prometheus /metrics endpoint; empty turns metrics off.',
      format: 'optional-host-port',
      default: '127.0.0.1:9464',
      env: 'COLO_AGENT_METRICS_LISTEN',
    },
  },
  log: {
    level: {
      doc: 'Least severe log level written (JSON lines on stdout).',
      format: 'log-level',
      default: 'info',
      env: 'COLO_AGENT_LOG_LEVEL',
    },
  },
};

/** A schema key: dotted path ("heartbeat.intervalMs") and its spec. */
export interface SchemaLeaf {
  path: string;
  spec: LeafSpec<unknown>;
}

export function isLeafSpec(node: unknown): node is LeafSpec<unknown> {
  return typeof node === 'object' && node !== null && 'default' in node && 'format' in node;
}

function collectLeaves(node: Record<string, unknown>, prefix: string, out: SchemaLeaf[]): void {
  for (const [key, child] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isLeafSpec(child)) out.push({ path, spec: child });
    else collectLeaves(child as Record<string, unknown>, path, out);
  }
}

const leaves: readonly SchemaLeaf[] = (() => {
  const out: SchemaLeaf[] = [];
  collectLeaves(configSchema as unknown as Record<string, unknown>, '', out);
  return Object.freeze(out);
})();

/** Every key of the schema, in schema order. */
export function schemaLeaves(): readonly SchemaLeaf[] {
  return leaves;
}

const leafByPath = new Map(leaves.map((l) => [l.path, l.spec]));

export function leafSpec(path: string): LeafSpec<unknown> | undefined {
  return leafByPath.get(path);
}

/** The section at a dotted path ('' is the root), or undefined when there is none. */
export function sectionAt(path: string): Record<string, unknown> | undefined {
  let node: unknown = configSchema;
  for (const key of path === '' ? [] : path.split('.')) {
    if (typeof node !== 'object' || node === null || isLeafSpec(node) || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return typeof node === 'object' && node !== null && !isLeafSpec(node) ? (node as Record<string, unknown>) : undefined;
}

/**
 * The built-in defaults as a config object: the one source of the documented COLO names and
 * ports for everything else (sequences, test harness), so they are written down once.
 */
export function schemaDefaults(): AgentConfig {
  const root: Record<string, unknown> = {};
  for (const { path, spec } of leaves) {
    const keys = path.split('.');
    let node = root;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[keys.at(-1)!] = structuredClone(spec.default);
  }
  return root as unknown as AgentConfig;
}
