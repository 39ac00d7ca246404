/**
 * docs/installation.md, executed: every block marked `on=` runs, in the guide's order, on two
 * network namespaces of the lab (test/lab/netns.ts) standing in for host A (`a`) and host B (`b`):
 * packages check, install from the packed tarball, disks, the guest's tap network, both QEMUs, the
 * first COLO start, the key, both configs, both agents, status, plan, a metrics scrape; then a real
 * power loss of host A (host B takes over), the failback with host A's fresh-secondary block, a
 * power loss of host B (host A takes over), and the failback with host B's block: the pair ends as
 * it started.
 *
 * The substitutions, all the guide allows: its addresses (10.0.0.1/2) become the lab's replication
 * addresses; its directories (/etc/colo-agent, /run/colo-agent, /var/lib/colo, /var/lib/colo-agent,
 * /var/log, the npm prefix /usr) move under a temporary root per host; where /dev/kvm does not work,
 * the lines of the guide's "Without KVM" table (asserted to be in that table). `ssh` and `scp` to
 * the other host are two small shims that run the command in the other namespace or copy the file
 * under the other root. The install step runs outside the lab (OUTSIDE_THE_LAB says why). A "reboot" after a power loss empties the host's /run/colo-agent.
 * The blocks without `on=` (package installs, the build, systemd) are shown to the reader only;
 * NOT_RUN says why for each.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { findExecutable } from '../helpers/run-command.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { startLabOrSkip, type Lab } from '../lab/netns.js';
import { guideBlocks, substitute, type GuideBlock } from './guide-blocks.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GUIDE = readFileSync(join(ROOT, 'docs/installation.md'), 'utf8');
const FILE_TIMEOUT_MS = 10 * 60_000;
t.setTimeout(FILE_TIMEOUT_MS);

type Host = 'a' | 'b';
const HOST_OF = { primary: ['a'], secondary: ['b'], both: ['a', 'b'] } as const satisfies Record<GuideBlock['on'], readonly Host[]>;

/** The guide's shown-only shell blocks (matched by a line they contain), and why the test does not run them. */
const NOT_RUN: ReadonlyArray<readonly [string, string]> = [
  ['apt-get install qemu-system-x86', 'installs packages on the machine: .ci/run installs the same ones'],
  ['npm ci && npm run build', 'the test command built this checkout (npm ci here would replace node_modules under the running tests); the harness packs it'],
  ['systemctl enable --now colo-agent', 'systemd is not PID 1 in the lab; the units are checked by test/deploy/systemd.test.ts'],
];

/** Steps run in the root namespace, on the host's root all the same, and why. */
const OUTSIDE_THE_LAB: Readonly<Record<string, string>> = {
  install: "the lab's hosts have no route to the npm registry; installing only writes files under the prefix",
};

/** "Without KVM (TCG)": [as written, without KVM]; each pair must be in the guide's table. */
const TCG_LINES: ReadonlyArray<readonly [string, string]> = [
  ['-enable-kvm -cpu qemu64,+kvmclock', '-accel tcg'],
  ['"x-checkpoint-delay":20000', '"x-checkpoint-delay":600000'],
  ['checkpointDelayMs: 20000', 'checkpointDelayMs: 600000'],
];

/** The guide's own directories, rewritten under a host's root in one pass (no path is rewritten twice). */
const GUIDE_PATHS = /(?<![\w/.-])\/(etc\/colo-agent|run\/colo-agent|var\/lib\/colo-agent|var\/lib\/colo|var\/log)(?![\w.-])/g;

interface Guide {
  lab: Lab;
  dir: string;
  root: Record<Host, string>;
  addr: Record<Host, string>;
  rewrite(text: string, host: Host): string;
  env: NodeJS.ProcessEnv;
  /** Steps in the order they first ran. */
  ran: string[];
}

