/**
 * Starting a QEMU process with QMP sockets, for the COLO launcher (colo-launch.ts) and whatever
 * else needs a real QEMU: the test harness, the demo, later the agent itself (qemu.launch).
 *
 * Always `-accel tcg` (these machines have no /dev/kvm), `-display none -nodefaults
 * -no-user-config`, small memory, and by default `-S` (paused before the guest runs, which starts
 * in well under a second and burns no CPU). QMP endpoints are unix sockets in a dir (one per
 * client, since a QMP socket serves one client at a time) and optionally TCP ports on 127.0.0.1.
 * Readiness is checked on one extra, private QMP socket (a query-status must answer), so the
 * starter never competes with a caller's client for a single-client socket.
 *
 * Every QEMU started here is in a process-wide registry: killAllQemusNow() SIGKILLs them all
 * synchronously (for an exit handler). Nothing is installed implicitly: the caller decides whether
 * its QEMUs die with it (a test, the demo: exit hooks and the reaper via `lifecycle`) or outlive it
 * (an agent restarting must not take its VM down).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findExecutable } from '../util/find-executable.js';
import { freePort } from '../util/free-port.js';
import { QemuStartError } from './errors.js';

export const QEMU_INSTALL_HINT = 'apt-get install qemu-system-x86 qemu-utils';
export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';

export type QemuAvailability =
  | { ok: true; binary: string; version: string; major: number; minor: number; micro: number }
  | { ok: false; reason: string };

const availability = new Map<string, Promise<QemuAvailability>>();

/** Whether QEMU can be run here; `reason` says why not and how to install it. Cached per binary. */
export function qemuAvailable(binary = DEFAULT_QEMU_BINARY): Promise<QemuAvailability> {
  let p = availability.get(binary);
  if (!p) {
    p = probeQemu(binary);
    availability.set(binary, p);
  }
  return p;
}

async function probeQemu(binary: string): Promise<QemuAvailability> {
  const path = findExecutable(binary);
  if (!path) {
    const where = binary.includes('/') ? ' or not executable' : ' in PATH';
    return { ok: false, reason: `${binary} not found${where}; install it with: ${QEMU_INSTALL_HINT}` };
  }
  const out = await new Promise<{ text: string; error?: Error }>((resolve) =>
    execFile(path, ['--version'], { timeout: 10_000 }, (error, stdout, stderr) => resolve({ text: `${stdout}${stderr}`, ...(error && { error }) })),
  );
  const m = /version (\d+)\.(\d+)\.(\d+)/.exec(out.text);
  if (out.error || !m) {
    return { ok: false, reason: `${path} --version failed (${out.error?.message ?? out.text.trim()}); reinstall with: ${QEMU_INSTALL_HINT}` };
  }
  const [major, minor, micro] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return { ok: true, binary: path, version: `${major}.${minor}.${micro}`, major, minor, micro };
}

/** Told about each QEMU's pid, e.g. to hand it to a reaper (src/util/reaper.ts). */
export interface QemuLifecycleHooks {
  spawned(pid: number): void;
  exited(pid: number): void;
}

