/**
 * Launching the documented QEMU COLO pair (qemu-colo-facts.md §1, §3) on given hosts: both QEMUs,
 * their disk images, the NBD export, the replication drive, the migration into COLO, and a
 * connected QMP client per side for the launcher's own queries. Used by the test harness
 * (test/helpers/colo-pair.ts), the demo, and later the agent's own QEMU launch (qemu.launch).
 *
 * startColoPair() returns `{ ok: false, reason }` (never throws) when this QEMU cannot do COLO
 * (too old, or the 10.0.0-10.0.6 / 10.1.x regression, recognised by version or by the primary
 * finishing a plain migration) or a program is missing, so callers can say why. Any other failure
 * throws a ColoPairStartError whose message carries the step and both QEMUs' stderr tails, after
 * cleaning up whatever it had started.
 *
 * Ports left out of `colo` are picked free (all distinct), and bring-up is retried with new ones
 * when one was taken meanwhile. QEMU 7.2's first-checkpoint deadlock under TCG is kept away with
 * a large x-checkpoint-delay (HARNESS_CHECKPOINT_DELAY_MS) unless `colo.checkpointDelayMs` says otherwise.
 *
 * pair.stop() SIGKILLs both QEMUs and removes the dirs it made. killAllColoPairsNow() does the same
 * for every pair still up, synchronously, for a caller's exit handler; nothing is installed implicitly.
 *
 * startFreshSecondary() starts a replacement secondary for a pair after a failover (continuous
 * replication): on either host, with a new empty disk, dialling the current primary; it is part
 * of the pair's cleanup.
 */
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { coloCapabilities, profileForVersion } from '../colo/profile.js';
import type { ColoConfig } from '../config/types.js';
import { formatQemuVersion, QmpClient, type QemuVersion } from '../qmp/index.js';
import {
  COLO_PORT_KEYS,
  coloSupport,
  directRoutes,
  DOCUMENTED_HARNESS_NAMES,
  migrateUri,
  primaryArgs,
  primaryDriveAddLine,
  resolveColoConfig,
  secondaryArgs,
  secondaryNeedsXColo,
  type ColoDialRoutes,
  type ColoHarnessNames,
  type ColoOverrides,
  type ColoPorts,
  type DialAddress,
  type SecondaryFiles,
} from './colo-cmdline.js';
import { ColoPairStartError, QemuStartError } from './errors.js';
import { baseQemuArgs, qemuAvailable, startQemu, type QemuExit, type QemuLifecycleHooks, type RunningQemu } from './qemu-process.js';

export { ColoPairStartError };

export type ColoRole = 'primary' | 'secondary';

export interface StartColoPairOptions {
  /** Any key of the agent's `colo` config section (hosts, ports, ids, ...); ports left out are picked free. */
  colo?: ColoOverrides;
  /** Topology names the agent config does not carry (childs0, hn0, e0). */
  names?: Partial<ColoHarnessNames>;
  /** Bind the public listeners to 0.0.0.0 as the document does (default: each side's own host). */
  listenAll?: boolean;
  /**
   * Where the cross-side connections are dialled when something (a fault proxy, a NAT) stands
   * between the sides; each defaults to the listener itself. Proxies must be listening before the
   * call: the secondary's red0/red1 and the primary's NBD and migration connect during bring-up.
   */
  dial?: Partial<ColoDialRoutes>;
  /** Parent of the two sides' dirs (each a new dir inside it, removed by stop()). Default: the OS temp dir. */
  workDir?: string;
  binary?: string;
  /** qemu-img binary. Default: qemu-img from PATH. */
  qemuImg?: string;
  /** Size of every disk image. Default 64. */
  diskSizeMb?: number;
  /** Guest memory per side. Default 64. */
  memoryMb?: number;
  /** QMP unix sockets per side (>= 2): [0] for the agent, [1] for the launcher's own client, the rest spare. Default 3. */
  qmpSockets?: number;
  /** Budget for the whole bring-up (both QEMUs greeting, all commands, COLO reached). Default 30000. */
  timeoutMs?: number;
  /** Per QMP command during bring-up and for the query helpers. Default 10000. */
  commandTimeoutMs?: number;
  /** Told about each QEMU's pid (e.g. a reaper, so they die with the caller). */
  lifecycle?: QemuLifecycleHooks;
  /**
   * Per side, a command QEMU runs under (startQemu's `wrap`), keyed by the host's role at bring-up:
   * e.g. `ip netns exec NS` when each host is a network namespace (give colo.primaryHost and
   * secondaryHost the hosts' own addresses then). QMP stays on unix sockets, reachable from here.
   * Default: none (both QEMUs in this process's namespace, as on loopback).
   */
  wrap?: Partial<Record<ColoRole, readonly string[]>>;
}

