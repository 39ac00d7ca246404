/** `colo-agent status` against a running agent process, over its real HTTP /status. */
import t from 'tap';
import { join } from 'node:path';
import { EXAMPLE_CONFIGS, freePort, loneAgentSets, startAgent } from '../helpers/agent-process.js';
import { runCli } from '../helpers/cli.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

t.test('human summary and --json from a running agent; a clear error when none answers', async (t) => {
  const dir = shortTempDir(t, 'st-');
  const metricsPort = await freePort();
  const sets = await loneAgentSets(dir, join(dir, 'state'), metricsPort);
  await startAgent({ name: 'primary', config: EXAMPLE_CONFIGS.primary, sets, t });
  const cliSets = sets.flatMap((s) => ['--set', s]);

  const human = await runCli(['status', '--config', EXAMPLE_CONFIGS.primary, ...cliSets]);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^node colo-a {2}role primary {2}state waiting-for-peer/m);
  t.match(human.stdout, /^qemu \w+ {2}COLO mode unknown/m);

  const json = await runCli(['status', '--config', EXAMPLE_CONFIGS.primary, ...cliSets, '--json']);
  t.equal(json.code, 0, json.stderr);
  t.match(JSON.parse(json.stdout), { node: 'colo-a', role: 'primary', state: 'waiting-for-peer', qemu: { colo: { mode: 'unknown' } } });

  const none = await runCli(['status', '--config', EXAMPLE_CONFIGS.primary, ...cliSets, '--set', `metrics.listen=127.0.0.1:${await freePort()}`]);
  t.equal(none.code, 1);
  t.match(none.stderr, /STATUS_UNAVAILABLE: cannot reach the agent/);
});
