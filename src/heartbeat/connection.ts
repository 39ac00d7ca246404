/**
 * One authenticated heartbeat connection (dialled or accepted; both behave the same once open).
 *
 * States: connecting (dial only) -> hello -> confirming -> established -> closed.
 *   hello:       we sent our HELLO (shared key) and wait for the peer's.
 *   confirming:  both HELLOs seen; both directions switched to the per-connection key; we sent our
 *                first HEARTBEAT under it. The first valid frame from the peer under that key
 *                proves it holds the key *now* (our fresh nonce is in the key), so only then is the
 *                link up. A replayed HELLO therefore never makes a link come up.
 *   established: HEARTBEAT every intervalMs, ACK every HEARTBEAT, idle timeout armed.
 * helloTimeoutMs bounds connecting + hello + confirming. Any bad input destroys the connection
 * after one `rejected` hook call; nothing here throws into the socket's event loop.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { deriveConnectionKey, INSECURE_KEY, newNonce } from './auth.js';
import {
  BadMacError,
  FrameRejectedError,
  ForeignSessionError,
  HelloTimeoutError,
  MalformedFrameError,
  RateLimitError,
  SelfConnectionError,
  UnexpectedMessageError,
  type RejectReason,
} from './errors.js';
import { encodeFrame, FrameReader, type DecodedFrame } from './frame.js';
import { FrameRateLimiter } from './frame-rate-limiter.js';
import type { HeartbeatBody, HealthSummary, Message, ReservedBody } from './messages.js';
import type { PeerSessionChange, PeerSessions } from './peer-sessions.js';
import { PROTOCOL_VERSION, type ReservedTypeName } from './protocol.js';

export type LinkDirection = 'dial' | 'accept';
export type ConnectionState = 'connecting' | 'hello' | 'confirming' | 'established' | 'closed';

/** Why a connection ended: a rejection reason, or one of these. */
export type LinkDownReason =
  | RejectReason
  | 'peer-closed' // the peer closed the TCP connection
  | 'goodbye' // the peer said GOODBYE
  | 'idle-timeout' // nothing valid arrived for idleTimeoutMs (half-open or hung peer)
  | 'write-backlog' // the peer stopped reading: more than maxPendingWriteBytes queued
  | 'socket-error'
  | 'connect-failed'
  | 'connect-timeout'
  | 'local-close' // we shut down
  | 'peer-restarted' // the peer's session changed; connections of the old one are dropped
  | 'internal-error';

/** Live settings, read at each use so that HeartbeatLinks.updateInterval() applies at once. */
export interface ConnectionSettings {
  intervalMs: number;
  helloTimeoutMs: number;
  idleTimeoutMs: number;
  maxFrameBytes: number;
  maxPendingWriteBytes: number;
  maxFramesPerSecond: number;
  closeGraceMs: number;
}

export interface ConnectionContext {
  clock: Clock;
  logger: Logger;
  sharedKey: Buffer;
  insecure: boolean;
  nodeName: string;
  role: string;
  /** Our session id. */
  session: string;
  /** The process-wide frame counter: one sequence across all links. */
  nextSeq(): number;
  sessions: PeerSessions;
  settings: Readonly<ConnectionSettings>;
  /** The health summary for the next heartbeat, or undefined to skip it. */
  summary(): HealthSummary | undefined;
  /** Our arbitration epoch, carried in every frame we send. */
  epoch(): number;
}

export interface ConnectionHooks {
  established(conn: HeartbeatConnection, change: PeerSessionChange): void;
  heartbeat(conn: HeartbeatConnection, seq: number, body: HeartbeatBody, receivedAt: number): void;
  /** An ACK came back: `sentAt` is our send time of the acknowledged heartbeat (leases count from it). */
  rtt(conn: HeartbeatConnection, rttMs: number, sentAt: number): void;
  /** The peer's frames carry a higher epoch than any before on this connection (HELLO's included, reported once established). */
  epoch(conn: HeartbeatConnection, epoch: number): void;
  goodbye(conn: HeartbeatConnection, reason: string): void;
  message(conn: HeartbeatConnection, type: ReservedTypeName, body: ReservedBody): void;
  rejected(conn: HeartbeatConnection, err: FrameRejectedError): void;
  closed(conn: HeartbeatConnection, reason: LinkDownReason, wasEstablished: boolean): void;
}

