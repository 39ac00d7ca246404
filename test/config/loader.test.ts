import { hostname } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { hasCode, ColoAgentError } from '../../src/errors.js';
import { ConfigError, type ConfigProblem } from '../../src/config/errors.js';
import { loadConfig, type LoadConfigOptions } from '../../src/config/loader.js';

/** The peer that every valid primary needs; tests that are not about peers add it with --set. */
const PEER = 'heartbeat.peers=127.0.0.2:7410';

/** Loads with an empty environment unless the test gives one, so the host's variables cannot interfere. */
function load(opts: LoadConfigOptions = {}) {
  return loadConfig({ env: {}, ...opts });
}

/** The problems of a load that must fail; fails the test if it does not. */
function problemsOf(t: Test, opts: LoadConfigOptions): readonly ConfigProblem[] {
  try {
    load(opts);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  t.fail('expected a ConfigError');
  return [];
}

function fixture(t: Test, files: Parameters<Test['testdir']>[0]): (name: string) => string {
  const dir = t.testdir(files);
  return (name) => join(dir, name);
}

t.test('a good YAML file: its values, defaults for the rest, node.name from the host', async (t) => {
  const f = fixture(t, {
    'agent.yaml': [
      'node:',
      '  role: secondary',
      'heartbeat:',
      '  listen: 127.0.0.2:7410',
      '  peers: [127.0.0.1:7410, "10.0.0.1:7410"]',
      '  intervalMs: 50',
      '  insecure: false',
      '  phiThreshold: 8.5',
      'colo:',
      '  ids:',
      '    comp0: compX',
      'metrics:',
      '  listen: ""',
      '',
    ].join('\n'),
  });
  const cfg = load({ files: [f('agent.yaml')] });
  t.equal(cfg.node.role, 'secondary');
  t.equal(cfg.node.name, hostname(), 'empty node.name becomes the host name');
  t.same(cfg.heartbeat.peers, ['127.0.0.1:7410', '10.0.0.1:7410']);
  t.equal(cfg.heartbeat.intervalMs, 50);
  t.equal(cfg.heartbeat.phiThreshold, 8.5);
  t.equal(cfg.colo.ids.comp0, 'compX');
  t.equal(cfg.colo.ids.m0, 'm0', 'a sibling keeps its default');
  t.equal(cfg.metrics.listen, '', 'metrics off');
  t.equal(cfg.qemu.commandTimeoutMs, 3000, 'untouched section keeps defaults');
  t.equal(cfg.log.level, 'info');
});

t.test('a good JSON file, and .yml', async (t) => {
  const f = fixture(t, {
    'agent.json': JSON.stringify({ node: { name: 'colo-a' }, heartbeat: { peers: ['127.0.0.2:7410'], missThreshold: 5 } }),
    'agent.yml': 'qemu:\n  profile: "10.0"\n',
  });
  const cfg = load({ files: [f('agent.json'), f('agent.yml')] });
  t.equal(cfg.node.name, 'colo-a');
  t.equal(cfg.heartbeat.missThreshold, 5);
  t.equal(cfg.qemu.profile, '10.0');
});

t.test('an empty YAML file, or one with every section commented out, sets nothing', async (t) => {
  const f = fixture(t, { 'empty.yaml': '', 'comments.yaml': '# nothing\nheartbeat:\n  # intervalMs: 5\n' });
  const cfg = load({ files: [f('empty.yaml'), f('comments.yaml')], sets: [PEER] });
  t.equal(cfg.heartbeat.intervalMs, 100);
});

t.test('environment variables override files and are coerced to the key\'s type', async (t) => {
  const f = fixture(t, { 'a.yaml': 'heartbeat:\n  intervalMs: 50\n  peers: [127.0.0.2:7410]\n' });
  const cfg = load({
    files: [f('a.yaml')],
    env: {
      COLO_AGENT_HEARTBEAT_INTERVAL_MS: '75',
      COLO_AGENT_HEARTBEAT_PEERS: '127.0.0.3:7410, 10.0.0.3:7410',
      COLO_AGENT_HEARTBEAT_INSECURE: 'true',
      COLO_AGENT_LOG_LEVEL: 'debug',
      UNRELATED: 'x',
    },
  });
  t.equal(cfg.heartbeat.intervalMs, 75);
  t.same(cfg.heartbeat.peers, ['127.0.0.3:7410', '10.0.0.3:7410']);
  t.equal(cfg.heartbeat.insecure, true);
  t.equal(cfg.log.level, 'debug');
});

t.test('process.env is read when no env is given', async (t) => {
  process.env.COLO_AGENT_LOG_LEVEL = 'trace';
  t.teardown(() => {
    delete process.env.COLO_AGENT_LOG_LEVEL;
  });
  t.equal(loadConfig({ sets: [PEER] }).log.level, 'trace');
});

t.test('--set overrides everything and coerces to the key\'s type', async (t) => {
  const cfg = load({
    env: { COLO_AGENT_HEARTBEAT_INTERVAL_MS: '75' },
    sets: [
      'heartbeat.peers=127.0.0.2:7410,10.0.0.2:7410',
      'heartbeat.intervalMs=50',
      'heartbeat.insecure=true',
      'heartbeat.phiThreshold=8',
      'metrics.listen=',
      'node.name=colo-a',
      ' failover.enabled =false',
    ],
  });
  t.same(cfg.heartbeat.peers, ['127.0.0.2:7410', '10.0.0.2:7410']);
  t.equal(cfg.heartbeat.intervalMs, 50);
  t.equal(typeof cfg.heartbeat.intervalMs, 'number');
  t.equal(cfg.heartbeat.insecure, true);
  t.equal(cfg.heartbeat.phiThreshold, 8);
  t.equal(cfg.metrics.listen, '');
  t.equal(cfg.node.name, 'colo-a');
  t.equal(cfg.failover.enabled, false, 'the key is trimmed');
});

t.test('precedence: defaults < files in order < env < --set', async (t) => {
  const f = fixture(t, {
    '1.yaml': 'heartbeat:\n  intervalMs: 11\n  missThreshold: 11\n  recoverBeats: 11\n  helloTimeoutMs: 11\n  peers: [127.0.0.2:7410]\n',
    '2.yaml': 'heartbeat:\n  intervalMs: 22\n  missThreshold: 22\n  recoverBeats: 22\n',
  });
  const cfg = load({
    files: [f('1.yaml'), f('2.yaml')],
    env: { COLO_AGENT_HEARTBEAT_INTERVAL_MS: '33', COLO_AGENT_HEARTBEAT_MISS_THRESHOLD: '33' },
    sets: ['heartbeat.intervalMs=44'],
  });
  t.equal(cfg.heartbeat.intervalMs, 44, '--set beats env');
  t.equal(cfg.heartbeat.missThreshold, 33, 'env beats files');
  t.equal(cfg.heartbeat.recoverBeats, 22, 'a later file beats an earlier one');
  t.equal(cfg.heartbeat.helloTimeoutMs, 11, 'a file beats the default');
  t.equal(cfg.heartbeat.startupGraceMs, 3000, 'the default stays when nobody sets it');
  t.same(cfg.heartbeat.peers, ['127.0.0.2:7410'], 'a list is kept from the only file that sets it');
});

t.test('a later file replaces a list, it does not append to it', async (t) => {
  const f = fixture(t, {
    '1.yaml': 'heartbeat:\n  peers: [127.0.0.2:7410, 10.0.0.2:7410]\n',
    '2.yaml': 'heartbeat:\n  peers: [10.0.0.9:7410]\n',
  });
  t.same(load({ files: [f('1.yaml'), f('2.yaml')] }).heartbeat.peers, ['10.0.0.9:7410']);
});

t.test('the error: CONFIG_INVALID, a ColoAgentError, one line per problem', async (t) => {
  const f = fixture(t, { 'a.yaml': 'heartbeat:\n  intervalMs: fast\n  peers: [127.0.0.2:7410]\n' });
  let caught: unknown;
  try {
    load({ files: [f('a.yaml')] });
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof ConfigError);
  t.ok(caught instanceof ColoAgentError);
  t.ok(hasCode(caught, 'CONFIG_INVALID'));
  const err = caught as ConfigError;
  t.same(err.problems, [
    { key: 'heartbeat.intervalMs', message: 'must be an integer between 10 and 60000 (got "fast")', source: f('a.yaml'), line: 2 },
  ]);
  t.equal(err.message, `heartbeat.intervalMs: must be an integer between 10 and 60000 (got "fast") [${f('a.yaml')}:2]`);
});

t.test('broken syntax names the file and the line', async (t) => {
  const f = fixture(t, {
    'bad.yaml': 'node:\n  role: primary\n heartbeat:\n  intervalMs: 5\n',
    'bad.json': '{\n  "node": {\n    "role": "primary",\n  }\n}\n',
    'dup.yaml': 'log:\n  level: info\n  level: debug\n',
    'dup.json': '{"log": {"level": "info",\n "level": "debug"}}',
  });
  const [yaml] = problemsOf(t, { files: [f('bad.yaml')] });
  t.match(yaml, { key: '', source: f('bad.yaml'), line: 3, message: /^invalid YAML at column \d+: / });
  const [json] = problemsOf(t, { files: [f('bad.json')] });
  t.match(json, { key: '', source: f('bad.json'), line: 4, message: /^invalid JSON: / });
  t.notMatch(json!.message, /\n/, 'one line');
  const [dupYaml] = problemsOf(t, { files: [f('dup.yaml')] });
  t.match(dupYaml, { source: f('dup.yaml'), line: 3, message: /Map keys must be unique/ });
  const [dupJson] = problemsOf(t, { files: [f('dup.json')] });
  t.match(dupJson, { source: f('dup.json'), line: 2, message: 'invalid JSON: duplicate key' });
});

t.test('missing files, directories and unknown extensions are clear errors', async (t) => {
  const f = fixture(t, { 'agent.toml': 'x = 1\n', 'noext': 'a: 1\n', 'dir.yaml': {} });
  const problems = problemsOf(t, { files: [f('missing.yaml'), f('agent.toml'), f('noext'), f('dir.yaml')] });
  t.same(problems.map((p) => [p.source, p.message]), [
    [f('missing.yaml'), 'file not found'],
    [f('agent.toml'), 'unsupported file extension ".toml": configuration files must end in .yaml, .yml or .json'],
    [f('noext'), 'no file extension: configuration files must end in .yaml, .yml or .json'],
    [f('dir.yaml'), 'is a directory, not a file'],
  ]);
  t.equal(problems.length, 4, 'no rule problems about a config that could not be read (peers is empty here)');
});

t.test('unknown keys, at the top level and nested, with a line and a suggestion', async (t) => {
  const f = fixture(t, {
    'a.yaml': [
      'hearbeat:', //                 1: misspelt section
      '  intervalMs: 5',
      'heartbeat:', //               3
      '  peers: [127.0.0.2:7410]',
      '  interval_ms: 50', //          5: misspelt key
      '  colour: blue', //             6: nothing like it
      'qemu:',
      '  intervalMs: 100', //          8: right key, wrong section
      'colo:',
      '  ids:',
      '    comp1: x', //              11: deeper
      '',
    ].join('\n'),
  });
  const problems = problemsOf(t, { files: [f('a.yaml')] });
  t.same(
    problems.map((p) => [p.key, p.message, p.line]),
    [
      ['hearbeat', 'unknown key (did you mean heartbeat?)', 1],
      ['heartbeat.interval_ms', 'unknown key (did you mean heartbeat.intervalMs?)', 5],
      ['heartbeat.colour', 'unknown key', 6],
      ['qemu.intervalMs', 'unknown key (did you mean heartbeat.intervalMs?)', 8],
      ['colo.ids.comp1', 'unknown key (did you mean colo.ids.comp0?)', 11],
    ],
  );
  t.ok(problems.every((p) => p.source === f('a.yaml')));
});

t.test('unknown keys in JSON are reported with their line too', async (t) => {
  const f = fixture(t, { 'a.json': '{\n  "heartbeat": {\n    "peers": ["127.0.0.2:7410"],\n    "bogus": 1\n  }\n}\n' });
  t.same(problemsOf(t, { files: [f('a.json')] }), [{ key: 'heartbeat.bogus', message: 'unknown key', source: f('a.json'), line: 4 }]);
});

t.test('wrong types', async (t) => {
  const f = fixture(t, {
    'a.yaml': [
      'node: primary', //            a section given a value
      'heartbeat:',
      '  peers: 127.0.0.2', //       a string where a list goes (coerced to a list, then checked)
      '  intervalMs: [1]',
      '  insecure: "yes"',
      '  listen: {host: x}', //      a mapping where a value goes
      '  missThreshold: true',
      'qemu:',
      '  profile: 10.0', //          a YAML number: minor version lost
      '',
    ].join('\n'),
    'list.yaml': '- a\n- b\n',
  });
  const problems = problemsOf(t, { files: [f('a.yaml')] });
  t.same(
    problems.map((p) => [p.key, p.message, p.line]),
    [
      ['node', 'must be a section (a mapping of keys) (got "primary")', 1],
      ['heartbeat.listen', 'must be HOST:PORT (IPv4, [IPv6] or host name; port 1-65535) (got a mapping)', 6],
      ['qemu.profile', 'must be "auto" or a quoted QEMU version such as "10.0" (got 10)', 9],
      ['heartbeat.peers', 'must be a list of HOST:PORT: entry 1 "127.0.0.2": missing ":PORT"', 3],
      ['heartbeat.insecure', 'must be true or false (got "yes")', 5],
      ['heartbeat.intervalMs', 'must be an integer between 10 and 60000 (got [1])', 4],
      ['heartbeat.missThreshold', 'must be an integer between 2 and 1000 (got true)', 7],
    ],
  );
  t.match(problemsOf(t, { files: [f('list.yaml')] }), [{ key: '', message: 'the top level must be a mapping of sections (got a list)' }]);
});

t.test('out of range, bad enum, bad host:port, bad qmp address', async (t) => {
  const f = fixture(t, {
    'a.yaml': [
      'node:',
      '  role: leader',
      'qemu:',
      '  qmp: /run/qmp.sock',
      'heartbeat:',
      '  listen: 0.0.0.0:74100',
      '  peers: ["127.0.0.2:7410", "::1:7410"]',
      '  intervalMs: 5',
      'log:',
      '  level: verbose',
      '',
    ].join('\n'),
  });
  const byKey = new Map(problemsOf(t, { files: [f('a.yaml')] }).map((p) => [p.key, p]));
  t.match(byKey.get('node.role'), { message: 'must be one of primary, secondary, witness (got "leader")', line: 2 });
  t.match(byKey.get('qemu.qmp'), { message: /invalid QMP address "\/run\/qmp.sock"/, line: 4 });
  t.match(byKey.get('heartbeat.listen'), { message: 'must be HOST:PORT: port 74100 is outside 1-65535 (got "0.0.0.0:74100")' });
  t.match(byKey.get('heartbeat.peers'), { message: /entry 2 "::1:7410": an IPv6 address needs brackets/ });
  t.match(byKey.get('heartbeat.intervalMs'), { message: 'must be an integer between 10 and 60000 (got 5)', line: 8 });
  t.match(byKey.get('log.level'), { message: /must be one of fatal, error, warn, info, debug, trace, silent/ });
  t.equal(byKey.size, 6);
});

t.test('bad values from env and --set name their source', async (t) => {
  const problems = problemsOf(t, {
    env: { COLO_AGENT_HEARTBEAT_INTERVAL_MS: 'fast', COLO_AGENT_HEARTBEAT_INSECURE: '0' },
    sets: [PEER, 'heartbeat.missThreshold=many'],
  });
  t.same(problems, [
    { key: 'heartbeat.insecure', message: 'must be true or false (got "0")', source: 'env COLO_AGENT_HEARTBEAT_INSECURE' },
    { key: 'heartbeat.intervalMs', message: 'must be an integer between 10 and 60000 (got "fast")', source: 'env COLO_AGENT_HEARTBEAT_INTERVAL_MS' },
    { key: 'heartbeat.missThreshold', message: 'must be an integer between 2 and 1000 (got "many")', source: '--set' },
  ]);
});

t.test('--set: missing "=", unknown keys, sections', async (t) => {
  const problems = problemsOf(t, {
    sets: [PEER, 'heartbeat.intervalMs', 'heartbeat.intervalms=5', 'heartbeat.nothingLikeIt=1', 'heartbeat=x', '=5', 'nosuch.key=1'],
  });
  t.same(problems, [
    { key: '', message: '"heartbeat.intervalMs" is not key=value', source: '--set' },
    { key: 'heartbeat.intervalms', message: 'unknown key (did you mean heartbeat.intervalMs?)', source: '--set' },
    { key: 'heartbeat.nothingLikeIt', message: 'unknown key', source: '--set' },
    { key: 'heartbeat', message: 'is a section, not a key: set its keys one by one', source: '--set' },
    { key: '', message: '"=5" has no key before "="', source: '--set' },
    { key: 'nosuch.key', message: 'unknown key', source: '--set' },
  ]);
  t.equal(
    new ConfigError(problems).message.split('\n')[0],
    '--set: "heartbeat.intervalMs" is not key=value',
  );
});

t.test('cross-key rules', async (t) => {
  const only = (opts: LoadConfigOptions) => problemsOf(t, opts).map((p) => [p.key, p.message, p.source]);

  t.same(only({ sets: [PEER, 'heartbeat.suspectMisses=3'] }), [
    ['heartbeat.suspectMisses', 'must be less than heartbeat.missThreshold (got 3, heartbeat.missThreshold is 3)', '--set'],
  ]);
  t.same(only({ sets: [PEER, 'qemu.reconnectInitialMs=6000'] }), [
    ['qemu.reconnectInitialMs', 'must not exceed qemu.reconnectMaxMs (got 6000, qemu.reconnectMaxMs is 5000)', '--set'],
  ]);
  t.same(only({ sets: [PEER], env: { COLO_AGENT_HEARTBEAT_RECONNECT_MAX_MS: '20' } }), [
    ['heartbeat.reconnectInitialMs', 'must not exceed heartbeat.reconnectMaxMs (got 50, heartbeat.reconnectMaxMs is 20)', undefined],
  ]);
  t.same(only({ sets: ['node.role=secondary'] }), [
    ['heartbeat.peers', 'must list at least one HOST:PORT when node.role is secondary', undefined],
  ]);
  t.same(only({ sets: ['node.role=witness'] }), [
    ['node.role', 'witness needs arbiter.mode witness (got arbiter.mode "none")', '--set'],
  ]);
  t.same(only({ sets: ['heartbeat.listen=127.0.0.1:7410', 'heartbeat.peers=127.0.0.2:7410,127.0.0.1:7410,127.0.0.2:7410'] }), [
    ['heartbeat.peers', 'entry 2 "127.0.0.1:7410" is this node\'s own heartbeat.listen', '--set'],
    ['heartbeat.peers', 'entry 3 "127.0.0.2:7410" repeats entry 1', '--set'],
  ]);
  t.same(only({ sets: [PEER, 'heartbeat.keyFile='] }), [
    ['heartbeat.keyFile', 'must name the heartbeat key file (only heartbeat.insecure: true allows running without one)', '--set'],
  ]);
  t.same(only({ sets: [PEER, 'colo.mirrorPort=9999', 'colo.compareOutPort=9001'] }), [
    ['colo.mirrorPort', '9999 is already used by colo.nbdPort; the colo ports must be distinct', '--set'],
    ['colo.compareOutPort', '9001 is already used by colo.compare0Port; the colo ports must be distinct', '--set'],
  ]);
  t.same(only({ sets: [PEER, 'colo.ids.f1=m0'] }), [
    ['colo.ids.f1', '"m0" is already used by colo.ids.m0; the colo ids must be distinct', '--set'],
  ]);
});

t.test('cross-key rules that pass', async (t) => {
  t.doesNotThrow(() => load({ sets: ['node.role=witness', 'arbiter.mode=witness'] }), 'a witness needs no peers');
  t.doesNotThrow(() => load({ sets: [PEER, 'heartbeat.keyFile=', 'heartbeat.insecure=true'] }), 'insecure allows no key file');
  t.doesNotThrow(() => load({ sets: [PEER, 'qemu.reconnectInitialMs=5000'] }), 'initial == max is fine');
});

t.test('a key that is invalid on its own is not reported again by a rule', async (t) => {
  const problems = problemsOf(t, { sets: [PEER, 'heartbeat.missThreshold=1'] });
  t.same(problems.map((p) => p.key), ['heartbeat.missThreshold'], 'no "suspectMisses must be less than missThreshold" as well');
});

t.test('many problems from every source are reported together, one line each', async (t) => {
  const f = fixture(t, {
    'a.yaml': 'heartbeat:\n  intervalMs: fast\n  bogus: 1\n  peers: [nope]\nlog:\n  level: loud\n',
    'b.json': '{"node": {"role": "primary", "stateDir": "relative"}}',
  });
  let err: ConfigError | undefined;
  try {
    load({
      files: [f('a.yaml'), f('b.json'), f('missing.yml')],
      env: { COLO_AGENT_METRICS_LISTEN: 'localhost' },
      sets: ['qemu.commandTimeoutMs=0', 'oops'],
    });
  } catch (e) {
    err = e as ConfigError;
  }
  t.ok(err instanceof ConfigError);
  const lines = err!.message.split('\n');
  t.equal(lines.length, err!.problems.length, 'one line per problem');
  t.same(err!.problems.map((p) => p.key), [
    'heartbeat.bogus',
    '',
    '',
    'node.stateDir',
    'qemu.commandTimeoutMs',
    'heartbeat.peers',
    'heartbeat.intervalMs',
    'metrics.listen',
    'log.level',
  ]);
  t.match(lines, [
    `heartbeat.bogus: unknown key [${f('a.yaml')}:3]`,
    `${f('missing.yml')}: file not found`,
    '--set: "oops" is not key=value',
    `node.stateDir: must be an absolute path (got "relative") [${f('b.json')}:1]`,
    'qemu.commandTimeoutMs: must be an integer between 100 and 600000 (got 0) [--set]',
    `heartbeat.peers: must be a list of HOST:PORT: entry 1 "nope": missing ":PORT" [${f('a.yaml')}:4]`,
    `heartbeat.intervalMs: must be an integer between 10 and 60000 (got "fast") [${f('a.yaml')}:2]`,
    'metrics.listen: must be HOST:PORT: missing ":PORT" (got "localhost") [env COLO_AGENT_METRICS_LISTEN]',
    /^log\.level: must be one of .* \(got "loud"\) \[.*a\.yaml:6\]$/,
  ]);
});

t.test('a sensitive value is not echoed in a problem', async (t) => {
  const problems = problemsOf(t, { sets: [PEER, 'heartbeat.keyFile=relative/secret.key'] });
  t.equal(problems.length, 1);
  t.notMatch(problems[0]!.message, 'secret');
  t.match(problems[0]!.message, 'value not shown');
});

t.test('warnings: misspelt COLO_AGENT_ variables and risky settings', async (t) => {
  const warnings: string[] = [];
  load({
    env: { COLO_AGENT_HEARTBEAT_INTERVALMS: '5', COLO_AGENT_CONFIG: '/etc/x.yaml', COLO_AGENT_HEARTBEAT_INSECURE: 'true' },
    sets: [PEER],
    onWarning: (w) => warnings.push(w),
  });
  t.match(warnings, [
    'environment variable COLO_AGENT_HEARTBEAT_INTERVALMS is not a configuration key and is ignored (did you mean COLO_AGENT_HEARTBEAT_INTERVAL_MS?)',
    /^heartbeat\.insecure is true/,
    /^arbiter\.mode is none/,
  ]);
  t.equal(warnings.length, 3, 'COLO_AGENT_CONFIG names no section, so it is not mistaken for a typo');
});

t.test('a node.name set explicitly is kept', async (t) => {
  t.equal(load({ sets: [PEER, 'node.name=colo-b'] }).node.name, 'colo-b');
});
