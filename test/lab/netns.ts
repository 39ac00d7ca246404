/**
 * A lab of separate hosts for e2e tests: each host is a network namespace of its own, with its own
 * addresses and its own port space, so the documented fixed ports (9001, 9003-9005, 9998, 9999)
 * can be used on both hosts, and a fault on one host is what it would be on a real machine.
 *
 * Hosts: `a` and `b` (the pair) and `w` (the witness, or etcd). Links, each a veth pair with its
 * own link-local /30 (the same in every lab: the addresses live inside the lab's namespaces only):
 *
 * | link   | ends | interface (each end) | addresses                      |
 * |--------|------|----------------------|--------------------------------|
 * | `rep`  | a-b  | rep0 / rep0          | a 169.254.1.1, b 169.254.1.2   |
 * | `mgmt` | a-b  | mgmt0 / mgmt0        | a 169.254.2.1, b 169.254.2.2   |
 * | `aw`   | a-w  | wit0 / a0            | a 169.254.3.1, w 169.254.3.2   |
 * | `bw`   | b-w  | wit0 / b0            | b 169.254.4.1, w 169.254.4.2   |
 *
 * The control link (how the test in the root namespace reaches each host's HTTP endpoints, the
 * agents' /status and /metrics): one more veth per host, root <-> host (`ctl0` inside), each on a
 * /30 of its own out of 169.254.128.0/17. That range IS visible in the root namespace, so it must
 * be unique per live lab: a lab claims a slot number by creating /run/colo-lab/slot-N exclusively
 * (O_EXCL: atomic, so two tap jobs never get the same slot), holding its pid; slot N's three /30s
 * are 169.254.128.0 + 16 N (+0 a, +4 b, +8 w); the root ends are named `clab<N><host>` (<= 15
 * chars). A slot whose owner pid is gone is swept (its namespaces and veths deleted) and taken.
 * No fault ever touches the control link: it models an out-of-band management network. It was
 * chosen over running every request through `ip netns exec` (a process per request, and slow).
 *
 * Faults, all nftables rules inside the host's namespace (input and output hooks, matched by
 * interface, so `lo` and `ctl0` are never touched) or signals to the host's processes
 * (`ip netns pids NS`: every process whose network namespace is the host, whoever started it):
 * - powerLoss(h): drop everything on h's lab links, then SIGKILL all of h's processes while the
 *   drop holds (their FIN/RST never leave h); powerOn(h): destroy the dead host's leftover sockets
 *   (`ss -K`, still behind the drop, as a reboot forgets them), then remove the drop: h comes back
 *   empty and answers with RSTs like a rebooted host;
 * - isolate(h): the same drop, processes keep running; heal() removes it;
 * - partition(x, y): drop the links between x and y only (both links for a-b), on both ends; heal();
 * - freeze(h) / thaw(h): SIGSTOP / SIGCONT every process of h (the kernel still completes TCP
 *   handshakes, nothing answers);
 * - crash(h): SIGKILL every process of h (the kernel closes their sockets: FIN/RST reach the peers,
 *   which is the difference from powerLoss).
 * Dropping output makes a UDP send fail with EPERM on the host itself; TCP (all the agents and
 * QEMU use) just retransmits, silent as on a cut wire.
 *
 * Cleanup: destroy() (registered on `t` teardown) kills every process of the lab's hosts, deletes
 * the namespaces (which deletes their veths, the root ends with them, and their nft tables) and
 * frees the slot. The same runs synchronously on exit or SIGINT/SIGTERM/SIGHUP (exit-hooks.ts),
 * and a detached watcher (netns-reaper.ts) runs it when the test process is SIGKILLed. What even
 * that misses (the watcher killed too) is swept by the next lab created on the machine.
 *
 * Needs root, `ip` (iproute2) and `nft` (nftables): labAvailable() says why not, for a skip.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onProcessEnd } from '../helpers/exit-hooks.js';
import { pidAlive } from '../helpers/partition.js';
import { findExecutable } from '../helpers/run-command.js';
import type { Teardownable } from '../helpers/short-temp-dir.js';
import { cleanupScript, startNetnsReaper, type NetnsReaper } from './netns-reaper.js';

export type LabHost = 'a' | 'b' | 'w';
export const LAB_HOSTS: readonly LabHost[] = ['a', 'b', 'w'];
export type LabLinkName = 'rep' | 'mgmt' | 'aw' | 'bw';

export interface LabLink {
  name: LabLinkName;
  /** Interface name and address (no prefix length) at each end. */
  ends: Partial<Record<LabHost, { ifname: string; address: string }>>;
}

