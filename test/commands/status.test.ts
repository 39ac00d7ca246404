/** `colo-agent status` against a running agent process, over its real HTTP /status. */
import t from 'tap';
import { join } from 'node:path';
import { EXAMPLE_CONFIGS, freePort, loneAgentSets, startAgent } from '../helpers/agent-process.js';
import type { AgentState, AgentStatus } from '../../src/agent.js';
import { formatStatus } from '../../src/commands/status.js';
import { AGENT_STATES } from '../../src/metrics/registry.js';
import { runCli } from '../helpers/cli.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

t.test('human summary and --json from a running agent; a clear error when none answers', async (t) => {
  const dir = shortTempDir(t, 'st-');
  const metricsPort = await freePort();
  // A long startup grace: the CLI calls below must see waiting-for-peer however slow the machine is.
  const sets = [...(await loneAgentSets(dir, join(dir, 'state'), metricsPort)), 'heartbeat.startupGraceMs=120000'];
  await startAgent({ name: 'primary', config: EXAMPLE_CONFIGS.primary, sets, t });
  const cliSets = sets.flatMap((s) => ['--set', s]);

  const human = await runCli(['status', '--config', EXAMPLE_CONFIGS.primary, ...cliSets]);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^node colo-a {2}role primary {2}state waiting-for-peer/m);
  t.match(human.stdout, /^qemu \w+ {2}COLO mode unknown/m);
  t.match(human.stdout, /^epoch 0 {2}arbiter none$/m);
  t.match(human.stdout, /^hosts: primary 127\.0\.0\.1 \(this node\), secondary 127\.0\.0\.2 \(the peer\); from installed$/m, 'a fresh node: its installed role');

  const json = await runCli(['status', '--config', EXAMPLE_CONFIGS.primary, ...cliSets, '--json']);
  t.equal(json.code, 0, json.stderr);
  t.match(JSON.parse(json.stdout), { node: 'colo-a', role: 'primary', state: 'waiting-for-peer', qemu: { colo: { mode: 'unknown' } } });

  const none = await runCli(['status', '--config', EXAMPLE_CONFIGS.primary, ...cliSets, '--set', `metrics.listen=127.0.0.1:${await freePort()}`]);
  t.equal(none.code, 1);
  t.match(none.stderr, /STATUS_UNAVAILABLE: cannot reach the agent/);
});

t.test('the summary names every state, and says so when the node is stale, paused or arbitrating', async (t) => {
  const base: AgentStatus = {
    node: 'colo-b',
    role: 'secondary',
    state: 'peer-up',
    peer: { name: 'colo-a', state: 'up', silentForMs: 40, qemuReachable: true },
    links: [{ link: '127.0.0.1:7410', state: 'up', rttMs: 0.25 }],
    qemu: { qmp: 'unix:/run/q.sock', status: 'ready', version: '7.2.22', colo: { mode: 'secondary' } as AgentStatus['qemu']['colo'] },
    maintenance: { on: false },
    epoch: { epoch: 0, newestSeen: 0, newestSeenFrom: undefined, stale: false, holder: undefined, updatedAt: undefined },
    arbiter: { mode: 'witness', reachable: true },
  };
  for (const state of AGENT_STATES as AgentState[]) {
    t.match(formatStatus({ ...base, state }), new RegExp(`^node colo-b {2}role secondary {2}state ${state}$`, 'm'), state);
  }
  t.match(formatStatus(base), /^epoch 0 {2}arbiter witness reachable$/m);
  const stale = formatStatus({
    ...base,
    state: 'stale',
    epoch: { ...base.epoch!, newestSeen: 2, newestSeenFrom: 'peer colo-a', stale: true },
    arbiter: { mode: 'witness', reachable: false },
    guestStopped: 'stale',
  });
  t.match(stale, /^epoch 0 {2}STALE: epoch 2 exists \(from peer colo-a\); this node stays passive {2}arbiter witness UNREACHABLE$/m);
  t.match(stale, /^guest PAUSED by the agent \(stale epoch\)$/m);
  const leased = formatStatus({ ...base, role: 'primary', arbiter: { mode: 'witness', reachable: true, leaseRemainingMs: 412.7 }, guestStopped: 'lease' });
  t.match(leased, /lease 413 ms left$/m);
  t.match(leased, /^guest PAUSED by the agent \(cut off from peer and arbiter, lease ran out\)$/m);
  const older = formatStatus({ ...base, epoch: undefined, arbiter: undefined as unknown as AgentStatus['arbiter'] });
  t.notMatch(older, /epoch/, "an older agent's /status without epoch prints no epoch line");
  t.notMatch(older, /^hosts:/m, "an older agent's /status without topology prints no hosts line");
  // Roles swapped after a failback: this node (installed secondary, 10.0.0.2) runs the primary.
  const swapped = formatStatus({
    ...base,
    role: 'primary',
    topology: { self: '10.0.0.2', peer: '10.0.0.1', primaryHost: '10.0.0.2', secondaryHost: '10.0.0.1', source: 'colo-mode' },
  });
  const lost = formatStatus({ ...base, state: 'peer-down', peer: { name: 'colo-a', state: 'down', silentForMs: 61_000, qemuReachable: false, probe: { verdict: 'silent', agoMs: 60_400, target: '10.0.0.1:9003' } } });
  t.match(lost, /^peer colo-a down, last heartbeat 61000 ms ago, its QEMU UNREACHABLE \(probe of 10\.0\.0\.1:9003: silent, 60 s ago\)$/m, 'a silent peer: the probe speaks, not its last heartbeat');
  t.match(swapped, /^hosts: primary 10\.0\.0\.2 \(this node\), secondary 10\.0\.0\.1 \(the peer\); from colo-mode$/m);
});

