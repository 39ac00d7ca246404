/** `colo-agent maintenance on|off|status`: the file in node.stateDir, through the built CLI. */
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readMaintenance } from '../../src/commands/maintenance.js';
import { EXAMPLE_CONFIGS, freePort, loneAgentSets, logMsg, requireBuiltCli, startAgent } from '../helpers/agent-process.js';
import { runCli } from '../helpers/cli.js';
import { fetchMetrics, httpGet } from '../helpers/http.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

function args(stateDir: string): string[] {
  return ['--config', EXAMPLE_CONFIGS.primary, '--set', 'heartbeat.insecure=true', '--set', 'heartbeat.keyFile=', '--set', `node.stateDir=${stateDir}`];
}

if (requireBuiltCli(t)) {
  t.test('on writes the file with reason, since and pid; status reads it; off removes it', async (t) => {
    const stateDir = join(t.testdir(), 'state');
    mkdirSync(stateDir);
    const path = join(stateDir, 'maintenance');

    const off0 = await runCli(['maintenance', 'status', ...args(stateDir)]);
    t.equal(off0.code, 0, off0.stderr);
    t.match(off0.stdout, /^maintenance off/);

    const on = await runCli(['maintenance', 'on', ...args(stateDir), '--reason', 'kernel upgrade on host b']);
    t.equal(on.code, 0, on.stderr);
    t.match(on.stdout, /maintenance ON since .*\(kernel upgrade on host b\)/);
    t.ok(existsSync(path), 'the maintenance file exists');
    const info = JSON.parse(readFileSync(path, 'utf8')) as { reason: string; since: string; by: number };
    t.equal(info.reason, 'kernel upgrade on host b');
    t.ok(!Number.isNaN(Date.parse(info.since)), 'since is a date');
    t.ok(Number.isInteger(info.by) && info.by > 0, 'by is a pid');
    t.same(readdirSync(stateDir), ['maintenance'], 'no temp file left behind (atomic write)');
    t.same(readMaintenance(stateDir), info);

    // A second `on` (another job, another operator) keeps the first: same since, both reasons.
    const on2 = await runCli(['maintenance', 'on', ...args(stateDir), '--reason', 'disk swap on host a']);
    t.equal(on2.code, 0, on2.stderr);
    t.match(on2.stdout, /^maintenance was already on; maintenance ON since .*\(kernel upgrade on host b; disk swap on host a\)/);
    const info2 = JSON.parse(readFileSync(path, 'utf8')) as { reason: string; since: string };
    t.equal(info2.since, info.since, 'on since the first time');
    t.equal(info2.reason, 'kernel upgrade on host b; disk swap on host a', 'the first reason is kept');
    t.same(readdirSync(stateDir), ['maintenance'], 'no temp file left behind');

    const st = await runCli(['maintenance', 'status', ...args(stateDir)]);
    t.equal(st.code, 0, st.stderr);
    t.match(st.stdout, /maintenance ON .*kernel upgrade on host b/);

    const off = await runCli(['maintenance', 'off', ...args(stateDir)]);
    t.equal(off.code, 0, off.stderr);
    t.match(off.stdout, /^maintenance off/);
    t.notOk(existsSync(path), 'the file is gone');
    t.equal(readMaintenance(stateDir), undefined);

    const again = await runCli(['maintenance', 'off', ...args(stateDir)]);
    t.equal(again.code, 0, again.stderr);
    t.match(again.stdout, /already off/);
  });

  t.test('a missing state dir is refused with a clear error, and nothing is created', async (t) => {
    const stateDir = join(t.testdir(), 'no-such-dir');
    for (const action of ['on', 'off']) {
      const r = await runCli(['maintenance', action, ...args(stateDir)]);
      t.equal(r.code, 1, `${action}: exit 1`);
      t.match(r.stderr, /MAINTENANCE_STATE_DIR: node\.stateDir .*no-such-dir does not exist/);
    }
    t.notOk(existsSync(stateDir), 'the state dir was not created');
  });

  t.test('usage errors exit 2', async (t) => {
    const stateDir = t.testdir();
    const bad = await runCli(['maintenance', 'maybe', ...args(stateDir)]);
    t.equal(bad.code, 2);
    t.match(bad.stderr, /maintenance needs one of on, off, status/);
    const reasonOff = await runCli(['maintenance', 'off', ...args(stateDir), '--reason', 'x']);
    t.equal(reasonOff.code, 2);
    t.match(reasonOff.stderr, /--reason goes with maintenance on/);
  });

  t.test('an unreadable maintenance file still counts as on (fails closed)', async (t) => {
    const stateDir = t.testdir();
    writeFileSync(join(stateDir, 'maintenance'), 'not json');
    t.match(readMaintenance(stateDir), { reason: /unreadable/ });
    const st = await runCli(['maintenance', 'status', ...args(stateDir)]);
    t.equal(st.code, 0, st.stderr);
    t.match(st.stdout, /maintenance ON/);
  });

  t.test('a running agent sees the file come and go: log, /status, colo_agent_maintenance, colo-agent status', async (t) => {
    const dir = shortTempDir(t, 'mt-');
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir);
    const metricsPort = await freePort();
    const sets = await loneAgentSets(dir, stateDir, metricsPort);
    const agent = await startAgent({ name: 'primary', config: EXAMPLE_CONFIGS.primary, sets, t });
    const cli = ['--config', EXAMPLE_CONFIGS.primary, ...sets.flatMap((s) => ['--set', s])];
    const gauge = async () => /^colo_agent_maintenance (\d+)$/m.exec((await fetchMetrics(metricsPort)).body)?.[1];
    const status = async () => (JSON.parse((await httpGet(metricsPort, '/status')).body) as { maintenance: unknown }).maintenance;

    t.equal(await gauge(), '0', 'the gauge starts at 0');
    t.same(await status(), { on: false });

    const since = agent.cursor();
    t.equal((await runCli(['maintenance', 'on', ...cli, '--reason', 'disk swap'])).code, 0);
    const on = await agent.waitForLog(logMsg('maintenance mode on: automatic failover suspended'), 10_000, { since });
    t.equal(on.record?.reason, 'disk swap');
    t.equal(await gauge(), '1', 'the gauge is 1');
    t.match(await status(), { on: true, reason: 'disk swap', since: String });
    const human = await runCli(['status', ...cli]);
    t.equal(human.code, 0, human.stderr);
    t.match(human.stdout, /^maintenance ON since .* \(disk swap\): automatic failover suspended$/m, 'colo-agent status prints it');

    const sinceOff = agent.cursor();
    t.equal((await runCli(['maintenance', 'off', ...cli])).code, 0);
    await agent.waitForLog(logMsg('maintenance mode off: automatic failover resumed'), 10_000, { since: sinceOff });
    t.equal(await gauge(), '0', 'the gauge is back to 0');
    t.same(await status(), { on: false });
    t.equal(agent.filter(logMsg('maintenance mode on: automatic failover suspended'), since).length, 1, 'one log line per change');
    t.notMatch((await runCli(['status', ...cli])).stdout, /maintenance/);
  });
}