/** The links between the hosts (see the file comment); identical in every lab. */
export const LAB_LINKS: readonly LabLink[] = [
  { name: 'rep', ends: { a: { ifname: 'rep0', address: '169.254.1.1' }, b: { ifname: 'rep0', address: '169.254.1.2' } } },
  { name: 'mgmt', ends: { a: { ifname: 'mgmt0', address: '169.254.2.1' }, b: { ifname: 'mgmt0', address: '169.254.2.2' } } },
  { name: 'aw', ends: { a: { ifname: 'wit0', address: '169.254.3.1' }, w: { ifname: 'a0', address: '169.254.3.2' } } },
  { name: 'bw', ends: { b: { ifname: 'wit0', address: '169.254.4.1' }, w: { ifname: 'b0', address: '169.254.4.2' } } },
];
const PREFIX = 30;
const CONTROL_IF = 'ctl0';
const SLOT_DIR = '/run/colo-lab';
const MAX_SLOTS = 2048;
/** Namespace names: colo-lab-<slot>-<pid>-<host>; the pid lets a later lab tell a leftover. */
const NS_PREFIX = 'colo-lab-';

export class LabError extends Error {}

// ---- availability ----

export type LabAvailability = { ok: true } | { ok: false; reason: string };
let availability: LabAvailability | undefined;

/** Whether labs can be made here (root, ip, nft, namespaces); `reason` is fit for a skip. Cached. */
export function labAvailable(): LabAvailability {
  availability ??= probe();
  return availability;
}

