/**
 * Config reload (SIGHUP). In process: Agent.reload() on a real (unstarted) Agent, for what it
 * applies, what it leaves for a restart and how it logs. End to end: a real agent pair (`node
 * dist/cli.js run`) whose config FILES this test rewrites before sending SIGHUP, since a reload
 * re-reads the files: the interval and log level change live without a link going down, an
 * invalid file is refused problem by problem, and a restart-only change is reported, not applied.
 *
 * The e2e part needs dist/ (`npm test` builds it). It asserts log records and states, never how
 * fast anything happened; the peer is declared down only after a second of silence, so a loaded
 * machine cannot fake the "no link went down" failures.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { Agent, LIVE_CONFIG_KEYS } from '../../src/agent.js';
import { keygen } from '../../src/commands/keygen.js';
import { loadConfig, schemaLeaves, type AgentConfig } from '../../src/config/index.js';
import { DetectorOptionsError } from '../../src/heartbeat/detector.js';
import { createLogger } from '../../src/log.js';
import {
  CLI_PATH,
  freePort,
  killAllChildren,
  linkDown,
  logMsg,
  peerTransition,
  sleep,
  staleBuildHint,
  startAgent,
  type AgentProcess,
  type LogPredicate,
} from '../helpers/agent-process.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WAIT_MS = 15_000;

// ---- in process: Agent.reload() ----

function capturingLogger(level: 'info' | 'warn') {
  const records: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) records.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { records, logger: createLogger({ level, destination }) };
}

/** The shipped primary example, insecure, nothing that could bind or dial during the test. */
function exampleConfig(sets: string[] = []): AgentConfig {
  return loadConfig({
    files: [join(ROOT, 'config/examples/primary.yaml')],
    env: {},
    sets: ['heartbeat.insecure=true', 'heartbeat.keyFile=', 'metrics.listen=', 'node.stateDir=/nonexistent/colo-agent-test', ...sets],
  });
}

/** A real Agent, never started (no socket is opened), stopped at teardown. */
function unstartedAgent(t: Test, cfg: AgentConfig, level: 'info' | 'warn' = 'info') {
  const { records, logger } = capturingLogger(level);
  const agent = new Agent(cfg, { logger, key: undefined });
  t.teardown(() => agent.stop('test teardown'));
  return { agent, records, logger };
}

t.test('Agent.reload: applies the live keys, reports the others, logs one line', async (t) => {
  const { agent, records, logger } = unstartedAgent(t, exampleConfig());
  const next = exampleConfig([
    'heartbeat.intervalMs=50',
    'heartbeat.missThreshold=6',
    'heartbeat.suspectMisses=3',
    'heartbeat.recoverBeats=2',
    'heartbeat.phiThreshold=8',
    'failover.enabled=false',
    'failover.stepTimeoutMs=7000',
    'log.level=debug',
    'heartbeat.listen=127.0.0.1:7999',
    'colo.statusPollMs=500',
    'qemu.qmp=unix:/tmp/other.sock',
  ]);
  const r = agent.reload(next);
  t.same(r.applied, ['heartbeat.intervalMs', 'heartbeat.missThreshold', 'heartbeat.suspectMisses', 'heartbeat.recoverBeats', 'heartbeat.phiThreshold', 'failover.enabled', 'failover.stepTimeoutMs', 'log.level']);
  t.same(r.needsRestart, ['qemu.qmp', 'heartbeat.listen', 'colo.statusPollMs']);
  const o = agent.peer.options;
  t.match(o, { intervalMs: 50, missThreshold: 6, suspectMisses: 3, recoverBeats: 2, phiThreshold: 8 }, 'the peer detector took the thresholds');
  t.equal(o.startupGraceMs, 3000, 'startupGraceMs is left as it was (restart-only)');
  t.equal(logger.level, 'debug', 'the root logger level changed');
  t.equal(agent.status().qemu.qmp, 'unix:/run/colo-agent/primary-qmp.sock', 'a restart-only key keeps its running value');

  const line = records.find((r) => r.msg === 'config reloaded (some changes need a restart)');
  t.ok(line, 'one reload line');
  t.equal(line?.level, 'warn', 'at warn, since some changes wait for a restart');
  t.same(line?.needsRestart, r.needsRestart);
  t.same((line?.changes as Record<string, unknown>)['heartbeat.intervalMs'], { from: 100, to: 50 });
  t.same((line?.changes as Record<string, unknown>)['qemu.qmp'], { from: 'unix:/run/colo-agent/primary-qmp.sock', to: 'unix:/tmp/other.sock' });
  t.ok(records.some((r) => r.msg === 'failure detector options updated' && r.detector === 'peer'), 'the detector logged its new options');

  // The restart-only keys stay pending: reloading the same config again reports them again.
  const again = agent.reload(next);
  t.same(again, { applied: [], needsRestart: ['qemu.qmp', 'heartbeat.listen', 'colo.statusPollMs'] });
});