export interface ColoSide {
  readonly role: ColoRole;
  /** 127.0.0.1 for the primary, 127.0.0.2 for the secondary (colo.primaryHost / secondaryHost). */
  readonly host: string;
  readonly qemu: RunningQemu;
  readonly process: ChildProcess;
  readonly pid: number;
  /** Dir with the QMP sockets and disk images; removed by pair.stop(). */
  readonly dir: string;
  /** Absolute paths: primary {disk}; secondary {disk, active, hidden}. */
  readonly images: Readonly<Record<string, string>>;
  readonly qmpPaths: readonly string[];
  /** `unix:PATH` for every socket, QmpClient-ready. */
  readonly qmpAddresses: readonly string[];
  /** Socket 0: hand it to the agent. */
  readonly agentQmpAddress: string;
  /** Socket 1, held by `qmp`. */
  readonly harnessQmpAddress: string;
  /** Sockets 2..: free for more clients (a transcript recorder, a second agent). */
  readonly spareQmpPaths: readonly string[];
  /** The launcher's connected client (no reconnect); used by the query helpers. */
  readonly qmp: QmpClient;
  /** The ports this side listens on in the documented topology. */
  readonly ports: Readonly<Partial<ColoPorts>>;
  /** QEMU's stderr (tail). */
  stderr(): string;
  /** SIGKILL to crash it, SIGSTOP to freeze it, ...; ignored once exited. */
  kill(signal?: NodeJS.Signals): void;
  /** Whether the process is still there (SIGSTOPped counts as there). */
  alive(): boolean;
  /** Close the launcher's client and SIGKILL QEMU; resolves after exit. Does not remove the dir (pair.stop does). */
  stop(): Promise<QemuExit>;
}

export interface ColoPairTimings {
  /** Spawn until the primary's QMP greets. */
  primaryStartMs: number;
  /** Spawn until the secondary's QMP greets. */
  secondaryStartMs: number;
  /** `migrate` sent until both report their COLO mode. */
  enterColoMs: number;
  /** startColoPair() call until it resolves (includes port picking and images). */
  totalMs: number;
}

/** How a pair was launched: what startFreshSecondary() reuses for a replacement secondary. */
export interface ColoLaunchSettings {
  readonly binary: string | undefined;
  readonly qemuImg: string;
  readonly diskSizeMb: number;
  readonly memoryMb: number;
  readonly qmpSockets: number;
  readonly listenAll: boolean;
  readonly workDir: string;
  readonly commandTimeoutMs: number;
  readonly lifecycle: QemuLifecycleHooks | undefined;
  /** The per-host wrap commands, keyed by the host's role at bring-up. */
  readonly wrap: Partial<Record<ColoRole, readonly string[]>>;
}

export interface ColoPair {
  readonly primary: ColoSide;
  readonly secondary: ColoSide;
  /** The resolved `colo` section: hand it to an agent config as is. */
  readonly colo: ColoConfig;
  readonly names: ColoHarnessNames;
  readonly ports: ColoPorts;
  /** Where each cross-side connection was dialled (the listeners themselves unless `dial` said otherwise). */
  readonly routes: ColoDialRoutes;
  /** From the primary's QMP greeting. */
  readonly version: QemuVersion;
  readonly timings: ColoPairTimings;
  /** The launch options as resolved (sizes, binaries, dirs), for startFreshSecondary(). */
  readonly launch: ColoLaunchSettings;
  side(role: ColoRole): ColoSide;
  /** Both QEMUs' stderr tails, for error messages. */
  diagnostics(): string;
  /** SIGKILL both QEMUs, close clients, remove the dirs. Idempotent. */
  stop(): Promise<void>;
}

