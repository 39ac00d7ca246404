/**
 * Attaching to a COLO pair's QEMUs *before* the migration into COLO. startColoPair() resolves only
 * once both sides are in COLO, too late to see the colo-start; so a test that must see it watches
 * /proc for the harness's QEMUs (our children, named `primary` / `secondary` by -name) while the
 * pair comes up, and uses one of each QEMU's QMP sockets (qmp<N>.sock) from the moment it is spawned.
 */
import type { ColoRole } from './colo-pair.js';
import { childProcesses } from './proc.js';

export interface SpawnedColoQemu {
  role: ColoRole;
  pid: number;
  /** The path of its QMP socket number `qmpSocket` (it may take a moment to appear). */
  qmpPath: string;
}

export interface WatchColoSpawnOptions {
  /** Which QMP socket of each QEMU: N of qmpN.sock (see StartColoPairOptions.qmpSockets). */
  qmpSocket: number;
  /** Stops the watch; the sides not yet found then reject. */
  signal: AbortSignal;
  /** Ignore QEMUs that were already our children when the watch began. Default false. */
  ignoreExisting?: boolean;
  /** Called synchronously in the scan that finds a side (before its promise settles). */
  onSpawn?: (q: SpawnedColoQemu) => void;
}

const SCAN_PERIOD_MS = 5;

/**
 * Scans /proc every 5 ms until both sides were found or `signal` aborts. Each side's promise
 * resolves when its QEMU is seen; one that is never seen rejects on abort (without an
 * unhandled rejection when nobody waits for it).
 */
export function watchColoQemuSpawns(opts: WatchColoSpawnOptions): Record<ColoRole, Promise<SpawnedColoQemu>> {
  const socketArg = new RegExp(`^unix:.*/qmp${opts.qmpSocket}\\.sock,`);
  const before = new Set(opts.ignoreExisting ? childProcesses().map((c) => c.pid) : []);
  const settle = {} as Record<ColoRole, { resolve(q: SpawnedColoQemu): void; reject(err: Error): void }>;
  const spawned = {} as Record<ColoRole, Promise<SpawnedColoQemu>>;
  for (const role of ['primary', 'secondary'] as const) {
    spawned[role] = new Promise((resolve, reject) => (settle[role] = { resolve, reject }));
    spawned[role].catch(() => undefined);
  }
  const found = new Set<ColoRole>();
  const scan = () => {
    for (const c of childProcesses()) {
      if (before.has(c.pid)) continue;
      const name = c.args[c.args.indexOf('-name') + 1];
      const sock = c.args.find((a) => socketArg.test(a));
      if ((name === 'primary' || name === 'secondary') && sock && !found.has(name)) {
        const q: SpawnedColoQemu = { role: name, pid: c.pid, qmpPath: sock.slice('unix:'.length, sock.indexOf(',')) };
        found.add(name);
        opts.onSpawn?.(q);
        settle[name].resolve(q);
      }
    }
    if (found.size === 2) stop();
  };
  const timer = setInterval(scan, SCAN_PERIOD_MS);
  const stop = () => {
    clearInterval(timer);
    opts.signal.removeEventListener('abort', onAbort);
  };
  const onAbort = () => {
    stop();
    for (const role of ['primary', 'secondary'] as const) if (!found.has(role)) settle[role].reject(new Error(`gave up waiting for the ${role} QEMU`));
  };
  if (opts.signal.aborted) onAbort();
  else opts.signal.addEventListener('abort', onAbort);
  return spawned;
}
