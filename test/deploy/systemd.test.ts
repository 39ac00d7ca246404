/**
 * deploy/systemd/: the two unit files carry the directives the deployment relies on (restart on
 * failure, reload by SIGHUP, a planned stop by SIGTERM, state and runtime directories, hardening
 * that Node tolerates, a raised priority), every directive has a comment saying why, and
 * `systemd-analyze verify` accepts both.
 *
 * verify refuses a unit whose ExecStart binary does not exist, and /usr/bin/colo-agent is not
 * installed where tests run: it checks a copy of each unit, in a temp dir, whose /usr/bin/colo-agent
 * is replaced by a stub script made there (the shipped ExecStart lines are asserted separately).
 * verify exits 0 even for an invalid value it ignores ("Failed to parse ..., ignoring"), so the
 * test also requires that it printed nothing about our unit; a deliberately broken copy shows
 * that this check can fail. The verify part skips when systemd-analyze is not installed.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { findExecutable, runCommand } from '../helpers/run-command.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DIR = join(root, 'deploy/systemd');
const BINARY = '/usr/bin/colo-agent';

interface Unit {
  file: string;
  /** The instance the verify step loads a template as; undefined for a plain unit. */
  instance?: string;
  configPath: string;
  stateDir: string;
  runtimeDir: string;
}

const UNITS: Unit[] = [
  { file: 'colo-agent.service', configPath: '/etc/colo-agent/agent.yaml', stateDir: 'colo-agent', runtimeDir: 'colo-agent' },
  { file: 'colo-agent@.service', instance: 'colo-agent@web1.service', configPath: '/etc/colo-agent/%i.yaml', stateDir: 'colo-agent/%i', runtimeDir: 'colo-agent/%i' },
];

interface Directive {
  section: string;
  key: string;
  value: string;
  line: number;
}

/** Directives in file order; comments and blank lines skipped (no line continuations are used). */
function parseUnit(text: string): Directive[] {
  const out: Directive[] = [];
  let section = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      return;
    }
    const eq = line.indexOf('=');
    out.push({ section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: i + 1 });
  });
  return out;
}

function values(ds: Directive[], section: string, key: string): string[] {
  return ds.filter((d) => d.section === section && d.key === key).map((d) => d.value);
}

for (const unit of UNITS) {
  const text = readFileSync(join(DIR, unit.file), 'utf8');
  const ds = parseUnit(text);
  const one = (key: string, section = 'Service') => {
    const v = values(ds, section, key);
    return v.length === 1 ? v[0]! : `(${v.length} ${key}= lines)`;
  };

  t.test(`${unit.file}: the directives the deployment relies on`, async (t) => {
    t.equal(one('Type'), 'simple', 'the agent does not speak sd_notify');
    t.equal(one('ExecStart'), `${BINARY} run --config ${unit.configPath}`);
    t.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID', 'reload = SIGHUP, which re-reads the config');
    t.equal(one('Restart'), 'on-failure');
    t.equal(one('RestartSec'), '1');
    t.equal(one('RestartPreventExitStatus'), '2', 'a config error (exit 2) does not restart in a loop');
    t.equal(one('KillSignal'), 'SIGTERM', 'a planned stop says GOODBYE to the peer');
    t.match(one('TimeoutStopSec'), /^\d+$/);
    t.equal(one('StateDirectory'), unit.stateDir);
    t.equal(one('RuntimeDirectory'), unit.runtimeDir);
    t.equal(one('RuntimeDirectoryPreserve'), 'yes', "a restart must not unlink a running QEMU's QMP socket");
    t.equal(one('NoNewPrivileges'), 'yes');
    t.equal(one('ProtectSystem'), 'strict');
    t.same(one('ReadWritePaths').split(/\s+/), [`/var/lib/${unit.stateDir}`, `/run/${unit.runtimeDir}`], 'the state dir and the QMP socket dir are writable');
    for (const key of ['ProtectHome', 'PrivateTmp', 'ProtectKernelTunables', 'ProtectKernelModules', 'LockPersonality']) t.equal(one(key), 'yes', key);
    t.same(one('RestrictAddressFamilies').split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX']);
    t.same(values(ds, 'Service', 'MemoryDenyWriteExecute'), [], "no MemoryDenyWriteExecute: V8's JIT needs W+X memory");
    t.ok(Number(one('Nice')) < 0, 'a raised priority: a delayed heartbeat looks like a dead peer');
    t.equal(one('WantedBy', 'Install'), 'multi-user.target');
    t.ok(/CPUSchedulingPolicy/.test(text), 'the real-time policy is discussed');
  });

  t.test(`${unit.file}: every directive has a comment saying why`, async (t) => {
    // A paragraph is a run of non-blank lines; each directive's paragraph must hold a comment.
    const lines = text.split('\n');
    const uncommented: string[] = [];
    for (const d of ds.filter((d) => d.section === 'Service' || d.section === 'Unit')) {
      if (d.key === 'Description') continue;
      let commented = false;
      for (let i = d.line - 1; i >= 0 && lines[i]!.trim() !== '' && !commented; i--) commented = lines[i]!.trim().startsWith('#');
      for (let i = d.line - 1; i < lines.length && lines[i]!.trim() !== '' && !commented; i++) commented = lines[i]!.trim().startsWith('#');
      if (!commented) uncommented.push(`${d.line}: ${d.key}=${d.value}`);
    }
    t.same(uncommented, [], 'no directive without an explanation near it');
  });
}

const analyze = findExecutable('systemd-analyze');
const skip = analyze ? false : 'systemd-analyze not found: apt-get install systemd';

t.test('systemd-analyze verify accepts both units', { skip }, async (t) => {
  if (!analyze) return;
  const dir = t.testdir({});
  const stub = join(dir, 'colo-agent');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);

  /** A copy of the unit in the temp dir (under `name`), its binary replaced by the stub. */
  const copy = (unit: Unit, name: string, edit: (s: string) => string = (s) => s): string => {
    const text = readFileSync(join(DIR, unit.file), 'utf8');
    t.ok(text.includes(`ExecStart=${BINARY} `), `${unit.file}: ExecStart names ${BINARY}`);
    const path = join(dir, name);
    writeFileSync(path, edit(text.replaceAll(`ExecStart=${BINARY} `, `ExecStart=${stub} `)));
    return path;
  };
  /** verify's complaints about our unit (it may warn about unrelated units of the host). */
  const verify = async (path: string, about: string) => {
    const r = await runCommand(analyze, ['verify', path]);
    const complaints = r.output.split('\n').filter((l) => l.includes(about));
    return { code: r.code, complaints, output: r.output };
  };
  const check = async (t: Test, path: string, about: string) => {
    const r = await verify(path, about);
    t.equal(r.code, 0, `exit 0\n${r.output}`);
    t.same(r.complaints, [], 'nothing printed about the unit');
  };

  for (const unit of UNITS) {
    await t.test(unit.file, async (t) => {
      await check(t, copy(unit, unit.file), 'colo-agent');
      // A template is also checked as an instance, with %i resolved in every path.
      if (unit.instance) await check(t, copy(unit, unit.instance), 'colo-agent');
    });
  }

  await t.test('the check can fail: an invalid value is reported', async (t) => {
    const path = copy(UNITS[0]!, 'broken-agent.service', (s) => s.replace(/^Restart=on-failure$/m, 'Restart=sometimes'));
    const r = await verify(path, 'broken-agent');
    t.ok(r.complaints.some((l) => l.includes('sometimes')), `reported\n${r.output}`);
  });
});
