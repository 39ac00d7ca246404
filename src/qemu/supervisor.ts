/**
 * Supervision of a QEMU the agent starts itself (qemu.launch): always a fresh secondary.
 *
 * Why it looks the way it does:
 * - Only a secondary. The command waits with -incoming for the primary (the config rules insist),
 *   so a launched QEMU never runs the guest by itself; the agent's fresh-secondary handshake then
 *   prepares its NBD export and tells the primary. The first bring-up of a pair, with a primary,
 *   stays the operator's documented procedure.
 * - It outlives the agent. The guest must survive an agent crash or a planned agent stop, so QEMU
 *   is spawned detached (setsid: its own session and process group, so a Ctrl-C or a signal to the
 *   agent's group never reaches it), with stdin from /dev/null and stdout/stderr into a file in the
 *   state directory (launch-log.ts), not into pipes that break when the agent goes. stop() kills it
 *   only when asked.
 * - A restarted agent adopts it. The pid, with the process's start time, goes to qemu-launch.json
 *   in the state directory (launch-record.ts). While that process lives (same pid, same start time,
 *   a QEMU command line) no second QEMU is launched; its exit is noticed by polling /proc, since
 *   only a parent learns the exit status: an adopted QEMU's exit status is unknown and counts as a
 *   failure for the restart policy.
 * - Restarts are rationed. After an exit the policy (no, on-failure, always, as systemd's Restart=)
 *   decides; a restart waits restartDelayMs, and all launches (the first and the restarts) share a
 *   budget of 1 + maxRestarts per sliding restartWindowMs. Past it the supervisor gives up (error
 *   log, 'gave-up' event) and launches nothing more until reset().
 * - It never launches next to a QEMU someone else started: when `qmp` is given and something
 *   accepts a connection there, the launch is skipped (a second QEMU would take over the socket
 *   path and fight over the disk image's lock).
 *
 * Everything that waits uses the injectable Clock; launches are serialised, so two callers can
 * never start two QEMUs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { isAbsolute } from 'node:path';
import { silentLogger, type Logger } from '../log.js';
import { parseQmpAddress } from '../qmp/address.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { findExecutable } from '../util/find-executable.js';
import { LaunchLog } from './launch-log.js';
import { readProc, waitProcGone } from '../util/proc.js';
import { readLaunchRecord, recordedQemu, removeLaunchRecord, writeLaunchRecord, launchRecordPath } from './launch-record.js';
import { QemuLaunchError, QemuSupervisorOptionsError } from './supervisor-errors.js';

/** As qemu.launch.restart (and systemd's Restart=): when an exited QEMU is launched again. */
export type QemuRestartPolicy = 'no' | 'on-failure' | 'always';

export interface QemuSupervisorOptions {
  /** argv of the secondary QEMU: the program (path, or name on PATH) first. */
  command: readonly string[];
  /** node.stateDir: holds qemu-launch.json and qemu.log. Absolute. */
  stateDir: string;
  /** Default 'on-failure'. */
  restart?: QemuRestartPolicy;
  /** Launches allowed per window beyond the first. Default 5. */
  maxRestarts?: number;
  /** Default 600000. */
  restartWindowMs?: number;
  /** Wait after an exit before the restart. Default 2000. */
  restartDelayMs?: number;
  /** qemu.qmp ("unix:PATH" or "tcp:HOST:PORT"): no launch while something accepts connections there. */
  qmp?: string;
  /** How long the QMP check may wait for a connection; no answer in time counts as "in use". Default 1000. */
  qmpProbeTimeoutMs?: number;
  /** How often an adopted QEMU (launched by an earlier agent run) is looked for in /proc. Default 1000. */
  pollMs?: number;
  /** qemu.log is rotated to qemu.log.1 beyond this size. Default 10 MiB. */
  logMaxBytes?: number;
  /** How often the log size is checked while QEMU runs. Default 30000. */
  logCheckMs?: number;
  /** stop({kill: true}): SIGTERM, then SIGKILL after this long. Default 10000. */
  stopGraceMs?: number;
  /** QEMU's environment. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * Asked before each restart the policy wants: a reason not to restart now, or undefined. The
   * QEMU launched as a secondary may have become the primary (a failover), and a fresh secondary
   * must never replace a primary. A refused restart stays owed (status().restartDeferred) until
   * the next ensureRunning().
   */
  mayRestart?: () => string | undefined;
  clock?: Clock;
  logger?: Logger;
}

