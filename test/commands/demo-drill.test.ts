/**
 * `colo-agent demo` end to end, with real QEMU (a COLO pair under TCG on 127.0.0.1 / 127.0.0.2),
 * real agent processes and, by default, a real witness on 127.0.0.3, through the built CLI:
 * - without QEMU on PATH it says how to install it, in one line, and exits 2;
 * - `--drill kill-primary` and `--drill kill-secondary` (with the witness): the timeline's order
 *   (injected < detected <= granted <= started < done), the survivor granted by the witness and
 *   running the guest alone, exit 0;
 * - `--drill partition` with the witness: exactly one side (the primary, which holds the lease)
 *   takes over, the secondary is refused and stays passive, exit 0;
 * - `--drill partition --arbiter none`: both sides take over, and the demo says so (exit 1);
 * - the live view (with the witness's line) stopped with SIGINT;
 * - the live view after a `kill -9` of the primary's QEMU: the survivor's outage and n/a checkpoints;
 * - the demo SIGKILLed: its reaper process ends the QEMUs, agents and witness and removes the dir;
 * and after each run, no QEMU, agent or witness process and no temp dir is left.
 *
 * The subtests run one after another (one pair at a time on these 2-core machines). They assert
 * order and end states, never speed; the timelines are printed as comments.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { requireBuiltCli } from '../helpers/agent-process.js';
import { CLI_PATH, runCli, type CliResult } from '../helpers/cli.js';
import { coloSupport } from '../helpers/colo-cmdline.js';
import { processAlive } from '../helpers/proc.js';
import { qemuAvailable } from '../helpers/qemu.js';

const DRILL_TIMEOUT_MS = 90_000;

const avail = await qemuAvailable();
const support = avail.ok ? coloSupport(avail) : avail;
const skip = support.ok ? false : support.reason;

interface Started {
  workDir: string;
  pids: Record<'primary' | 'secondary', { qemu: number; agent: number }>;
  /** The witness's pid, when the demo started one. */
  witness?: number;
}

/** The pids and work dir from the demo's "up" lines. */
function parseStarted(stdout: string): Started | undefined {
  const dir = /\(work dir (\S+)\)/.exec(stdout)?.[1];
  const side = (name: string) => {
    const m = new RegExp(`${name}:\\s+host \\S+, QEMU pid (\\d+), agent pid (\\d+)`).exec(stdout);
    return m ? { qemu: Number(m[1]), agent: Number(m[2]) } : undefined;
  };
  const primary = side('primary');
  const secondary = side('secondary');
  const witness = /witness:\s+host 127\.0\.0\.3, pid (\d+)/.exec(stdout)?.[1];
  return dir && primary && secondary ? { workDir: dir, pids: { primary, secondary }, ...(witness && { witness: Number(witness) }) } : undefined;
}

/** Processes whose command line mentions `text` (a demo's work dir: its QEMUs' sockets, its agents' state dirs). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text)) found.push(Number(d));
    } catch {
      // gone while we looked
    }
  }
  return found;
}

/**
 * Still running: exists and is not a zombie. An orphan (its parent, the demo, SIGKILLed) is
 * reaped by PID 1 at its own pace; killed, it runs nothing meanwhile.
 */
