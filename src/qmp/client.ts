/**
 * QmpClient: a long-lived QMP session to one QEMU monitor socket.
 *
 * Design points, each from a failure this agent must survive:
 * - Every command has an id and its own timeout. A QEMU that stops answering (SIGSTOP, the QEMU
 *   7.2 COLO checkpoint deadlock) makes commands reject with QmpTimeoutError and marks the session
 *   `unhealthy`; it never hangs the caller. A late reply brings it back to `ready`.
 * - A protocol violation resets the connection (replies can no longer be matched to commands);
 *   it is reported as a 'clientError' event, never thrown, never fatal to the process.
 * - Losing the connection rejects every command in flight with QmpDisconnectedError and, unless
 *   disabled, redials with capped, jittered backoff.
 * - All status changes go through setStatus(), which logs each transition (as ioredis does).
 * - Command arguments are never logged: object-add and friends can carry secrets.
 */
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../log.js';
import { Backoff, type BackoffOptions } from '../util/backoff.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { formatQmpAddress, parseQmpAddress, type QmpAddress } from './address.js';
import { QmpConnection } from './connection.js';
import {
  QmpClosedError,
  QmpCommandDroppedError,
  QmpCommandError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpError,
  QmpOobUnavailableError,
  QmpProtocolError,
  QmpTimeoutError,
} from './errors.js';
import type { QmpClientEvents, QmpClientStatus, QmpCommandRecord, QmpEvent, QmpReadyInfo, QmpStatusChange } from './events.js';
import { InFlightTable, type PendingCommand } from './in-flight.js';
import { encodeCommand, preview, timestampToMs, type QmpServerMessage } from './messages.js';
import { formatQemuVersion, type QemuVersion } from './version.js';

export interface QmpClientOptions {
  /** `unix:PATH` or `tcp:HOST:PORT`, or an already parsed address. */
  address: string | QmpAddress;
  /** Budget for dial + greeting + capabilities negotiation. Default 5000. */
  connectTimeoutMs?: number;
  /** Default per-command reply timeout. Default 10000. */
  commandTimeoutMs?: number;
  /** Longest accepted line from QEMU. Default 1 MiB. */
  maxLineBytes?: number;
  /** Redial policy after a loss or failed dial; false disables redialling. Default 100 ms doubling to 5 s. */
  reconnect?: false | BackoffOptions;
  /** How many timed-out ids to remember so their late replies are recognised. Default 1024. */
  maxLateReplies?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface ExecuteOptions {
  /** Overrides commandTimeoutMs for this command. */
  timeoutMs?: number;
  /** Send with exec-oob (needs the oob capability). For commands QEMU marks allow-oob, e.g. yank. */
  oob?: boolean;
}

export interface WaitForEventOptions {
  /** Default: commandTimeoutMs. */
  timeoutMs?: number;
  filter?: (event: QmpEvent) => boolean;
}

export const QMP_CLIENT_DEFAULTS = {
  connectTimeoutMs: 5000,
  commandTimeoutMs: 10_000,
  maxLineBytes: 1024 * 1024,
  reconnect: { initialMs: 100, maxMs: 5000 } satisfies BackoffOptions,
  maxLateReplies: 1024,
} as const;

function positive(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`${name} must be a positive finite number, got ${value}`);
  return value;
}

interface Waiter {
  reject(err: Error): void;
}

export class QmpClient extends EventEmitter<QmpClientEvents> {
  readonly address: QmpAddress;
  /** The address as text, e.g. for logs and metric labels. */
  readonly addressText: string;

  private readonly connectTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly maxLineBytes: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly backoff: Backoff | undefined;
  private readonly inFlight: InFlightTable;

  private statusValue: QmpClientStatus = 'idle';
  private conn: QmpConnection | undefined;
  private attempt: Promise<void> | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private session: QmpReadyInfo | undefined;
  private nextId = 0;
  private readonly waiters = new Set<Waiter>();
  private closing: Promise<void> | undefined;