function probe(): LabAvailability {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, reason: 'the lab needs root (network namespaces, veth, nftables): run the tests as root' };
  if (!findExecutable('ip')) return { ok: false, reason: 'ip (iproute2) is not installed (apt-get install iproute2): no network namespaces' };
  if (!findExecutable('nft')) return { ok: false, reason: 'nft is not installed (apt-get install nftables): the lab cannot make faults' };
  const name = `${NS_PREFIX}probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8', timeout: 10_000 });
  if (add.status !== 0) return { ok: false, reason: `ip netns add fails here: ${(add.stderr || add.error?.message || '').trim()}` };
  const nft = spawnSync('ip', ['netns', 'exec', name, 'nft', 'list', 'tables'], { encoding: 'utf8', timeout: 10_000 });
  spawnSync('ip', ['netns', 'del', name], { timeout: 10_000 });
  if (nft.status !== 0) return { ok: false, reason: `nft cannot be used in a namespace here: ${(nft.stderr || nft.error?.message || '').trim()}` };
  return { ok: true };
}

// ---- running commands ----

export interface CommandOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run to completion (SIGKILL after timeoutMs); `input` goes to stdin. Never rejects. */
export function run(argv: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CommandOutput> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function must(argv: readonly string[], input?: string): Promise<string> {
  const r = await run(argv, input === undefined ? {} : { input });
  if (r.code !== 0) throw new LabError(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


// ---- slots (the control subnets) ----

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const CONTROL_BASE = (169 << 24) | (254 << 16) | (128 << 8);

/** Slot `slot`'s control /30 for `host`: the root end (.1 of it) and the host end (.2). */
export function controlSubnet(slot: number, host: LabHost): { root: string; host: string } {
  const base = CONTROL_BASE + slot * 16 + LAB_HOSTS.indexOf(host) * 4;
  return { root: ipv4(base + 1), host: ipv4(base + 2) };
}

function rootIfName(slot: number, host: LabHost): string {
  return `clab${slot}${host}`;
}

function nsName(slot: number, pid: number, host: LabHost): string {
  return `${NS_PREFIX}${slot}-${pid}-${host}`;
}

/** What a slot file holds: enough for anyone to clean the lab up. */
interface SlotRecord {
  pid: number;
  namespaces: string[];
  rootIfs: string[];
}

function slotFile(slot: number): string {
  return join(SLOT_DIR, `slot-${slot}`);
}

/** Delete a dead lab's namespaces (killing what runs in them) and root veths; synchronous. */
function sweepSync(rec: Pick<SlotRecord, 'namespaces' | 'rootIfs'>): void {
  spawnSync('sh', ['-c', cleanupScript(rec.namespaces, rec.rootIfs)], { stdio: 'ignore', timeout: 20_000 });
}

/** Sweep every lab whose owner is gone: slot files of dead pids and namespaces named after dead pids. */
function sweepLeftovers(): void {
  mkdirSync(SLOT_DIR, { recursive: true });
  for (const f of readdirSync(SLOT_DIR)) {
    if (!f.startsWith('slot-')) continue;
    let rec: SlotRecord | undefined;
    try {
      rec = JSON.parse(readFileSync(join(SLOT_DIR, f), 'utf8')) as SlotRecord;
    } catch {
      continue; // being written right now
    }
    if (pidAlive(rec.pid)) continue;
    sweepSync(rec);
    rmSync(join(SLOT_DIR, f), { force: true });
  }
  const listed = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const dead = listed
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => {
      const m = /^colo-lab-\d+-(\d+)-[abw]$/.exec(n);
      return m !== null && !pidAlive(Number(m[1]));
    });
  if (dead.length) sweepSync({ namespaces: dead, rootIfs: [] });
}

/** Claim the lowest free slot whose control subnets nothing else on the machine uses. */
function claimSlot(): number {
  sweepLeftovers();
  const inUse = spawnSync('ip', ['-o', '-4', 'addr'], { encoding: 'utf8' }).stdout ?? '';
  for (let slot = 0; slot < MAX_SLOTS; slot++) {
    if (LAB_HOSTS.some((h) => inUse.includes(` ${controlSubnet(slot, h).root}/`) || inUse.includes(` ${rootIfName(slot, h)} `))) continue;
    const rec: SlotRecord = {
      pid: process.pid,
      namespaces: LAB_HOSTS.map((h) => nsName(slot, process.pid, h)),
      rootIfs: LAB_HOSTS.map((h) => rootIfName(slot, h)),
    };
    try {
      writeFileSync(slotFile(slot), JSON.stringify(rec), { flag: 'wx' });
      return slot;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new LabError(`no free lab slot in ${SLOT_DIR} (${MAX_SLOTS} in use?)`);
}

// ---- the process-wide net ----

const liveLabs = new Set<Lab>();

/** Synchronously destroy every lab of this process (exit handler). */
export function destroyAllLabsNow(): void {
  for (const lab of liveLabs) lab.destroySync();
}

// ---- the lab ----

export interface CreateLabOptions {
  /** Destroy the lab at this test's teardown. */
  t?: Teardownable;
}

export class Lab {
  readonly slot: number;
  private readonly nsNames: Record<LabHost, string>;
  private reaper: NetnsReaper | undefined;
  private destroyed = false;
  /** What each host's namespace holds in the way of fault tables now. */
  private readonly powerOff = new Set<LabHost>();

  private constructor(slot: number) {
    this.slot = slot;
    this.nsNames = { a: nsName(slot, process.pid, 'a'), b: nsName(slot, process.pid, 'b'), w: nsName(slot, process.pid, 'w') };
  }

  /** A new lab: three namespaces, their links and control links, `lo` up in each. */
  static async create(opts: CreateLabOptions = {}): Promise<Lab> {
    const avail = labAvailable();
    if (!avail.ok) throw new LabError(avail.reason);
    const lab = new Lab(claimSlot());
    liveLabs.add(lab);
    onProcessEnd(destroyAllLabsNow);
    opts.t?.teardown(() => lab.destroy());
    lab.reaper = startNetnsReaper(Object.values(lab.nsNames), lab.rootIfs(), slotFile(lab.slot));
    try {
      await lab.build();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  private rootIfs(): string[] {
    return LAB_HOSTS.map((h) => rootIfName(this.slot, h));
  }

  private async build(): Promise<void> {
    for (const h of LAB_HOSTS) await must(['ip', 'netns', 'add', this.nsNames[h]]);
    for (const h of LAB_HOSTS) await must(['ip', '-n', this.nsNames[h], 'link', 'set', 'lo', 'up']);
    for (const link of LAB_LINKS) {
      const ends = Object.entries(link.ends) as Array<[LabHost, { ifname: string; address: string }]>;
      const [[h1, e1], [h2, e2]] = ends as [(typeof ends)[0], (typeof ends)[0]];
      // Both ends created straight inside their namespaces: the names need only be unique there.
      await must(['ip', 'link', 'add', e1.ifname, 'netns', this.nsNames[h1], 'type', 'veth', 'peer', 'name', e2.ifname, 'netns', this.nsNames[h2]]);
      for (const [h, e] of ends) await this.ifUp(this.nsNames[h], e.ifname, e.address);
    }
    for (const h of LAB_HOSTS) {
      const c = controlSubnet(this.slot, h);
      const rootIf = rootIfName(this.slot, h);
      await must(['ip', 'link', 'add', rootIf, 'type', 'veth', 'peer', 'name', CONTROL_IF, 'netns', this.nsNames[h]]);
      await must(['ip', 'addr', 'add', `${c.root}/${PREFIX}`, 'dev', rootIf]);
      await must(['ip', 'link', 'set', rootIf, 'up']);
      await this.ifUp(this.nsNames[h], CONTROL_IF, c.host);
    }
  }

  private async ifUp(ns: string, ifname: string, address: string): Promise<void> {
    await must(['ip', '-n', ns, 'addr', 'add', `${address}/${PREFIX}`, 'dev', ifname]);
    await must(['ip', '-n', ns, 'link', 'set', ifname, 'up']);
  }

  // ---- addresses ----

  /** The namespace's name (for `ip netns exec`, `ip -n`). */
  ns(host: LabHost): string {
    return this.nsNames[host];
  }

  /** The host's address on a link it is on (e.g. addr('a', 'rep')). */
  addr(host: LabHost, link: LabLinkName): string {
    const end = LAB_LINKS.find((l) => l.name === link)?.ends[host];
    if (!end) throw new LabError(`host ${host} is not on link ${link}`);
    return end.address;
  }

  /** The host's address on its control link: reachable from the root namespace (this process), never faulted. */
  controlAddr(host: LabHost): string {
    return controlSubnet(this.slot, host).host;
  }

  /** The interfaces of `host` on links to `towards` (every lab link of the host when omitted); never lo or ctl0. */
  interfaces(host: LabHost, towards?: LabHost): string[] {
    return LAB_LINKS.filter((l) => l.ends[host] && (towards === undefined || l.ends[towards])).map((l) => l.ends[host]!.ifname);
  }

  // ---- running things inside a host ----

  /** argv that runs `argv` inside the host (`ip netns exec` execs: the child's pid is the program's own). */
  wrap(host: LabHost, argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.nsNames[host], ...argv];
  }

  /** Spawn `argv` inside the host. */
  spawn(host: LabHost, argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const [cmd, ...args] = this.wrap(host, argv);
    return spawn(cmd!, args, opts);
  }

  /** Run `argv` inside the host to completion. */
  exec(host: LabHost, argv: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CommandOutput> {
    return run(this.wrap(host, argv), opts);
  }

  /** Every process of the host (whose network namespace it is), by pid. */
  async pids(host: LabHost): Promise<number[]> {
    const out = await run(['ip', 'netns', 'pids', this.nsNames[host]]);
    return out.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(Number);
  }

  /** Send `signal` to every process of the host, again until no new one appears (a child forked meanwhile). */
  async signalAll(host: LabHost, signal: NodeJS.Signals): Promise<number[]> {
    const done = new Set<number>();
    for (let round = 0; round < 20; round++) {
      const fresh = (await this.pids(host)).filter((p) => !done.has(p));
      if (fresh.length === 0) break;
      for (const p of fresh) {
        done.add(p);
        signalPid(p, signal);
      }
    }
    return [...done];
  }

  /** SIGKILL every process of the host and wait until they are all gone. */
  private async killAll(host: LabHost): Promise<number[]> {
    const killed = new Set<number>();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pids = await this.pids(host);
      if (pids.length === 0) return [...killed];
      if (Date.now() > deadline) throw new LabError(`processes of host ${host} survive SIGKILL: ${pids.join(', ')}`);
      for (const p of pids) {
        killed.add(p);
        signalPid(p, 'SIGKILL');
        signalPid(p, 'SIGCONT');
      }
      await sleep(20);
    }
  }

  // ---- faults ----

  /**
   * Power loss: drop every packet in and out of the host's lab links, then SIGKILL all its
   * processes while the drop holds (no FIN, no RST reaches anyone). Returns the pids killed.
   */
  async powerLoss(host: LabHost): Promise<number[]> {
    await this.nft(host, `table inet colo_lab_power {\n${dropChains(this.interfaces(host))}\n}\n`);
    this.powerOff.add(host);
    return this.killAll(host);
  }

  /** Power back on: the host's leftover sockets are forgotten (as by a reboot), then the drop goes. Start its programs again yourself. */
  async powerOn(host: LabHost): Promise<void> {
    if (!this.powerOff.has(host)) return;
    // Still behind the drop: the kernel's RSTs for these sockets go nowhere.
    await this.exec(host, ['ss', '-K', '-t', 'state', 'all']);
    await this.exec(host, ['nft', 'delete', 'table', 'inet', 'colo_lab_power']);
    this.powerOff.delete(host);
  }

  /** Drop all of the host's traffic (but its control link); its processes keep running. heal() ends it. */
  async isolate(host: LabHost): Promise<void> {
    await this.addFaultRules(host, this.interfaces(host));
  }

  /** Drop the traffic between two hosts only (every link between them), on both ends. heal() ends it. */
  async partition(x: LabHost, y: LabHost): Promise<void> {
    if (x === y) throw new LabError('partition needs two different hosts');
    await this.addFaultRules(x, this.interfaces(x, y));
    await this.addFaultRules(y, this.interfaces(y, x));
  }

  /** Remove every isolate() and partition() (not a power loss: powerOn() does that). */
  async heal(): Promise<void> {
    for (const h of LAB_HOSTS) {
      const r = await this.exec(h, ['nft', 'delete', 'table', 'inet', 'colo_lab_fault']);
      if (r.code !== 0 && !/No such file|does not exist/i.test(r.stderr)) throw new LabError(`heal on ${h}: ${r.stderr.trim()}`);
    }
  }

  /** SIGSTOP every process of the host. */
  freeze(host: LabHost): Promise<number[]> {
    return this.signalAll(host, 'SIGSTOP');
  }

  /** SIGCONT every process of the host. */
  thaw(host: LabHost): Promise<number[]> {
    return this.signalAll(host, 'SIGCONT');
  }

  /** SIGKILL every process of the host: the kernel closes their sockets (FIN/RST go out). Returns the pids killed. */
  crash(host: LabHost): Promise<number[]> {
    return this.killAll(host);
  }

  /** SIGKILL one process (a QEMU alone, an agent alone): a process-level death. */
  killProcess(pid: number): void {
    signalPid(pid, 'SIGKILL');
    signalPid(pid, 'SIGCONT');
  }

  private async addFaultRules(host: LabHost, ifnames: string[]): Promise<void> {
    // `add table` and `add chain` are no-ops when they exist: rules accumulate until heal().
    await this.nft(host, `table inet colo_lab_fault {\n${dropChains(ifnames)}\n}\n`);
  }

  private async nft(host: LabHost, script: string): Promise<void> {
    const r = await this.exec(host, ['nft', '-f', '-'], { input: script });
    if (r.code !== 0) throw new LabError(`nft in host ${host} failed: ${r.stderr.trim()}\n${script}`);
  }

  // ---- teardown ----

  /** Kill every process of the lab, delete its namespaces (veths and nft tables with them), free the slot. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await Promise.all(LAB_HOSTS.map((h) => this.killAll(h).catch(() => undefined)));
    this.destroySync();
  }

  /** destroy(), synchronously (for an exit handler). */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    liveLabs.delete(this);
    sweepSync({ namespaces: Object.values(this.nsNames), rootIfs: this.rootIfs() });
    rmSync(slotFile(this.slot), { force: true });
    this.reaper?.cancel();
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** Input and output chains that drop everything on these interfaces. */
function dropChains(ifnames: readonly string[]): string {
  const set = `{ ${ifnames.map((i) => `"${i}"`).join(', ')} }`;
  return [
    '  chain input {',
    '    type filter hook input priority -10; policy accept;',
    `    iifname ${set} drop`,
    '  }',
    '  chain output {',
    '    type filter hook output priority -10; policy accept;',
    `    oifname ${set} drop`,
    '  }',
  ].join('\n');
}

/** A lab for test `t` (destroyed at its teardown), or undefined after marking `t` skipped with the reason. */
export async function startLabOrSkip(t: Teardownable & { pass(message: string, extra: { skip: string }): unknown }): Promise<Lab | undefined> {
  const avail = labAvailable();
  if (!avail.ok) {
    t.pass('lab of separate hosts', { skip: avail.reason });
    return undefined;
  }
  return Lab.create({ t });
}