function kvmWorks(qemu: string): boolean {
  if (process.env['COLO_GUIDE_ACCEL'] === 'tcg') return false;
  const r = spawnSync(qemu, ['-accel', 'kvm', '-M', 'none', '-display', 'none', '-nodefaults', '-qmp', 'stdio'], {
    input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
    timeout: 10_000,
    encoding: 'utf8',
  });
  return r.status === 0 && !/failed to initialize kvm|Could not access KVM/i.test(r.stderr);
}

function qemuAtLeast92(qemu: string): boolean {
  const m = /version (\d+)\.(\d+)/.exec(spawnSync(qemu, ['--version'], { encoding: 'utf8' }).stdout);
  return m !== null && (Number(m[1]) > 9 || (Number(m[1]) === 9 && Number(m[2]) >= 2));
}

/** The shims for `ssh root@ADDR CMD` and `scp [-p] SRC root@ADDR:DST`: the other host is a namespace and a root. */
function writeShims(bin: string, g: Pick<Guide, 'lab' | 'root' | 'addr'>): void {
  const cases = (['a', 'b'] as const).map((h) => `  ${g.addr[h]}) ns=${g.lab.ns(h)}; root=${g.root[h]} ;;`).join('\n');
  const lookup = `lookup() {\n  case "$1" in\n${cases}\n  *) echo "guide shim: no host at $1" >&2; exit 255 ;;\n  esac\n}\n`;
  writeFileSync(
    join(bin, 'ssh'),
    `#!/bin/bash\n# ssh root@ADDR CMD...: run CMD on that host (its namespace, its root instead of ours).\n${lookup}` +
      `target=\${1#*@}; shift; lookup "$target"\ncmd="$*"; cmd=\${cmd//$GUIDE_ROOT/$root}\n` +
      `exec ip netns exec "$ns" env GUIDE_ROOT="$root" bash -c "$cmd"\n`,
  );
  writeFileSync(
    join(bin, 'scp'),
    `#!/bin/bash\n# scp [-p] SRC root@ADDR:DST: copy SRC to DST under that host's root.\n${lookup}` +
      `opts=(); while [[ $1 == -* ]]; do opts+=("$1"); shift; done\n` +
      `src=$1; dst=$2; target=\${dst#*@}; target=\${target%%:*}; lookup "$target"\n` +
      `path=\${dst#*:}; path=\${path/#$GUIDE_ROOT/$root}\nexec cp "\${opts[@]}" "$src" "$path"\n`,
  );
  for (const f of ['ssh', 'scp']) chmodSync(join(bin, f), 0o755);
}

/** Run block `step` on its host(s) (or only on `only`), as a reader pastes it: bash, stop at the first failing command. */
async function runStep(t: Test, g: Guide, blocks: Map<string, GuideBlock>, step: string, only?: Host): Promise<Record<Host, string>> {
  const block = blocks.get(step);
  if (!block) throw new Error(`the guide has no block step=${step}`);
  if (!g.ran.includes(step)) g.ran.push(step);
  const out: Record<Host, string> = { a: '', b: '' };
  for (const host of HOST_OF[block.on]) {
    if (only && host !== only) continue;
    const text = g.rewrite(block.text, host);
    const log = join(g.dir, `${step}-${host}-${g.ran.length}.out`);
    const fd = openSync(log, 'w');
    const bash = ['bash', '-e', '-o', 'pipefail', '-c', text];
    const [cmd, ...args] = OUTSIDE_THE_LAB[step] ? bash : g.lab.wrap(host, bash);
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(cmd!, args, { cwd: g.root[host], env: { ...g.env, GUIDE_ROOT: g.root[host] }, stdio: ['ignore', fd, fd] });
      const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
      child.on('exit', (c) => (clearTimeout(timer), resolve(c)));
      child.on('error', () => (clearTimeout(timer), resolve(null)));
    });
    closeSync(fd);
    out[host] = readFileSync(log, 'utf8');
    if (code !== 0) throw new Error(`step ${step} (docs/installation.md line ${block.line}) on host ${host} exited ${code}:\n${out[host]}`);
    t.pass(`step ${step} on host ${host}`);
  }
  return out;
}

interface StatusJson {
  state: string;
  role: string;
  qemu: { status: string; colo: { mode: string } };
}

