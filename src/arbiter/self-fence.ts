/**
 * Self-fencing a hung local QEMU: kill it before the peer is told to take over.
 *
 * A hung QEMU is the dangerous kind of failure: its process and its sockets live on, so the peer's
 * probe of our QEMU port says "alive" and our own heartbeats say qemuReachable (the QMP socket is
 * open). Nothing takes over, the guest is frozen. Worse, a QEMU that is only *stuck* may wake up
 * (a lock released, a stalled NFS server back) and write to its disk or send packets after the
 * peer took over. So before our agent lets the peer take over because of our QEMU, it makes sure
 * that QEMU is dead, not merely quiet.
 *
 * - hungQemuVerdict() is the pure rule "is our QEMU hung?" from what the QMP client and the COLO
 *   monitor report.
 * - selfFenceQemu() kills it, with care not to kill anything else: the pid comes from QEMU's own
 *   `-pidfile` (decimal pid and a newline) unless given, and the process must look like QEMU
 *   (argv[0] of /proc/PID/cmdline names a qemu binary) so that a stale pid file whose pid has been
 *   reused never kills an unrelated process. It sends SIGKILL directly: a hung QEMU may never get
 *   to handle SIGTERM (its main loop is what hangs), the guest is frozen anyway so a graceful stop
 *   buys nothing, and every millisecond here is downtime. `termFirst` is there for callers that
 *   stop a healthy QEMU. It then waits until the process is gone from /proc (or is a zombie: dead,
 *   only not yet reaped by its parent) for at most graceMs: a process in uninterruptible sleep
 *   (state D, stuck on I/O) cannot die until that I/O returns, and the result then says so.
 *   Never throws.
 *
 * There is a window between the cmdline check and the kill in which the pid could be reused; it is
 * microseconds long, and pids are recycled only after wrapping around pid_max.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { silentLogger, type Logger } from '../log.js';
import { readProc, waitProcGone } from '../util/proc.js';
import type { QmpClientStatus } from '../qmp/events.js';
import { systemClock, type Clock } from '../util/clock.js';
import { FenceOptionsError } from './fence-errors.js';

export interface HungQemuFacts {
  /** Our QMP client's status now. */
  qmpStatus: QmpClientStatus;
  /** How long the status has been `unhealthy` (a command timed out, the socket stays open), ms. */
  unhealthyForMs?: number;
  /** How long the current checkpoint has been stalled (the COLO monitor's `stalled`), ms; undefined when none. */
  checkpointStalledForMs?: number;
  /** Evidence has to last this long before our QEMU counts as hung, ms. */
  hungAfterMs: number;
}

export interface HungQemuVerdict {
  hung: boolean;
  reason: string;
}

/**
 * Is our QEMU hung? Only a QMP monitor that stops answering while its socket stays open counts:
 * - `unhealthy` for hungAfterMs or more: hung (SIGSTOP, QEMU 7.2's COLO checkpoint deadlock where
 *   the main loop waits on a lock it holds);
 * - a checkpoint stalled for hungAfterMs or more *and* QMP unhealthy (for any time): hung, both
 *   signals agree;
 * - a stalled checkpoint while QMP answers: not hung. The main loop runs, so the checkpoint waits
 *   on the peer or the network, which the failover sequence (yank) resolves; killing QEMU would
 *   throw the guest away;
 * - QMP not connected (reconnecting, disconnected, ...): no evidence either way, not hung; a QEMU
 *   that exited is found by the pid check in selfFenceQemu, not here.
 *
 * The caller decides *when* to ask: self-fencing only helps while the peer can take over (its
 * agent and QEMU are up). If the peer is gone too, killing our QEMU loses the guest.
 * Throws FenceOptionsError when hungAfterMs is not > 0.
 */
export function hungQemuVerdict(f: HungQemuFacts): HungQemuVerdict {
  if (!(f.hungAfterMs > 0) || !Number.isFinite(f.hungAfterMs)) {
    throw new FenceOptionsError(`hungAfterMs must be > 0, got ${f.hungAfterMs}`);
  }
  const limit = f.hungAfterMs;
  const stalled = f.checkpointStalledForMs;
  if (f.qmpStatus === 'unhealthy') {
    const unhealthy = f.unhealthyForMs ?? 0;
    if (unhealthy >= limit) return { hung: true, reason: `QMP has not answered for ${Math.round(unhealthy)} ms (limit ${limit} ms)` };
    if (stalled !== undefined && stalled >= limit) {
      return { hung: true, reason: `checkpoint stalled for ${Math.round(stalled)} ms and QMP is not answering` };
    }
    return { hung: false, reason: `QMP has not answered for ${Math.round(unhealthy)} ms, under the ${limit} ms limit` };
  }
  if (stalled !== undefined && stalled >= limit) {
    if (f.qmpStatus === 'ready') {
      return { hung: false, reason: `checkpoint stalled for ${Math.round(stalled)} ms but QMP answers: waiting on the peer, not hung` };
    }
    return { hung: false, reason: `checkpoint stalled but QMP is ${f.qmpStatus}: no evidence of a hang` };
  }
  return { hung: false, reason: f.qmpStatus === 'ready' ? 'QMP answers' : `QMP is ${f.qmpStatus}: no evidence of a hang` };
}

