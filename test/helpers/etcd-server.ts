/**
 * A real single-member etcd for a test: free ports on 127.0.0.1, its data in a temp dir, ready
 * once /health says so. No etcd outlives its test: pass `t` to stop it (and remove its dir) at
 * teardown; every etcd is also SIGKILLed when the test process exits or is signalled
 * (exit-hooks.ts), and by the reaper when the test process itself is SIGKILLed (reaper.ts).
 *
 * With `netns`, etcd runs inside another network namespace (a host of the lab, test/lab/netns.ts):
 * on that host's fixed ports (it has its own port space), listening for clients on every address
 * of the host, reached from this process at the address given.
 *
 * Tests skip, printing etcdAvailable().reason, when no etcd binary is installed
 * (Debian/Ubuntu: apt-get install etcd-server). Override the binary with COLO_TEST_ETCD.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessEnd } from './exit-hooks.js';
import { freePort } from './free-port.js';
import { reapOnDeath, release } from './reaper.js';
import { findExecutable } from './run-command.js';
import type { Teardownable } from './short-temp-dir.js';

export const DEFAULT_ETCD_BINARY = process.env.COLO_TEST_ETCD ?? '/usr/bin/etcd';

export type EtcdAvailability = { available: true; binary: string } | { available: false; reason: string };

/** Whether etcd can be run here; `reason` is fit for t.skip(). */
export function etcdAvailable(binary = DEFAULT_ETCD_BINARY): EtcdAvailability {
  const found = findExecutable(binary) ?? findExecutable('etcd');
  if (!found) return { available: false, reason: `no etcd binary (${binary}, or etcd on PATH): apt-get install etcd-server, or set COLO_TEST_ETCD` };
  return { available: true, binary: found };
}

export interface StartEtcdOptions {
  /** Stop this etcd (and remove its data dir) at the test's teardown. */
  t?: Teardownable;
  binary?: string;
  /**
   * Raft heartbeat 50 ms and election timeout 500 ms instead of 100/1000: etcd's minimum lease
   * TTL is 1.5 election timeouts rounded up to a second, so this makes it accept 1 s (2 s otherwise).
   */
  fast?: boolean;
  readyTimeoutMs?: number;
  /** Run etcd inside another network namespace (see the file comment). Default: on this host's 127.0.0.1, free ports. */
  netns?: EtcdNetns;
}

export interface EtcdNetns {
  /** The command etcd runs under, e.g. lab.wrap('w', []): it must exec etcd, so that `pid` is etcd's own. */
  wrap: readonly string[];
  /** The address this process reaches the namespace's clients' port on (e.g. the lab host's control address). */
  reachHost: string;
  /** Default 2379. */
  clientPort?: number;
  /** On the namespace's loopback. Default 2380. */
  peerPort?: number;
}

export interface EtcdExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningEtcd {
  readonly pid: number;
  /** The client URL, http://127.0.0.1:<port> (with `netns`, http://<reachHost>:<port>). */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly dir: string;
  readonly exited: Promise<EtcdExit>;
  /** Its stderr, the last 64 KiB. */
  output(): string;
  /** Sends a signal (SIGKILL = a crash, SIGSTOP = a hang); the dir stays until stop(). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (SIGKILL after a grace), waits for the exit, removes the data dir. Safe to call twice. */
  stop(): Promise<EtcdExit>;
}

/** Every etcd still running, with its dir: SIGKILLed and removed when the process ends. */
const running = new Map<number, string>();

function killAllEtcdsNow(): void {
  for (const [pid, dir] of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<RunningEtcd> {
  let lastError: unknown;
  // A port that was free a moment ago may be taken by the time etcd binds it: retry with new ones.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      lastError = err;
      if (!(err instanceof EtcdPortInUseError)) throw err;
    }
  }
  throw lastError;
}

class EtcdPortInUseError extends Error {}

async function startOnce(opts: StartEtcdOptions): Promise<RunningEtcd> {
  const avail = etcdAvailable(opts.binary);
  if (!avail.available) throw new Error(avail.reason);
  const ns = opts.netns;
  const clientPort = ns ? (ns.clientPort ?? 2379) : await freePort();
  let peerPort = ns ? (ns.peerPort ?? 2380) : await freePort();
  while (!ns && peerPort === clientPort) peerPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'colo-etcd-'));
  const name = `colo-test-${process.pid}`;
  const reachHost = ns?.reachHost ?? '127.0.0.1';
  const client = `http://${reachHost}:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name', name,
    '--data-dir', join(dir, 'data'),
    '--listen-client-urls', ns ? `http://0.0.0.0:${clientPort}` : client,
    '--advertise-client-urls', client,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `${name}=${peer}`,
    '--initial-cluster-state', 'new',
    '--logger', 'zap',
    '--log-outputs', 'stderr',
    '--log-level', 'warn',
    ...(opts.fast ? ['--heartbeat-interval', '50', '--election-timeout', '500'] : []),
  ];

  onProcessEnd(killAllEtcdsNow);
  const [file, ...argv] = [...(ns?.wrap ?? []), avail.binary, ...args];
  const child = spawn(file!, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let stderrText = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderrText = (stderrText + d).slice(-65536);
  });
  // A forgotten etcd must not keep the test process alive; the registry kills it at exit.
  child.unref();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
  const pid = child.pid;
  if (pid === undefined) {
    rmSync(dir, { recursive: true, force: true });
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new Error(`etcd did not start: ${err.message}`);
  }
  running.set(pid, dir);
  reapOnDeath(pid);

  let exitStatus: EtcdExit | undefined;
  const exited = new Promise<EtcdExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exitStatus = { code, signal };
      release(pid);
      resolve(exitStatus);
    });
  });

  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (exitStatus) return;
    try {
      process.kill(pid, signal);
    } catch {
      // exited between the check and the kill
    }
  };
  let stopping: Promise<EtcdExit> | undefined;
  const stop = (): Promise<EtcdExit> => {
    stopping ??= (async () => {
      child.ref();
      kill('SIGTERM');
      kill('SIGCONT'); // a SIGSTOPped etcd only acts on SIGTERM once continued
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 3000);
      });
      await Promise.race([exited, late]);
      clearTimeout(timer);
      kill('SIGKILL');
      const status = await exited;
      running.delete(pid);
      rmSync(dir, { recursive: true, force: true });
      return status;
    })();
    return stopping;
  };

  const etcd: RunningEtcd = {
    pid,
    endpoint: client,
    clientPort,
    dir,
    exited,
    output: () => stderrText,
    kill,
    stop,
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  try {
    for (;;) {
      if (exitStatus) {
        if (/address already in use/i.test(stderrText)) throw new EtcdPortInUseError(`etcd could not bind its ports: ${lastLine(stderrText)}`);
        throw new Error(`etcd exited during startup (code ${exitStatus.code}, signal ${exitStatus.signal}): ${lastLine(stderrText)}`);
      }
      if (await healthy(reachHost, clientPort)) break;
      if (Date.now() > deadline) throw new Error(`etcd not ready within ${opts.readyTimeoutMs ?? 15_000} ms: ${lastLine(stderrText)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  opts.t?.teardown(() => stop());
  return etcd;
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1) ?? '(no output)';
}

/** GET /health answers {"health":"true"} once the member has a leader and serves requests. */
function healthy(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/health', timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}