async function status(g: Guide, host: Host): Promise<StatusJson | undefined> {
  const r = await g.lab.exec(host, ['curl', '-s', '-m', '2', `http://${g.addr[host]}:9464/status`], { timeoutMs: 5000 });
  try {
    return r.code === 0 ? (JSON.parse(r.stdout) as StatusJson) : undefined;
  } catch {
    return undefined;
  }
}

/** Wait until every host in `want` has the given state and COLO mode; the last statuses seen otherwise. */
async function waitFor(t: Test, g: Guide, what: string, want: Partial<Record<Host, { state: string; mode: string }>>, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let seen = '';
  for (;;) {
    const parts: string[] = [];
    let ok = true;
    for (const [host, w] of Object.entries(want) as [Host, { state: string; mode: string }][]) {
      const st = await status(g, host);
      parts.push(`${host}: ${st ? `${st.state}, role ${st.role}, QEMU ${st.qemu.status}, COLO ${st.qemu.colo.mode}` : 'no answer'}`);
      ok &&= st?.state === w.state && st.qemu.colo.mode === w.mode;
    }
    seen = parts.join('; ');
    if (ok) return void t.pass(`${what} (${seen})`);
    if (Date.now() > end) {
      const logs = (['a', 'b'] as const).map((h) => `--- host ${h} agent log (tail)\n${tail(join(g.root[h], 'var/log/colo-agent.log'))}`).join('\n');
      throw new Error(`${what}: not reached in ${timeoutMs} ms; last seen ${seen}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(none)';
  }
}

/** A power loss of `host`, then its power back: the lab's real one, and /run emptied as a reboot does. */
async function powerCycle(g: Guide, host: Host): Promise<void> {
  await g.lab.powerLoss(host);
  await g.lab.powerOn(host);
  rmSync(join(g.root[host], 'run'), { recursive: true, force: true });
}

t.test('the shown-only blocks each have a reason not to run', async (t) => {
  const { shown } = guideBlocks(GUIDE);
  for (const b of shown.filter((s) => s.lang === 'sh')) {
    const why = NOT_RUN.find(([line]) => b.text.includes(line));
    t.ok(why, `line ${b.line}: a shell block without on= is listed in NOT_RUN with its reason`);
    if (why) t.comment(`not run: line ${b.line} (${why[0]}): ${why[1]}`);
  }
  t.equal(NOT_RUN.filter(([line]) => !shown.some((b) => b.text.includes(line))).length, 0, 'every NOT_RUN entry names a block the guide still has');
});

t.test('the "Without KVM" table lists every line the TCG run changes, and each is in the guide', async (t) => {
  const table = GUIDE.slice(GUIDE.indexOf('### Without KVM'), GUIDE.indexOf('## 5.'));
  for (const [written, tcg] of TCG_LINES) {
    t.ok(table.includes(`\`${written}\``) && table.includes(`\`${tcg}\``), `the table has ${written} -> ${tcg}`);
    t.ok(guideBlocks(GUIDE).runnable.some((b) => b.text.includes(written)), `a block has ${written}`);
  }
});