function running(pid: number): boolean {
  if (!processAlive(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function assertNothingLeft(t: Test, s: Started): Promise<void> {
  const pids = [s.pids.primary.qemu, s.pids.primary.agent, s.pids.secondary.qemu, s.pids.secondary.agent, ...(s.witness ? [s.witness] : [])];
  // The kernel may take a moment to end a SIGKILLed process.
  for (let i = 0; i < 100 && pids.some(running); i++) await new Promise((r) => setTimeout(r, 20));
  for (const pid of pids) t.notOk(running(pid), `pid ${pid} is gone`);
  t.same(processesMentioning(s.workDir), [], 'no process refers to the work dir');
  t.notOk(existsSync(s.workDir), `${s.workDir} removed`);
}

interface TimelineLine {
  ms: number;
  label: string;
  side: string | undefined;
  line: string;
}

/** The timeline lines: "  +   12 ms  detected  secondary: ...". */
function parseTimeline(stdout: string): TimelineLine[] {
  const out: TimelineLine[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s+\+\s*(\d+) ms\s+(\S+)\s+(?:(primary|secondary|witness): )?/.exec(line);
    if (m) out.push({ ms: Number(m[1]), label: m[2] as string, side: m[3], line });
  }
  return out;
}

function first(events: TimelineLine[], label: string, side?: string): TimelineLine | undefined {
  return events.find((e) => e.label === label && (side === undefined || e.side === side));
}

function failureDetail(r: CliResult): string {
  return `exit ${r.code} ${r.signal ?? ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

t.test('without QEMU on PATH: one line on how to install it, exit 2', async (t) => {
  if (!requireBuiltCli(t)) return;
  const empty = mkdtempSync(join(tmpdir(), 'no-qemu-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  const r = await runCli(['demo'], { env: { PATH: empty } });
  t.equal(r.code, 2, 'exit 2');
  t.equal(r.stdout, '', 'nothing on stdout');
  t.equal(r.stderr, 'colo-agent demo needs QEMU: apt-get install qemu-system-x86 qemu-utils\n', 'exactly one line on stderr');
});

t.test('an unknown drill or arbiter is a usage error', async (t) => {
  if (!requireBuiltCli(t)) return;
  const r = await runCli(['demo', '--drill', 'kill-everything']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--drill must be one of kill-primary, kill-secondary, partition/);
  const a = await runCli(['demo', '--arbiter', 'etcd']);
  t.equal(a.code, 2);
  t.match(a.stderr, /--arbiter must be one of witness, none/);
});

function runDrill(drill: string, ...extra: string[]): Promise<CliResult> {
  return runCli(['demo', '--drill', drill, ...extra], { env: { PATH: process.env.PATH ?? '' }, timeoutMs: DRILL_TIMEOUT_MS });
}

for (const [drill, victim, survivor, sequence, action, node] of [
  ['kill-primary', 'primary', 'secondary', 'secondary-failover', 'takeover', 'colo-b'],
  ['kill-secondary', 'secondary', 'primary', 'primary-failover', 'continue', 'colo-a'],
] as const) {
  t.test(`--drill ${drill} with the witness: the timeline is in order, the ${survivor} is granted and ends running the guest alone`, { skip }, async (t) => {
    if (!requireBuiltCli(t)) return;
    const r = await runDrill(drill);
    const started = parseStarted(r.stdout);
    t.ok(started, `the demo printed its pids and work dir${started ? '' : `\n${failureDetail(r)}`}`);
    t.ok(started?.witness, 'a witness was started');
    t.equal(`${r.stdout}${r.stderr}`.match(/starting the .*agents \.\.\./g)?.length, 1, 'the agents are announced once');
    const timeline = parseTimeline(r.stdout);
    t.comment(timeline.map((e) => e.line.trim()).join('\n'));
    t.equal(r.code, 0, `exit 0${r.code === 0 ? '' : `\n${failureDetail(r)}`}`);

    const injected = first(timeline, 'injected');
    const detected = first(timeline, 'detected', survivor);
    const granted = first(timeline, 'granted', survivor);
    const begun = first(timeline, 'started', survivor);
    const done = first(timeline, 'done', survivor);
    t.ok(injected && detected && granted && begun && done, 'injected, detected, granted, started and done are all there');
    if (injected && detected && granted && begun && done) {
      t.equal(injected.ms, 0, 'the fault is T0');
      t.ok(injected.ms < detected.ms, `injected (${injected.ms}) < detected (${detected.ms})`);
      t.ok(detected.ms <= granted.ms, `detected (${detected.ms}) <= granted (${granted.ms})`);
      t.ok(granted.ms <= begun.ms, `granted (${granted.ms}) <= started (${begun.ms})`);
      t.ok(begun.ms < done.ms, `started (${begun.ms}) < done (${done.ms})`);
      t.match(granted.line, new RegExp(`${action} granted at epoch 1 by colo-w`), `the ${survivor} was granted epoch 1 to ${action}`);
      t.match(begun.line, sequence, `the ${survivor} ran ${sequence}`);
      t.match(injected.line, new RegExp(`SIGKILL ${victim} QEMU \\(pid \\d+\\) and its agent`));
    }
    t.equal(first(timeline, 'failed'), undefined, 'no failed failover');
    t.ok(
      timeline.some((e) => e.side === 'witness' && e.label === 'verdict' && new RegExp(`granted ${action} to ${node}: epoch 1`).test(e.line)),
      'the witness logged its grant',
    );
    t.match(r.stdout, new RegExp(`end state ${survivor}: query-status running, COLO mode none \\(last mode ${survivor}\\)`), 'the survivor runs, out of COLO');
    t.match(r.stdout, new RegExp(`end state ${victim}: QEMU gone`));
    const outage = /total outage: (\d+) ms \(fault -> the (\w+)'s guest running solo\)/.exec(r.stdout);
    t.ok(outage, 'the total outage is printed');
    if (outage && done) {
      t.equal(outage[2], survivor);
      t.equal(Number(outage[1]), done.ms, 'the outage ends when the failover is done');
    }
    t.match(r.stdout, new RegExp(`drill ${drill}: PASS`));
    if (started) await assertNothingLeft(t, started);
  });
}

t.test('--drill partition with the witness: exactly one side takes over, the other is refused and stays passive', { skip }, async (t) => {
  if (!requireBuiltCli(t)) return;
  const r = await runDrill('partition');
  const started = parseStarted(r.stdout);
  t.ok(started?.witness, `the demo printed its pids, the witness's and its work dir${started ? '' : `\n${failureDetail(r)}`}`);
  const timeline = parseTimeline(r.stdout);
  t.comment(timeline.map((e) => e.line.trim()).join('\n'));
  t.equal(r.code, 0, `exit 0${r.code === 0 ? '' : `\n${failureDetail(r)}`}`);
  const solo = ['primary', 'secondary'].filter((side) => new RegExp(`end state ${side}: query-status running, COLO mode none`).test(r.stdout));
  t.same(solo, ['primary'], 'exactly one side runs the guest alone: the primary, which holds the lease');
  t.notMatch(r.stdout, /end state secondary: query-status running, COLO mode (none|primary)/, 'the secondary runs no primary');
  const granted = first(timeline, 'granted', 'primary');
  t.match(granted?.line ?? '', /continue granted at epoch 1 by colo-w/, 'the primary was granted its solo continuation at epoch 1');
  t.equal(first(timeline, 'granted', 'secondary'), undefined, 'the secondary was granted nothing');
  t.equal(first(timeline, 'started', 'secondary'), undefined, 'the secondary started no failover');
  const refusedOrStale = first(timeline, 'refused', 'secondary') ?? first(timeline, 'stale', 'secondary');
  t.ok(refusedOrStale, 'the secondary was refused or learnt the new epoch, and stood down');
  t.match(r.stdout, /drill partition: PASS: only the primary took over \(granted epoch 1 by the witness\); the secondary .*no split brain/);
  if (started) await assertNothingLeft(t, started);
});

t.test('--drill partition --arbiter none: both sides take over, and the demo says so', { skip }, async (t) => {
  if (!requireBuiltCli(t)) return;
  const r = await runDrill('partition', '--arbiter', 'none');
  const started = parseStarted(r.stdout);
  t.ok(started, `the demo printed its pids and work dir${started ? '' : `\n${failureDetail(r)}`}`);
  t.equal(started?.witness, undefined, 'no witness');
  t.match(r.stdout, /arbiter:\s+none \(--arbiter none\)/);
  const timeline = parseTimeline(r.stdout);
  t.comment(timeline.map((e) => e.line.trim()).join('\n'));
  for (const side of ['primary', 'secondary']) {
    const detected = first(timeline, 'detected', side);
    t.ok(detected, `the ${side} detected the partition`);
    t.match(detected?.line ?? '', /peer down: heartbeats missed/, `${side}: by the heartbeat`);
  }
  const bothSolo =
    /end state primary: query-status running, COLO mode none/.test(r.stdout) && /end state secondary: query-status running, COLO mode none/.test(r.stdout);
  if (bothSolo) {
    t.match(r.stdout, /arbiter none: both sides took over — split brain; run with a witness to prevent it/, 'the split brain is named');
    t.equal(r.code, 1, 'a split brain fails the drill');
  } else {
    // Whatever happened, the verdict and the exit code agree.
    const expected = /drill partition: PASS/.test(r.stdout) ? 0 : 1;
    t.equal(r.code, expected, `exit code matches the verdict${r.code === expected ? '' : `\n${failureDetail(r)}`}`);
  }
  if (started) await assertNothingLeft(t, started);
});

/** `colo-agent demo` (the live view) as a child of test `t`, SIGKILLed at teardown or after DRILL_TIMEOUT_MS. */
function liveDemo(t: Test) {
  const child = spawn(process.execPath, [CLI_PATH, 'demo'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const watchdog = setTimeout(() => child.kill('SIGKILL'), DRILL_TIMEOUT_MS);
  t.teardown(() => {
    clearTimeout(watchdog);
    child.kill('SIGKILL');
  });
  const out = { stdout: '', stderr: '' };
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const waiters = new Set<() => void>();
  child.stdout.on('data', (d: Buffer) => {
    out.stdout += d.toString();
    for (const w of [...waiters]) w();
  });
  /** Resolves true once stdout satisfies `want`, false if the demo ends first or after timeoutMs. */
  const waitOut = (want: RegExp | ((stdout: string) => boolean), timeoutMs: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const check = () => {
        if (!(typeof want === 'function' ? want(out.stdout) : want.test(out.stdout))) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(true);
      };
      waiters.add(check);
      check();
      void exited.then(() => resolve(false));
    });
  return { child, out, exited, waitOut };
}

t.test('the live view, stopped with SIGINT, leaves nothing behind', { skip }, async (t) => {
  if (!requireBuiltCli(t)) return;
  const { child, out, exited, waitOut } = liveDemo(t);
  // Two lines per side once the view has its first snapshot.
  const viewing = waitOut((o) => /live view:/.test(o) && /primary: agent pid/.test(o) && /secondary: agent pid/.test(o) && /witness: agent pid/.test(o), DRILL_TIMEOUT_MS);
  const viewed = await viewing;
  t.ok(viewed, `the live view started${viewed ? '' : `\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`}`);
  const started = parseStarted(out.stdout);
  t.ok(started, 'the demo printed its pids and work dir');
  t.match(out.stdout, /primary: agent pid \d+, qemu ready, node colo-a, role primary, state peer-up, colo primary, peer up/, 'the primary row');
  t.match(out.stdout, /secondary: agent pid \d+, qemu ready, node colo-b, role secondary, state peer-up, colo secondary, peer up/, 'the secondary row');
  t.match(out.stdout, /primary: agent pid .*epoch 0, arbiter reachable/, 'the primary reaches the witness');
  t.match(out.stdout, /secondary: agent pid .*epoch 0, arbiter reachable/, 'the secondary reaches the witness');
  t.match(out.stdout, /witness: agent pid \d+, state witness, epoch 0, holder colo-a, pending -, links colo-\w up, colo-\w up/, 'the witness line: the primary holds epoch 0');
  child.kill('SIGINT');
  const code = await exited;
  t.equal(code, 0, `exit 0 after Ctrl-C${code === 0 ? '' : `\n${out.stdout}\n${out.stderr}`}`);
  t.match(out.stdout, /SIGINT: stopping everything the demo started/);
  t.match(out.stdout, /stopped: agents, witness, QEMUs and proxies ended, temp dir removed/);
  if (started) await assertNothingLeft(t, started);
});

t.test('the live view after an interactive failover (kill -9 of the primary\'s QEMU): the survivor shows the measured outage and n/a checkpoints', { skip }, async (t) => {
  // Issue 14: the view kept "CKPT 0" and "OUTAGE -" after a failover. QEMU 7.2 under TCG completes
  // no checkpoint (the demo's idle period is huge), so no count can be asserted; what must hold is
  // that, once the secondary runs the guest alone, its row says so: no replication to count (n/a)
  // and the guest's outage measured from the primary's QEMU ending to "failover done".
  if (!requireBuiltCli(t)) return;
  const { child, out, exited, waitOut } = liveDemo(t);
  const viewing = await waitOut(/live view:[\s\S]*secondary: agent pid \d+, qemu ready, node colo-b, role secondary[^\n]*checkpoints 0/, DRILL_TIMEOUT_MS);
  t.ok(viewing, `the live view started, the secondary in COLO with its count${viewing ? '' : `\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`}`);
  const started = parseStarted(out.stdout);
  if (!viewing || !started) return;
  const before = out.stdout.length;
  process.kill(started.pids.primary.qemu, 'SIGKILL');
  // From whichever came first: the demo seeing the QEMU end, or the secondary's COLO_EXIT (on a
  // loaded machine the agent may log it before the demo's 'exit' event runs).
  const outage = await waitOut(/\d\d:\d\d:\d\d\.\d{3} secondary: [^\n]*outage - -> \d+ ms, from (the primary's QEMU ending|detection \(its QEMU left COLO|detection \(the peer's agent reports its QEMU gone)/, 30_000);
  const after = out.stdout.slice(before);
  t.ok(outage, `the secondary's line gives the outage from the primary's QEMU ending or its detection${outage ? '' : `\n${after}\nstderr:\n${out.stderr}`}`);
  const line = after.split('\n').find((l) => / secondary: .*outage - -> /.test(l)) ?? '';
  t.comment(line);
  const ms = Number(/outage - -> (\d+) ms/.exec(line)?.[1]);
  t.ok(ms > 0 && ms < DRILL_TIMEOUT_MS, `a measured outage (${ms} ms)`);
  t.match(after, /secondary: [^\n]*role secondary -> primary/, 'the secondary took over');
  t.match(after, /secondary: [^\n]*checkpoints 0 -> n\/a/, 'its checkpoints: n/a once it replicates nothing');
  t.match(after, /primary: [^\n]*checkpoints 0 -> n\/a/, "the primary's too: its QEMU is gone");
  t.notMatch(after, /primary: [^\n]*outage/, 'the primary ran no failover: no outage of its own');
  child.kill('SIGINT');
  const code = await exited;
  t.equal(code, 0, `exit 0 after Ctrl-C${code === 0 ? '' : `\n${out.stdout}\n${out.stderr}`}`);
  await assertNothingLeft(t, started);
});

t.test('the demo SIGKILLed: the reaper ends QEMUs, agents and the witness, and removes the temp dir', { skip }, async (t) => {
  if (!requireBuiltCli(t)) return;
  const child = spawn(process.execPath, [CLI_PATH, 'demo'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const watchdog = setTimeout(() => child.kill('SIGKILL'), DRILL_TIMEOUT_MS);
  t.teardown(() => {
    clearTimeout(watchdog);
    child.kill('SIGKILL');
  });
  let stdout = '';
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const viewing = new Promise<boolean>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/live view:/.test(stdout)) resolve(true);
    });
    void exited.then(() => resolve(false));
  });
  t.ok(await viewing, `the live view started${/live view:/.test(stdout) ? '' : `\n${stdout}`}`);
  const started = parseStarted(stdout);
  t.ok(started?.witness, 'the demo printed its pids (the witness\'s too) and work dir');
  child.kill('SIGKILL');
  await exited;
  if (!started) return;
  // The reaper notices the closed pipe, kills, then removes the dir 200 ms later.
  for (let i = 0; i < 100 && existsSync(started.workDir); i++) await new Promise((r) => setTimeout(r, 50));
  await assertNothingLeft(t, started);
});