t.test('Agent.reload: nothing changed; the reload line survives a quieter log level', async (t) => {
  const { agent, records, logger } = unstartedAgent(t, exampleConfig());
  t.same(agent.reload(exampleConfig()), { applied: [], needsRestart: [] });
  t.ok(records.some((r) => r.msg === 'config reloaded: nothing changed'));

  t.same(agent.reload(exampleConfig(['log.level=warn'])).applied, ['log.level']);
  t.equal(logger.level, 'warn');
  t.ok(records.some((r) => r.msg === 'config reloaded' && r.level === 'info'), 'logged at info before the level went to warn');
});

t.test('Agent.reload: an interval change is announced to the peer, not warned about', async (t) => {
  const { agent, records } = unstartedAgent(t, exampleConfig());
  agent.reload(exampleConfig(['heartbeat.intervalMs=300']));
  t.match(
    records.find((r) => typeof r.msg === 'string' && r.msg.startsWith('heartbeat interval changed: announced')),
    { level: 'info', fromMs: 100, toMs: 300, peerAnnounces: false },
    'logged at info: the peer follows the announced interval',
  );
  t.notOk(records.some((r) => r.level === 'warn'), 'no warning: either side may change first');
});

t.test('Agent.reload: thresholds a detector refuses change nothing', async (t) => {
  const cfg = exampleConfig();
  const { agent, logger } = unstartedAgent(t, cfg);
  // loadConfig's rules would refuse this (suspectMisses must be < missThreshold): built by hand.
  const bad = structuredClone(cfg);
  bad.heartbeat.intervalMs = 50;
  bad.heartbeat.suspectMisses = 5;
  bad.log.level = 'debug';
  t.throws(() => agent.reload(bad), DetectorOptionsError);
  t.equal(agent.peer.options.intervalMs, 100);
  t.equal(logger.level, 'info');
  t.same(agent.reload(cfg), { applied: [], needsRestart: [] }, 'the running config is unchanged');
});

t.test('Agent.reload: every live key is a schema key', async (t) => {
  const all = schemaLeaves().map((l) => l.path);
  for (const k of LIVE_CONFIG_KEYS) t.ok(all.includes(k), `${k} is a config key`);
});

// ---- end to end: SIGHUP on a real pair ----

type Side = 'primary' | 'secondary';
const HOSTS: Record<Side, string> = { primary: '127.0.0.1', secondary: '127.0.0.2' };

/** A complete config file's content; `over` is merged one section deep. */
type Sections = Record<string, Record<string, unknown>>;

function writeConfig(file: string, base: Sections, over: Sections = {}): void {
  const merged: Sections = {};
  for (const s of new Set([...Object.keys(base), ...Object.keys(over)])) merged[s] = { ...base[s], ...over[s] };
  writeFileSync(file, stringify(merged));
}

const reloaded: LogPredicate = (r) => typeof r.msg === 'string' && r.msg.startsWith('config reloaded');
const problemLine: LogPredicate = (r) => r.msg === 'config reload: invalid configuration';

/**
 * A transition of the peer detector. peerTransition() alone also matches the detector's other
 * records (its 'failure detector options updated' line has no `to`), and so does the helper's
 * peerState(): hence this predicate and lastPeerState() here.
 */
const peerMoved: LogPredicate = (r) => peerTransition()(r) && typeof r.to === 'string';

function lastPeerState(a: AgentProcess): unknown {
  return a.filter(peerMoved).at(-1)?.record?.to;
}

/** Nothing since `since` says a link or the peer went down; the agent runs and sees its peer up. */
function assertUndisturbed(t: Test, a: AgentProcess, since: number): void {
  t.ok(a.alive, `${a.name} is running`);
  t.same(a.filter(linkDown(), since).map((e) => e.line), [], `${a.name}: no heartbeat link went down`);
  t.same(a.filter(peerMoved, since).map((e) => e.line), [], `${a.name}: the peer detector did not move`);
  t.equal(lastPeerState(a), 'up', `${a.name}: peer up`);
}

