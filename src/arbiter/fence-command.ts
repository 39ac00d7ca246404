/**
 * Fencing the peer before a takeover (`failover.fenceCommand`): an operator-supplied shell command
 * line that switches the peer off for good (IPMI/Redfish power-off, a PDU outlet, a cloud API
 * "stop instance", a SAN port disable), run the way Pacemaker runs its fence agents and keepalived
 * its notify scripts: `/bin/sh -c COMMAND`, with what the command needs to know in the
 * environment (the caller passes COLO_AGENT_PEER_NAME, COLO_AGENT_PEER_HOST, COLO_AGENT_EPOCH,
 * COLO_AGENT_ACTION, ...) on top of the agent's own environment (PATH and friends).
 *
 * Only exit code 0 within the timeout counts as fenced: anything else (a non-zero exit, a signal,
 * a timeout, a spawn failure) is "not known to be fenced", and taking over then risks two
 * primaries.
 *
 * Process hygiene: the shell starts in its own process group (spawn `detached`), and the whole
 * group is signalled, never just the shell. A hung fence script (an ssh to a dead host, an IPMI
 * tool retrying forever) and anything it started must not linger:
 * - on timeout the group gets SIGTERM, then SIGKILL after killGraceMs;
 * - once the shell has exited, whatever is left in its group gets SIGKILL at once: the command is
 *   done and background jobs it left behind are abandoned. A script that really must leave
 *   something running starts it in a session of its own (`setsid`).
 *
 * Never rejects for anything the command does; it rejects with FenceOptionsError only for options
 * that can never work. Logging: the command line and the env values are never logged (a command
 * line may carry an IPMI password; keep secrets in a file the script reads), the output only as
 * its last 4 KiB.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { silentLogger, type Logger } from '../log.js';
import { Backoff } from '../util/backoff.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { FenceOptionsError } from './fence-errors.js';

/** How much of stdout+stderr a result keeps: the end, where the error usually is. */
export const FENCE_OUTPUT_LIMIT = 4096;

export interface FenceCommandOptions {
  /** A shell command line, run with `/bin/sh -c`. */
  command: string;
  /** The command must have exited with 0 within this, ms. */
  timeoutMs: number;
  /** Added to the agent's environment for the command (e.g. COLO_AGENT_PEER_NAME). */
  env: Record<string, string>;
  /** After a timeout: SIGTERM to the process group, SIGKILL this much later. Default 1000. */
  killGraceMs?: number;
  logger?: Logger;
  clock?: Clock;
}

export interface FenceResult {
  /** Exit code 0 within the timeout: the peer is fenced. */
  ok: boolean;
  /** The shell's exit code, when it exited normally. */
  exitCode?: number;
  /** The signal that ended the shell, when one did. */
  signal?: string;
  timedOut: boolean;
  durationMs: number;
  /** stdout and stderr as they arrived, the last FENCE_OUTPUT_LIMIT bytes only. */
  output: string;
  /** True when output lost its beginning to the limit. */
  outputTruncated: boolean;
  /** Why the command could not run at all (spawn failure), or that it was never started (aborted). */
  error?: string;
}

/** How long to wait for the output pipes to close once the shell has exited (see finish()). */
const CLOSE_WAIT_MS = 200;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function validateCommand(opts: FenceCommandOptions): void {
  if (typeof opts.command !== 'string' || opts.command.trim() === '') {
    throw new FenceOptionsError('fence command is empty');
  }
  if (opts.command.includes('\0')) throw new FenceOptionsError('fence command contains a NUL byte');
  if (!(opts.timeoutMs > 0) || !Number.isFinite(opts.timeoutMs)) {
    throw new FenceOptionsError(`fence timeoutMs must be > 0, got ${opts.timeoutMs}`);
  }
  if (opts.killGraceMs !== undefined && !(opts.killGraceMs >= 0 && Number.isFinite(opts.killGraceMs))) {
    throw new FenceOptionsError(`fence killGraceMs must be >= 0, got ${opts.killGraceMs}`);
  }
  for (const [name, value] of Object.entries(opts.env)) {
    // The value itself is never put in the message: env may carry credentials.
    if (!ENV_NAME.test(name)) throw new FenceOptionsError(`fence env name ${JSON.stringify(name)} is not a valid variable name`);
    if (typeof value !== 'string' || value.includes('\0')) {
      throw new FenceOptionsError(`fence env ${name} must be a string without NUL bytes`);
    }
  }
}