export interface QemuLaunchedEvent {
  pid: number;
  /** Launches in the current window, this one included (1 = the first). */
  attempt: number;
  reason: string;
  /** true when the restart policy launched it, false for ensureRunning(). */
  restart: boolean;
}

export interface QemuAdoptedEvent {
  pid: number;
  /** Wall-clock ms since the epoch of its launch by an earlier agent run. */
  launchedAt: number;
  /** That agent's pid. */
  agentPid: number;
}

export interface QemuExitedEvent {
  pid: number;
  /** null with signal null: unknown (an adopted QEMU: only its parent learns the status). */
  code: number | null;
  signal: NodeJS.Signals | null;
  ranMs: number;
  adopted: boolean;
  /** Anything but exit code 0 (an unknown status counts as a failure). */
  failed: boolean;
  /** Set when the policy restarts it, after this delay. */
  restartInMs?: number;
}

export interface QemuLaunchFailedEvent {
  error: QemuLaunchError;
  attempt: number;
  restart: boolean;
  /** Set when another attempt follows, after this delay. */
  restartInMs?: number;
}

export interface QemuGaveUpEvent {
  /** Restarts within the window (launches beyond the first). */
  restarts: number;
  windowMs: number;
}

export interface QemuSupervisorEvents {
  launched: [QemuLaunchedEvent];
  adopted: [QemuAdoptedEvent];
  exited: [QemuExitedEvent];
  'launch-failed': [QemuLaunchFailedEvent];
  /** A launch was not made because a QEMU answers on `qmp` (someone else's). */
  'launch-skipped': [{ reason: string; restart: boolean }];
  'gave-up': [QemuGaveUpEvent];
}

export type EnsureOutcome =
  /** A QEMU was launched now. */
  | 'launched'
  /** The QEMU this supervisor launched or adopted still runs. */
  | 'running'
  /** A QEMU launched by an earlier agent run still runs; it is watched now. */
  | 'adopted'
  /** The QEMU exited and the policy restarts it after restartDelayMs: nothing launched now. */
  | 'restart-pending'
  /** Something answers on `qmp`: a QEMU someone else started. Nothing launched. */
  | 'qmp-in-use'
  /** The restart budget is spent (see reset()). Nothing launched. */
  | 'gave-up'
  /** stop() was called. */
  | 'stopped';

export interface EnsureResult {
  launched: boolean;
  outcome: EnsureOutcome;
  /** The QEMU's pid for launched, running and adopted. */
  pid?: number;
}

export interface QemuLastExit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** clock.now() when the exit was noticed. */
  at: number;
  ranMs: number;
}

export interface QemuSupervisorStatus {
  pid?: number;
  running: boolean;
  /** The running QEMU was launched by an earlier agent run. */
  adopted: boolean;
  /** Launches by this supervisor (ensureRunning and restarts), successful spawns only. */
  launches: number;
  /** Launches in the current window beyond the first. */
  restartsInWindow: number;
  restartPending: boolean;
  /** The policy wanted a restart that mayRestart refused; the next ensureRunning() makes it. */
  restartDeferred: boolean;
  lastExit?: QemuLastExit;
  gaveUp: boolean;
  stopped: boolean;
  logFile: string;
  recordFile: string;
}

interface Current {
  pid: number;
  child?: ChildProcess;
  adopted: boolean;
  /** /proc start time; '' when it could not be read (it exited at once). */
  startTime: string;
  startedMono: number;
  launchedAtWall: number;
}

