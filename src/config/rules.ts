/**
 * Rules between keys, checked after every key has passed its own format.
 *
 * Each rule names the keys it reads; the loader skips a rule when one of them is already invalid, so a
 * bad value is reported once, by its own key, and not again as a confusing comparison.
 * The `doc` of each rule is printed in the configuration reference.
 */
import { configSchema } from './schema.js';
import type { AgentConfig, ColoConfig, ColoIdsConfig } from './types.js';

export interface RuleProblem {
  /** The key to blame (one of the rule's keys): the one an operator most likely has to change. */
  key: string;
  message: string;
}

export interface CrossKeyRule {
  keys: readonly string[];
  doc: string;
  check(cfg: AgentConfig): RuleProblem[];
}

function ordered(cfg: AgentConfig, section: 'qemu' | 'heartbeat'): RuleProblem[] {
  const { reconnectInitialMs, reconnectMaxMs } = cfg[section];
  return reconnectInitialMs <= reconnectMaxMs
    ? []
    : [{
        key: `${section}.reconnectInitialMs`,
        message: `must not exceed ${section}.reconnectMaxMs (got ${reconnectInitialMs}, ${section}.reconnectMaxMs is ${reconnectMaxMs})`,
      }];
}

/** Problems for values that appear under more than one key of a group that must not share them. */
function distinct<V>(entries: [string, V][], what: string): RuleProblem[] {
  const firstKey = new Map<V, string>();
  const problems: RuleProblem[] = [];
  for (const [key, value] of entries) {
    const earlier = firstKey.get(value);
    if (earlier === undefined) firstKey.set(value, key);
    else problems.push({ key, message: `${JSON.stringify(value)} is already used by ${earlier}; ${what}` });
  }
  return problems;
}

const COLO_PORT_KEYS = [
  'nbdPort', 'migrationPort', 'mirrorPort', 'compare1Port', 'compare0Port', 'compareOutPort',
] as const satisfies readonly (keyof ColoConfig)[];

const COLO_ID_KEYS = Object.keys(configSchema.colo.ids) as (keyof ColoIdsConfig)[];