export type ColoPairResult = { ok: true; pair: ColoPair } | { ok: false; reason: string; version?: string };

// ---- process-wide registry ----

interface Owned {
  dirs: string[];
  qemus: RunningQemu[];
  /** Extra stops run by the pair's stop() (fresh secondaries started for it later). */
  extraStops: Array<() => Promise<unknown>>;
}

const owned = new Set<Owned>();
/** A pair's registry entry, so QEMUs started for it later die with it. */
const ownedByPair = new WeakMap<ColoPair, Owned>();

/** SIGKILL the QEMUs of every pair not yet stopped (or still coming up) and remove their dirs. Synchronous. */
export function killAllColoPairsNow(): void {
  for (const o of owned) {
    for (const q of o.qemus) {
      if (q.exitStatus) continue; // its pid may belong to another process by now
      try {
        process.kill(q.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const d of o.dirs) rmSync(d, { recursive: true, force: true });
  }
  owned.clear();
}

// ---- small pieces ----

/**
 * Distinct ports, free on every address right now: all listeners are held open together (so no
 * two keys get the same port) and bound to 0.0.0.0 (so the port is free on 127.0.0.1 and .2 alike).
 */
export async function pickColoPorts(given: Partial<ColoPorts> = {}): Promise<ColoPorts> {
  const servers: net.Server[] = [];
  const ports: Partial<ColoPorts> = { ...given };
  try {
    for (const key of COLO_PORT_KEYS) {
      if (ports[key] !== undefined) continue;
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '0.0.0.0', () => resolve());
      });
      ports[key] = (s.address() as net.AddressInfo).port;
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
  return ports as ColoPorts;
}

/** Resolves false when the program is not installed; rejects when it ran and failed. */
function run(file: string, args: string[]): Promise<boolean> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { timeout: 15_000 }, (err, _stdout, stderr) => {
      if (!err) resolve(true);
      else if ((err as NodeJS.ErrnoException).code === 'ENOENT') resolve(false);
      else reject(new Error(`${file} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
    }),
  );
}

function removeItem<T>(list: T[], item: T | undefined): void {
  const i = item === undefined ? -1 : list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tail(text: string, lines = 15): string {
  const t = text.trim();
  return t ? t.split('\n').slice(-lines).join('\n') : '(empty)';
}

const IN_USE = /address already in use/i;

// ---- bring-up ----

/** Start the documented COLO pair; retries with new ports when an auto-picked port was taken meanwhile. */
export async function startColoPair(opts: StartColoPairOptions = {}): Promise<ColoPairResult> {
  const avail = await qemuAvailable(opts.binary);
  if (!avail.ok) return { ok: false, reason: avail.reason };
  // Decide by the installed version before spending a second on processes; the greeting re-checks.
  const early = coloSupport(avail);
  if (!early.ok) return { ok: false, reason: early.reason, version: avail.version };
  const autoPorts = COLO_PORT_KEYS.some((k) => opts.colo?.[k] === undefined);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (!(err instanceof ColoPairStartError && err.addressInUse && autoPorts && attempt < 3)) throw err;
    }
  }
}

async function startOnce(opts: StartColoPairOptions): Promise<ColoPairResult> {
  const t0 = performance.now();
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const commandTimeoutMs = opts.commandTimeoutMs ?? 10_000;
  const names: ColoHarnessNames = { ...DOCUMENTED_HARNESS_NAMES, ...opts.names };
  const listenAll = opts.listenAll ?? false;
  const qmpSockets = Math.max(2, opts.qmpSockets ?? 3);
  const sizeMb = opts.diskSizeMb ?? 64;
  const memoryMb = opts.memoryMb ?? 64;
  const given: Partial<ColoPorts> = {};
  for (const k of COLO_PORT_KEYS) if (opts.colo?.[k] !== undefined) given[k] = opts.colo[k];
  const ports = await pickColoPorts(given);
  const colo = resolveColoConfig(opts.colo ?? {}, ports);
  const routes: ColoDialRoutes = { ...directRoutes(colo), ...opts.dial };
  const parent = opts.workDir ?? tmpdir();

  const own: Owned = { dirs: [], qemus: [], extraStops: [] };
  owned.add(own);
  const clients: QmpClient[] = [];
  let primaryQ: RunningQemu | undefined;
  let secondaryQ: RunningQemu | undefined;
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(own.extraStops.map((stop) => stop().catch(() => undefined)));
      await Promise.all(clients.map((c) => c.close()));
      for (const q of own.qemus) q.kill('SIGKILL');
      await Promise.all(own.qemus.map((q) => q.stop()));
      for (const d of own.dirs) rmSync(d, { recursive: true, force: true });
      owned.delete(own);
    })();
    return stopping;
  };

  const diagnostics = () =>
    `primary (pid ${primaryQ?.pid ?? '-'}, ${primaryQ?.exitStatus ? `exited ${JSON.stringify(primaryQ.exitStatus)}` : 'running'}) stderr:\n${tail(primaryQ?.stderr() ?? '')}\n` +
    `secondary (pid ${secondaryQ?.pid ?? '-'}, ${secondaryQ?.exitStatus ? `exited ${JSON.stringify(secondaryQ.exitStatus)}` : 'running'}) stderr:\n${tail(secondaryQ?.stderr() ?? '')}`;
  let stepName = 'prepare';
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    stepName = name;
    if (Date.now() > deadline) throw new Error(`bring-up budget of ${opts.timeoutMs ?? 30_000} ms exhausted`);
    return fn();
  };
  const connect = async (q: RunningQemu): Promise<QmpClient> => {
    const c = new QmpClient({ address: q.qmpAddresses[1] as string, reconnect: false, commandTimeoutMs });
    clients.push(c);
    await c.connect();
    return c;
  };

  try {
    const pDir = mkdtempSync(join(parent, 'colo-p-'));
    own.dirs.push(pDir);
    const sDir = mkdtempSync(join(parent, 'colo-s-'));
    own.dirs.push(sDir);
    const pImages = { disk: join(pDir, 'primary.qcow2') };
    const sImages = { disk: join(sDir, 'primary.qcow2'), active: join(sDir, 'secondary-active.qcow2'), hidden: join(sDir, 'secondary-hidden.qcow2') };
    const qemuImg = opts.qemuImg ?? 'qemu-img';
    const created = await step('create disk images', async () => {
      // One empty image copied three times: identical content and size, as the document requires.
      if (!(await run(qemuImg, ['create', '-q', '-f', 'qcow2', pImages.disk, `${sizeMb}M`]))) return false;
      for (const p of Object.values(sImages)) copyFileSync(pImages.disk, p);
      return true;
    });
    if (!created) {
      await stopAll();
      return { ok: false, reason: `${qemuImg} not found; install it with: apt-get install qemu-utils` };
    }

    const cmd = { colo, names, listenAll, dial: routes };
    const remainingMs = () => Math.max(1000, deadline - Date.now());
    let tp = performance.now();
    primaryQ = await step('start primary QEMU', () =>
      startQemu({
        binary: opts.binary,
        dir: pDir,
        name: 'primary',
        memoryMb,
        qmpSockets,
        readyTimeoutMs: remainingMs(),
        extraArgs: primaryArgs(cmd, pImages),
        lifecycle: opts.lifecycle,
        ...(opts.wrap?.primary && { wrap: opts.wrap.primary }),
      }),
    );
    own.qemus.push(primaryQ);
    const primaryStartMs = performance.now() - tp;
    const pq = await step('primary: QMP connect', () => connect(primaryQ as RunningQemu));
    const version = pq.version as QemuVersion;
    const support = coloSupport(version);
    if (!support.ok) {
      await stopAll();
      return { ok: false, reason: support.reason, version: formatQemuVersion(version) };
    }

    tp = performance.now();
    secondaryQ = await step('start secondary QEMU', () =>
      startQemu({
        binary: opts.binary,
        dir: sDir,
        name: 'secondary',
        paused: false, // -incoming already holds the guest; the document has no -S here
        memoryMb,
        qmpSockets,
        readyTimeoutMs: remainingMs(),
        extraArgs: secondaryArgs(cmd, sImages, version),
        lifecycle: opts.lifecycle,
        ...(opts.wrap?.secondary && { wrap: opts.wrap.secondary }),
      }),
    );
    own.qemus.push(secondaryQ);
    const secondaryStartMs = performance.now() - tp;
    const sq = await step('secondary: QMP connect', () => connect(secondaryQ as RunningQemu));

    const xColo = coloCapabilities(profileForVersion(version));
    if (secondaryNeedsXColo(version)) await step('secondary: migrate-set-capabilities x-colo', () => sq.execute('migrate-set-capabilities', xColo));
    const nbdHost = listenAll ? '0.0.0.0' : colo.secondaryHost;
    await step('secondary: nbd-server-start', () =>
      sq.execute('nbd-server-start', { addr: { type: 'inet', data: { host: nbdHost, port: String(colo.nbdPort) } } }),
    );
    await step('secondary: nbd-server-add', () => sq.execute('nbd-server-add', { device: colo.nbdExport, writable: true }));

    await step('primary: drive_add replication', async () => {
      // HMP reports failure in its text, not as a QMP error.
      const out = await pq.execute<string>('human-monitor-command', { 'command-line': primaryDriveAddLine(colo, routes.nbd) });
      if (out.trim() !== '' && !/^OK\s*$/.test(out.trim())) throw new Error(`drive_add said: ${out.trim()}`);
    });
    await step('primary: x-blockdev-change', () => pq.execute('x-blockdev-change', { parent: colo.disk, node: colo.replicationNode }));
    await step('primary: migrate-set-capabilities x-colo', () => pq.execute('migrate-set-capabilities', xColo));
    await step('primary: migrate-set-parameters x-checkpoint-delay', () =>
      pq.execute('migrate-set-parameters', { 'x-checkpoint-delay': colo.checkpointDelayMs }),
    );
    const tm = performance.now();
    await step('primary: migrate', () => pq.execute('migrate', { uri: migrateUri(colo, routes.migration) }));

    const outcome = await step('wait for COLO', () => waitForColo(pq, sq, primaryQ as RunningQemu, secondaryQ as RunningQemu, deadline));
    if (outcome.kind === 'plain-migration') {
      await stopAll();
      return {
        ok: false,
        version: formatQemuVersion(version),
        reason:
          `QEMU ${formatQemuVersion(version)}: the primary finished a plain migration (query-migrate "completed", ` +
          'COLO mode none) instead of entering COLO, the behaviour of the 10.0.0-10.0.6 / 10.1.x regression',
      };
    }
    const enterColoMs = performance.now() - tm;

    const primary = makeSide('primary', primaryQ, pq, colo.primaryHost, pImages, {
      mirrorPort: ports.mirrorPort,
      compare1Port: ports.compare1Port,
      compare0Port: ports.compare0Port,
      compareOutPort: ports.compareOutPort,
    });
    const secondary = makeSide('secondary', secondaryQ, sq, colo.secondaryHost, sImages, { nbdPort: ports.nbdPort, migrationPort: ports.migrationPort });
    const pair: ColoPair = {
      primary,
      secondary,
      colo,
      names,
      ports,
      routes,
      version,
      timings: { primaryStartMs, secondaryStartMs, enterColoMs, totalMs: performance.now() - t0 },
      launch: { binary: opts.binary, qemuImg, diskSizeMb: sizeMb, memoryMb, qmpSockets, listenAll, workDir: parent, commandTimeoutMs, lifecycle: opts.lifecycle, wrap: { ...opts.wrap } },
      side: (role) => (role === 'primary' ? primary : secondary),
      diagnostics,
      stop: stopAll,
    };
    ownedByPair.set(pair, own);
    return { ok: true, pair };
  } catch (err) {
    const diag = diagnostics();
    await stopAll();
    const msg = (err as Error).message;
    throw new ColoPairStartError(stepName, msg, diag, {
      cause: err,
      addressInUse: IN_USE.test(msg) || IN_USE.test(diag),
      pids: own.qemus.map((q) => q.pid),
      dirs: [...own.dirs],
    });
  }
}

/** A side's handle over its running QEMU and the launcher's client. */
function makeSide(role: ColoRole, q: RunningQemu, c: QmpClient, host: string, images: Record<string, string>, sidePorts: Partial<ColoPorts>): ColoSide {
  return {
    role,
    host,
    qemu: q,
    process: q.process,
    pid: q.pid,
    dir: q.dir,
    images,
    qmpPaths: q.qmpPaths,
    qmpAddresses: q.qmpAddresses,
    agentQmpAddress: q.qmpAddresses[0] as string,
    harnessQmpAddress: q.qmpAddresses[1] as string,
    spareQmpPaths: q.qmpPaths.slice(2),
    qmp: c,
    ports: sidePorts,
    stderr: () => q.stderr(),
    kill: (signal) => q.kill(signal),
    alive: () => q.exitStatus === undefined,
    stop: async () => {
      await c.close();
      q.kill('SIGKILL');
      return q.stop();
    },
  };
}

// ---- a fresh secondary for an existing pair (resume replication) ----

export interface StartFreshSecondaryOptions {
  /** The pair whose topology (ids, ports, names, version, sizes) the new secondary joins; it is stopped with the pair. */
  pair: ColoPair;
  /**
   * Which side's address the new secondary runs on: 'secondary' after a primary failover (the
   * secondary host is free again), 'primary' after a secondary failover (the old primary's host;
   * the current primary is then the former secondary on the other host).
   */
  host: ColoRole;
  /**
   * Where red0/red1 dial the CURRENT primary's mirror0/compare1. Default: the other host, on the
   * pair's mirror/compare1 ports (where primaryArgs or the secondary failover's chardev-add put them).
   */
  dial?: Partial<Pick<ColoDialRoutes, 'mirror' | 'compare1'>>;
  /** Parent of the new dir. Default: the pair's workDir. */
  workDir?: string;
  /** Budget for start-up (QEMU greeting on every socket, QMP connect). Default 30000. */
  timeoutMs?: number;
  /** Default: the pair's lifecycle hooks. */
  lifecycle?: QemuLifecycleHooks;
  /** The command QEMU runs under (startQemu's `wrap`). Default: the pair's wrap for that host. */
  wrap?: readonly string[];
}

/** A replacement secondary: waiting for -incoming, NBD export not yet started (that is secondaryPrepare's job). */
export interface FreshSecondary extends ColoSide {
  /** Where the current primary's NBD client (drive-mirror, replication node) dials the export. */
  readonly nbd: DialAddress;
  /** Where the current primary's `migrate` dials. */
  readonly migration: DialAddress;
}

/** Where a fresh secondary runs and what it dials: its own host, and the current primary on the other. */
function freshSecondaryTopology(opts: Pick<StartFreshSecondaryOptions, 'pair' | 'host' | 'dial'>): { ownHost: string; colo: ColoConfig; dial: Pick<ColoDialRoutes, 'mirror' | 'compare1'> } {
  const { pair } = opts;
  const ownHost = opts.host === 'primary' ? pair.colo.primaryHost : pair.colo.secondaryHost;
  const peerHost = opts.host === 'primary' ? pair.colo.secondaryHost : pair.colo.primaryHost;
  const dial = {
    mirror: { host: peerHost, port: pair.colo.mirrorPort },
    compare1: { host: peerHost, port: pair.colo.compare1Port },
    ...opts.dial,
  };
  // secondaryArgs binds -incoming to colo.secondaryHost: here that is this QEMU's own host.
  return { ownHost, dial, colo: { ...pair.colo, secondaryHost: ownHost, primaryHost: peerHost } };
}

function freshImagePaths(dir: string): SecondaryFiles {
  return { disk: join(dir, 'primary.qcow2'), active: join(dir, 'secondary-active.qcow2'), hidden: join(dir, 'secondary-hidden.qcow2') };
}

/** A new EMPTY disk of the pair's size (drive-mirror with sync full fills it) and its two overlays. */
async function createFreshImages(l: ColoLaunchSettings, dir: string): Promise<SecondaryFiles> {
  const images = freshImagePaths(dir);
  if (!(await run(l.qemuImg, ['create', '-q', '-f', 'qcow2', images.disk, `${l.diskSizeMb}M`]))) {
    throw new Error(`${l.qemuImg} not found; install it with: apt-get install qemu-utils`);
  }
  for (const p of [images.active, images.hidden]) copyFileSync(images.disk, p);
  return images;
}

/** A fresh secondary's command line, for someone else to launch (the agent's qemu.launch). */
export interface FreshSecondaryCommand {
  /** The QEMU binary first, then every argument. */
  readonly argv: string[];
  /** Its own directory (images, QMP sockets), removed with the pair. */
  readonly dir: string;
  /** For the agent (qemu.qmp) and for the harness: two QMP sockets, as the pair's sides have. */
  readonly agentQmpAddress: string;
  readonly harnessQmpAddress: string;
  readonly nbd: DialAddress;
  readonly migration: DialAddress;
}

/**
 * What startFreshSecondary would run, without running it: images created, the argv returned. Its
 * directory joins the pair's (removed by pair.stop()); the process, started by someone else, is
 * theirs to stop.
 */
export async function freshSecondaryCommand(opts: Pick<StartFreshSecondaryOptions, 'pair' | 'host' | 'dial' | 'workDir'>): Promise<FreshSecondaryCommand> {
  const { pair } = opts;
  const l = pair.launch;
  const { ownHost, colo, dial } = freshSecondaryTopology(opts);
  const dir = mkdtempSync(join(opts.workDir ?? l.workDir, 'colo-s-'));
  const own = ownedByPair.get(pair);
  if (own && owned.has(own)) own.dirs.push(dir);
  const images = await createFreshImages(l, dir);
  const qmpPaths = [join(dir, 'qmp-agent.sock'), join(dir, 'qmp-harness.sock')];
  const avail = await qemuAvailable(l.binary);
  if (!avail.ok) throw new QemuStartError(`cannot start QEMU: ${avail.reason}`);
  return {
    argv: [
      avail.binary,
      ...baseQemuArgs({ paused: false, memoryMb: l.memoryMb, name: 'secondary', qmpPaths }),
      ...secondaryArgs({ colo, names: pair.names, listenAll: l.listenAll, dial }, images, pair.version),
    ],
    dir,
    agentQmpAddress: `unix:${qmpPaths[0]}`,
    harnessQmpAddress: `unix:${qmpPaths[1]}`,
    nbd: { host: ownHost, port: pair.colo.nbdPort },
    migration: { host: ownHost, port: pair.colo.migrationPort },
  };
}

/**
 * Start a new secondary QEMU for `pair` after a failover: the pair's secondary command line
 * (secondaryArgs) with new overlays and a new EMPTY disk image of the same size (drive-mirror with
 * sync full fills it), `-incoming` and (later) the NBD export on its own host, red0/red1 dialling
 * the current primary on the other host. QMP sockets as the pair's sides have; registered like
 * the pair's QEMUs (pair.stop() and killAllColoPairsNow() kill it). Throws QemuStartError.
 */
export async function startFreshSecondary(opts: StartFreshSecondaryOptions): Promise<FreshSecondary> {
  const { pair } = opts;
  const l = pair.launch;
  // Joins the pair's registry entry (pair.stop() stops it too); a stopped pair's entry is gone: a new one.
  const existing = ownedByPair.get(pair);
  const own: Owned = existing && owned.has(existing) ? existing : { dirs: [], qemus: [], extraStops: [] };
  owned.add(own);
  const forget = (q?: RunningQemu, d?: string, stop?: () => Promise<unknown>) => {
    removeItem(own.qemus, q);
    removeItem(own.dirs, d);
    removeItem(own.extraStops, stop);
    if (own !== existing && own.qemus.length === 0 && own.dirs.length === 0) owned.delete(own);
  };
  const { ownHost, colo, dial } = freshSecondaryTopology(opts);
  const dir = mkdtempSync(join(opts.workDir ?? l.workDir, 'colo-s-'));
  own.dirs.push(dir);
  let q: RunningQemu | undefined;
  let client: QmpClient | undefined;
  try {
    const images = await createFreshImages(l, dir);
    q = await startQemu({
      binary: l.binary,
      dir,
      name: 'secondary',
      paused: false,
      memoryMb: l.memoryMb,
      qmpSockets: l.qmpSockets,
      readyTimeoutMs: opts.timeoutMs ?? 30_000,
      extraArgs: secondaryArgs({ colo, names: pair.names, listenAll: l.listenAll, dial }, images, pair.version),
      lifecycle: opts.lifecycle ?? l.lifecycle,
      ...((opts.wrap ?? l.wrap[opts.host]) && { wrap: opts.wrap ?? l.wrap[opts.host] }),
    });
    own.qemus.push(q);
    client = new QmpClient({ address: q.qmpAddresses[1] as string, reconnect: false, commandTimeoutMs: l.commandTimeoutMs });
    await client.connect();
  } catch (err) {
    await client?.close();
    if (q) {
      q.kill('SIGKILL');
      await q.stop();
    }
    rmSync(dir, { recursive: true, force: true });
    forget(q, dir);
    if (err instanceof QemuStartError) throw err;
    throw new QemuStartError(`fresh secondary on ${ownHost}: ${(err as Error).message}${q ? `\nstderr: ${tail(q.stderr())}` : ''}`, { cause: err });
  }
  const side = makeSide('secondary', q, client, ownHost, { ...freshImagePaths(dir) }, { nbdPort: pair.colo.nbdPort, migrationPort: pair.colo.migrationPort });
  const stop = async (): Promise<QemuExit> => {
    const status = await side.stop();
    rmSync(dir, { recursive: true, force: true });
    forget(q, dir, stop);
    return status;
  };
  own.extraStops.push(stop);
  return {
    ...side,
    stop,
    nbd: { host: ownHost, port: pair.colo.nbdPort },
    migration: { host: ownHost, port: pair.colo.migrationPort },
  };
}

type ColoOutcome = { kind: 'colo' } | { kind: 'plain-migration' };

interface ColoStatusLike {
  mode: string;
}

interface MigrateLike {
  status?: string;
  'error-desc'?: string;
}

/** Poll until both sides report their COLO mode, the primary finishes a plain migration, or something fails. */
async function waitForColo(pq: QmpClient, sq: QmpClient, pQ: RunningQemu, sQ: RunningQemu, deadline: number): Promise<ColoOutcome> {
  let last = '';
  for (;;) {
    if (pQ.exitStatus) throw new Error(`the primary QEMU exited (${JSON.stringify(pQ.exitStatus)})`);
    if (sQ.exitStatus) throw new Error(`the secondary QEMU exited (${JSON.stringify(sQ.exitStatus)})`);
    const [pc, sc, pm] = await Promise.all([
      pq.execute<ColoStatusLike>('query-colo-status'),
      sq.execute<ColoStatusLike>('query-colo-status'),
      pq.execute<MigrateLike>('query-migrate'),
    ]);
    last = `primary colo ${JSON.stringify(pc)}, secondary colo ${JSON.stringify(sc)}, primary query-migrate ${JSON.stringify(pm)}`;
    if (pc.mode === 'primary' && sc.mode === 'secondary') return { kind: 'colo' };
    if (pm.status === 'completed' && pc.mode === 'none') return { kind: 'plain-migration' };
    if (pm.status === 'failed' || pm.status === 'cancelled') {
      throw new Error(`migration ${pm.status}: ${pm['error-desc'] ?? 'no error-desc'} (${last})`);
    }
    if (Date.now() > deadline) throw new Error(`COLO not reached in time; last seen: ${last}`);
    await sleep(25);
  }
}