export interface PeerInfo {
  name: string;
  role: string;
  session: string;
}

export interface ConnectionIdentity {
  /** Link name: the configured peer address, or `in:<remoteAddress>`. */
  link: string;
  direction: LinkDirection;
  remoteAddress: string;
}

export class HeartbeatConnection {
  readonly direction: LinkDirection;
  readonly remoteAddress: string;
  /** Resolves once the socket is closed and the `closed` hook has run. */
  readonly closed: Promise<void>;
  lastRttMs: number | undefined;
  /** The highest epoch the peer's frames carried on this connection. */
  peerEpoch: number | undefined;

  private st: ConnectionState;
  private linkName: string;
  private readonly reader: FrameReader;
  private readonly nonce = newNonce();
  private sendKey: Buffer;
  private peerInfo: (PeerInfo & { helloSeq: number }) | undefined;
  private handshakeTimer: TimerHandle | undefined;
  private idleTimer: TimerHandle | undefined;
  private graceTimer: TimerHandle | undefined;
  private lastValidAt = 0;
  private closeReason: LinkDownReason | undefined;
  private wasEstablished = false;
  /** Set once we decided to end: no further input is processed. */
  private closing = false;
  private readonly limiter: FrameRateLimiter;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: Socket,
    id: ConnectionIdentity,
    private readonly ctx: ConnectionContext,
    private readonly hooks: ConnectionHooks,
  ) {
    this.linkName = id.link;
    this.direction = id.direction;
    this.remoteAddress = id.remoteAddress;
    this.st = id.direction === 'dial' ? 'connecting' : 'hello';
    this.sendKey = ctx.sharedKey;
    // With a real key, also try the insecure key on a failed MAC, to name the misconfiguration.
    this.reader = new FrameReader({
      maxFrameBytes: ctx.settings.maxFrameBytes,
      key: ctx.sharedKey,
      probeKey: ctx.insecure ? undefined : INSECURE_KEY,
    });
    const rate = ctx.settings.maxFramesPerSecond;
    this.limiter = new FrameRateLimiter(rate, rate, ctx.clock);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Link name: the configured peer address, or `in:<remoteAddress>` (see HeartbeatLinks). */
  get link(): string {
    return this.linkName;
  }

  /** The owner may disambiguate an accepted link's name when it comes up. */
  rename(link: string): void {
    this.linkName = link;
  }

  get state(): ConnectionState {
    return this.st;
  }

  get peer(): PeerInfo | undefined {
    const p = this.peerInfo;
    return p && { name: p.name, role: p.role, session: p.session };
  }

  get established(): boolean {
    return this.st === 'established';
  }

  /** Wires the socket up; call once, after the owner has registered the connection. */
  start(): void {
    const s = this.socket;
    // Small latency-critical frames: Nagle + delayed ACK would hold an ACK frame back ~40 ms.
    s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('end', () => this.onEnd());
    s.on('error', (err: NodeJS.ErrnoException) => {
      this.ctx.logger.debug({ link: this.link, code: err.code }, 'heartbeat socket error');
      this.closeReason ??= this.st === 'connecting' ? 'connect-failed' : 'socket-error';
    });
    s.on('close', () => this.onClose());
    this.armHandshakeTimer();
    if (this.st === 'connecting') {
      s.once('connect', () => {
        if (this.closing) return;
        this.st = 'hello';
        this.armHandshakeTimer(); // the connect time does not eat into the hello time
        this.sendHello();
      });
    } else {
      this.sendHello();
    }
  }

  /** Sends a reserved-type message; false if the link is not established. */
  sendMessage(type: ReservedTypeName, body: ReservedBody): boolean {
    if (this.st !== 'established') return false;
    return this.send({ type, body } as Message);
  }

  /** Graceful close: GOODBYE (once keyed, if a reason is given), FIN, destroy after closeGraceMs. */
  close(goodbyeReason?: string): void {
    if (this.closing) return;
    if (this.st !== 'established' && this.st !== 'confirming') {
      this.destroy('local-close'); // nothing to say yet, and a dial in progress need not finish
      return;
    }
    // In `confirming` we already hold the connection key and the peer may already count the
    // link as up, so it gets a GOODBYE too.
    if (goodbyeReason !== undefined) {
      this.send({ type: 'goodbye', body: { reason: goodbyeReason } });
    }
    this.closing = true;
    this.closeReason ??= 'local-close';
    this.clearTimers();
    this.socket.end();
    this.graceTimer = this.ctx.clock.setTimeout(() => this.socket.destroy(), this.ctx.settings.closeGraceMs);
  }

  /** Immediate close with a reason (first reason wins). */
  destroy(reason: LinkDownReason): void {
    this.closeReason ??= reason;
    this.closing = true;
    this.clearTimers();
    this.socket.destroy();
  }

  /** Settings changed (interval reload): re-arm the timers that depend on them. */
  settingsChanged(): void {
    if (this.closing) return;
    const rate = this.ctx.settings.maxFramesPerSecond;
    this.limiter.update(rate, rate);
    if (this.st === 'established') this.armIdleTimer();
  }

  // --- input ---------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    try {
      this.reader.push(chunk);
      for (;;) {
        const f = this.reader.next();
        if (f === undefined) break;
        if (!this.limiter.take()) {
          throw new RateLimitError(`more than ${this.ctx.settings.maxFramesPerSecond} frames per second`);
        }
        this.onFrame(f);
        if (this.closing) break;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private onEnd(): void {
    if (this.closing) return;
    try {
      this.reader.end();
    } catch (err) {
      this.fail(err);
    }
  }

  private onFrame(f: DecodedFrame): void {
    if (this.st === 'hello') {
      this.onHello(f);
      return;
    }
    const peer = this.peerInfo;
    if (peer === undefined) throw new UnexpectedMessageError(`frame in state ${this.st}`);
    if (f.session !== peer.session) {
      throw new ForeignSessionError(`frame from session ${f.session}, connection belongs to ${peer.session}`);
    }
    if (f.message.type === 'hello') throw new UnexpectedMessageError('second HELLO on one connection');
    const now = this.ctx.clock.now();
    if (this.st === 'confirming') {
      const change = this.ctx.sessions.establish(peer.name, peer.role, peer.session, peer.helloSeq);
      this.st = 'established';
      this.wasEstablished = true;
      this.ctx.clock.clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      this.lastValidAt = now;
      this.armIdleTimer();
      this.hooks.established(this, change);
      if (this.closing) return;
      if (this.peerEpoch !== undefined) this.hooks.epoch(this, this.peerEpoch);
      if (this.closing) return;
    }
    if (this.peerEpoch === undefined || f.epoch > this.peerEpoch) {
      this.peerEpoch = f.epoch;
      this.hooks.epoch(this, f.epoch);
      if (this.closing) return;
    }
    this.ctx.sessions.accept(peer.session, f.seq);
    this.lastValidAt = now;
    const m = f.message;
    switch (m.type) {
      case 'heartbeat':
        this.send({ type: 'ack', body: { seq: f.seq, sentAt: m.body.sentAt } });
        this.hooks.heartbeat(this, f.seq, m.body, now);
        break;
      case 'ack': {
        const rtt = now - m.body.sentAt;
        // sentAt is our own clock reading echoed back; a value from the future is a peer bug.
        if (rtt >= 0) {
          this.lastRttMs = rtt;
          this.hooks.rtt(this, rtt, m.body.sentAt);
        }
        break;
      }
      case 'goodbye':
        this.hooks.goodbye(this, m.body.reason);
        this.destroy('goodbye');
        break;
      default:
        this.hooks.message(this, m.type, m.body);
    }
  }

  private onHello(f: DecodedFrame): void {
    const m = f.message;
    if (m.type !== 'hello') throw new UnexpectedMessageError(`${m.type} before HELLO`);
    const h = m.body;
    if (h.session !== f.session) throw new MalformedFrameError('HELLO session differs from its frame header');
    if (h.session === this.ctx.session) throw new SelfConnectionError('this connection leads back to ourselves');
    this.ctx.sessions.checkHello(f.session, f.seq);
    const peerNonce = Buffer.from(h.nonce, 'hex');
    const connKey =
      this.direction === 'dial'
        ? deriveConnectionKey(this.ctx.sharedKey, this.nonce, peerNonce)
        : deriveConnectionKey(this.ctx.sharedKey, peerNonce, this.nonce);
    this.reader.setKey(connKey);
    this.sendKey = connKey;
    this.peerInfo = { name: h.name, role: h.role, session: h.session, helloSeq: f.seq };
    this.peerEpoch = f.epoch;
    this.st = 'confirming';
    // The first frame under the connection key, our proof of the key; later ones come in rounds.
    const summary = this.ctx.summary();
    if (summary) this.send({ type: 'heartbeat', body: { sentAt: this.ctx.clock.now(), summary } });
  }

  private fail(err: unknown): void {
    if (this.closing) return;
    if (err instanceof FrameRejectedError) {
      let e = err;
      if (e instanceof BadMacError && this.ctx.insecure && this.st === 'hello') {
        e = new BadMacError(`${e.message} (this node runs insecure; does the peer have a key?)`);
      }
      this.hooks.rejected(this, e);
      this.destroy(e.reason);
      return;
    }
    this.ctx.logger.error({ link: this.link, err }, 'heartbeat connection failed internally');
    this.destroy('internal-error');
  }

  private onClose(): void {
    this.clearTimers();
    this.ctx.clock.clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.closing = true;
    this.st = 'closed';
    try {
      this.hooks.closed(this, this.closeReason ?? 'peer-closed', this.wasEstablished);
    } finally {
      this.resolveClosed();
    }
  }

  // --- output --------------------------------------------------------------------------------

  private sendHello(): void {
    this.send({
      type: 'hello',
      body: {
        name: this.ctx.nodeName,
        role: this.ctx.role,
        session: this.ctx.session,
        protocolVersion: PROTOCOL_VERSION,
        nonce: this.nonce.toString('hex'),
      },
    });
  }

  /**
   * One heartbeat of a round (HeartbeatLinks sends every round on all links with the same
   * `sentAt`, so the receiver can count a round once however many links carried it).
   * A connection still in its handshake sends nothing: its proof-of-key heartbeat went already.
   * Returns whether the heartbeat was written (for the heartbeats-sent metric).
   */
  sendRoundHeartbeat(sentAt: number, summary: HealthSummary): boolean {
    if (this.st !== 'confirming' && this.st !== 'established') return false;
    try {
      return this.send({ type: 'heartbeat', body: { sentAt, summary } });
    } catch (err) {
      this.fail(err);
      return false;
    }
  }

  private send(msg: Message): boolean {
    if (this.closing || this.socket.destroyed) return false;
    const frame = encodeFrame({ session: this.ctx.session, seq: this.ctx.nextSeq(), message: msg, epoch: this.ctx.epoch(), key: this.sendKey });
    this.socket.write(frame);
    if (this.socket.writableLength > this.ctx.settings.maxPendingWriteBytes) {
      this.destroy('write-backlog');
      return false;
    }
    return true;
  }

  // --- timers --------------------------------------------------------------------------------

  private armHandshakeTimer(): void {
    this.ctx.clock.clearTimeout(this.handshakeTimer);
    this.handshakeTimer = this.ctx.clock.setTimeout(() => {
      this.handshakeTimer = undefined;
      if (this.closing) return;
      if (this.st === 'connecting') this.destroy('connect-timeout');
      else this.fail(new HelloTimeoutError(`no complete handshake within ${this.ctx.settings.helloTimeoutMs} ms`));
    }, this.ctx.settings.helloTimeoutMs);
  }

  private armIdleTimer(): void {
    this.ctx.clock.clearTimeout(this.idleTimer);
    const due = this.lastValidAt + this.ctx.settings.idleTimeoutMs;
    this.idleTimer = this.ctx.clock.setTimeout(() => {
      this.idleTimer = undefined;
      if (this.closing) return;
      if (this.ctx.clock.now() - this.lastValidAt >= this.ctx.settings.idleTimeoutMs) this.destroy('idle-timeout');
      else this.armIdleTimer();
    }, Math.max(1, due - this.ctx.clock.now()));
  }

  private clearTimers(): void {
    for (const t of [this.handshakeTimer, this.idleTimer]) this.ctx.clock.clearTimeout(t);
    this.handshakeTimer = this.idleTimer = undefined;
  }
}
