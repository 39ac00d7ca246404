/**
 * `npm pack` ships what a user runs and what the installation guide copies from: the built CLI,
 * the config files, deploy/ (systemd units, Prometheus alerts, the Grafana dashboard) and docs/.
 * Nothing of the test harness.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

t.test('the package holds the CLI, config, deploy/ and docs/, and no tests', async (t) => {
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeout: 60_000 }, (err, out) => (err ? reject(err) : resolve(out))),
  );
  const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  for (const want of [
    'dist/cli.js',
    'config/default.yaml',
    'config/examples/primary.yaml',
    'deploy/systemd/colo-agent.service',
    'deploy/systemd/colo-agent@.service',
    'deploy/prometheus/alerts.yml',
    'deploy/grafana/colo-agent.json',
    'docs/installation.md',
    'README.md',
  ]) {
    t.ok(files.includes(want), want);
  }
  t.same(files.filter((f) => f.startsWith('test/') || f.startsWith('src/')), [], 'no test harness and no sources (dist/ is what runs)');
});