/** Keeps the last `limit` bytes of everything written to it. */
class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit) {
      const first = this.chunks[0]!;
      const excess = this.size - this.limit;
      this.truncated = true;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }

  text(): string {
    const s = Buffer.concat(this.chunks).toString('utf8');
    // Cutting may have split a multi-byte character at the start: drop its remains.
    return this.truncated ? s.replace(/^\uFFFD+/, '') : s;
  }
}

/** Signals a whole process group; false when it no longer exists. */
function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is empty
  }
}

/** Runs the fence command once. See the file comment. */
export async function runFenceCommand(opts: FenceCommandOptions): Promise<FenceResult> {
  validateCommand(opts);
  const clock = opts.clock ?? systemClock;
  const log = (opts.logger ?? silentLogger()).child({ component: 'fence-command' });
  const killGraceMs = opts.killGraceMs ?? 1000;
  const started = clock.now();
  const out = new TailBuffer(FENCE_OUTPUT_LIMIT);

  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', ['-c', opts.command], {
      detached: true, // own process group: kill(-pid) reaches every process the script started
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    log.error({ error }, 'fence command could not be started');
    return { ok: false, timedOut: false, durationMs: clock.now() - started, output: '', outputTruncated: false, error };
  }

  return new Promise<FenceResult>((resolve) => {
    const pid = child.pid;
    let timedOut = false;
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    let spawnError: string | undefined;
    let exited = false;
    let settled = false;
    let timeoutTimer: TimerHandle | undefined;
    let killTimer: TimerHandle | undefined;
    let closeTimer: TimerHandle | undefined;

    const finish = () => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timeoutTimer);
      clock.clearTimeout(killTimer);
      clock.clearTimeout(closeTimer);
      // Pipes held open by a process outside the group (a `setsid` child) must not hold us.
      child.stdout?.destroy();
      child.stderr?.destroy();
      const result: FenceResult = {
        ok: !timedOut && spawnError === undefined && exitCode === 0,
        timedOut,
        durationMs: clock.now() - started,
        output: out.text(),
        outputTruncated: out.truncated,
      };
      if (exitCode !== null) result.exitCode = exitCode;
      if (exitSignal !== null) result.signal = exitSignal;
      if (spawnError !== undefined) result.error = spawnError;
      resolve(result);
    };

    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => out.push(d));

    child.once('error', (err) => {
      // spawn failed (ENOENT, EAGAIN, ...): there is no process and no 'exit' will come.
      spawnError = err.message;
      if (!exited) finish();
    });

    child.once('exit', (code, signal) => {
      exited = true;
      exitCode = code;
      exitSignal = signal;
      // The shell is done: leftovers of its group are abandoned work (see the file comment).
      // The group cannot have been recycled yet: a pid stays allocated while its group has members.
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      // 'close' (all output read) normally follows at once; wait for it a little, not forever.
      closeTimer = clock.setTimeout(finish, CLOSE_WAIT_MS);
    });
    child.once('close', () => {
      if (exited) finish();
    });

    if (pid !== undefined) {
      timeoutTimer = clock.setTimeout(() => {
        if (exited) return;
        timedOut = true;
        log.warn({ pid, timeoutMs: opts.timeoutMs }, 'fence command timed out: terminating its process group');
        killGroup(pid, 'SIGTERM');
        killTimer = clock.setTimeout(() => {
          if (exited) return;
          log.warn({ pid }, 'fence command ignored SIGTERM: killing its process group');
          killGroup(pid, 'SIGKILL');
          // A process that survives SIGKILL (uninterruptible sleep) must not hold us forever either.
          killTimer = clock.setTimeout(finish, killGraceMs + CLOSE_WAIT_MS);
        }, killGraceMs);
      }, opts.timeoutMs);
    }
  });
}

export type FencePolicy = 'abort' | 'wait';

export interface FenceWithPolicyOptions {
  /** One attempt, e.g. () => runFenceCommand({...}). */
  run: () => Promise<FenceResult>;
  /** abort: one attempt, its result decides. wait: retry until it works or maxWaitMs has passed. */
  policy: FencePolicy;
  /** Backoff between attempts (policy wait), capped at retryMaxMs. */
  retryInitialMs: number;
  retryMaxMs: number;
  /** No new attempt starts later than this after the first one started (policy wait), ms. */
  maxWaitMs: number;
  clock?: Clock;
  logger?: Logger;
  /** Stops waiting: no new attempt starts once it fires (a running one is let finish). */
  signal?: AbortSignal;
  /** For tests: the backoff's random source (jitter). */
  random?: () => number;
}