export interface StartQemuOptions {
  binary?: string;
  /** Start with -S (CPUs stopped; status "prelaunch"). Default true. */
  paused?: boolean;
  memoryMb?: number;
  name?: string;
  /** Number of unix QMP sockets to create in `dir` (qmp0.sock, qmp1.sock, ...). Default 1. */
  qmpSockets?: number;
  /** Exact unix QMP socket paths instead of qmpSockets, e.g. to restart QEMU on the same path. */
  qmpPaths?: string[];
  /** Number of TCP QMP endpoints on 127.0.0.1, each on a free port. Default 0. */
  qmpTcp?: number;
  /** Directory for sockets and files. Default: a new short temp dir, removed by stop(). A given dir is left alone. */
  dir?: string;
  /** Appended to the command line. */
  extraArgs?: string[];
  /** How long to wait for every QMP endpoint to greet. Default 15000. */
  readyTimeoutMs?: number;
  /** stop(): time between SIGTERM and SIGKILL. Default 3000. */
  stopGraceMs?: number;
  lifecycle?: QemuLifecycleHooks;
  /**
   * A command that runs QEMU, e.g. `['ip', 'netns', 'exec', NS]` for a host in a network namespace:
   * the spawned argv is wrap + [binary, ...args]. It must exec QEMU (not fork it), so that the pid
   * is QEMU's own. Default: none (QEMU spawned directly).
   */
  wrap?: readonly string[];
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningQemu {
  readonly pid: number;
  readonly process: ChildProcess;
  readonly dir: string;
  readonly args: string[];
  readonly qmpPaths: string[];
  readonly qmpTcpPorts: number[];
  /** Every QMP endpoint as a QmpClient address: unix sockets first, then TCP. */
  readonly qmpAddresses: string[];
  /** Settles when the process has exited (reading it keeps this process alive until then). */
  readonly exited: Promise<QemuExit>;
  /** Undefined while running. */
  readonly exitStatus: QemuExit | undefined;
  /** What QEMU wrote to stderr (last 64 KiB), for diagnostics. */
  stderr(): string;
  /** Send a signal (SIGSTOP to freeze, SIGCONT to thaw, SIGKILL to crash); ignored once exited. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (plus SIGCONT, in case it is stopped), SIGKILL after the grace; resolves after exit. Idempotent. */
  stop(): Promise<QemuExit>;
}

// ---- process-wide registry ----

/** Every QEMU still running, with the temp dir to remove if the starter created it. */
const running = new Map<RunningQemu, { ownDir: string | undefined }>();

/** SIGKILL every QEMU started here that still runs, and remove the dirs made for them. Synchronous. */
export function killAllQemusNow(): void {
  for (const [q, { ownDir }] of running) {
    try {
      process.kill(q.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
  }
  running.clear();
}

// ---- starting ----

let seq = 0;

/** The machine every test and demo QEMU shares: TCG, no display or default devices, QMP on unix sockets. */
export function baseQemuArgs(o: { paused: boolean; memoryMb: number; name: string; qmpPaths: readonly string[] }): string[] {
  return [
    '-accel', 'tcg',
    '-display', 'none',
    '-nodefaults',
    '-no-user-config',
    ...(o.paused ? ['-S'] : []),
    '-m', String(o.memoryMb),
    '-name', o.name,
    ...o.qmpPaths.flatMap((p) => ['-qmp', `unix:${p},server=on,wait=off`]),
  ];
}

export async function startQemu(opts: StartQemuOptions = {}): Promise<RunningQemu> {
  const avail = await qemuAvailable(opts.binary);
  if (!avail.ok) throw new QemuStartError(`cannot start QEMU: ${avail.reason}`);
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'qemu-'));
  const qmpPaths = opts.qmpPaths ?? Array.from({ length: opts.qmpSockets ?? 1 }, (_, i) => join(dir, `qmp${i}.sock`));
  const qmpTcpPorts: number[] = [];
  for (let i = 0; i < (opts.qmpTcp ?? 0); i++) qmpTcpPorts.push(await freePort()); // free now; QEMU binds it moments later
  const n = ++seq;
  const name = opts.name ?? `colo-qemu-${process.pid}-${n}`;
  // The starter's own monitor for readiness checks; unique so QEMUs sharing a dir do not collide.
  const probePath = join(dir, `probe-${process.pid}-${n}.sock`);
  const args = [
    ...baseQemuArgs({ paused: opts.paused !== false, memoryMb: opts.memoryMb ?? 64, name, qmpPaths: [probePath, ...qmpPaths] }),
    ...qmpTcpPorts.flatMap((p) => ['-qmp', `tcp:127.0.0.1:${p},server=on,wait=off`]),
    ...(opts.extraArgs ?? []),
  ];

  const [file, ...argv] = [...(opts.wrap ?? []), avail.binary, ...args];
  const child = spawn(file!, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let stderrText = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderrText = (stderrText + d).slice(-65536);
  });
  // A forgotten QEMU must not keep this process alive; whoever waits for the exit refs it again.
  child.unref();
  (child.stderr as net.Socket | null)?.unref();
  if (child.pid !== undefined) opts.lifecycle?.spawned(child.pid);
  let exitStatus: QemuExit | undefined;
  let spawnFailure: Error | undefined;
  const exitedRaw = new Promise<QemuExit>((resolve) => {
    const done = (status: QemuExit) => {
      if (exitStatus) return;
      exitStatus = status;
      running.delete(q);
      if (child.pid !== undefined) opts.lifecycle?.exited(child.pid);
      resolve(status);
    };
    child.once('exit', (code, signal) => done({ code, signal }));
    // A process that never started emits 'error' and no 'exit'.
    child.once('error', (err) => {
      spawnFailure = err;
      if (child.pid === undefined) done({ code: null, signal: null });
    });
  });

