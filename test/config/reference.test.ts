import { hostname } from 'node:os';
import t from 'tap';
import { configReference, renderDefaultYaml } from '../../src/config/reference.js';
import { CROSS_KEY_RULES } from '../../src/config/rules.js';
import { schemaLeaves } from '../../src/config/schema.js';

/** Splits a Markdown table row on unescaped pipes. */
function cells(row: string): string[] {
  return row
    .slice(1, -1)
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
}

t.test('the reference has one row per key: name, default, env, format, doc', async (t) => {
  const md = configReference();
  const rows = md.split('\n').filter((l) => l.startsWith('| `'));
  t.equal(rows.length, schemaLeaves().length, 'one row per key, nothing else');
  for (const [i, { path, spec }] of schemaLeaves().entries()) {
    const row = cells(rows[i]!);
    t.equal(row.length, 5, `${path}: five cells`);
    t.equal(row[0], `\`${path}\``);
    t.equal(row[1], `\`${JSON.stringify(spec.default)}\``);
    t.equal(row[2], `\`${spec.env}\``);
    t.ok(row[3]!.length > 0, `${path} format`);
    t.ok(row[4]!.startsWith(spec.doc.replace(/\|/g, '\\|')), `${path} doc`);
  }
});

t.test('the reference has a section per top-level key and lists every cross-key rule', async (t) => {
  const md = configReference();
  for (const section of ['node', 'qemu', 'heartbeat', 'colo', 'failover', 'arbiter', 'metrics', 'log']) {
    t.match(md, `### \`${section}\``);
  }
  for (const rule of CROSS_KEY_RULES) t.match(md, `- ${rule.doc}`);
  t.match(md, 'Sensitive: hidden in check-config output', 'marks sensitive keys');
});

t.test('the reference and default.yaml are deterministic and machine-independent', async (t) => {
  t.equal(configReference(), configReference());
  t.equal(renderDefaultYaml(), renderDefaultYaml());
  t.notMatch(configReference(), hostname());
  t.notMatch(renderDefaultYaml(), hostname());
});