const DEFAULTS = {
  restart: 'on-failure' as QemuRestartPolicy,
  maxRestarts: 5,
  restartWindowMs: 600_000,
  restartDelayMs: 2000,
  qmpProbeTimeoutMs: 1000,
  pollMs: 1000,
  logMaxBytes: 10 * 1024 * 1024,
  logCheckMs: 30_000,
  stopGraceMs: 10_000,
};

/** While waiting for a killed QEMU to go. */
const GONE_POLL_MS = 20;

export class QemuSupervisor extends EventEmitter<QemuSupervisorEvents> {
  private readonly command: readonly string[];
  private readonly stateDir: string;
  private readonly policy: QemuRestartPolicy;
  private readonly maxRestarts: number;
  private readonly windowMs: number;
  private readonly delayMs: number;
  private readonly qmp: string | undefined;
  private readonly qmpProbeTimeoutMs: number;
  private readonly pollMs: number;
  private readonly logCheckMs: number;
  private readonly stopGraceMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly qemuLog: LaunchLog;

  private current: Current | undefined;
  private adoptChecked = false;
  private stopped = false;
  private gaveUp = false;
  private launches = 0;
  /** clock.now() of each launch attempt within the window. */
  private launchTimes: number[] = [];
  private lastExit: QemuLastExit | undefined;
  private restartTimer: TimerHandle | undefined;
  private readonly mayRestart: (() => string | undefined) | undefined;
  /** The policy wanted a restart that mayRestart refused. */
  private restartDeferred = false;
  private pollTimer: TimerHandle | undefined;
  private logTimer: TimerHandle | undefined;
  /** Serialises adopt, launch and stop: never two QEMUs from two callers. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Serialises writes and removals of the record file. */
  private recordOps: Promise<void> = Promise.resolve();

  constructor(opts: QemuSupervisorOptions) {
    super();
    const o = { ...DEFAULTS, ...definedOnly(opts) };
    if (!Array.isArray(o.command) || o.command.length === 0 || !o.command.every((a) => typeof a === 'string' && a !== '' && !a.includes('\0'))) {
      throw new QemuSupervisorOptionsError('command must be a non-empty list of non-empty strings (the program first)');
    }
    if (typeof o.stateDir !== 'string' || !isAbsolute(o.stateDir)) throw new QemuSupervisorOptionsError(`stateDir must be an absolute path, got ${JSON.stringify(o.stateDir)}`);
    if (!['no', 'on-failure', 'always'].includes(o.restart)) throw new QemuSupervisorOptionsError(`restart must be no, on-failure or always, got ${JSON.stringify(o.restart)}`);
    if (!Number.isSafeInteger(o.maxRestarts) || o.maxRestarts < 0) throw new QemuSupervisorOptionsError(`maxRestarts must be an integer >= 0, got ${o.maxRestarts}`);
    for (const k of ['restartWindowMs', 'restartDelayMs', 'qmpProbeTimeoutMs', 'pollMs', 'logMaxBytes', 'logCheckMs', 'stopGraceMs'] as const) {
      const v = o[k];
      if (!Number.isFinite(v) || v < 0 || (k !== 'restartDelayMs' && v === 0)) throw new QemuSupervisorOptionsError(`${k} must be a positive number, got ${v}`);
    }
    if (o.qmp !== undefined) parseQmpAddress(o.qmp); // throws QmpAddressError with the reason
    this.command = [...o.command];
    this.stateDir = o.stateDir;
    this.policy = o.restart;
    this.maxRestarts = o.maxRestarts;
    this.windowMs = o.restartWindowMs;
    this.delayMs = o.restartDelayMs;
    this.qmp = o.qmp;
    this.qmpProbeTimeoutMs = o.qmpProbeTimeoutMs;
    this.pollMs = o.pollMs;
    this.logCheckMs = o.logCheckMs;
    this.stopGraceMs = o.stopGraceMs;
    this.env = o.env ?? process.env;
    this.mayRestart = o.mayRestart;
    this.clock = o.clock ?? systemClock;
    this.log = (o.logger ?? silentLogger()).child({ component: 'qemu-supervisor' });
    this.qemuLog = new LaunchLog(this.stateDir, o.logMaxBytes);
  }