  const waitExit = (): Promise<QemuExit> => {
    if (!exitStatus) child.ref();
    return exitedRaw;
  };
  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (exitStatus || child.pid === undefined) return;
    try {
      process.kill(child.pid, signal);
    } catch {
      // exited between the check and the kill
    }
  };
  let stopping: Promise<QemuExit> | undefined;
  const stop = (): Promise<QemuExit> => {
    stopping ??= (async () => {
      kill('SIGTERM');
      kill('SIGCONT'); // a SIGSTOPped QEMU only acts on SIGTERM once continued
      const grace = opts.stopGraceMs ?? 3000;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, grace);
      });
      await Promise.race([waitExit(), late]);
      clearTimeout(timer);
      kill('SIGKILL');
      const status = await waitExit();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
      return status;
    })();
    return stopping;
  };

  const q: RunningQemu = {
    get pid() {
      return child.pid ?? -1;
    },
    process: child,
    dir,
    args,
    qmpPaths,
    qmpTcpPorts,
    qmpAddresses: [...qmpPaths.map((p) => `unix:${p}`), ...qmpTcpPorts.map((p) => `tcp:127.0.0.1:${p}`)],
    get exited() {
      return waitExit();
    },
    get exitStatus() {
      return exitStatus;
    },
    stderr: () => stderrText,
    kill,
    stop,
  };
  if (child.pid !== undefined && !exitStatus) running.set(q, { ownDir: ownDir ? dir : undefined });

  const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
  const failed = exitedRaw.then((s) =>
    spawnFailure ? new Error(`QEMU did not start: ${spawnFailure.message}`) : new Error(`QEMU exited during startup (code ${s.code}, signal ${s.signal})`),
  );
  const deadline = Date.now() + readyTimeoutMs;
  const gaveUp = () => exitStatus !== undefined;
  const endpoints: Array<net.NetConnectOpts> = [
    ...qmpPaths.map((path) => ({ path })),
    ...qmpTcpPorts.map((port) => ({ host: '127.0.0.1', port })),
  ];
  try {
    const ready = (async () => {
      await waitForQueryStatus(probePath, deadline, gaveUp);
      await Promise.all(endpoints.map((e) => waitForAccept(e, deadline, gaveUp)));
    })();
    const outcome = await Promise.race([ready, failed]);
    if (outcome instanceof Error) throw outcome;
  } catch (err) {
    await stop();
    throw new QemuStartError(`${(err as Error).message}\ncommand: ${avail.binary} ${args.join(' ')}\nstderr: ${stderrText.trim() || '(empty)'}`, { cause: err });
  } finally {
    rmSync(probePath, { force: true }); // QEMU keeps listening on it; the file is just clutter
  }
  return q;
}

function endpointName(e: net.NetConnectOpts): string {
  return 'path' in e ? `unix:${e.path}` : `tcp:${e.host}:${e.port}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * On the starter's private QMP socket: greeting, negotiation, then a query-status reply, which
 * proves QEMU finished initialising and its main loop runs (a bad -device fails before that).
 * Private, so a caller's client racing to connect can never take the single-client socket from it.
 */
async function waitForQueryStatus(path: string, deadline: number, gaveUp: () => boolean): Promise<void> {
  let lastError = 'not tried';
  while (Date.now() < deadline && !gaveUp()) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.createConnection({ path });
      let buffer = '';
      const timer = setTimeout(() => finish(false, 'no query-status reply in time'), Math.max(1, deadline - Date.now()));
      const finish = (result: boolean, why?: string) => {
        clearTimeout(timer);
        if (why && !result) lastError = why;
        socket.destroy();
        resolve(result);
      };
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        buffer += d;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line.includes('"QMP"')) {
            socket.write('{"execute":"qmp_capabilities"}\n{"execute":"query-status","id":"probe"}\n');
          } else if (line.includes('"probe"')) {
            finish(line.includes('"return"'), `query-status failed: ${line.trim()}`);
          }
        }
      });
      socket.on('error', (e) => finish(false, e.message));
      socket.on('close', () => finish(false, 'closed before the query-status reply'));
    });
    if (ok) return;
    await sleep(25);
  }
  throw new Error(`QEMU did not become ready on its probe QMP socket ${path} (last: ${lastError})`);
}

/**
 * The kernel accepting a connection is all we check on the caller's endpoints: reading the
 * greeting would occupy the single-client monitor, and a caller's client may already be dialling it.
 */
async function waitForAccept(endpoint: net.NetConnectOpts, deadline: number, gaveUp: () => boolean): Promise<void> {
  let lastError = 'not tried';
  while (Date.now() < deadline && !gaveUp()) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.createConnection(endpoint);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', (e) => {
        lastError = e.message;
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await sleep(25);
  }
  throw new Error(`QMP endpoint ${endpointName(endpoint)} did not accept connections in time (last: ${lastError})`);
}