export interface SelfFenceOptions {
  /** QEMU's pid; read from pidFile when not given. */
  pid?: number;
  /** QEMU's `-pidfile`. */
  pidFile?: string;
  /** How long to wait for the process to disappear after the signal, ms. */
  graceMs: number;
  /** SIGTERM first, SIGKILL after graceMs (for a QEMU that is not hung). Default false: SIGKILL at once. */
  termFirst?: boolean;
  logger?: Logger;
  clock?: Clock;
}

export type SelfFenceHow =
  /** The process died of this signal (the last one sent). Also set, with killed false, when it did not. */
  | 'SIGTERM'
  | 'SIGKILL'
  /** It was not running to begin with (no such process, or a zombie). */
  | 'gone'
  /** No pid: none given, the pid file is missing or unreadable, or holds no valid pid. */
  | 'no-pid'
  /** The pid is not a QEMU's (stale pid file): left alone. */
  | 'not-qemu';

export interface SelfFenceResult {
  /** We sent a signal and the process is gone now. */
  killed: boolean;
  pid?: number;
  how: SelfFenceHow;
  error?: string;
}

/** How often /proc is looked at while waiting for the process to go. */
const POLL_MS = 10;

export async function selfFenceQemu(opts: SelfFenceOptions): Promise<SelfFenceResult> {
  const log = (opts.logger ?? silentLogger()).child({ component: 'self-fence' });
  const clock = opts.clock ?? systemClock;
  const graceMs = Number.isFinite(opts.graceMs) && opts.graceMs > 0 ? opts.graceMs : 0;
  try {
    const found = await resolvePid(opts);
    if ('error' in found) {
      log.warn({ pidFile: opts.pidFile, error: found.error }, 'self-fence: no QEMU pid');
      return { killed: false, how: 'no-pid', error: found.error };
    }
    const pid = found.pid;
    const before = await inspect(pid);
    if (before.state === 'dead') {
      log.info({ pid }, 'self-fence: QEMU is not running');
      return { killed: false, pid, how: 'gone' };
    }
    if (!before.isQemu) {
      const error = `pid ${pid} is not a QEMU process (${before.argv0 || 'no command line'}): stale pid file?`;
      log.error({ pid, argv0: before.argv0 }, 'self-fence: refusing to kill a process that is not QEMU');
      return { killed: false, pid, how: 'not-qemu', error };
    }

    const signals: Array<'SIGTERM' | 'SIGKILL'> = opts.termFirst ? ['SIGTERM', 'SIGKILL'] : ['SIGKILL'];
    let state = before.state;
    for (const signal of signals) {
      log.warn({ pid, signal, argv0: before.argv0 }, 'self-fence: killing our QEMU');
      try {
        process.kill(pid, signal);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ESRCH') return { killed: false, pid, how: 'gone' };
        const error = `kill(${pid}, ${signal}): ${code ?? String(err)}`;
        log.error({ pid, error }, 'self-fence: kill failed');
        return { killed: false, pid, how: signal, error };
      }
      state = (await waitProcGone(pid, graceMs, { clock, pollMs: POLL_MS }))?.state ?? 'dead';
      if (state === 'dead') {
        log.warn({ pid, signal }, 'self-fence: our QEMU is dead');
        return { killed: true, pid, how: signal };
      }
    }
    const last = signals[signals.length - 1]!;
    const error = `pid ${pid} still exists ${graceMs} ms after ${last} (state ${state}${state === 'D' ? ': uninterruptible I/O' : ''})`;
    log.error({ pid, state }, 'self-fence: QEMU did not die');
    return { killed: false, pid, how: last, error };
  } catch (err) {
    // Nothing above should throw; if something does, the answer is still a result.
    return { killed: false, how: 'no-pid', error: err instanceof Error ? err.message : String(err) };
  }
}

async function resolvePid(opts: SelfFenceOptions): Promise<{ pid: number } | { error: string }> {
  let pid = opts.pid;
  if (pid === undefined) {
    if (opts.pidFile === undefined) return { error: 'neither pid nor pidFile given' };
    let text: string;
    try {
      text = await readFile(opts.pidFile, 'utf8');
    } catch (err) {
      return { error: `pid file ${opts.pidFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
    }
    const m = /^\s*(\d{1,10})\s*$/.exec(text);
    if (!m) return { error: `pid file ${opts.pidFile} holds no pid` };
    pid = Number(m[1]);
  }
  // 0 and negative pids address process groups, 1 is init, and we never kill ourselves.
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return { error: `not a pid we may kill: ${pid}` };
  return { pid };
}

/** What the self-fence needs to know of the pid: 'dead' (gone or a zombie) or its state letter, and argv[0]. */
async function inspect(pid: number): Promise<{ state: string; argv0: string; isQemu: boolean }> {
  const info = await readProc(pid);
  const argv0 = info?.argv[0] ?? '';
  return { state: info?.state ?? 'dead', argv0, isQemu: /qemu/i.test(basename(argv0)) };
}