t.test('the summary says how long the guest is unprotected, the resync, the last resume and a launched QEMU', async (t) => {
  const base: AgentStatus = {
    node: 'colo-a',
    role: 'primary',
    state: 'solo',
    peer: { name: 'colo-b', state: 'up', silentForMs: 40, qemuReachable: true },
    links: [],
    qemu: { qmp: 'unix:/run/q.sock', status: 'ready', version: '7.2.22', colo: { mode: 'none' } as AgentStatus['qemu']['colo'] },
    maintenance: { on: false },
    arbiter: { mode: 'none', reachable: true },
  };
  t.notMatch(formatStatus(base), /UNPROTECTED|resume|launched/, 'nothing when replicated and nothing launched');
  const solo = formatStatus({
    ...base,
    failback: {
      unprotectedForMs: 61_400,
      nextAttemptInMs: 4_200,
      lastResume: { sequence: 'primary-resume', ok: false, rolledBack: true, resyncMs: 340, error: 'wait-colo: not within 60000 ms' },
    },
  });
  t.match(solo, /^UNPROTECTED for 61 s; waiting for a fresh secondary on the peer; next resume attempt in 4 s$/m);
  t.match(solo, /^last resume: primary-resume FAILED, rolled back \(resync 340 ms\): wait-colo: not within 60000 ms$/m);
  const resuming = formatStatus({
    ...base,
    state: 'resuming',
    failback: { unprotectedForMs: 2_000, peerReady: { epoch: 3, nbd: '127.0.0.2:9999', qemu: '7.2.22' }, progress: { percent: 42.5, offset: 425, len: 1000 } },
  });
  t.match(resuming, /^UNPROTECTED for 2 s; the peer's fresh secondary is ready \(epoch 3\)$/m);
  t.match(resuming, /^resync 42\.5% \(425 of 1000 bytes\)$/m);
  const launched = formatStatus({
    ...base,
    role: 'secondary',
    state: 'ready-secondary',
    qemu: {
      ...base.qemu,
      launch: {
        pid: 4242, running: true, adopted: true, launches: 0, restartsInWindow: 0, restartPending: false, restartDeferred: false, gaveUp: false, stopped: false,
        logFile: '/var/lib/colo/qemu.log', recordFile: '/var/lib/colo/qemu-launch.json',
      },
    },
  });
  t.match(launched, /^launched QEMU: pid 4242 \(adopted\) running; 0 launches, 0 restarts in window$/m);
  const gaveUp = formatStatus({
    ...base,
    qemu: {
      ...base.qemu,
      launch: {
        running: false, adopted: false, launches: 6, restartsInWindow: 5, restartPending: false, restartDeferred: false, gaveUp: true, stopped: false,
        lastExit: { pid: 9, code: 1, signal: null, at: 0, ranMs: 200 }, logFile: '/l', recordFile: '/r',
      },
    },
  });
  t.match(gaveUp, /^launched QEMU: not running; 6 launches, 5 restarts in window; GAVE UP \(restart budget spent\): restart the agent; last exit: code 1$/m);
});
