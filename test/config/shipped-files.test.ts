/**
 * config/default.yaml and config/examples/*.yaml: the files operators copy must stay true to the schema.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { ConfigError } from '../../src/config/errors.js';
import { loadConfig } from '../../src/config/loader.js';
import { renderDefaultYaml } from '../../src/config/reference.js';
import { schemaLeaves } from '../../src/config/schema.js';

const configDir = fileURLToPath(new URL('../../config/', import.meta.url));
const DEFAULT_YAML = `${configDir}default.yaml`;
const PRIMARY = `${configDir}examples/primary.yaml`;
const SECONDARY = `${configDir}examples/secondary.yaml`;

/** Dotted paths of every leaf (non-mapping value) in a parsed document. */
function leafPaths(node: unknown, prefix = ''): string[] {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return [prefix];
  return Object.entries(node).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

t.test('default.yaml is exactly what renderDefaultYaml() produces from the schema', async (t) => {
  t.equal(
    readFileSync(DEFAULT_YAML, 'utf8'),
    renderDefaultYaml(),
    'regenerate: node --import tsx -e "import(\'./src/config/reference.ts\').then(m => process.stdout.write(m.renderDefaultYaml()))" > config/default.yaml',
  );
});

t.test('default.yaml covers exactly the schema\'s keys, each with its default and a comment', async (t) => {
  const text = readFileSync(DEFAULT_YAML, 'utf8');
  const doc = parse(text) as unknown;
  t.same(leafPaths(doc).sort(), schemaLeaves().map((l) => l.path).sort());
  const lines = text.split('\n');
  for (const { path, spec } of schemaLeaves()) {
    const value = path.split('.').reduce<unknown>((n, k) => (n as Record<string, unknown>)[k], doc);
    t.same(value, spec.default, `${path} default`);
    const key = path.split('.').pop()!;
    const at = lines.findIndex((l, i) => l.trimStart().startsWith(`${key}:`) && lines[i - 1]?.trimStart().startsWith('#'));
    t.ok(at > 0, `${path} has a comment right above it`);
  }
});

t.test('default.yaml loads cleanly and changes nothing; on its own it only lacks heartbeat.peers', async (t) => {
  const peer = ['heartbeat.peers=127.0.0.2:7410'];
  t.same(loadConfig({ env: {}, files: [DEFAULT_YAML], sets: peer }), loadConfig({ env: {}, sets: peer }));
  try {
    loadConfig({ env: {}, files: [DEFAULT_YAML] });
    t.fail('a primary without peers must not load');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    t.same((err as ConfigError).problems.map((p) => p.key), ['heartbeat.peers'], 'the only problem is the peer a primary must name');
  }
});

t.test('the example pair loads cleanly and describes the two loopback hosts', async (t) => {
  const primary = loadConfig({ env: {}, files: [PRIMARY] });
  const secondary = loadConfig({ env: {}, files: [SECONDARY] });
  t.match(primary, {
    node: { role: 'primary' },
    qemu: { qmp: 'unix:/run/colo-agent/primary-qmp.sock' },
    heartbeat: { listen: '127.0.0.1:7410', peers: ['127.0.0.2:7410'], keyFile: '/etc/colo-agent/heartbeat.key', insecure: false },
    metrics: { listen: '127.0.0.1:9464' },
  });
  t.match(secondary, {
    node: { role: 'secondary' },
    qemu: { qmp: 'unix:/run/colo-agent/secondary-qmp.sock' },
    heartbeat: { listen: '127.0.0.2:7410', peers: ['127.0.0.1:7410'], keyFile: '/etc/colo-agent/heartbeat.key', insecure: false },
    metrics: { listen: '127.0.0.2:9464' },
  });
  t.same(primary.heartbeat.peers, [secondary.heartbeat.listen], 'each one\'s peer is the other\'s listen address');
  t.same(secondary.heartbeat.peers, [primary.heartbeat.listen]);
  t.not(primary.node.name, secondary.node.name, 'distinct node names');
  t.not(primary.node.stateDir, secondary.node.stateDir, 'distinct state directories on one machine');
  t.same(primary.colo, secondary.colo, 'both describe the same COLO topology');
});

t.test('the example witness loads cleanly, and the pair switched to witness mode finds it', async (t) => {
  const witness = loadConfig({ env: {}, files: [`${configDir}examples/witness.yaml`] });
  t.match(witness, { node: { role: 'witness' }, heartbeat: { listen: '127.0.0.3:7410', keyFile: '/etc/colo-agent/heartbeat.key' }, arbiter: { mode: 'witness' } });
  const sets = ['arbiter.mode=witness', `arbiter.witness=${witness.heartbeat.listen}`];
  const primary = loadConfig({ env: {}, files: [PRIMARY], sets });
  t.same(primary.arbiter.witness, [witness.heartbeat.listen]);
  t.not(witness.node.stateDir, primary.node.stateDir);
  t.not(witness.metrics.listen, primary.metrics.listen);
});
