/**
 * The lab's hosts and faults, checked on the wire with real sockets in real namespaces
 * (socket-probe.ts): each host has its own addresses and port space, the links and the control
 * link work, and every fault is what it says (silent drops time out instead of being refused,
 * a power loss sends no FIN/RST where a crash does, a frozen host completes handshakes but never
 * answers), and nothing of a lab survives its test, not even a SIGKILLed test process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { readProc } from '../../src/util/proc.js';
import { labAvailable, LAB_HOSTS, startLabOrSkip, type Lab, type LabHost } from './netns.js';
import { echoServer, holdConnection, tryConnect } from './socket-probe.js';

const PORT = 7000;
const avail = labAvailable();
if (!avail.ok) t.plan(0, avail.reason);

/** Echo servers on the same port in every host (each host has its own port space). */
async function serveAll(lab: Lab): Promise<void> {
  await Promise.all(LAB_HOSTS.map((h) => echoServer(lab, h, PORT)));
}

/** A TCP connect from the root namespace over a host's control link. */
function rootConnect(address: string, port: number, timeoutMs = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, address);
    const done = (r: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    s.once('connect', () => s.write('ping'));
    s.once('data', () => done('echoed'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : `error ${e.code}`));
  });
}

async function expectEcho(t: Test, lab: Lab, from: LabHost, to: LabHost, link: Parameters<Lab['addr']>[1], what: string): Promise<void> {
  const r = await tryConnect(lab, from, lab.addr(to, link), PORT, { send: true });
  t.equal(r.result, 'echoed', `${what}: ${from} -> ${to} over ${link} echoes`);
}

async function expectSilent(t: Test, lab: Lab, from: LabHost, to: LabHost, link: Parameters<Lab['addr']>[1], what: string): Promise<void> {
  const r = await tryConnect(lab, from, lab.addr(to, link), PORT, { timeoutMs: 600 });
  t.equal(r.result, 'timeout', `${what}: ${from} -> ${to} over ${link} times out (no RST, no ICMP)`);
}

async function expectControl(t: Test, lab: Lab, host: LabHost, expected: string, what: string): Promise<void> {
  t.equal(await rootConnect(lab.controlAddr(host), PORT), expected, `${what}: the root namespace reaches ${host} over its control link (${expected})`);
}

t.test('hosts, links, own port spaces and the control link', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  await serveAll(lab);
  await Promise.all([
    expectEcho(t, lab, 'a', 'b', 'rep', 'joined'),
    expectEcho(t, lab, 'b', 'a', 'mgmt', 'joined'),
    expectEcho(t, lab, 'a', 'w', 'aw', 'joined'),
    expectEcho(t, lab, 'b', 'w', 'bw', 'joined'),
  ]);
  await Promise.all(LAB_HOSTS.map((h) => expectControl(t, lab, h, 'echoed', 'joined')));
  const far = await tryConnect(lab, 'a', lab.addr('w', 'bw'), PORT, { timeoutMs: 800 });
  t.not(far.result, 'echoed', `a has no route to w's address on the b-w link (${far.result})`);
  t.ok(lab.wrap('a', ['true']).join(' ').startsWith(`ip netns exec ${lab.ns('a')} `), 'wrap runs inside the namespace');
  for (const h of LAB_HOSTS) t.ok((await lab.exec(h, ['ip', 'link', 'show', 'lo'])).stdout.includes('UP'), `${h}: lo is up`);
});

t.test('partition(a, b): both a-b links silent, the witness links and the control link still work; heal', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  await serveAll(lab);
  const held = await holdConnection(lab, 'b', lab.addr('a', 'rep'), PORT);
  await lab.partition('a', 'b');
  await Promise.all([
    expectSilent(t, lab, 'a', 'b', 'rep', 'partitioned'),
    expectSilent(t, lab, 'b', 'a', 'mgmt', 'partitioned'),
    expectEcho(t, lab, 'a', 'w', 'aw', 'partitioned'),
    expectEcho(t, lab, 'b', 'w', 'bw', 'partitioned'),
  ]);
  held.write();
  t.equal(await held.next(() => true, 800), undefined, 'partitioned: an established connection gets no echo, no FIN, no RST');
  await expectControl(t, lab, 'a', 'echoed', 'partitioned');
  const since = held.cursor();
  await lab.heal();
  t.equal(await held.next((e) => e === 'data', 5000, since), 'data', 'healed: the retransmitted byte is echoed on the same connection');
  await Promise.all([
    expectEcho(t, lab, 'a', 'b', 'rep', 'healed'),
    expectEcho(t, lab, 'b', 'a', 'mgmt', 'healed'),
  ]);
  held.close();
});

t.test('isolate(a): a cut from everyone while its processes run; heal', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  await serveAll(lab);
  const before = await lab.pids('a');
  await lab.isolate('a');
  await Promise.all([
    expectSilent(t, lab, 'b', 'a', 'rep', 'isolated'),
    expectSilent(t, lab, 'w', 'a', 'aw', 'isolated'),
    expectSilent(t, lab, 'a', 'b', 'mgmt', 'isolated'),
    expectEcho(t, lab, 'b', 'w', 'bw', 'isolated'),
    expectControl(t, lab, 'a', 'echoed', 'isolated'),
  ]);
  t.same(await lab.pids('a'), before, "isolated: a's processes keep running");
  await lab.heal();
  await Promise.all([
    expectEcho(t, lab, 'b', 'a', 'rep', 'healed'),
    expectEcho(t, lab, 'w', 'a', 'aw', 'healed'),
  ]);
});