  /**
   * Watch the QEMU an earlier agent run launched, if its record names a process that still lives.
   * Call it at start even when no launch is wanted yet, so its exit is noticed. Returns its pid.
   */
  adopt(): Promise<number | undefined> {
    return this.serial(() => this.adoptLocked());
  }

  /**
   * Makes sure a secondary QEMU of ours runs: adopts one from an earlier agent run, else launches
   * one, unless the QEMU we watch still runs, a restart is already pending, the budget is spent,
   * or a QEMU someone else started answers on `qmp`. Safe to call repeatedly; each launch it makes
   * counts against the restart budget like a restart. Throws QemuLaunchError when the program
   * cannot be started at all.
   */
  ensureRunning(reason: string): Promise<EnsureResult> {
    return this.serial(async (): Promise<EnsureResult> => {
      if (this.stopped) return { launched: false, outcome: 'stopped' };
      const cur = this.current;
      if (cur) {
        if (await this.stillRunning(cur)) return { launched: false, outcome: 'running', pid: cur.pid };
        // Gone, and its exit not yet noticed (an adopted QEMU between two polls): notice it now.
        if (this.current === cur) this.onGone(cur, null, null);
      }
      if (!this.adoptChecked) {
        const pid = await this.adoptLocked();
        if (pid !== undefined) return { launched: false, outcome: 'adopted', pid };
      }
      if (this.restartTimer !== undefined) return { launched: false, outcome: 'restart-pending' };
      return this.launchLocked(reason, false);
    });
  }

  /** Forget the restart history and a give-up, e.g. after an operator fixed the cause. */
  reset(): void {
    this.launchTimes = [];
    if (this.gaveUp) this.log.info('restart budget reset: launching is allowed again');
    this.gaveUp = false;
  }

