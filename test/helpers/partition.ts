/**
 * Network partitions on loopback for e2e tests: iptables DROP rules in a chain of our own.
 *
 * The pair runs on one machine (primary 127.0.0.1, secondary 127.0.0.2, witness 127.0.0.3). The
 * kernel picks 127.0.0.1 as the source of most loopback connections, so "cut between two hosts"
 * is expressed by PORT: every TCP packet to or from a port of the pair is dropped (DropRule
 * `ports`). A node's link to a service (the witness) is cut by address and port, as the agents
 * dial the witness from their own heartbeat.listen address (DropRule `flow`).
 *
 * DROP, not REJECT: nothing answers, no connection is closed, a connect() times out. That is what
 * a real partition looks like to both sides, and what the agents' TCP probe must see as `silent`.
 *
 * Each Partition makes its own chain (unique per test process and instance), jumped to from INPUT
 * for `-i lo` only; cut() adds a named group of rules to it and heal() removes them, each group
 * in one iptables-restore transaction, so all rules of a cut take effect at once. close() removes
 * the jump and the chain; it runs at the test's teardown and, synchronously, when the test process
 * exits or is signalled (exit-hooks.ts). A chain left behind by a SIGKILLed test process (its pid
 * is gone) is removed the next time a Partition is created.
 *
 * Needs root (CAP_NET_ADMIN) and the iptables package: iptablesAvailable() says why not, for a skip.
 */
import { execFile, spawnSync } from 'node:child_process';
import { onProcessEnd } from './exit-hooks.js';
import { findExecutable } from './run-command.js';
import type { Teardownable } from './short-temp-dir.js';

/** Drop every TCP packet from or to one of these ports (both directions of every connection using them). */
export interface PortsDrop {
  kind: 'ports';
  ports: readonly number[];
}

/** Drop `src` -> `dst`:`port` and the replies `dst`:`port` -> `src`: the connections `src` makes to that service. */
export interface FlowDrop {
  kind: 'flow';
  src: string;
  dst: string;
  port: number;
}

export type DropRule = PortsDrop | FlowDrop;

export const dropPorts = (ports: readonly number[]): PortsDrop => ({ kind: 'ports', ports: [...ports] });
export const dropFlow = (src: string, dst: string, port: number): FlowDrop => ({ kind: 'flow', src, dst, port });

export type IptablesAvailability = { available: true; iptables: string; restore: string } | { available: false; reason: string };

let availability: IptablesAvailability | undefined;

/** Whether this process can add iptables rules; `reason` is fit for a skip. Cached. */
export function iptablesAvailable(): IptablesAvailability {
  availability ??= probeIptables();
  return availability;
}