export const CROSS_KEY_RULES: readonly CrossKeyRule[] = [
  {
    keys: ['heartbeat.suspectMisses', 'heartbeat.missThreshold'],
    doc: 'heartbeat.suspectMisses must be less than heartbeat.missThreshold: a peer is suspect before it is down.',
    check: ({ heartbeat: { suspectMisses, missThreshold } }) =>
      suspectMisses < missThreshold
        ? []
        : [{
            key: 'heartbeat.suspectMisses',
            message: `must be less than heartbeat.missThreshold (got ${suspectMisses}, heartbeat.missThreshold is ${missThreshold})`,
          }],
  },
  {
    keys: ['qemu.reconnectInitialMs', 'qemu.reconnectMaxMs'],
    doc: 'qemu.reconnectInitialMs must not exceed qemu.reconnectMaxMs.',
    check: (cfg) => ordered(cfg, 'qemu'),
  },
  {
    keys: ['heartbeat.reconnectInitialMs', 'heartbeat.reconnectMaxMs'],
    doc: 'heartbeat.reconnectInitialMs must not exceed heartbeat.reconnectMaxMs.',
    check: (cfg) => ordered(cfg, 'heartbeat'),
  },
  {
    keys: ['node.role', 'heartbeat.peers'],
    doc: 'heartbeat.peers must list at least one address when node.role is primary or secondary: without a peer there is nothing to watch and no failover.',
    check: ({ node, heartbeat }) =>
      node.role === 'witness' || heartbeat.peers.length > 0
        ? []
        : [{ key: 'heartbeat.peers', message: `must list at least one HOST:PORT when node.role is ${node.role}` }],
  },
  {
    keys: ['heartbeat.peers', 'heartbeat.listen'],
    doc: 'heartbeat.peers must not repeat an address, nor contain heartbeat.listen itself (the node would hear its own heartbeats and never see its peer die).',
    check: ({ heartbeat: { peers, listen } }) => {
      const problems: RuleProblem[] = [];
      peers.forEach((peer, i) => {
        const first = peers.indexOf(peer);
        if (first < i) problems.push({ key: 'heartbeat.peers', message: `entry ${i + 1} "${peer}" repeats entry ${first + 1}` });
        if (peer === listen) problems.push({ key: 'heartbeat.peers', message: `entry ${i + 1} "${peer}" is this node's own heartbeat.listen` });
      });
      return problems;
    },
  },
  {
    keys: ['heartbeat.keyFile', 'heartbeat.insecure'],
    doc: 'heartbeat.keyFile may be empty only when heartbeat.insecure is true.',
    check: ({ heartbeat: { keyFile, insecure } }) =>
      keyFile !== '' || insecure
        ? []
        : [{ key: 'heartbeat.keyFile', message: 'must name the heartbeat key file (only heartbeat.insecure: true allows running without one)' }],
  },
  {
    keys: ['node.role', 'arbiter.mode'],
    doc: 'node.role witness needs arbiter.mode witness: a witness exists only to arbitrate.',
    check: ({ node, arbiter }) =>
      node.role !== 'witness' || arbiter.mode === 'witness'
        ? []
        : [{ key: 'node.role', message: `witness needs arbiter.mode witness (got arbiter.mode "${arbiter.mode}")` }],
  },
  {
    keys: ['node.role', 'arbiter.mode', 'arbiter.witness'],
    doc: 'arbiter.mode witness needs arbiter.witness (the witness\'s addresses) on the primary and secondary.',
    check: ({ node, arbiter }) =>
      arbiter.mode !== 'witness' || node.role === 'witness' || arbiter.witness.length > 0
        ? []
        : [{ key: 'arbiter.witness', message: 'must list the witness\'s HOST:PORT when arbiter.mode is witness' }],
  },
  {
    keys: ['arbiter.mode', 'arbiter.etcd.endpoints'],
    doc: 'arbiter.mode etcd needs arbiter.etcd.endpoints.',
    check: ({ arbiter }) =>
      arbiter.mode !== 'etcd' || arbiter.etcd.endpoints.length > 0
        ? []
        : [{ key: 'arbiter.etcd.endpoints', message: 'must list at least one etcd client URL when arbiter.mode is etcd' }],
  },
  {
    keys: ['arbiter.leaseMs', 'heartbeat.intervalMs'],
    doc:
      'arbiter.leaseMs must be at least 2 * heartbeat.intervalMs when a witness holds leases (arbiter.mode witness, or the witness ' +
      'itself): the lease is renewed by heartbeats, and one late beat must not end it.',
    check: ({ arbiter, heartbeat, node }) =>
      (arbiter.mode !== 'witness' && node.role !== 'witness') || arbiter.leaseMs >= 2 * heartbeat.intervalMs
        ? []
        : [{ key: 'arbiter.leaseMs', message: `must be at least 2 * heartbeat.intervalMs (got ${arbiter.leaseMs}, heartbeat.intervalMs is ${heartbeat.intervalMs})` }],
  },
  {
    keys: ['failover.selfFence', 'qemu.pidFile'],
    doc: 'failover.selfFence needs qemu.pidFile: the agent kills its hung QEMU by that pid.',
    check: ({ failover, qemu }) =>
      !failover.selfFence || qemu.pidFile !== ''
        ? []
        : [{ key: 'qemu.pidFile', message: 'must name QEMU\'s -pidfile when failover.selfFence is true' }],
  },
  {
    keys: ['qemu.launch.enabled', 'qemu.launch.secondaryCommand'],
    doc: 'qemu.launch.enabled needs qemu.launch.secondaryCommand: the command of the secondary QEMU the agent launches.',
    check: ({ qemu: { launch } }) =>
      !launch.enabled || launch.secondaryCommand.length > 0
        ? []
        : [{ key: 'qemu.launch.secondaryCommand', message: 'must give the secondary QEMU\'s command (program and arguments) when qemu.launch.enabled is true' }],
  },
  {
    keys: ['qemu.launch.enabled', 'qemu.launch.secondaryCommand'],
    doc:
      'With qemu.launch.enabled, qemu.launch.secondaryCommand must contain -incoming (the agent only launches a fresh secondary, ' +
      'which never runs the guest by itself) and must not contain -daemonize (the agent watches the process it started).',
    check: ({ qemu: { launch } }) => {
      if (!launch.enabled || launch.secondaryCommand.length === 0) return [];
      const args = launch.secondaryCommand.slice(1);
      const problems: RuleProblem[] = [];
      if (!args.some((a) => a === '-incoming' || a === '--incoming')) {
        problems.push({ key: 'qemu.launch.secondaryCommand', message: 'must contain -incoming: the agent only launches a secondary QEMU that waits for the primary' });
      }
      if (args.some((a) => a === '-daemonize' || a === '--daemonize')) {
        problems.push({ key: 'qemu.launch.secondaryCommand', message: 'must not contain -daemonize: the agent watches the QEMU process it started, and keeps it running after the agent stops anyway' });
      }
      return problems;
    },
  },
  {
    keys: ['node.role', 'qemu.launch.enabled'],
    doc: 'qemu.launch.enabled must be false when node.role is witness: a witness runs no QEMU.',
    check: ({ node, qemu }) =>
      node.role !== 'witness' || !qemu.launch.enabled
        ? []
        : [{ key: 'qemu.launch.enabled', message: 'must be false when node.role is witness (a witness runs no QEMU)' }],
  },
  {
    keys: ['failover.resumeRetryInitialMs', 'failover.resumeRetryMaxMs'],
    doc: 'failover.resumeRetryInitialMs must not exceed failover.resumeRetryMaxMs.',
    check: ({ failover: f }) =>
      f.resumeRetryInitialMs <= f.resumeRetryMaxMs
        ? []
        : [{ key: 'failover.resumeRetryInitialMs', message: `must not exceed failover.resumeRetryMaxMs (got ${f.resumeRetryInitialMs}, failover.resumeRetryMaxMs is ${f.resumeRetryMaxMs})` }],
  },
  {
    keys: COLO_PORT_KEYS.map((k) => `colo.${k}`),
    doc: 'The colo ports must be distinct: after a failover one host listens on all of them.',
    check: ({ colo }) => distinct(COLO_PORT_KEYS.map((k) => [`colo.${k}`, colo[k]]), 'the colo ports must be distinct'),
  },
  {
    keys: COLO_ID_KEYS.map((k) => `colo.ids.${k}`),
    doc: 'The colo.ids values must be distinct, so that every QEMU object and chardev the agent adds or deletes is unambiguous.',
    check: ({ colo }) => distinct(COLO_ID_KEYS.map((k) => [`colo.ids.${k}`, colo.ids[k]]), 'the colo ids must be distinct'),
  },
];

/** Problems of every rule whose keys are all individually valid (`invalidKeys` lists the ones that are not). */
export function checkCrossKeyRules(cfg: AgentConfig, invalidKeys: ReadonlySet<string> = new Set()): RuleProblem[] {
  return CROSS_KEY_RULES.filter((rule) => rule.keys.every((k) => !invalidKeys.has(k))).flatMap((rule) => rule.check(cfg));
}