  /**
   * Stop supervising: timers and /proc polling end, no restart follows. The QEMU keeps running
   * (a planned agent stop must not take the guest down) unless `kill` is true: then SIGTERM to its
   * process group and SIGKILL after stopGraceMs, and its record is removed. Idempotent.
   */
  async stop(opts: { kill?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    await this.serial(async () => {
      const cur = this.current;
      if (opts.kill && cur) {
        await this.kill(cur);
        this.current = undefined;
      }
      // No write to the state directory after stop() has returned.
      await this.recordOps;
    });
  }

  status(): QemuSupervisorStatus {
    const cur = this.current;
    const inWindow = this.pruneLaunches();
    return {
      ...(cur && { pid: cur.pid }),
      running: cur !== undefined,
      adopted: cur?.adopted ?? false,
      launches: this.launches,
      restartsInWindow: Math.max(0, inWindow - 1),
      restartPending: this.restartTimer !== undefined,
      restartDeferred: this.restartDeferred,
      ...(this.lastExit && { lastExit: { ...this.lastExit } }),
      gaveUp: this.gaveUp,
      stopped: this.stopped,
      logFile: this.qemuLog.path,
      recordFile: launchRecordPath(this.stateDir),
    };
  }

  // ---- adopting ----

  private async adoptLocked(): Promise<number | undefined> {
    if (this.stopped) return undefined;
    if (this.current) return this.current.pid;
    this.adoptChecked = true;
    const record = await readLaunchRecord(this.stateDir);
    if (!record) return undefined;
    const info = await recordedQemu(record);
    if (this.stopped) return undefined;
    if (!info) {
      this.log.info({ pid: record.pid, launchedAt: new Date(record.launchedAt).toISOString() }, 'the QEMU an earlier agent run launched is gone');
      this.queueRecord(() => removeLaunchRecord(this.stateDir, record.pid));
      return undefined;
    }
    this.current = { pid: record.pid, adopted: true, startTime: info.startTime, startedMono: this.clock.now(), launchedAtWall: record.launchedAt };
    this.log.info({ pid: record.pid, agentPid: record.agentPid, launchedAt: new Date(record.launchedAt).toISOString() }, 'adopted the QEMU an earlier agent run launched');
    this.schedulePoll();
    this.scheduleLogCheck();
    this.emit('adopted', { pid: record.pid, launchedAt: record.launchedAt, agentPid: record.agentPid });
    return record.pid;
  }

  // ---- launching ----

  private async launchLocked(reason: string, restart: boolean): Promise<EnsureResult> {
    this.clock.clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this.gaveUp) return { launched: false, outcome: 'gave-up' };
    if (this.pruneLaunches() > this.maxRestarts) {
      this.giveUp();
      return { launched: false, outcome: 'gave-up' };
    }
    if (this.qmp !== undefined && (await this.qmpInUse(this.qmp))) {
      const why = `something answers on ${this.qmp}: a QEMU someone else started; not launching a second one`;
      this.log.warn({ qmp: this.qmp, reason }, why);
      this.emit('launch-skipped', { reason: why, restart });
      return { launched: false, outcome: 'qmp-in-use' };
    }
    if (this.stopped) return { launched: false, outcome: 'stopped' };
    this.launchTimes.push(this.clock.now());
    const attempt = this.launchTimes.length;

    let child: ChildProcess;
    try {
      child = await this.spawnDetached(reason);
    } catch (err) {
      const error = err instanceof QemuLaunchError ? err : new QemuLaunchError(`launching ${this.command[0]} failed: ${(err as Error).message}`, { cause: err });
      const restartInMs = restart ? this.scheduleRestartAfterFailure() : undefined;
      this.log.error({ err: error, attempt, ...(restartInMs !== undefined && { restartInMs }) }, 'could not launch the secondary QEMU');
      this.emit('launch-failed', { error, attempt, restart, ...(restartInMs !== undefined && { restartInMs }) });
      if (restart && restartInMs === undefined && !this.stopped) this.giveUp();
      if (restart) return { launched: false, outcome: this.gaveUp ? 'gave-up' : 'restart-pending' };
      throw error;
    }

    const pid = child.pid!;
    this.restartDeferred = false;
    const cur: Current = { pid, child, adopted: false, startTime: '', startedMono: this.clock.now(), launchedAtWall: Date.now() };
    // Set before any await: a QEMU that exits at once must find itself current.
    this.current = cur;
    this.launches++;
    child.once('exit', (code, signal) => {
      if (this.current === cur) this.onGone(cur, code, signal);
    });
    this.log.info({ pid, attempt, reason, restart, command: this.command, logFile: this.qemuLog.path }, 'launched the secondary QEMU');
    this.emit('launched', { pid, attempt, reason, restart });

    const info = await readProc(pid);
    // It may have exited (or we were stopped) meanwhile: then no record and no timer for it.
    if (info && this.current === cur && !this.stopped) {
      cur.startTime = info.startTime;
      const record = { pid, startTime: info.startTime, argv: [...this.command], launchedAt: cur.launchedAtWall, agentPid: process.pid };
      this.queueRecord(() => writeLaunchRecord(this.stateDir, record), 'could not write the launch record: a restarted agent will not know this QEMU');
      this.scheduleLogCheck();
    }
    return { launched: true, outcome: 'launched', pid };
  }

  /** Spawns the command in a session of its own, output to qemu.log; resolves once it has a pid. */
  private async spawnDetached(reason: string): Promise<ChildProcess> {
    const [program, ...args] = this.command as [string, ...string[]];
    if (!findExecutable(program)) {
      throw new QemuLaunchError(`${program} is not an executable file${program.includes('/') ? '' : ' on PATH'} (qemu.launch.secondaryCommand)`);
    }
    mkdirSync(this.stateDir, { recursive: true });
    const header = `--- ${new Date().toISOString()} colo-agent (pid ${process.pid}) launches the secondary QEMU (${reason}): ${JSON.stringify(this.command)}`;
    const fd = this.qemuLog.openForChild(header);
    let child: ChildProcess;
    try {
      // detached: setsid(), so QEMU has its own session and process group and outlives the agent.
      child = spawn(program, args, { detached: true, stdio: ['ignore', fd, fd], env: this.env });
    } finally {
      closeSync(fd);
    }
    // A failed exec (ENOENT, EACCES) leaves no pid and is reported as 'error' on the next tick.
    if (child.pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new QemuLaunchError(`launching ${program} failed: ${err.message}`, { cause: err });
    }
    // Later errors (a failed kill) must not be thrown as unhandled 'error' events.
    child.on('error', (err) => this.log.warn({ err, pid: child.pid }, 'QEMU child process error'));
    // The agent's event loop does not wait for QEMU: it is meant to outlive the agent.
    child.unref();
    return child;
  }

