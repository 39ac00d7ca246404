/**
 * qemu.launch.*: the keys of the agent launching its own (secondary) QEMU, their argv-list format,
 * and the rules that keep a launched QEMU a fresh secondary.
 */
import t from 'tap';
import { ConfigError } from '../../src/config/errors.js';
import { getFormat } from '../../src/config/formats.js';
import { loadConfig } from '../../src/config/loader.js';

const BASE = ['heartbeat.peers=127.0.0.2:7410', 'node.name=colo-b', 'node.role=secondary'];
const COMMAND = ['/usr/bin/qemu-system-x86_64', '-incoming', 'tcp:0.0.0.0:9998', '-drive', 'if=none,id=parent0,file=/var/lib/vm.qcow2'];

function problems(opts: { env?: NodeJS.ProcessEnv; sets?: string[] }): readonly { key: string; message: string; source?: string }[] {
  try {
    loadConfig({ env: opts.env ?? {}, sets: [...BASE, ...(opts.sets ?? [])] });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems;
  }
}

t.test('defaults: off, attach to a QEMU someone else started', async (t) => {
  const cfg = loadConfig({ env: {}, sets: BASE });
  t.same(cfg.qemu.launch, {
    enabled: false,
    secondaryCommand: [],
    restart: 'on-failure',
    maxRestarts: 5,
    restartWindowMs: 600_000,
    restartDelayMs: 2000,
  });
});

t.test('argv-list accepts non-empty strings only and says which entry is wrong', async (t) => {
  const f = getFormat('argv-list');
  t.doesNotThrow(() => f.validate([], {}));
  t.doesNotThrow(() => f.validate(COMMAND, {}));
  t.throws(() => f.validate('qemu-system-x86_64 -incoming defer', {}), /must be a list of non-empty strings.*JSON array/);
  t.throws(() => f.validate(['qemu', ''], {}), /entry 2 is empty/);
  t.throws(() => f.validate(['qemu', 7], {}), /entry 2 7: not a string/);
  t.throws(() => f.validate(['qemu', 'a\0b'], {}), /entry 2 contains a NUL character/);
  t.match(f.describe({}), 'JSON array in env and --set');
});

t.test('argv-list text form (env, --set) is a JSON array, so QEMU\'s commas stay inside one argument', async (t) => {
  const f = getFormat('argv-list');
  t.same(f.coerce!(JSON.stringify(COMMAND)), COMMAND);
  t.same(f.coerce!('  '), [], '"" is the empty list');
  t.equal(f.coerce!('qemu -incoming defer'), 'qemu -incoming defer', 'not JSON: left for validate to report');
  t.equal(f.coerce!('[oops'), '[oops');
  t.equal(f.coerce!('{"a":1}'), '{"a":1}', 'JSON but not a list');
});

t.test('from a file, the environment and --set', async (t) => {
  const dir = t.testdir({
    'agent.yaml': ['qemu:', '  launch:', '    enabled: true', '    restart: "no"', '    secondaryCommand:', ...COMMAND.map((a) => `      - "${a}"`), ''].join('\n'),
    // YAML 1.2: a bare no is the string "no", not false.
    'bare.yaml': ['qemu:', '  launch:', '    restart: no', ''].join('\n'),
  });
  const fromFile = loadConfig({ env: {}, files: [`${dir}/agent.yaml`], sets: BASE });
  t.same(fromFile.qemu.launch.secondaryCommand, COMMAND);
  t.equal(fromFile.qemu.launch.restart, 'no');
  t.equal(loadConfig({ env: {}, files: [`${dir}/bare.yaml`], sets: BASE }).qemu.launch.restart, 'no');

  const fromEnv = loadConfig({
    env: {
      COLO_AGENT_QEMU_LAUNCH_ENABLED: 'true',
      COLO_AGENT_QEMU_LAUNCH_SECONDARY_COMMAND: JSON.stringify(COMMAND),
      COLO_AGENT_QEMU_LAUNCH_RESTART: 'always',
      COLO_AGENT_QEMU_LAUNCH_MAX_RESTARTS: '3',
      COLO_AGENT_QEMU_LAUNCH_RESTART_WINDOW_MS: '60000',
      COLO_AGENT_QEMU_LAUNCH_RESTART_DELAY_MS: '0',
    },
    sets: BASE,
  });
  t.same(fromEnv.qemu.launch, { enabled: true, secondaryCommand: COMMAND, restart: 'always', maxRestarts: 3, restartWindowMs: 60_000, restartDelayMs: 0 });

  const fromSet = loadConfig({ env: {}, sets: [...BASE, 'qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(COMMAND)}`] });
  t.same(fromSet.qemu.launch.secondaryCommand, COMMAND);
});

t.test('bad values are reported by key and source', async (t) => {
  const p = problems({ env: { COLO_AGENT_QEMU_LAUNCH_SECONDARY_COMMAND: 'qemu-system-x86_64 -incoming defer' }, sets: ['qemu.launch.restart=sometimes', 'qemu.launch.maxRestarts=0'] });
  t.match(p, [
    { key: 'qemu.launch.secondaryCommand', message: /JSON array/, source: 'env COLO_AGENT_QEMU_LAUNCH_SECONDARY_COMMAND' },
    { key: 'qemu.launch.restart', message: 'must be one of no, on-failure, always (got "sometimes")', source: '--set' },
    { key: 'qemu.launch.maxRestarts', message: /between 1 and 1000/ },
  ]);
});

t.test('enabled needs a command, and the command must be a fresh secondary\'s', async (t) => {
  t.match(problems({ sets: ['qemu.launch.enabled=true'] }), [{ key: 'qemu.launch.secondaryCommand', message: /must give the secondary QEMU's command/ }]);
  t.same(problems({ sets: [`qemu.launch.secondaryCommand=${JSON.stringify(['qemu-system-x86_64'])}`] }), [], 'not enabled: not checked');
  const noIncoming = problems({ sets: ['qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(['qemu-system-x86_64', '-S', '-daemonize'])}`] });
  t.match(noIncoming, [
    { key: 'qemu.launch.secondaryCommand', message: /must contain -incoming/, source: '--set' },
    { key: 'qemu.launch.secondaryCommand', message: /must not contain -daemonize/ },
  ]);
  t.equal(noIncoming.length, 2);
  t.same(problems({ sets: ['qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(['qemu-system-x86_64', '--incoming', 'defer'])}`] }), []);
  t.same(problems({ sets: ['qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(COMMAND)}`] }), []);
});

t.test('a witness launches no QEMU', async (t) => {
  const p = problems({ sets: ['node.role=witness', 'arbiter.mode=witness', 'heartbeat.peers=', 'qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(COMMAND)}`] });
  t.match(p, [{ key: 'qemu.launch.enabled', message: /must be false when node.role is witness/ }]);
  t.equal(p.length, 1);
});
