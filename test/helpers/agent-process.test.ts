/**
 * The agent-process helper on one real agent (`node dist/cli.js run`, which `npm test` builds
 * first): log capture, waiting, startup failures named clearly, and stopping a frozen agent.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { keygen } from '../../src/commands/keygen.js';
import {
  AgentExitedError,
  AgentLogTimeoutError,
  AgentPortInUseError,
  AgentStartError,
  CLI_PATH,
  EXAMPLE_CONFIGS,
  freePort,
  killAllChildren,
  logMsg,
  logTimeMs,
  sleep,
  startAgent,
} from './agent-process.js';
import { shortTempDir } from './short-temp-dir.js';

t.teardown(killAllChildren);

async function setsFor(t: Parameters<typeof shortTempDir>[0], listenPort: number): Promise<string[]> {
  const dir = shortTempDir(t, 'colo-ap-');
  const keyFile = join(dir, 'key');
  await keygen(keyFile, false);
  return [
    `heartbeat.keyFile=${keyFile}`,
    `heartbeat.listen=127.0.0.1:${listenPort}`,
    // Nobody listens there: the agent just keeps redialling.
    `heartbeat.peers=127.0.0.2:${await freePort('127.0.0.2')}`,
    `node.stateDir=${dir}`,
    `qemu.qmp=unix:${join(dir, 'qmp.sock')}`,
    'metrics.listen=',
  ];
}

if (!existsSync(CLI_PATH)) {
  t.fail(`${CLI_PATH} is missing: run \`npm run build\` (npm test does it before tap)`);
} else {
  t.test('captures JSON records and plain lines; waitForLog resolves, honours since, and times out', async (t) => {
    // The wrapper writes one plain line to stderr before it execs the agent, as a crash trace would.
    const wrap = ['sh', '-c', 'echo "plain text, not JSON" >&2; exec "$@"', 'sh'];
    const agent = await startAgent({ t, name: 'solo', config: EXAMPLE_CONFIGS.primary, sets: await setsFor(t, await freePort()), wrap });
    const started = await agent.waitForLog(logMsg('heartbeat links started'), 5000);
    t.equal(started.record?.component, 'agent');
    t.ok(Math.abs(logTimeMs(started.record!) - started.arrivedAt) < 60_000, 'pino time parses as wall-clock ms');
    // Read before the peer (nobody listens) is declared down, a few seconds after the start.
    t.equal(agent.peerState(), undefined, 'no peer transition yet');
    const plain = agent.entries.find((e) => e.stream === 'stderr');
    t.ok(plain && plain.record === undefined && plain.line === 'plain text, not JSON', 'non-JSON stderr lines are kept');
    // The example config's split-brain warning is a JSON record (run tells each risky setting once).
    t.ok(agent.find((r) => r.level === 'warn' && /arbiter/.test(String(r.msg))), 'the risky-setting warning is a record');

    await t.rejects(agent.waitForLog(logMsg('heartbeat links started'), 200, { since: agent.cursor() }), AgentLogTimeoutError, 'since skips earlier records');

    agent.kill('SIGSTOP');
    const exit = await agent.stop(5000);
    t.equal(exit.code, 0, 'a frozen agent is thawed and stops cleanly');
    t.ok(agent.find(logMsg('agent state stopping -> stopped')), 'it logged its stop');
    await t.rejects(agent.waitForLog(() => false, 5000), AgentExitedError, 'waiting on an exited agent fails at once');
  });

  t.test('a port already in use is reported as AgentPortInUseError', async (t) => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const port = (blocker.address() as net.AddressInfo).port;
    await t.rejects(startAgent({ t, name: 'clash', config: EXAMPLE_CONFIGS.primary, sets: await setsFor(t, port) }), AgentPortInUseError);
  });

  t.test('a bad config fails the start with the agent\'s own message', async (t) => {
    const sets = [...(await setsFor(t, await freePort())), 'heartbeat.intervalMs=fast'];
    const err = await startAgent({ t, name: 'bad', config: EXAMPLE_CONFIGS.primary, sets }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof AgentStartError && !(err instanceof AgentPortInUseError), 'AgentStartError');
    t.match((err as Error).message, /invalid configuration/);
    t.match((err as Error).message, /heartbeat\.intervalMs/);
  });
}