t.test('SIGHUP on a running pair', async (t) => {
  if (!existsSync(CLI_PATH)) {
    t.fail(`${CLI_PATH} is missing: these tests run the built CLI. Run \`npm run build\` (npm test does it before tap).`);
    return;
  }
  const stale = staleBuildHint();
  if (stale) t.comment(`warning: ${stale}`);
  t.teardown(killAllChildren);

  const dir = shortTempDir(t, 'colo-reload-');
  const keyFile = join(dir, 'heartbeat.key');
  await keygen(keyFile, false);
  const port: Record<Side, number> = { primary: await freePort(HOSTS.primary), secondary: await freePort(HOSTS.secondary) };
  const file: Record<Side, string> = { primary: join(dir, 'primary.yaml'), secondary: join(dir, 'secondary.yaml') };
  const base = (side: Side): Sections => {
    const other: Side = side === 'primary' ? 'secondary' : 'primary';
    return {
      node: { name: side === 'primary' ? 'colo-a' : 'colo-b', role: side, stateDir: join(dir, side) },
      // Nothing listens there: QMP redials in the background (logged at debug), which is all we need.
      qemu: { qmp: `unix:${join(dir, `${side}-qmp.sock`)}`, reconnectInitialMs: 50, reconnectMaxMs: 200 },
      heartbeat: {
        listen: `${HOSTS[side]}:${port[side]}`,
        peers: [`${HOSTS[other]}:${port[other]}`],
        keyFile,
        intervalMs: 100,
        missThreshold: 10,
        suspectMisses: 5,
        helloTimeoutMs: 1000,
        reconnectInitialMs: 50,
        reconnectMaxMs: 500,
      },
      colo: { primaryHost: HOSTS.primary, secondaryHost: HOSTS.secondary },
      failover: { enabled: false },
      arbiter: { mode: 'none' },
      metrics: { listen: '' },
      log: { level: 'info' },
    };
  };
  /** What each agent runs with now (restart-only keys aside), to rewrite the files from. */
  const running: Record<Side, Sections> = { primary: base('primary'), secondary: base('secondary') };
  for (const side of ['primary', 'secondary'] as const) writeConfig(file[side], running[side]);

  const agents = {} as Record<Side, AgentProcess>;
  for (const side of ['primary', 'secondary'] as const) agents[side] = await startAgent({ name: side, config: file[side], sets: [], t });
  const both = [agents.primary, agents.secondary];
  await Promise.all(both.map((a) => a.waitForPeerState('up', WAIT_MS)));

  await t.test('interval and log level change live; no link drops', async (t) => {
    const since = both.map((a) => a.cursor());
    for (const side of ['primary', 'secondary'] as const) {
      running[side] = { ...running[side], heartbeat: { ...running[side].heartbeat, intervalMs: 200 }, log: { level: 'debug' } };
      writeConfig(file[side], running[side]);
      agents[side].kill('SIGHUP');
    }
    for (const [i, a] of both.entries()) {
      const line = await a.waitForLog(reloaded, WAIT_MS, { since: since[i] });
      t.equal(line.record?.msg, 'config reloaded', `${a.name}: reloaded`);
      t.same(line.record?.applied, ['heartbeat.intervalMs', 'log.level'], `${a.name}: applied keys`);
      t.same(line.record?.needsRestart, []);
      const changed = await a.waitForLog(logMsg('heartbeat interval changed', { intervalMs: 200 }), WAIT_MS, { since: since[i] });
      t.ok(changed, `${a.name}: the links run at the new interval`);
      const detector = await a.waitForLog(
        (r) => r.msg === 'failure detector options updated' && r.detector === 'peer' && (r.options as { intervalMs?: number }).intervalMs === 200,
        WAIT_MS,
        { since: since[i] },
      );
      t.ok(detector, `${a.name}: the peer detector expects the new interval`);
      // QMP redials against the missing socket are logged at debug: they show once the level applies.
      const debug = await a.waitForLog((r) => r.level === 'debug', WAIT_MS, { since: line.index });
      t.ok(debug, `${a.name}: debug records appear (component loggers follow the root level)`);
    }
    // Several beats at the new interval, with the detectors and links watching.
    await sleep(1500);
    for (const [i, a] of both.entries()) assertUndisturbed(t, a, since[i]!);
  });

  // Each side's frames announce its interval and the other's detectors follow it (as BFD), so a
  // pair can change timers one node at a time. Without that, the 10x step below would make the
  // side still at 200 ms suspect (and declare down) the side already at 2000 ms.
  await t.test('a rolling interval change, either side first, raises no suspicion', async (t) => {
    const since = both.map((a) => a.cursor());
    const step = async (side: Side, intervalMs: number) => {
      const mark = agents[side].cursor();
      running[side] = { ...running[side], heartbeat: { ...running[side].heartbeat, intervalMs } };
      writeConfig(file[side], running[side]);
      agents[side].kill('SIGHUP');
      await agents[side].waitForLog(logMsg('heartbeat interval changed', { intervalMs }), WAIT_MS, { since: mark });
      const other = agents[side === 'primary' ? 'secondary' : 'primary'];
      const followed = await other.waitForLog((r) => r.msg === "the peer's heartbeat interval: our detectors follow it" && r.to === intervalMs, WAIT_MS);
      t.ok(followed, `${other.name} follows ${side}'s ${intervalMs} ms`);
      await sleep(3 * intervalMs + 500); // a few beats at the new pace
    };
    await step('primary', 2000); // raise, primary first
    await step('secondary', 2000);
    await step('secondary', 200); // lower, secondary first
    await step('primary', 200);
    for (const [i, a] of both.entries()) assertUndisturbed(t, a, since[i]!);
  });

  await t.test('an invalid file: every problem logged, the old config kept', async (t) => {
    const a = agents.primary;
    const since = a.cursor();
    const peerSince = agents.secondary.cursor();
    writeConfig(file.primary, running.primary, { heartbeat: { intervalMs: 'fast' }, failover: { stepTimeoutMs: -1 } });
    a.kill('SIGHUP');
    const rejected = await a.waitForLog(logMsg('config reload rejected: keeping the running config'), WAIT_MS, { since });
    const problems = a.filter(problemLine, since).map((e) => String(e.record?.problem));
    t.equal(rejected.record?.problems, problems.length, 'one line per problem');
    t.equal(problems.length, 2);
    t.match(problems[0], /^heartbeat\.intervalMs: /);
    t.match(problems[1], /^failover\.stepTimeoutMs: /);
    const check = spawnSync(process.execPath, [CLI_PATH, 'check-config', '--config', file.primary], { encoding: 'utf8', env: {} });
    t.equal(check.status, 2, 'check-config refuses the same file');
    t.same(problems, check.stderr.trim().split('\n').slice(1), 'the same lines check-config prints (file and line included)');
    t.notOk(a.find(reloaded, since), 'nothing was reloaded');
    t.notOk(a.find(logMsg('heartbeat interval changed'), since), 'the interval was not touched');

    // Fixed file = the config it has been running with: a reload finds nothing to change.
    const fixed = a.cursor();
    writeConfig(file.primary, running.primary);
    a.kill('SIGHUP');
    const line = await a.waitForLog(reloaded, WAIT_MS, { since: fixed });
    t.equal(line.record?.msg, 'config reloaded: nothing changed', 'the running config was the previous valid one');
    assertUndisturbed(t, a, since);
    assertUndisturbed(t, agents.secondary, peerSince);
  });

  await t.test('a restart-only key: reported as needing a restart, not applied', async (t) => {
    const a = agents.primary;
    const peerSince = agents.secondary.cursor();
    const since = a.cursor();
    const over = { node: { name: 'colo-a2' }, colo: { statusPollMs: 500 }, failover: { enabled: true } };
    writeConfig(file.primary, running.primary, over);
    a.kill('SIGHUP');
    const line = await a.waitForLog(reloaded, WAIT_MS, { since });
    t.equal(line.record?.msg, 'config reloaded (some changes need a restart)');
    t.equal(line.record?.level, 'warn');
    t.same(line.record?.applied, ['failover.enabled'], 'the live key was applied');
    t.same([...(line.record?.needsRestart as string[])].sort(), ['colo.statusPollMs', 'node.name']);
    t.same((line.record?.changes as Record<string, unknown>)['node.name'], { from: 'colo-a', to: 'colo-a2' });
    // failover.enabled with arbiter.mode none: the loader's warning is logged, not printed to a terminal.
    t.ok(a.find((r) => r.msg === 'config warning' && String(r.warning).includes('split brain'), since), 'config warnings are logged');

    // The same file again: node.name is still pending (the agent runs as colo-a), failover.enabled is not.
    const again = a.cursor();
    a.kill('SIGHUP');
    const second = await a.waitForLog(reloaded, WAIT_MS, { since: again });
    t.same(second.record?.applied, []);
    t.same([...(second.record?.needsRestart as string[])].sort(), ['colo.statusPollMs', 'node.name']);
    t.notOk(agents.secondary.find((r) => typeof r.msg === 'string' && r.msg.startsWith('peer '), peerSince), 'the peer saw no new session or name');
    assertUndisturbed(t, a, since);
    assertUndisturbed(t, agents.secondary, peerSince);
  });

  await t.test('after all the reloads a SIGTERM still stops the agent cleanly', async (t) => {
    const exit = await agents.primary.stop();
    t.equal(exit.code, 0);
  });
});
