/**
 * One socket to one QMP monitor, from dial through greeting and capabilities negotiation to close.
 *
 * It knows nothing of commands in flight or reconnecting (that is QmpClient's job); it turns bytes
 * into classified messages and reports exactly one outcome: open() rejects if the handshake never
 * completes, otherwise onClose fires once when the socket goes away. Every failure, whether a
 * socket error, a protocol violation or our own destroy(), funnels through the socket's 'close'
 * event, so there is a single place where the connection ends.
 */
import net from 'node:net';
import type { Logger } from '../log.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { formatQmpAddress, type QmpAddress } from './address.js';
import { QmpCommandError, QmpConnectError, QmpError, QmpProtocolError } from './errors.js';
import { LineReader } from './line-reader.js';
import { encodeCommand, parseServerLine, preview, type QmpGreeting, type QmpServerMessage } from './messages.js';

export interface QmpConnectionOptions {
  address: QmpAddress;
  /** Budget for dial + greeting + qmp_capabilities reply together. */
  connectTimeoutMs: number;
  maxLineBytes: number;
  clock: Clock;
  logger: Logger;
}

export interface QmpConnectionHandlers {
  /** Every message after the handshake, in order, with Clock.now() taken when its bytes arrived. */
  onMessage(msg: QmpServerMessage, receivedAt: number): void;
  /** Once, when a connection whose handshake completed closes; `error` is undefined for a clean close by the peer. */
  onClose(error: Error | undefined): void;
}

/** A string id cannot collide with the numeric ids the client gives commands. */
const CAPABILITIES_ID = 'colo-agent:qmp_capabilities';

type State = 'greeting' | 'negotiating' | 'open' | 'closed';

export class QmpConnection {
  private socket: net.Socket | undefined;
  private readonly reader: LineReader;
  private readonly addressText: string;
  private state: State = 'greeting';
  private error: Error | undefined;
  private socketConnected = false;
  private greetingValue: QmpGreeting | undefined;
  private oobEnabled = false;
  private handshake: { resolve: () => void; reject: (err: Error) => void; timer: TimerHandle } | undefined;
  private resolveClosed!: () => void;
  /** Settles once the socket has fully closed, however that happened. */
  readonly closed: Promise<void>;

