import t from 'tap';
import { FORMATS, getFormat } from '../../src/config/formats.js';
import { configSchema, leafSpec, schemaLeaves, sectionAt } from '../../src/config/schema.js';

/** heartbeat.maxConnectionsPerSource -> COLO_AGENT_HEARTBEAT_MAX_CONNECTIONS_PER_SOURCE */
function expectedEnv(path: string): string {
  return `COLO_AGENT_${path.split('.').map((s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

t.test('every key has doc, a known format, a default and its COLO_AGENT_<SECTION>_<KEY> env name', async (t) => {
  const leaves = schemaLeaves();
  t.ok(leaves.length > 50, `${leaves.length} keys`);
  for (const { path, spec } of leaves) {
    t.ok(spec.doc.trim().length > 10, `${path} has a doc`);
    t.ok(Object.hasOwn(FORMATS, spec.format), `${path} format ${spec.format} is registered`);
    t.ok('default' in spec, `${path} has a default`);
    t.equal(spec.env, expectedEnv(path), `${path} env name`);
  }
  const envs = leaves.map((l) => l.spec.env);
  t.equal(new Set(envs).size, envs.length, 'env names are unique');
});

t.test('every default is valid for its own format and inside its range', async (t) => {
  for (const { path, spec } of schemaLeaves()) {
    t.doesNotThrow(() => getFormat(spec.format).validate(spec.default, spec), path);
    if (spec.min !== undefined && spec.max !== undefined) t.ok(spec.min <= spec.max, `${path} min <= max`);
  }
});

t.test('the shape and defaults the brief and the documented topology call for', async (t) => {
  t.same(Object.keys(configSchema), ['node', 'qemu', 'heartbeat', 'colo', 'failover', 'arbiter', 'metrics', 'log']);
  const defaults = Object.fromEntries(schemaLeaves().map((l) => [l.path, l.spec.default]));
  t.match(defaults, {
    'node.role': 'primary',
    'node.stateDir': '/var/lib/colo-agent',
    'qemu.qmp': 'unix:/run/colo-agent/qmp.sock',
    'qemu.commandTimeoutMs': 3000,
    'qemu.connectTimeoutMs': 2000,
    'qemu.reconnectInitialMs': 100,
    'qemu.reconnectMaxMs': 5000,
    'qemu.profile': 'auto',
    'heartbeat.listen': '0.0.0.0:7410',
    'heartbeat.peers': [],
    'heartbeat.keyFile': '/etc/colo-agent/heartbeat.key',
    'heartbeat.insecure': false,
    'heartbeat.intervalMs': 100,
    'heartbeat.missThreshold': 3,
    'heartbeat.suspectMisses': 2,
    'heartbeat.recoverBeats': 3,
    'heartbeat.startupGraceMs': 3000,
    'heartbeat.phiThreshold': 0,
    'heartbeat.maxFrameBytes': 4096,
    'heartbeat.maxConnectionsPerSource': 4,
    'heartbeat.helloTimeoutMs': 2000,
    'heartbeat.reconnectInitialMs': 50,
    'heartbeat.reconnectMaxMs': 1000,
    'colo.primaryHost': '127.0.0.1',
    'colo.secondaryHost': '127.0.0.2',
    'colo.disk': 'colo-disk0',
    'colo.replicationNode': 'replication0',
    'colo.quorumChild': 'children.1',
    'colo.nbdExport': 'parent0',
    'colo.nbdPort': 9999,
    'colo.migrationPort': 9998,
    'colo.mirrorPort': 9003,
    'colo.compare1Port': 9004,
    'colo.compare0Port': 9001,
    'colo.compareOutPort': 9005,
    'colo.checkpointDelayMs': 20000,
    'failover.enabled': true,
    'failover.stepTimeoutMs': 2000,
    'arbiter.mode': 'none',
    'metrics.listen': '127.0.0.1:9464',
    'log.level': 'info',
  });
  const ids = ['comp0', 'iothread1', 'm0', 'redire0', 'redire1', 'f1', 'f2', 'rew0', 'red0', 'red1', 'mirror0', 'compare1', 'compare0', 'compare0-0', 'compare_out', 'compare_out0'];
  t.same(
    schemaLeaves().filter((l) => l.path.startsWith('colo.ids.')).map((l) => l.spec.default),
    ids,
    'colo.ids default to the documented object and chardev ids',
  );
  t.ok(leafSpec('heartbeat.keyFile')?.sensitive, 'the key file is sensitive');
});

t.test('lookups by path', async (t) => {
  t.equal(leafSpec('heartbeat.intervalMs')?.default, 100);
  t.equal(leafSpec('heartbeat'), undefined);
  t.equal(leafSpec('heartbeat.nope'), undefined);
  t.ok(sectionAt('colo.ids'));
  t.ok(sectionAt(''));
  t.equal(sectionAt('heartbeat.intervalMs'), undefined, 'a key is not a section');
  t.equal(sectionAt('nope'), undefined);
});