function probeIptables(): IptablesAvailability {
  const iptables = findExecutable('iptables') ?? findExecutable('/usr/sbin/iptables') ?? findExecutable('/sbin/iptables');
  const restore = findExecutable('iptables-restore') ?? findExecutable('/usr/sbin/iptables-restore') ?? findExecutable('/sbin/iptables-restore');
  if (!iptables || !restore) return { available: false, reason: 'iptables is not installed (apt-get install iptables): partitions cannot be made' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { available: false, reason: 'partitions need root (iptables rules): run the tests as root' };
  }
  const r = spawnSync(iptables, ['-w', '-S', 'INPUT'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) {
    return { available: false, reason: `iptables cannot be used here (${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]})` };
  }
  return { available: true, iptables, restore };
}

/** The rule specs (after `-A CHAIN`) of one DropRule. */
function ruleSpecs(rule: DropRule): string[][] {
  if (rule.kind === 'ports') {
    return rule.ports.flatMap((p) => [
      ['-p', 'tcp', '--dport', String(p), '-j', 'DROP'],
      ['-p', 'tcp', '--sport', String(p), '-j', 'DROP'],
    ]);
  }
  return [
    ['-p', 'tcp', '-s', rule.src, '-d', rule.dst, '--dport', String(rule.port), '-j', 'DROP'],
    ['-p', 'tcp', '-s', rule.dst, '-d', rule.src, '--sport', String(rule.port), '-j', 'DROP'],
  ];
}

export class PartitionError extends Error {}

const CHAIN_PREFIX = 'COLOT-';
/** Chains of this process not yet removed: removed synchronously when the process ends. */
const liveChains = new Set<string>();
let chainSeq = 0;
let swept = false;

function run(bin: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (err) reject(new PartitionError(`${bin} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Remove a chain and its jump, synchronously, ignoring what is already gone. */
function removeChainSync(iptables: string, chain: string): void {
  // A chain can only be deleted once nothing jumps to it; a jump may exist twice after a crash mid-create.
  for (let i = 0; i < 4; i++) {
    if (spawnSync(iptables, ['-w', '-D', 'INPUT', '-i', 'lo', '-j', chain], { timeout: 10_000 }).status !== 0) break;
  }
  spawnSync(iptables, ['-w', '-F', chain], { timeout: 10_000 });
  spawnSync(iptables, ['-w', '-X', chain], { timeout: 10_000 });
}

function removeAllChainsNow(): void {
  const a = availability;
  if (!a?.available) return;
  for (const chain of liveChains) removeChainSync(a.iptables, chain);
  liveChains.clear();
}

/** Chains named after a test process that no longer exists (SIGKILLed before its cleanup ran). */
function sweepOrphans(iptables: string): string[] {
  const r = spawnSync(iptables, ['-w', '-S'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  const removed: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^-N (COLOT-(\d+)-\d+)$/.exec(line.trim());
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || pidAlive(pid)) continue;
    removeChainSync(iptables, m[1]!);
    removed.push(m[1]!);
  }
  return removed;
}

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface PartitionOptions {
  /** Remove the chain at this test's teardown. */
  t?: Teardownable;
}

export class Partition {
  readonly chain: string;
  private readonly groups = new Map<string, string[][]>();
  private closed: Promise<void> | undefined;
  /** The chain is gone: cut() fails, heal() has nothing left to do. */
  private gone = false;
  /** One iptables change at a time, in call order. */
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    private readonly bins: { iptables: string; restore: string },
    chain: string,
  ) {
    this.chain = chain;
  }

  /** A new chain jumped to from INPUT (-i lo); throws PartitionError when iptables is not usable (check iptablesAvailable() first). */
  static async create(opts: PartitionOptions = {}): Promise<Partition> {
    const a = iptablesAvailable();
    if (!a.available) throw new PartitionError(a.reason);
    onProcessEnd(removeAllChainsNow);
    if (!swept) {
      swept = true;
      sweepOrphans(a.iptables);
    }
    const chain = `${CHAIN_PREFIX}${process.pid}-${++chainSeq}`;
    liveChains.add(chain);
    const p = new Partition(a, chain);
    try {
      await run(a.iptables, ['-w', '-N', chain]);
      await run(a.iptables, ['-w', '-I', 'INPUT', '-i', 'lo', '-j', chain]);
    } catch (err) {
      removeChainSync(a.iptables, chain);
      liveChains.delete(chain);
      throw err;
    }
    opts.t?.teardown(() => p.close());
    return p;
  }

  /** Names of the groups cut now. */
  get active(): string[] {
    return [...this.groups.keys()];
  }

  isCut(name: string): boolean {
    return this.groups.has(name);
  }

  /** Add the rules as group `name` (all at once). A group already cut under this name is replaced. */
  cut(name: string, rules: readonly DropRule[]): Promise<void> {
    return this.enqueue(async () => {
      if (this.gone) throw new PartitionError(`partition ${this.chain} is closed`);
      const specs = rules.flatMap(ruleSpecs);
      const old = this.groups.get(name) ?? [];
      await this.restore([...old.map((s) => ['-D', this.chain, ...s]), ...specs.map((s) => ['-A', this.chain, ...s])]);
      this.groups.set(name, specs);
    });
  }

  /** Remove group `name` (nothing if it is not cut), or every group without a name. */
  heal(name?: string): Promise<void> {
    return this.enqueue(async () => {
      if (this.gone) return;
      const names = name === undefined ? [...this.groups.keys()] : this.groups.has(name) ? [name] : [];
      if (names.length === 0) return;
      const specs = names.flatMap((n) => this.groups.get(n)!);
      await this.restore(specs.map((s) => ['-D', this.chain, ...s]));
      for (const n of names) this.groups.delete(n);
    });
  }

  /** The chain's rules as iptables lists them (for diagnostics). */
  listRules(): string[] {
    const r = spawnSync(this.bins.iptables, ['-w', '-S', this.chain], { encoding: 'utf8', timeout: 10_000 });
    return r.status === 0 ? r.stdout.trim().split('\n').filter((l) => l.startsWith('-A ')) : [];
  }

  /** Remove every rule, the jump and the chain. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.enqueue(async () => {
      this.gone = true;
      removeChainSync(this.bins.iptables, this.chain);
      liveChains.delete(this.chain);
      this.groups.clear();
    });
    return this.closed;
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** One iptables-restore --noflush transaction: every line applies, or none. */
  private restore(lines: string[][]): Promise<void> {
    if (lines.length === 0) return Promise.resolve();
    const text = ['*filter', ...lines.map((l) => l.join(' ')), 'COMMIT', ''].join('\n');
    return run(this.bins.restore, ['--noflush'], text);
  }
}