t.test('powerLoss(a): processes gone, no FIN/RST reaches b, connects time out; powerOn: an empty host that answers with RSTs', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  await serveAll(lab);
  const held = await holdConnection(lab, 'b', lab.addr('a', 'rep'), PORT);
  const killed = await lab.powerLoss('a');
  t.ok(killed.length >= 1, `powerLoss killed a's processes (${killed.join(', ')})`);
  t.same(await lab.pids('a'), [], 'a has no process left');
  t.equal(await held.next(() => true, 1500), undefined, "b's established connection to a sees no FIN and no RST");
  held.write();
  t.equal(await held.next(() => true, 800), undefined, 'a byte b sends gets no answer either');
  await Promise.all([
    expectSilent(t, lab, 'b', 'a', 'rep', 'powered off'),
    expectSilent(t, lab, 'w', 'a', 'aw', 'powered off'),
    expectControl(t, lab, 'a', 'refused', 'powered off (nothing runs there)'),
    expectEcho(t, lab, 'b', 'w', 'bw', 'powered off'),
  ]);

  const since = held.cursor();
  await lab.powerOn('a');
  t.match(await held.next((e) => e.startsWith('error') || e === 'end', 8000, since), /error ECONNRESET/, "powered on: b's old connection is reset by a's fresh kernel");
  const r = await tryConnect(lab, 'b', lab.addr('a', 'rep'), PORT);
  t.equal(r.result, 'refused', 'powered on: nothing listens on a until the test starts it again');
  await echoServer(lab, 'a', PORT);
  await expectEcho(t, lab, 'b', 'a', 'mgmt', 'restarted');
  held.close();
});

t.test('crash(a): processes killed by the kernel, which closes their sockets (FIN/RST reach b)', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  await serveAll(lab);
  const held = await holdConnection(lab, 'b', lab.addr('a', 'rep'), PORT);
  const since = held.cursor();
  await lab.crash('a');
  t.same(await lab.pids('a'), [], 'a has no process left');
  t.match(await held.next((e) => e === 'end' || e.startsWith('error'), 2000, since), /^(end|error ECONNRESET)$/, "b's connection is closed by a's kernel at once");
  const r = await tryConnect(lab, 'b', lab.addr('a', 'rep'), PORT);
  t.equal(r.result, 'refused', 'a connect to the crashed host is refused (the host is up, its program is not)');
  held.close();
});

t.test('freeze(a): handshakes complete, no byte comes back; thaw: the echo arrives', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  await serveAll(lab);
  const held = await holdConnection(lab, 'b', lab.addr('a', 'rep'), PORT);
  const frozen = await lab.freeze('a');
  t.ok(frozen.length >= 1, 'froze a');
  const r = await tryConnect(lab, 'b', lab.addr('a', 'rep'), PORT, { send: true, timeoutMs: 800 });
  t.equal(r.result, 'no-reply', 'frozen: the kernel completes the handshake, the frozen server never answers');
  const since = held.cursor();
  held.write();
  t.equal(await held.next(() => true, 800), undefined, 'frozen: no echo on an established connection');
  await lab.thaw('a');
  t.equal(await held.next((e) => e === 'data', 3000, since), 'data', 'thawed: the echo arrives');
  held.close();
});

t.test('process-level death: killing one pid leaves the rest of the host running', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  const one = await echoServer(lab, 'a', PORT);
  await echoServer(lab, 'a', PORT + 1);
  lab.killProcess(one.pid!);
  await new Promise((r) => one.once('exit', r));
  t.equal((await tryConnect(lab, 'b', lab.addr('a', 'rep'), PORT)).result, 'refused', 'the killed server is gone');
  t.equal((await tryConnect(lab, 'b', lab.addr('a', 'rep'), PORT + 1, { send: true })).result, 'echoed', 'the other still answers');
});

/** The pid holding a lab slot, undefined when it is free. */
function slotOwner(slot: number): number | undefined {
  try {
    return (JSON.parse(readFileSync(`/run/colo-lab/slot-${slot}`, 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

const nsList = (): string => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;

t.test('cleanup: destroy() removes namespaces, veths, rules and processes', async (t) => {
  const lab = await startLabOrSkip(t);
  if (!lab) return;
  const server = await echoServer(lab, 'a', PORT);
  await lab.partition('a', 'b');
  const names = LAB_HOSTS.map((h) => lab.ns(h));
  await lab.destroy();
  for (const n of names) t.notOk(nsList().includes(n), `${n} is gone`);
  t.notOk(spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout.includes(`clab${lab.slot}`), 'the control veths are gone');
  t.not(slotOwner(lab.slot), process.pid, 'the slot is free (or already taken by another lab)');
  t.ok(server.exitCode !== null || server.signalCode !== null, 'its processes are dead');
});

t.test('cleanup: a SIGKILLed test process leaves nothing behind (the netns reaper)', async (t) => {
  if (!avail.ok) return;
  const script = fileURLToPath(new URL('./fixtures/lab-child.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`lab child exited (${code})`)));
  });
  const info = JSON.parse(line) as { slot: number; namespaces: string[]; sleepPid: number };
  t.ok(info.namespaces.every((n) => nsList().includes(n)), 'the child made its lab');
  child.kill('SIGKILL');
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && info.namespaces.some((n) => nsList().includes(n))) await new Promise((r) => setTimeout(r, 100));
  for (const n of info.namespaces) t.notOk(nsList().includes(n), `${n} was deleted by the reaper`);
  // A zombie counts as gone (PID 1 here may never reap the orphan).
  t.equal(await readProc(info.sleepPid), undefined, 'the process it ran inside host a was killed');
  t.not(slotOwner(info.slot), child.pid, 'its slot is free again (or taken by another lab)');
});