  constructor(
    private readonly opts: QmpConnectionOptions,
    private readonly handlers: QmpConnectionHandlers,
  ) {
    this.reader = new LineReader(opts.maxLineBytes);
    this.addressText = formatQmpAddress(opts.address);
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  /** Dial and negotiate. Rejects with QmpConnectError or QmpProtocolError; call at most once. */
  open(): Promise<void> {
    if (this.socket) return Promise.reject(new Error('QmpConnection.open() called twice'));
    const { address, clock, connectTimeoutMs } = this.opts;
    return new Promise<void>((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        const what = this.socketConnected
          ? 'no QMP greeting and capabilities reply' // accepted by the kernel, but QEMU is not talking
          : 'socket did not connect';
        const hint = this.socketConnected ? ' (QEMU frozen, or another client holds this single-client QMP socket?)' : '';
        this.destroy(new QmpConnectError(this.addressText, `${what} within ${connectTimeoutMs} ms${hint}`, { timedOut: true }));
      }, connectTimeoutMs);
      this.handshake = { resolve, reject, timer };
      const socket =
        address.kind === 'unix'
          ? net.createConnection({ path: address.path })
          : net.createConnection({ host: address.host, port: address.port });
      this.socket = socket;
      socket.on('connect', () => {
        this.socketConnected = true;
        if (address.kind === 'tcp') {
          socket.setNoDelay(true);
          socket.setKeepAlive(true, 10_000);
        }
      });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('error', (err) => {
        this.error ??= err;
      });
      socket.on('close', () => this.onSocketClose());
    });
  }

  get greeting(): QmpGreeting | undefined {
    return this.greetingValue;
  }

  /** Whether the oob capability was negotiated (offered by QEMU and enabled by us). */
  get oob(): boolean {
    return this.oobEnabled;
  }

  get isOpen(): boolean {
    return this.state === 'open' && this.error === undefined;
  }

  /** Write one encoded line. After a failure it is dropped: the close that follows settles its command. */
  send(line: string): void {
    if (this.state === 'closed' || this.error !== undefined || !this.socket) return;
    this.socket.write(line);
  }

  /** End the connection; `err` becomes the reason reported to open() or onClose. Idempotent. */
  destroy(err?: Error): void {
    if (this.state === 'closed') return;
    this.error ??= err;
    this.socket?.destroy();
  }

  private onData(chunk: Buffer): void {
    const receivedAt = this.opts.clock.now();
    try {
      this.reader.feed(chunk, (line) => this.onLine(line, receivedAt));
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  private onLine(line: string, receivedAt: number): void {
    // A line earlier in the same chunk may already have doomed the connection.
    if (this.state === 'closed' || this.error !== undefined) return;
    let msg: QmpServerMessage;
    try {
      msg = parseServerLine(line);
    } catch (err) {
      this.destroy(
        this.state === 'greeting'
          ? new QmpProtocolError('bad-greeting', `expected the QMP greeting, got ${preview(line)}`)
          : (err as Error),
      );
      return;
    }
    switch (this.state) {
      case 'greeting':
        return this.onGreeting(msg, line);
      case 'negotiating':
        return this.onNegotiationReply(msg, line);
      case 'open':
        if (msg.kind === 'greeting') {
          this.destroy(new QmpProtocolError('unexpected-message', `second greeting on an open connection: ${preview(line)}`));
          return;
        }
        this.handlers.onMessage(msg, receivedAt);
    }
  }

  private onGreeting(msg: QmpServerMessage, line: string): void {
    if (msg.kind !== 'greeting') {
      this.destroy(new QmpProtocolError('bad-greeting', `expected the QMP greeting, got ${preview(line)}`));
      return;
    }
    this.greetingValue = msg.greeting;
    // oob is the only capability we understand; enabling others could change the protocol under us.
    this.oobEnabled = msg.greeting.capabilities.includes('oob');
    this.state = 'negotiating';
    this.opts.logger.debug({ version: msg.greeting.version, capabilities: msg.greeting.capabilities }, 'QMP greeting');
    const args = this.oobEnabled ? { enable: ['oob'] } : undefined;
    this.socket?.write(encodeCommand('qmp_capabilities', args, CAPABILITIES_ID, false));
  }

  private onNegotiationReply(msg: QmpServerMessage, line: string): void {
    if (msg.kind === 'return' && msg.id === CAPABILITIES_ID) {
      this.state = 'open';
      const hs = this.handshake;
      this.handshake = undefined;
      if (hs) {
        this.opts.clock.clearTimeout(hs.timer);
        hs.resolve();
      }
      return;
    }
    if (msg.kind === 'error' && msg.id === CAPABILITIES_ID) {
      const cause = new QmpCommandError('qmp_capabilities', msg.errorClass, msg.desc);
      this.destroy(new QmpConnectError(this.addressText, `capabilities negotiation refused: ${msg.errorClass}: ${msg.desc}`, { cause }));
      return;
    }
    this.destroy(new QmpProtocolError('unexpected-message', `expected the qmp_capabilities reply, got ${preview(line)}`));
  }

  private onSocketClose(): void {
    if (this.state === 'closed') return;
    if (this.error === undefined) {
      try {
        this.reader.end();
      } catch (err) {
        this.error = err as Error;
      }
    }
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    const hs = this.handshake;
    this.handshake = undefined;
    this.resolveClosed();
    if (hs) {
      this.opts.clock.clearTimeout(hs.timer);
      hs.reject(this.handshakeFailure());
    } else if (wasOpen) {
      this.handlers.onClose(this.error);
    }
  }

  private handshakeFailure(): Error {
    const err = this.error;
    if (err instanceof QmpError) return err;
    if (err !== undefined) return new QmpConnectError(this.addressText, err.message, { cause: err });
    return new QmpConnectError(
      this.addressText,
      this.greetingValue ? 'closed by the peer during capabilities negotiation' : 'closed by the peer before the QMP greeting',
    );
  }
}