  constructor(opts: QmpClientOptions) {
    super();
    this.address = typeof opts.address === 'string' ? parseQmpAddress(opts.address) : opts.address;
    this.addressText = formatQmpAddress(this.address);
    this.connectTimeoutMs = positive('connectTimeoutMs', opts.connectTimeoutMs ?? QMP_CLIENT_DEFAULTS.connectTimeoutMs);
    this.commandTimeoutMs = positive('commandTimeoutMs', opts.commandTimeoutMs ?? QMP_CLIENT_DEFAULTS.commandTimeoutMs);
    this.maxLineBytes = positive('maxLineBytes', opts.maxLineBytes ?? QMP_CLIENT_DEFAULTS.maxLineBytes);
    this.clock = opts.clock ?? systemClock;
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'qmp', qmp: this.addressText });
    const reconnect = opts.reconnect === undefined ? QMP_CLIENT_DEFAULTS.reconnect : opts.reconnect;
    this.backoff = reconnect === false ? undefined : new Backoff(reconnect);
    this.inFlight = new InFlightTable(opts.maxLateReplies ?? QMP_CLIENT_DEFAULTS.maxLateReplies);
  }

  get status(): QmpClientStatus {
    return this.statusValue;
  }

  /** QEMU's version from the latest greeting; undefined before the first successful connect. */
  get version(): QemuVersion | undefined {
    return this.session?.version;
  }

  /** The latest session: version, offered capabilities, whether oob is enabled. */
  get sessionInfo(): QmpReadyInfo | undefined {
    return this.session;
  }

  /** Commands sent and still waiting for their reply. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /**
   * Dial now (or join the dial in progress) and resolve once the session is ready. Rejects with
   * the error of this attempt; like ioredis, when reconnect is enabled the client keeps redialling
   * in the background after a failed attempt until close(). Use waitUntilReady() to wait through retries.
   */
  connect(): Promise<void> {
    switch (this.statusValue) {
      case 'closed':
        return Promise.reject(new QmpClosedError('cannot connect: QMP client closed'));
      case 'ready':
      case 'unhealthy':
        return Promise.resolve();
      case 'reconnecting':
        this.clock.clearTimeout(this.reconnectTimer);
        this.reconnectTimer = undefined;
        return this.dial();
      default:
        return this.dial();
    }
  }

  /**
   * Run a QMP command and resolve with its `return` value. Rejects with QmpCommandError (QEMU
   * said error), QmpTimeoutError, QmpDisconnectedError (not connected, or lost before the reply),
   * QmpClosedError, QmpOobUnavailableError or QmpCommandDroppedError.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: ExecuteOptions = {}): Promise<T> {
    if (typeof command !== 'string' || command.length === 0) {
      return Promise.reject(new TypeError('QMP command name must be a non-empty string'));
    }
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      return Promise.reject(new RangeError(`timeoutMs must be a positive finite number, got ${timeoutMs}`));
    }
    const oob = opts.oob ?? false;
    const id = ++this.nextId;
    let line: string;
    try {
      line = encodeCommand(command, args, id, oob);
    } catch (err) {
      return Promise.reject(new TypeError(`arguments of ${command} cannot be encoded as JSON: ${(err as Error).message}`));
    }
    const refuse = (err: QmpError): Promise<T> => {
      this.record({ command, id, oob, durationMs: 0 }, err);
      return Promise.reject(err);
    };
    if (this.statusValue === 'closed') return refuse(new QmpClosedError(`cannot run ${command}: QMP client closed`));
    const conn = this.conn;
    if (!conn || (this.statusValue !== 'ready' && this.statusValue !== 'unhealthy')) {
      return refuse(new QmpDisconnectedError(`cannot run ${command}: QMP ${this.addressText} is ${this.statusValue}`));
    }
    if (oob && !conn.oob) return refuse(new QmpOobUnavailableError(command));

    return new Promise<T>((resolve, reject) => {
      const cmd: PendingCommand = {
        id,
        command,
        oob,
        startedAt: this.clock.now(),
        timer: undefined,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      cmd.timer = this.clock.setTimeout(() => this.onCommandTimeout(cmd, timeoutMs), timeoutMs);
      this.inFlight.add(cmd);
      this.logger.debug({ command, id, oob }, 'QMP command sent');
      conn.send(line);
    });
  }

  /**
   * Resolve when the session is ready (or unhealthy, i.e. connected), waiting through redials.
   * Rejects on timeout, on close, and when disconnected with reconnect disabled (nothing would dial).
   */
  waitUntilReady(timeoutMs: number = this.connectTimeoutMs): Promise<void> {
    if (this.statusValue === 'ready' || this.statusValue === 'unhealthy') return Promise.resolve();
    if (this.statusValue === 'closed') return Promise.reject(new QmpClosedError());
    if (this.statusValue === 'disconnected') {
      return Promise.reject(new QmpDisconnectedError(`QMP ${this.addressText} is disconnected and reconnect is disabled; call connect()`));
    }
    return this.waitFor<void>(
      timeoutMs,
      () => new QmpTimeoutError('waitUntilReady', timeoutMs, `QMP ${this.addressText} not ready within ${timeoutMs} ms (status ${this.statusValue})`),
      (done, fail) => {
        const onStatus = (change: QmpStatusChange) => {
          if (change.to === 'ready') done();
          else if (change.to === 'disconnected') {
            fail(new QmpDisconnectedError(`QMP ${this.addressText} disconnected: ${change.reason}`, { cause: change.error }));
          }
        };
        this.on('status', onStatus);
        return () => this.off('status', onStatus);
      },
    );
  }

  /** Resolve with the next event of this name (passing `filter`) that arrives from now on. */
  waitForEvent(name: string, opts: WaitForEventOptions = {}): Promise<QmpEvent> {
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    if (this.statusValue === 'closed') return Promise.reject(new QmpClosedError());
    return this.waitFor<QmpEvent>(
      timeoutMs,
      () => new QmpTimeoutError(`event ${name}`, timeoutMs, `no QMP event ${name} within ${timeoutMs} ms`),
      (done) => {
        const onEvent = (ev: QmpEvent) => {
          if (ev.event === name && (!opts.filter || opts.filter(ev))) done(ev);
        };
        this.on('event', onEvent);
        return () => this.off('event', onEvent);
      },
    );
  }

  /**
   * End everything: in-flight commands and waiters reject with QmpClosedError, timers are cleared,
   * the socket is destroyed. Resolves when the socket has closed. Idempotent; final.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.setStatus('closed', 'close() called');
    this.clock.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    for (const cmd of this.inFlight.drain()) {
      this.settle(cmd, new QmpClosedError(`QMP client closed before ${cmd.command} got its reply`));
    }
    for (const w of [...this.waiters]) w.reject(new QmpClosedError());
    const conn = this.conn;
    this.conn = undefined;
    conn?.destroy(new QmpClosedError());
    this.closing = conn ? conn.closed : Promise.resolve();
    return this.closing;
  }

  // ---- connection lifecycle ----

  private dial(): Promise<void> {
    if (this.attempt) return this.attempt;
    const conn: QmpConnection = new QmpConnection(
      {
        address: this.address,
        connectTimeoutMs: this.connectTimeoutMs,
        maxLineBytes: this.maxLineBytes,
        clock: this.clock,
        logger: this.logger,
      },
      {
        onMessage: (msg, receivedAt) => this.onMessage(conn, msg, receivedAt),
        onClose: (err) => this.onConnectionClosed(conn, err),
      },
    );
    this.conn = conn;
    const retry = this.backoff?.attempts ?? 0;
    this.setStatus('connecting', retry > 0 ? `redial (attempt ${retry + 1})` : 'connect');
    const attempt = conn.open().then(
      () => {
        this.attempt = undefined;
        if (this.statusValue === 'closed') throw new QmpClosedError('QMP client closed while connecting');
        const greeting = conn.greeting;
        if (!greeting) throw new Error('unreachable: handshake done without greeting');
        this.backoff?.reset();
        this.session = { version: greeting.version, capabilities: greeting.capabilities, oob: conn.oob };
        this.setStatus('ready', `connected to QEMU ${formatQemuVersion(greeting.version)}${conn.oob ? ' (oob)' : ''}`);
        this.fire('ready', this.session);
      },
      (err: Error) => {
        this.attempt = undefined;
        if (this.conn === conn) this.conn = undefined;
        if (this.statusValue === 'closed') throw new QmpClosedError('QMP client closed while connecting');
        const failure = err instanceof QmpError ? err : new QmpConnectError(this.addressText, err.message, { cause: err });
        this.fire('clientError', failure);
        this.afterLoss(failure.message, failure);
        throw failure;
      },
    );
    this.attempt = attempt;
    return attempt;
  }

  private onConnectionClosed(conn: QmpConnection, err: Error | undefined): void {
    if (conn !== this.conn) return; // close() already dealt with it
    this.conn = undefined;
    for (const cmd of this.inFlight.drain()) {
      const why = err ? `: ${err.message}` : '';
      this.settle(cmd, new QmpDisconnectedError(`connection to QMP ${this.addressText} lost before ${cmd.command} got its reply${why}`, { cause: err }));
    }
    if (err instanceof QmpProtocolError) this.fire('clientError', err);
    if (this.statusValue === 'closed') return;
    this.afterLoss(err ? `connection lost: ${err.message}` : 'connection closed by QEMU', err);
  }

  /** After a lost session or a failed dial: schedule the next dial, or stop if redialling is off. */
  private afterLoss(reason: string, err: Error | undefined): void {
    if (!this.backoff) {
      this.setStatus('disconnected', reason, err);
      return;
    }
    const delayMs = this.backoff.next();
    this.setStatus('reconnecting', reason, err, delayMs);
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      // Failures are reported through status/clientError and schedule the next try themselves.
      this.dial().catch(() => undefined);
    }, delayMs);
  }

  // ---- incoming messages ----

  private onMessage(conn: QmpConnection, msg: QmpServerMessage, receivedAt: number): void {
    if (conn !== this.conn) return;
    if (msg.kind === 'event') {
      this.onEvent(msg, receivedAt);
      return;
    }
    if (msg.kind === 'greeting') return; // QmpConnection rejects a second greeting itself
    if (!msg.hasId) {
      const what = msg.kind === 'error' ? `error ${msg.errorClass}: ${msg.desc}` : 'return';
      conn.destroy(new QmpProtocolError('missing-id', `reply without id (${what}); every command we send has one`));
      return;
    }
    const id = typeof msg.id === 'number' ? msg.id : undefined;
    const cmd = id === undefined ? undefined : this.inFlight.take(id);
    if (cmd) {
      this.settle(cmd, msg.kind === 'return' ? { value: msg.value } : new QmpCommandError(cmd.command, msg.errorClass, msg.desc));
      if (!cmd.oob) this.markHealthy(cmd.command);
      return;
    }
    const late = id === undefined ? undefined : this.inFlight.takeLate(id);
    if (late) {
      const elapsedMs = receivedAt - late.startedAt;
      this.logger.info({ command: late.command, id: late.id, elapsedMs }, 'late QMP reply after timeout, discarded');
      this.fire('lateReply', { command: late.command, id: late.id, oob: late.oob, elapsedMs, ok: msg.kind === 'return' });
      if (!late.oob) this.markHealthy(late.command);
      return;
    }
    conn.destroy(new QmpProtocolError('unknown-id', `reply for id ${preview(JSON.stringify(msg.id) ?? '')}, which was never sent or was already answered`));
  }

  private onEvent(msg: Extract<QmpServerMessage, { kind: 'event' }>, receivedAt: number): void {
    const ev: QmpEvent = {
      event: msg.event,
      data: msg.data,
      timestamp: msg.timestamp,
      timestampMs: timestampToMs(msg.timestamp),
      receivedAt,
    };
    // With oob enabled QEMU may drop an in-band command when its queue is full, and says so here.
    if (ev.event === 'COMMAND_DROPPED' && typeof ev.data.id === 'number') {
      const cmd = this.inFlight.take(ev.data.id);
      if (cmd) this.settle(cmd, new QmpCommandDroppedError(cmd.command, String(ev.data.reason ?? 'unknown')));
    }
    this.fire('event', ev);
  }

  /**
   * Only a reply to an in-band command proves QEMU's main loop is running again: with oob the
   * monitor has its own thread, so events and oob replies can flow while the main loop is stuck.
   */
  private markHealthy(command: string): void {
    if (this.statusValue === 'unhealthy') this.setStatus('ready', `QEMU answered ${command} again`);
  }

  // ---- commands ----

  private onCommandTimeout(cmd: PendingCommand, timeoutMs: number): void {
    cmd.timer = undefined;
    if (!this.inFlight.take(cmd.id)) return;
    this.inFlight.rememberLate(cmd);
    const err = new QmpTimeoutError(cmd.command, timeoutMs);
    this.settle(cmd, err);
    if (this.statusValue === 'ready') {
      this.setStatus('unhealthy', `${cmd.command} got no reply within ${timeoutMs} ms`, err);
      this.fire('unhealthy', err);
    }
  }

  private settle(cmd: PendingCommand, outcome: { value: unknown } | Error): void {
    this.clock.clearTimeout(cmd.timer);
    cmd.timer = undefined;
    const base = { command: cmd.command, id: cmd.id, oob: cmd.oob, durationMs: this.clock.now() - cmd.startedAt };
    if (outcome instanceof Error) {
      this.record(base, outcome);
      cmd.reject(outcome);
    } else {
      this.record(base, undefined);
      cmd.resolve(outcome.value);
    }
  }

  private record(base: Omit<QmpCommandRecord, 'ok'>, err: Error | undefined): void {
    const rec: QmpCommandRecord = { ...base, ok: err === undefined };
    if (err) {
      rec.code = err instanceof QmpError ? err.code : err.name;
      if (err instanceof QmpCommandError) rec.errorClass = err.errorClass;
    }
    this.fire('command', rec);
  }

  // ---- plumbing ----

  /** The one place status changes: every transition is logged and emitted. */
  private setStatus(to: QmpClientStatus, reason: string, error?: Error, delayMs?: number): void {
    const from = this.statusValue;
    if (from === 'closed' || (from === to && delayMs === undefined)) return;
    this.statusValue = to;
    const change: QmpStatusChange = { from, to, reason, at: this.clock.now() };
    if (error) change.error = error;
    if (delayMs !== undefined) change.delayMs = delayMs;
    const fields = { from, to, reason, ...(delayMs !== undefined && { delayMs }), ...(error && { err: error }) };
    if (to === 'unhealthy' || to === 'disconnected' || (to === 'reconnecting' && from !== 'connecting')) {
      this.logger.warn(fields, `QMP ${from} -> ${to}`);
    } else if (to === 'reconnecting' || to === 'connecting') {
      // Redial loops during a long outage would flood the log at warn.
      this.logger.debug(fields, `QMP ${from} -> ${to}`);
    } else {
      this.logger.info(fields, `QMP ${from} -> ${to}`);
    }
    this.fire('status', change);
  }

  /** Emit without letting a subscriber's exception unwind into socket handling and corrupt our state. */
  private fire<K extends keyof QmpClientEvents>(name: K, ...args: QmpClientEvents[K]): void {
    try {
      (this.emit as (event: K, ...a: QmpClientEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      this.logger.error({ err, event: name }, 'a QmpClient event listener threw; ignored');
    }
  }

  private waitFor<T>(
    timeoutMs: number,
    onTimeout: () => Error,
    subscribe: (done: (value: T) => void, fail: (err: Error) => void) => () => void,
  ): Promise<T> {
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      return Promise.reject(new RangeError(`timeoutMs must be a positive finite number, got ${timeoutMs}`));
    }
    return new Promise<T>((resolve, reject) => {
      let unsubscribe: () => void = () => undefined;
      const finish = () => {
        this.clock.clearTimeout(timer);
        unsubscribe();
        this.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        reject: (err) => {
          finish();
          reject(err);
        },
      };
      const timer = this.clock.setTimeout(() => waiter.reject(onTimeout()), timeoutMs);
      this.waiters.add(waiter);
      unsubscribe = subscribe(
        (value) => {
          finish();
          resolve(value);
        },
        (err) => waiter.reject(err),
      );
    });
  }
}
