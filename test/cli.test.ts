/**
 * The `colo-agent` command as an operator uses it: exit codes, what goes to stdout/stderr, and
 * that key material never appears in any output. `qmp` runs against a real QEMU.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, loneAgentSets, startAgent } from './helpers/agent-process.js';
import { runCli } from './helpers/cli.js';
import { qemuAvailable, startQemu } from './helpers/qemu.js';
import { shortTempDir } from './helpers/short-temp-dir.js';

const EXAMPLE = new URL('../config/examples/primary.yaml', import.meta.url).pathname;

function keyFile(dir: string): { path: string; key: Buffer } {
  const key = randomBytes(32);
  const path = join(dir, 'hb.key');
  writeFileSync(path, key, { mode: 0o600 });
  return { path, key };
}

t.test('check-config prints the effective config, key file redacted, key bytes nowhere', async (t) => {
  const dir = shortTempDir(t);
  const { path, key } = keyFile(dir);
  const r = await runCli(['check-config', '--config', EXAMPLE, '--set', `heartbeat.keyFile=${path}`, '--set', 'heartbeat.intervalMs=50']);
  t.equal(r.code, 0, r.stderr);
  const cfg = JSON.parse(r.stdout) as { heartbeat: { intervalMs: number; keyFile: string }; node: { role: string } };
  t.equal(cfg.heartbeat.intervalMs, 50, '--set applies');
  t.equal(cfg.node.role, 'primary');
  t.equal(cfg.heartbeat.keyFile, '[redacted]');
  for (const enc of ['hex', 'base64', 'latin1'] as const) {
    t.notOk((r.stdout + r.stderr).includes(key.toString(enc)), `no key bytes (${enc}) in the output`);
  }
  t.match(r.stderr, /arbiter\.mode is none/, 'warns that arbiter none is unsafe');
});

t.test('check-config rejects bad config with one line per problem and exit 2', async (t) => {
  const dir = shortTempDir(t);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'node:\n  role: primary\nheartbeat:\n  intervalMs: fast\n  peers: [127.0.0.2:7410]\n  bogus: 1\n');
  const r = await runCli(['check-config', '--config', bad]);
  t.equal(r.code, 2);
  t.equal(r.stdout, '', 'nothing on stdout');
  t.match(r.stderr, /heartbeat\.intervalMs: .*fast/);
  t.match(r.stderr, /heartbeat\.bogus: unknown key/);
});

t.test('check-config names a missing or short key file without printing its content', async (t) => {
  const dir = shortTempDir(t);
  const missing = await runCli(['check-config', '--config', EXAMPLE, '--set', `heartbeat.keyFile=${join(dir, 'nope.key')}`]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /heartbeat key: .*nope\.key/);
  const short = join(dir, 'short.key');
  writeFileSync(short, 'sixteen-bytes!!!');
  const r = await runCli(['check-config', '--config', EXAMPLE, '--set', `heartbeat.keyFile=${short}`]);
  t.equal(r.code, 2);
  t.match(r.stderr, /32/, 'says how long a key must be');
  t.notOk(r.stderr.includes('sixteen-bytes'), 'the short key is not echoed');
});

t.test('usage errors exit 2 with one line and a hint, not the whole help', async (t) => {
  for (const args of [['bogus'], ['check-config'], ['qmp', 'query-status'], ['run', '--nope']]) {
    const r = await runCli(args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 2, `${args.join(' ')}: ${r.stderr}`);
    t.match(r.stderr, /^\(colo-agent help lists every command and its options\)$/m);
    t.notMatch(r.stderr, /usage: colo-agent/);
  }
  const help = await runCli(['help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: colo-agent/);
  const v = await runCli(['version']);
  t.equal(v.code, 0);
  t.match(v.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

t.test('keygen writes a private 32-byte key and refuses to overwrite one', async (t) => {
  const dir = shortTempDir(t);
  const out = join(dir, 'k');
  t.equal((await runCli(['keygen', '--out', out])).code, 0);
  t.equal(readFileSync(out).length, 32);
  t.equal(statSync(out).mode & 0o777, 0o600);
  const before = readFileSync(out);
  const again = await runCli(['keygen', '--out', out]);
  t.equal(again.code, 2, 'an existing key is kept');
  t.equal(again.stderr.trim(), `heartbeat key: ${out} exists: kept (both agents of a pair need the same key); --force writes a new one`, 'one line naming --force, no stack trace');
  t.same(readFileSync(out), before);
  t.equal((await runCli(['keygen', '--out', out, '--force'])).code, 0);
  t.not(readFileSync(out).toString('hex'), before.toString('hex'), '--force replaces it');
});

t.test('run refuses to start without its key file', async (t) => {
  const dir = shortTempDir(t);
  const r = await runCli(['run', '--config', EXAMPLE, '--set', `heartbeat.keyFile=${join(dir, 'missing.key')}`]);
  t.equal(r.code, 2);
  t.match(r.stderr, /heartbeat key/);
});

const avail = await qemuAvailable();
t.test('qmp against a real QEMU', { skip: avail.ok ? false : `QEMU not available: ${avail.reason}` }, async (t) => {
  const q = await startQemu({ t });
  const addr = q.qmpAddresses[0]!;

  const status = await runCli(['qmp', '--qmp', addr, 'query-status']);
  t.equal(status.code, 0, status.stderr);
  t.match(JSON.parse(status.stdout), { status: 'prelaunch', running: false });

  const withArgs = await runCli(['qmp', '--qmp', addr, 'qom-get', '{"path":"/machine","property":"type"}']);
  t.equal(withArgs.code, 0, withArgs.stderr);
  t.match(JSON.parse(withArgs.stdout), /pc/);

  const err = await runCli(['qmp', '--qmp', addr, 'x-colo-lost-heartbeat']);
  t.equal(err.code, 1, 'a QMP error exits 1');
  // 7.2 says "The feature 'colo' is not enabled" before x-colo is set, "VM is not in COLO mode" after.
  t.match(JSON.parse(err.stdout), { error: { class: 'GenericError', desc: /colo/i } });

  const badJson = await runCli(['qmp', '--qmp', addr, 'query-status', '{not json']);
  t.equal(badJson.code, 2);
  t.match(badJson.stderr, /JSON object/);

  const unreachable = await runCli(['qmp', '--qmp', `unix:${join(q.dir, 'absent.sock')}`, 'query-status', '--timeout', '500']);
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, /QMP/);
});

t.test('plan prints the exact commands from the config; offline, "auto" is the installed QEMU', async (t) => {
  const r = await runCli(['plan', '--config', EXAMPLE, '--sequence', 'secondary-failover', '--set', 'qemu.profile=7.2', '--set', 'colo.mirrorPort=19003']);
  t.equal(r.code, 0, r.stderr);
  const commands = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { execute?: string; 'exec-oob'?: string; arguments?: unknown });
  t.same(
    commands.map((c) => c.execute ?? c['exec-oob']),
    ['query-yank', 'yank', 'nbd-server-stop', 'x-colo-lost-heartbeat', 'object-del', 'object-del', 'chardev-remove', 'chardev-remove', 'chardev-add', 'chardev-add', 'chardev-add', 'chardev-add', 'chardev-add', 'chardev-add'],
  );
  t.match(JSON.stringify(commands), /"port":"19003"/, 'ports come from the config');
  const installed = await qemuAvailable();
  const auto = await runCli(['plan', '--config', EXAMPLE, '--sequence', 'primary-failover']);
  if (installed.ok) {
    t.equal(auto.code, 0, auto.stderr);
    t.match(auto.stdout, new RegExp(`^# colo-agent plan primary-failover: QEMU profile ${installed.version.replace(/\./g, '\\.')} \\(of the installed qemu-system-x86_64\\)`), 'says which profile it assumed');
  }
  const none = await runCli(['plan', '--config', EXAMPLE, '--sequence', 'primary-failover'], { env: { ...process.env, PATH: shortTempDir(t) } });
  t.equal(none.code, 2, 'no QEMU installed and no profile given');
  t.match(none.stderr, /^qemu\.profile is auto and qemu-system-x86_64 not found in PATH; .*give the profile, e\.g\. --set qemu\.profile=7\.2$/m);
  t.notMatch(r.stderr, /arbiter\.mode is none/, "a helper command does not repeat the agent's risk warnings");
  const checked = await runCli(['check-config', '--config', EXAMPLE, '--set', 'heartbeat.insecure=true', '--set', 'heartbeat.keyFile=']);
  t.match(checked.stderr, /^warning: arbiter\.mode is none/m, 'check-config gives them');
  const typo = await runCli(['plan', '--config', EXAMPLE, '--sequence', 'primary-failover', '--set', 'qemu.profile=7.2'], { env: { ...process.env, COLO_AGENT_HEARTBEAT_INTERVAL: '5' } });
  t.match(typo.stderr, /^warning: .*COLO_AGENT_HEARTBEAT_INTERVAL/m, 'a typo in an environment variable is still reported');
  const bad = await runCli(['plan', '--config', EXAMPLE, '--sequence', 'sideways', '--set', 'qemu.profile=7.2']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /primary-failover/);
});

t.test("helper commands (status, maintenance, resume, failover) never repeat the arbiter.mode none warning; check-config and run give it once", async (t) => {
  const dir = shortTempDir(t);
  const metricsPort = await freePort();
  const sets = [...(await loneAgentSets(dir, join(dir, 'state'), metricsPort)), 'heartbeat.startupGraceMs=120000'];
  // A real agent (arbiter none, as the example config) for status to ask, on the state dir the other helpers use.
  const agent = await startAgent({ name: 'primary', config: EXAMPLE, sets, t });
  const args = ['--config', EXAMPLE, ...sets.flatMap((s) => ['--set', s])];
  const risk = /arbiter\.mode is none/g;
  const commands: Array<{ argv: string[]; code: number }> = [
    { argv: ['status', ...args], code: 0 },
    { argv: ['status', ...args, '--json'], code: 0 },
    { argv: ['maintenance', 'on', ...args, '--reason', 'test'], code: 0 },
    { argv: ['maintenance', 'status', ...args], code: 0 },
    { argv: ['maintenance', 'off', ...args], code: 0 },
    { argv: ['resume', ...args], code: 0 },
    // No QEMU behind qemu.qmp: the failover cannot connect (exit 1), after its config load.
    { argv: ['failover', ...args, '--set', 'qemu.connectTimeoutMs=500'], code: 1 },
  ];
  for (const { argv, code } of commands) {
    const what = argv.slice(0, argv.indexOf('--config')).join(' ');
    const r = await runCli(argv);
    t.equal(r.code, code, `${what}: exit ${code}\n${r.stderr}`);
    t.equal(`${r.stdout}${r.stderr}`.match(risk)?.length ?? 0, 0, `${what}: no arbiter.mode none warning`);
    t.notMatch(`${r.stdout}${r.stderr}`, /heartbeat\.insecure is true/, `${what}: nor any other risky-setting warning`);
  }
  const checked = await runCli(['check-config', ...args]);
  t.equal(checked.code, 0, checked.stderr);
  t.equal(checked.stderr.match(risk)?.length ?? 0, 1, 'check-config gives the warning, once');
  const told = agent.entries.filter((e) => /arbiter\.mode is none/.test(e.line));
  t.equal(told.length, 1, `run gives it once, as a warn line of its log: ${told.map((e) => e.line).join(' | ')}`);
  t.equal(told[0]?.record?.level, 'warn', 'at level warn');
});
