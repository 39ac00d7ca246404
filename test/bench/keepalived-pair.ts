/**
 * A pair of keepalived instances, the yardstick for the agent's footprint: VRRP (version 3, which
 * allows sub-second adverts) by unicast between two network namespaces, fp-a and fp-b, joined by
 * a veth pair, each instance with its own config and pid files in a temp dir. Only the VRRP
 * subsystem runs (-P), in the foreground (-n), logging to the console (-l, discarded here).
 *
 * Cleanup is synchronous and also runs when this process exits or is told to end (runBench exits
 * on Ctrl-C): the VRRP children first (by pid file and by parent, while the parent still exists
 * to find them by), then the parents are SIGKILLed, and the namespaces (with the veth) deleted.
 * The parents are deliberately not in the agent helpers' registry: that would kill them first
 * and orphan their children.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../helpers/agent-process.js';
import { onProcessEnd } from '../helpers/exit-hooks.js';
import { findExecutable } from '../../src/util/find-executable.js';
import { childProcessesOf } from './proc-children.js';

interface Host {
  ns: string;
  dev: string;
  ip: string;
  priority: number;
}

const HOSTS: readonly Host[] = [
  { ns: 'fp-a', dev: 'fp-va', ip: '10.247.0.1', priority: 150 },
  { ns: 'fp-b', dev: 'fp-vb', ip: '10.247.0.2', priority: 100 },
];
const VIP = '10.247.0.100/24';

export interface KeepalivedInstance {
  name: string;
  /** The parent and its children (the VRRP process), as /proc shows them now. */
  pids(): number[];
}

export interface KeepalivedPair {
  instances: KeepalivedInstance[];
  stop(): void;
}

/** Why keepalived cannot run here, or undefined when it can. */
export function keepalivedMissing(): string | undefined {
  if (!findExecutable('keepalived')) return 'keepalived is not installed';
  if (!findExecutable('ip')) return 'ip (iproute2) is not installed';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  return undefined;
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

function deleteNamespaces(): void {
  for (const h of HOSTS) {
    try {
      ip('netns', 'del', h.ns);
    } catch {
      // not there
    }
  }
}

function config(self: Host, peer: Host, advertSeconds: number): string {
  return `global_defs {
  router_id ${self.ns}
  vrrp_version 3
  script_user root
  enable_script_security
}
vrrp_instance fp {
  state ${self.priority > peer.priority ? 'MASTER' : 'BACKUP'}
  interface ${self.dev}
  virtual_router_id 147
  priority ${self.priority}
  advert_int ${advertSeconds}
  unicast_src_ip ${self.ip}
  unicast_peer {
    ${peer.ip}
  }
  virtual_ipaddress {
    ${VIP}
  }
}
`;
}

export async function startKeepalivedPair(advertSeconds: number): Promise<KeepalivedPair> {
  const dir = mkdtempSync(join(tmpdir(), 'fp-keepalived-'));
  const children: ChildProcess[] = [];
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const [i, c] of children.entries()) {
      const pid = c.pid;
      if (pid === undefined) continue;
      const vrrp = readPid(join(dir, `${HOSTS[i]!.ns}-vrrp.pid`));
      for (const p of [...(vrrp === undefined ? [] : [vrrp]), ...childProcessesOf(pid), pid]) killQuietly(p);
    }
    deleteNamespaces();
    rmSync(dir, { recursive: true, force: true });
  };
  onProcessEnd(stop);
  try {
    deleteNamespaces(); // leftovers of a run that was SIGKILLed
    for (const h of HOSTS) ip('netns', 'add', h.ns);
    ip('link', 'add', HOSTS[0]!.dev, 'netns', HOSTS[0]!.ns, 'type', 'veth', 'peer', 'name', HOSTS[1]!.dev, 'netns', HOSTS[1]!.ns);
    for (const h of HOSTS) {
      ip('-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', h.dev);
      ip('-n', h.ns, 'link', 'set', h.dev, 'up');
      ip('-n', h.ns, 'link', 'set', 'lo', 'up');
    }
    const instances: KeepalivedInstance[] = [];
    for (const [i, h] of HOSTS.entries()) {
      const peer = HOSTS[1 - i]!;
      const conf = join(dir, `${h.ns}.conf`);
      writeFileSync(conf, config(h, peer, advertSeconds));
      const pidFile = join(dir, `${h.ns}.pid`);
      const args = ['netns', 'exec', h.ns, 'keepalived', '-n', '-l', '-P', '-f', conf, '-p', pidFile, '-r', join(dir, `${h.ns}-vrrp.pid`)];
      const child = spawn('ip', args, { stdio: 'ignore' });
      children.push(child);
      const pid = child.pid!;
      instances.push({ name: `keepalived ${h.ns}`, pids: () => (existsSync(`/proc/${pid}`) ? [pid, ...childProcessesOf(pid)] : []) });
    }
    await waitForVrrpChildren(instances, join(dir, 'fp-a.pid'));
    await waitForMaster(advertSeconds);
    return { instances, stop };
  } catch (err) {
    stop();
    throw err;
  }
}

const holdsVip = (h: Host) => execFileSync('ip', ['-n', h.ns, '-o', 'addr', 'show', 'dev', h.dev], { encoding: 'utf8' }).includes(` ${VIP} `);

/**
 * VRRP works when fp-a (the higher priority) holds the VIP and fp-b, hearing its adverts, does
 * not: otherwise both would be masters and the figures would be of two lone instances.
 */
async function waitForMaster(advertSeconds: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (holdsVip(HOSTS[0]!) && !holdsVip(HOSTS[1]!)) {
      // Both stay so for a few adverts more, or fp-b never heard fp-a.
      await sleep(Math.max(500, advertSeconds * 10_000));
      if (holdsVip(HOSTS[0]!) && !holdsVip(HOSTS[1]!)) return;
    }
    await sleep(100);
  }
  throw new Error(`keepalived: fp-a did not become the only VRRP master within 10 s (VIP on fp-a: ${holdsVip(HOSTS[0]!)}, on fp-b: ${holdsVip(HOSTS[1]!)})`);
}

/** Each instance is up once it has forked its VRRP child; a parent that died means a bad config. */
async function waitForVrrpChildren(instances: KeepalivedInstance[], somePidFile: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const counts = instances.map((k) => k.pids().length);
    if (counts.some((n) => n === 0)) throw new Error(`keepalived exited at start (try keepalived -t -f on its config)`);
    if (counts.every((n) => n >= 2)) return;
    await sleep(100);
  }
  throw new Error(`keepalived started no VRRP child within 10 s (pid file ${somePidFile}: ${existsSync(somePidFile) ? readFileSync(somePidFile, 'utf8').trim() : 'missing'})`);
}