t.test('the installation guide, run on two hosts: install, COLO, agents, two host losses and both failbacks', { timeout: FILE_TIMEOUT_MS }, async (t) => {
  const qemu = findExecutable('qemu-system-x86_64');
  if (!qemu || !findExecutable('qemu-img') || !findExecutable('curl')) {
    t.pass('installation guide', { skip: 'needs qemu-system-x86_64, qemu-img and curl (Debian: qemu-system-x86 qemu-utils curl)' });
    return;
  }
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  const { runnable } = guideBlocks(GUIDE);
  const blocks = new Map(runnable.map((b) => [b.step, b]));
  const dir = shortTempDir(t, 'cg-');
  const root = { a: join(dir, 'a'), b: join(dir, 'b') };
  const addr = { a: lab.addr('a', 'rep'), b: lab.addr('b', 'rep') };
  for (const h of ['a', 'b'] as const) mkdirSync(join(root[h], 'var/log'), { recursive: true });
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const kvm = kvmWorks(qemu);
  const lines: Array<readonly [string, string]> = [['--prefix /usr', `--prefix ${join(dir, 'usr')}`]];
  if (!kvm) lines.push(...TCG_LINES);
  if (qemuAtLeast92(qemu)) lines.push([',reconnect=1', ',reconnect-ms=1000']);
  t.comment(`accelerator: ${kvm ? 'KVM (the guide as written)' : 'TCG (the guide\'s "Without KVM" lines)'}`);
  const g: Guide = {
    lab,
    dir,
    root,
    addr,
    ran: [],
    env: { ...process.env, PATH: `${join(dir, 'usr/bin')}:${bin}:${process.env['PATH'] ?? ''}` },
    rewrite: (text, host) =>
      substitute(text, lines)
        .replace(/\b10\.0\.0\.([12])\b/g, (_, n: string) => (n === '1' ? addr.a : addr.b))
        .replace(GUIDE_PATHS, (p) => root[host] + p),
  };
  writeShims(bin, g);
  // The tarball the guide's build block makes, in each host's working directory.
  for (const h of ['a', 'b'] as const) {
    const r = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', root[h]], { cwd: ROOT, timeout: 120_000, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`npm pack failed: ${r.stderr}`);
  }

  const step = (name: string, only?: Host) => runStep(t, g, blocks, name, only);
  await step('check-packages');
  t.match((await step('install')).a, /\d+\.\d+\.\d+/, 'colo-agent version prints a version');
  await step('disks-b');
  await step('disks-a');
  await step('network');
  await step('run-dir');
  await step('qemu-primary');
  await step('qemu-secondary');
  await step('start-secondary');
  await step('start-primary');
  const end = Date.now() + 30_000;
  let colo = '';
  while (!/"mode":\s*"primary"/.test(colo) && Date.now() < end) {
    colo = (await step('colo-status')).a;
    if (!/"mode":\s*"primary"/.test(colo)) await new Promise((r) => setTimeout(r, 500));
  }
  t.match(colo, /"mode":\s*"primary"/, 'query-colo-status says mode primary on host A');
  await step('key');
  t.equal(readFileSync(join(root.b, 'etc/colo-agent/heartbeat.key')).compare(readFileSync(join(root.a, 'etc/colo-agent/heartbeat.key'))), 0, 'the same key on both hosts');
  await step('config-a');
  await step('config-b');
  await step('agent');
  await waitFor(t, g, 'both agents see the pair', { a: { state: 'peer-up', mode: 'primary' }, b: { state: 'peer-up', mode: 'secondary' } });
  const st = await step('status');
  t.match(st.a, /peer-up/, 'status on host A says peer-up');
  t.match(st.b, /peer-up/, 'status on host B says peer-up');
  t.match((await step('plan-a')).a, /x-colo-lost-heartbeat/, 'plan on host A lists the primary failover');
  t.match((await step('plan-b')).b, /x-colo-lost-heartbeat/, 'plan on host B lists the secondary failover');
  t.match((await step('metrics')).a, /^colo_agent_peer_up(\{[^}]*\})? 1$/m, 'the metrics scrape shows the peer up');

  await powerCycle(g, 'a');
  await waitFor(t, g, 'host B took over after host A lost power', { b: { state: 'solo', mode: 'none' } });
  await step('fresh-secondary-a');
  await waitFor(t, g, 'failback onto host A: COLO again, host B primary', { a: { state: 'peer-up', mode: 'secondary' }, b: { state: 'peer-up', mode: 'primary' } });

  await powerCycle(g, 'b');
  await waitFor(t, g, 'host A took over after host B lost power', { a: { state: 'solo', mode: 'none' } });
  await step('fresh-secondary-b');
  await waitFor(t, g, 'failback onto host B: the pair as it started', { a: { state: 'peer-up', mode: 'primary' }, b: { state: 'peer-up', mode: 'secondary' } });

  t.same(g.ran, runnable.map((b) => b.step), 'every runnable block of the guide ran, in the guide\'s order');
});