  /** Is something accepting connections on the QMP address? No answer in time counts as yes. */
  private qmpInUse(address: string): Promise<boolean> {
    const a = parseQmpAddress(address);
    return new Promise((resolve) => {
      const socket = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
      let settled = false;
      const done = (inUse: boolean): void => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        socket.destroy();
        resolve(inUse);
      };
      const timer = this.clock.setTimeout(() => done(true), this.qmpProbeTimeoutMs);
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
    });
  }

  // ---- exits and restarts ----

  private onGone(cur: Current, code: number | null, signal: NodeJS.Signals | null): void {
    this.current = undefined;
    this.clock.clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.clock.clearTimeout(this.logTimer);
    this.logTimer = undefined;
    if (this.stopped) return;
    const now = this.clock.now();
    const ranMs = Math.max(0, cur.adopted ? Date.now() - cur.launchedAtWall : now - cur.startedMono);
    const failed = !(code === 0 && signal === null);
    this.lastExit = { pid: cur.pid, code, signal, at: now, ranMs };
    this.queueRecord(() => removeLaunchRecord(this.stateDir, cur.pid));
    const how = signal !== null ? `killed by ${signal}` : code !== null ? `exit code ${code}` : 'exit status unknown (launched by an earlier agent run)';
    this.qemuLog.note(`--- ${new Date().toISOString()} QEMU pid ${cur.pid} exited: ${how}`);

    const wanted = this.policy === 'always' || (this.policy === 'on-failure' && failed);
    const restartInMs = wanted ? this.scheduleRestartAfterFailure() : undefined;
    const fields = { pid: cur.pid, code, signal, ranMs: Math.round(ranMs), adopted: cur.adopted, policy: this.policy, ...(restartInMs !== undefined && { restartInMs }) };
    if (restartInMs !== undefined) this.log.warn(fields, `the secondary QEMU exited (${how}); restarting it`);
    else this.log[failed ? 'error' : 'warn'](fields, `the secondary QEMU exited (${how})${wanted ? '' : `; restart policy ${this.policy}: not restarting`}`);
    this.emit('exited', { pid: cur.pid, code, signal, ranMs, adopted: cur.adopted, failed, ...(restartInMs !== undefined && { restartInMs }) });
    if (wanted && restartInMs === undefined) this.giveUp();
  }

  /** Schedules a restart when the budget allows one; returns its delay, or undefined when spent. */
  private scheduleRestartAfterFailure(): number | undefined {
    if (this.stopped || this.gaveUp || this.pruneLaunches() > this.maxRestarts) return undefined;
    this.clock.clearTimeout(this.restartTimer);
    this.restartTimer = this.clock.setTimeout(() => {
      this.restartTimer = undefined;
      void this.serial(() => this.restartLocked()).catch((err: unknown) => this.log.error({ err }, 'restarting the secondary QEMU failed'));
    }, this.delayMs);
    return this.delayMs;
  }

  private async restartLocked(): Promise<void> {
    // A caller may have launched (or adopted) one in the meantime, or stopped us.
    if (this.stopped || this.current) return;
    const refused = this.mayRestart?.();
    if (refused !== undefined) {
      this.restartDeferred = true;
      this.log.warn({ reason: refused }, 'not restarting the secondary QEMU now');
      this.emit('launch-skipped', { reason: refused, restart: true });
      return;
    }
    await this.launchLocked('restart after exit', true);
  }

  private giveUp(): void {
    if (this.gaveUp) return;
    this.gaveUp = true;
    const restarts = Math.max(0, this.pruneLaunches() - 1);
    this.log.error(
      { restarts, windowMs: this.windowMs, maxRestarts: this.maxRestarts, logFile: this.qemuLog.path },
      `gave up on the secondary QEMU: ${restarts} restarts within ${this.windowMs} ms; no more launches until the agent is restarted`,
    );
    this.emit('gave-up', { restarts, windowMs: this.windowMs });
  }

  /** Drops launches older than the window; returns how many remain. */
  private pruneLaunches(): number {
    const since = this.clock.now() - this.windowMs;
    this.launchTimes = this.launchTimes.filter((t) => t > since);
    return this.launchTimes.length;
  }

  // ---- watching ----

  private async stillRunning(cur: Current): Promise<boolean> {
    if (cur.child) return cur.child.exitCode === null && cur.child.signalCode === null;
    const info = await readProc(cur.pid);
    return info !== undefined && info.startTime === cur.startTime;
  }

  /** Only an adopted QEMU is polled: for our own child, its 'exit' event tells (with the status). */
  private schedulePoll(): void {
    this.pollTimer = this.clock.setTimeout(() => {
      this.pollTimer = undefined;
      const cur = this.current;
      if (!cur || !cur.adopted || this.stopped) return;
      void this.stillRunning(cur).then((alive) => {
        if (this.current !== cur || this.stopped) return;
        if (alive) this.schedulePoll();
        else this.onGone(cur, null, null);
      });
    }, this.pollMs);
  }

  private scheduleLogCheck(): void {
    this.clock.clearTimeout(this.logTimer);
    this.logTimer = undefined;
    if (!this.current || this.stopped) return;
    this.logTimer = this.clock.setTimeout(() => {
      this.logTimer = undefined;
      if (!this.current || this.stopped) return;
      void this.qemuLog.capSize().then((rotated) => {
        if (rotated) this.log.info({ logFile: this.qemuLog.path }, 'QEMU log over its size cap: rotated');
        if (this.current && !this.stopped) this.scheduleLogCheck();
      });
    }, this.logCheckMs);
  }

  // ---- stopping ----

  private async kill(cur: Current): Promise<void> {
    const info = await readProc(cur.pid);
    if (!info || (cur.startTime !== '' && info.startTime !== cur.startTime)) {
      this.queueRecord(() => removeLaunchRecord(this.stateDir, cur.pid));
      return;
    }
    // Its own group (setsid at launch): a wrapper's children go too. Else only the process.
    const target = info.pgid === cur.pid ? -cur.pid : cur.pid;
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      this.log.warn({ pid: cur.pid, signal }, 'stopping the secondary QEMU');
      try {
        process.kill(target, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') break;
        this.log.error({ err, pid: cur.pid, signal }, 'could not signal the secondary QEMU');
        return;
      }
      if (await this.waitGone(cur, signal === 'SIGTERM' ? this.stopGraceMs : 2000)) break;
    }
    this.queueRecord(() => removeLaunchRecord(this.stateDir, cur.pid));
    await this.recordOps;
  }

  private async waitGone(cur: Current, ms: number): Promise<boolean> {
    const same = (info: { startTime: string }) => cur.startTime === '' || info.startTime === cur.startTime;
    return (await waitProcGone(cur.pid, ms, { clock: this.clock, pollMs: GONE_POLL_MS, same })) === undefined;
  }

  // ---- helpers ----

  private clearTimers(): void {
    for (const t of [this.restartTimer, this.pollTimer, this.logTimer]) this.clock.clearTimeout(t);
    this.restartTimer = this.pollTimer = this.logTimer = undefined;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private queueRecord(op: () => Promise<void>, failure = 'could not update the launch record'): void {
    this.recordOps = this.recordOps.then(op).catch((err: unknown) => this.log.error({ err, file: launchRecordPath(this.stateDir) }, failure));
  }
}

function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
