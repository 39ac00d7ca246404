/** The README's metrics reference lists every metric the agent exports (and no retired one). */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { METRIC_NAMES } from '../../src/metrics/names.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

t.test('every exported metric is documented in the README', async (t) => {
  for (const name of METRIC_NAMES) t.match(readme, `| \`${name}\` |`, name);
  const documented = [...readme.matchAll(/^\| `(colo_agent_[a-z_]+)` \|/gm)].map((m) => m[1]);
  const exported: readonly string[] = METRIC_NAMES;
  t.same(documented.filter((n) => !exported.includes(n!)), [], 'no documented metric that is not exported');
});
