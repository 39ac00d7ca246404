import t from 'tap';
import { loadConfig } from '../../src/config/loader.js';
import { REDACTED, redactedConfig, redactedConfigJson } from '../../src/config/redact.js';
import { schemaLeaves } from '../../src/config/schema.js';

const base = ['heartbeat.peers=127.0.0.2:7410', 'node.name=colo-a'];

t.test('sensitive values are replaced, everything else is kept, the original is untouched', async (t) => {
  const cfg = loadConfig({ env: {}, sets: [...base, 'heartbeat.keyFile=/etc/colo-agent/very-secret-name.key'] });
  const red = redactedConfig(cfg);
  t.equal(red.heartbeat.keyFile, REDACTED);
  t.equal(cfg.heartbeat.keyFile, '/etc/colo-agent/very-secret-name.key', 'not mutated');
  t.same({ ...red, heartbeat: { ...red.heartbeat, keyFile: cfg.heartbeat.keyFile } }, cfg, 'all else equal');
});

t.test('every sensitive key is hidden in the JSON output', async (t) => {
  const sensitive = schemaLeaves().filter((l) => l.spec.sensitive);
  t.ok(sensitive.length > 0, 'the schema has sensitive keys');
  const cfg = loadConfig({ env: {}, sets: [...base, 'heartbeat.keyFile=/x/very-secret-name.key'] });
  const json = redactedConfigJson(cfg);
  t.ok(json.endsWith('}\n'));
  t.notMatch(json, 'very-secret-name');
  const parsed = JSON.parse(json) as Record<string, Record<string, unknown>>;
  for (const { path } of sensitive) {
    const [section, key] = path.split('.') as [string, string];
    t.equal(parsed[section]![key], REDACTED, path);
  }
});

t.test('an empty sensitive value stays empty: "no key file" is not a secret', async (t) => {
  const cfg = loadConfig({ env: {}, sets: [...base, 'heartbeat.keyFile=', 'heartbeat.insecure=true'] });
  t.equal(redactedConfig(cfg).heartbeat.keyFile, '');
});