export interface FenceOutcome {
  ok: boolean;
  attempts: number;
  /** The last attempt's result (a synthetic one with `error` when aborted before the first). */
  last: FenceResult;
  /** The signal stopped the waiting. */
  aborted: boolean;
  /** From the first attempt's start to the end, ms. */
  elapsedMs: number;
}

/**
 * Runs fence attempts under a policy. With `wait` the total time can exceed maxWaitMs by one
 * attempt's own timeout: an attempt that has started is never cut short here (killing a fence
 * agent half-way can leave the peer's power in an unknown state). A success that finishes after
 * the signal fired is still reported as ok: the peer *is* fenced then.
 *
 * Rejects only with FenceOptionsError (bad policy or backoff numbers).
 */
export async function fenceWithPolicy(opts: FenceWithPolicyOptions): Promise<FenceOutcome> {
  if (opts.policy !== 'abort' && opts.policy !== 'wait') {
    throw new FenceOptionsError(`fence policy must be abort or wait, got ${String(opts.policy)}`);
  }
  if (!(opts.retryInitialMs > 0) || !(opts.retryMaxMs >= opts.retryInitialMs) || !Number.isFinite(opts.retryMaxMs)) {
    throw new FenceOptionsError(`fence retry needs 0 < retryInitialMs <= retryMaxMs, got ${opts.retryInitialMs}/${opts.retryMaxMs}`);
  }
  if (!(opts.maxWaitMs >= 0) || !Number.isFinite(opts.maxWaitMs)) {
    throw new FenceOptionsError(`fence maxWaitMs must be >= 0, got ${opts.maxWaitMs}`);
  }
  const clock = opts.clock ?? systemClock;
  const log = (opts.logger ?? silentLogger()).child({ component: 'fence' });
  const backoff = new Backoff({ initialMs: opts.retryInitialMs, maxMs: opts.retryMaxMs, ...(opts.random ? { random: opts.random } : {}) });
  const started = clock.now();
  const signal = opts.signal;

  if (signal?.aborted) {
    log.warn({ policy: opts.policy }, 'fencing aborted before the first attempt');
    const last: FenceResult = { ok: false, timedOut: false, durationMs: 0, output: '', outputTruncated: false, error: 'aborted before the first attempt' };
    return { ok: false, attempts: 0, last, aborted: true, elapsedMs: 0 };
  }

  let attempts = 0;
  for (;;) {
    attempts++;
    const last = await opts.run();
    logAttempt(log, attempts, last);
    const elapsedMs = clock.now() - started;
    if (last.ok) return { ok: true, attempts, last, aborted: false, elapsedMs };
    if (opts.policy === 'abort') return { ok: false, attempts, last, aborted: false, elapsedMs };
    if (signal?.aborted) {
      log.warn({ attempts }, 'fencing aborted: no further attempt');
      return { ok: false, attempts, last, aborted: true, elapsedMs };
    }
    const delay = backoff.next();
    const remaining = opts.maxWaitMs - elapsedMs;
    if (delay >= remaining) {
      log.error({ attempts, elapsedMs, maxWaitMs: opts.maxWaitMs }, 'fencing failed: giving up after maxWaitMs');
      return { ok: false, attempts, last, aborted: false, elapsedMs };
    }
    log.info({ attempts, delayMs: delay }, 'fencing failed: retrying');
    const aborted = !(await sleep(clock, delay, signal));
    if (aborted) {
      log.warn({ attempts }, 'fencing aborted while waiting to retry');
      return { ok: false, attempts, last, aborted: true, elapsedMs: clock.now() - started };
    }
  }
}

function logAttempt(log: Logger, attempt: number, r: FenceResult): void {
  const fields = {
    attempt,
    ok: r.ok,
    exitCode: r.exitCode,
    signal: r.signal,
    timedOut: r.timedOut,
    durationMs: Math.round(r.durationMs),
    output: r.output,
    outputTruncated: r.outputTruncated,
    error: r.error,
  };
  if (r.ok) log.info(fields, 'fence command succeeded: peer fenced');
  else log.warn(fields, 'fence command failed');
}

/** Resolves true after ms, or false as soon as the signal fires. */
function sleep(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = () => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
