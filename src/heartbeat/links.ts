/**
 * HeartbeatLinks: the agent's heartbeat links to its peer, over plain TCP (node:net).
 *
 * Listens on zero or more HOST:PORT addresses and dials every configured peer address (one per
 * network path), redialling with capped backoff. Every authenticated connection, dialled or
 * accepted, is bidirectional: each side sends HEARTBEAT every intervalMs and ACKs each one it
 * receives, so both sides measure RTT and both see the other's health summary on every path.
 *
 * Link names: the configured peer address (as written) for dialled connections, `in:<remote
 * address>` for accepted ones. Two established links never share a name: while `in:<addr>` is
 * up, another accepted link from the same address is `in:<addr>#2` (and so on). To keep paths
 * apart by name, give each dialled path its own source address (PeerAddress.localAddress).
 *
 * Hostile or broken input never throws out of here: each case ends that one connection with a
 * `rejected` event and a rate-limited warning, and everything else keeps running.
 */
import { EventEmitter } from 'node:events';
import { createServer, connect, isIP, type Server, type Socket } from 'node:net';
import { silentLogger, type Logger } from '../log.js';
import { Backoff } from '../util/backoff.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { RateLimitedLog } from '../util/rate-limited-log.js';
import { formatHostPort, parseHostPort, type HostPort } from './address.js';
import { INSECURE_KEY, newSessionId, sharedKeyProblem } from './auth.js';
import {
  HeartbeatConnection,
  type ConnectionContext,
  type ConnectionHooks,
  type ConnectionSettings,
  type ConnectionState,
  type LinkDirection,
  type LinkDownReason,
} from './connection.js';
import { FrameRejectedError, HeartbeatOptionsError, InvalidMessageError, TooManyConnectionsError, type RejectReason } from './errors.js';
import { DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './frame.js';
import { encodePayload, isValidNodeName, isValidToken, type HealthSummary, type ReservedBody } from './messages.js';
import { PeerSessions } from './peer-sessions.js';
import { MIN_BODY_BYTES, type ReservedTypeName } from './protocol.js';

export interface PeerAddress {
  /** HOST:PORT of the peer's heartbeat listener; also the link name. */
  address: string;
  /** Source address to bind, to pin this path to one interface. */
  localAddress?: string;
}

export interface HeartbeatLinksOptions {
  nodeName: string;
  role: string;
  /** HOST:PORT to listen on (port 0 picks a free port; see listenAddresses()). */
  listen?: string | string[];
  peers?: Array<string | PeerAddress>;
  /** The shared key (readKeyFile). Exactly one of key / insecure. */
  key?: Buffer;
  /**
   * No secret: frames are MAC'd with a fixed all-zero key (corruption is still caught, attackers
   * are not). A keyed peer refuses such frames with `auth-mismatch`; an insecure node reports a
   * keyed peer's frames as `bad-mac`. The two modes never talk to each other.
   */
  insecure?: boolean;
  intervalMs: number;
  /** Connect + both HELLOs + first keyed frame. Default 2000. */
  helloTimeoutMs?: number;
  /** Drop a connection after this long without a valid frame. Default max(5 * intervalMs, 1000). */
  idleTimeoutMs?: number;
  /** Largest accepted length prefix. Default 16384. */
  maxFrameBytes?: number;
  /** Accepted connections (any state) per remote address. Default 4. */
  maxConnectionsPerSource?: number;
  /** Accepted connections in total. Default 64. */
  maxConnections?: number;
  /** Redial backoff. Defaults 100 / 5000 ms. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /** Bytes queued to a peer that is not reading before we drop it. Default 64 KiB. */
  maxPendingWriteBytes?: number;
  /** Frames per second (and burst) allowed per connection. Default max(100, 20 * 1000 / intervalMs). */
  maxFramesPerSecond?: number;
  /** Replay window size in frames (multiple of 32). Default 1024. */
  replayWindow?: number;
  /** How long close() waits for a peer to finish before destroying. Default 500. */
  closeGraceMs?: number;
  /** The health summary sent with each heartbeat. Called once per heartbeat per link. */
  summary: () => HealthSummary;
  /** Our arbitration epoch, carried in every frame. Default: always 0. */
  epoch?: () => number;
  clock?: Clock;
  logger?: Logger;
  /** Backoff jitter source (tests). */
  random?: () => number;
}

export interface LinkUpEvent {
  link: string;
  direction: LinkDirection;
  remoteAddress: string;
  peerName: string;
  peerRole: string;
  peerSession: string;
}
export interface LinkDownEvent {
  link: string;
  reason: LinkDownReason;
  peerName: string | undefined;
  peerSession: string | undefined;
}
export interface HeartbeatEvent {
  link: string;
  peerName: string;
  peerSession: string;
  seq: number;
  /** The peer's monotonic clock at send time (only meaningful to the peer). */
  sentAt: number;
  summary: HealthSummary;
  /** Our clock.now() at receipt. */
  receivedAt: number;
  /** The highest epoch the peer's frames carried on this link. */
  epoch: number;
}
export interface RttEvent {
  link: string;
  rttMs: number;
  /** Our send time of the acknowledged heartbeat (our clock). */
  sentAt: number;
  peerName: string;
}
/** A peer's frames carry a higher epoch than before on this link. */
export interface PeerEpochEvent {
  link: string;
  peerName: string;
  peerSession: string;
  epoch: number;
}
export interface PeerSessionEvent {
  kind: 'new' | 'changed';
  name: string;
  role: string;
  session: string;
  previous?: string;
}
export interface GoodbyeEvent {
  link: string;
  peerName: string;
  peerSession: string;
  reason: string;
}
export interface RejectedEvent {
  reason: RejectReason;
  /** Link name when the connection had one (always, except for refused accepts). */
  link?: string;
  remoteAddress?: string;
  message: string;
}
/** One heartbeat round went out: the established links it was written to (for metrics). */
export interface SentEvent {
  sentAt: number;
  links: string[];
}
export interface PeerMessageEvent {
  link: string;
  peerName: string;
  peerSession: string;
  type: ReservedTypeName;
  body: ReservedBody;
  /** The sender's epoch carried by this frame's link (highest seen on it). */
  epoch: number;
}

export type HeartbeatLinksEvents = {
  heartbeat: [HeartbeatEvent];
  rtt: [RttEvent];
  sent: [SentEvent];
  'link-up': [LinkUpEvent];
  'link-down': [LinkDownEvent];
  'peer-session': [PeerSessionEvent];
  goodbye: [GoodbyeEvent];
  rejected: [RejectedEvent];
  message: [PeerMessageEvent];
  epoch: [PeerEpochEvent];
};

export interface LinkInfo {
  link: string;
  direction: LinkDirection;
  state: ConnectionState;
  peerName?: string;
  peerSession?: string;
  rttMs?: number;
}

interface DialSlot {
  link: string;
  target: HostPort;
  localAddress?: string;
  backoff: Backoff;
  conn?: HeartbeatConnection;
  timer?: TimerHandle;
}

const positive = (v: number | undefined, what: string): void => {
  if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new HeartbeatOptionsError(`${what} must be a positive number`);
};

export class HeartbeatLinks extends EventEmitter<HeartbeatLinksEvents> {
  /** Our session id: random per instance (per agent process). */
  readonly session = newSessionId();

  private readonly opts: HeartbeatLinksOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly rateLog: RateLimitedLog;
  private readonly settings: ConnectionSettings;
  private readonly ctx: ConnectionContext;
  private readonly hooks: ConnectionHooks;
  private readonly listenAddrs: HostPort[];
  private readonly slots: DialSlot[];
  private readonly servers: Server[] = [];
  private readonly conns = new Set<HeartbeatConnection>();
  private readonly perSource = new Map<string, number>();
  private accepted = 0;
  private seq = 0;
  private lastSummary: HealthSummary | undefined;
  private roundTimer: TimerHandle | undefined;
  private started = false;
  private closing = false;
  private closePromise: Promise<void> | undefined;

  constructor(opts: HeartbeatLinksOptions) {
    super();
    this.opts = opts;
    if (!isValidNodeName(opts.nodeName)) throw new HeartbeatOptionsError(`nodeName ${JSON.stringify(opts.nodeName)} is not a valid name`);
    if (!isValidToken(opts.role)) throw new HeartbeatOptionsError(`role ${JSON.stringify(opts.role)} is not a lower-case token`);
    if ((opts.key !== undefined) === (opts.insecure === true)) {
      throw new HeartbeatOptionsError('give exactly one of key and insecure');
    }
    if (opts.key !== undefined) {
      const problem = sharedKeyProblem(opts.key);
      if (problem !== undefined) throw new HeartbeatOptionsError(`heartbeat key is ${problem === 'short' ? 'too short' : 'all zero bytes'}`);
    }
    positive(opts.intervalMs, 'intervalMs');
    for (const [k, v] of Object.entries({
      helloTimeoutMs: opts.helloTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs,
      maxConnectionsPerSource: opts.maxConnectionsPerSource,
      maxConnections: opts.maxConnections,
      reconnectInitialMs: opts.reconnectInitialMs,
      reconnectMaxMs: opts.reconnectMaxMs,
      maxPendingWriteBytes: opts.maxPendingWriteBytes,
      maxFramesPerSecond: opts.maxFramesPerSecond,
      closeGraceMs: opts.closeGraceMs,
    })) {
      positive(v, k);
    }
    const maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < MIN_MAX_FRAME_BYTES) {
      throw new HeartbeatOptionsError(`maxFrameBytes must be an integer >= ${MIN_MAX_FRAME_BYTES}`);
    }
    this.listenAddrs = (opts.listen === undefined ? [] : [opts.listen].flat()).map((a) => parseHostPort(a, true));
    const peers = (opts.peers ?? []).map((p) => (typeof p === 'string' ? { address: p } : p));
    if (this.listenAddrs.length === 0 && peers.length === 0) throw new HeartbeatOptionsError('nothing to listen on and no peers to dial');
    if (new Set(peers.map((p) => p.address)).size !== peers.length) throw new HeartbeatOptionsError('duplicate peer address');

    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'heartbeat' });
    this.rateLog = new RateLimitedLog(this.log, { clock: this.clock });
    this.settings = {
      intervalMs: opts.intervalMs,
      helloTimeoutMs: opts.helloTimeoutMs ?? 2000,
      idleTimeoutMs: 0,
      maxFrameBytes,
      maxPendingWriteBytes: opts.maxPendingWriteBytes ?? 64 * 1024,
      maxFramesPerSecond: 0,
      closeGraceMs: opts.closeGraceMs ?? 500,
    };
    this.deriveIntervalSettings();
    const backoffOpts = {
      initialMs: opts.reconnectInitialMs ?? 100,
      maxMs: opts.reconnectMaxMs ?? 5000,
      ...(opts.random ? { random: opts.random } : {}),
    };
    if (backoffOpts.maxMs < backoffOpts.initialMs) throw new HeartbeatOptionsError('reconnectMaxMs must be >= reconnectInitialMs');
    for (const p of peers) {
      if (p.localAddress !== undefined && isIP(p.localAddress) === 0) {
        throw new HeartbeatOptionsError(`peer ${p.address}: localAddress must be an IP address`);
      }
    }
    this.slots = peers.map((p) => ({
      link: p.address,
      target: parseHostPort(p.address),
      ...(p.localAddress !== undefined ? { localAddress: p.localAddress } : {}),
      backoff: new Backoff(backoffOpts),
    }));

    this.ctx = {
      clock: this.clock,
      logger: this.log,
      // A private copy: the caller may wipe or reuse its Buffer.
      sharedKey: opts.key !== undefined ? Buffer.from(opts.key) : INSECURE_KEY,
      insecure: opts.insecure === true,
      nodeName: opts.nodeName,
      role: opts.role,
      session: this.session,
      nextSeq: () => ++this.seq,
      sessions: new PeerSessions(opts.replayWindow !== undefined ? { windowSize: opts.replayWindow } : {}),
      settings: this.settings,
      summary: () => this.currentSummary(),
      epoch: opts.epoch ?? (() => 0),
    };
    this.hooks = this.makeHooks();
  }

  /** Binds every listen address, then starts dialling. Rejects (and cleans up) if a bind fails. */
  async start(): Promise<void> {
    if (this.started || this.closing) throw new HeartbeatOptionsError('start() called twice or after close()');
    this.started = true;
    if (this.opts.insecure) this.log.warn('heartbeat links run INSECURE: frames are MAC\'d with an all-zero key');
    try {
      for (const addr of this.listenAddrs) {
        const server = createServer((socket) => this.onAccept(socket));
        server.on('error', (err) => this.log.error({ err }, 'heartbeat listener error'));
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: addr.host, port: addr.port }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        this.servers.push(server);
        if (this.closing) {
          server.close(); // close() ran while we were binding
          return;
        }
        this.log.info({ listen: formatHostPort(this.boundAddress(server) ?? addr) }, 'heartbeat listening');
      }
      this.scheduleRound();
    } catch (err) {
      await this.close({ goodbye: false });
      throw err;
    }
    for (const slot of this.slots) this.dial(slot);
  }

  /** The addresses actually bound (with the real port when 0 was asked for). */
  listenAddresses(): HostPort[] {
    return this.servers.map((s) => this.boundAddress(s)).filter((a): a is HostPort => a !== undefined);
  }

  links(): LinkInfo[] {
    return [...this.conns].map((c) => {
      const p = c.peer;
      const info: LinkInfo = { link: c.link, direction: c.direction, state: c.state };
      if (p) {
        info.peerName = p.name;
        info.peerSession = p.session;
      }
      if (c.lastRttMs !== undefined) info.rttMs = c.lastRttMs;
      return info;
    });
  }

  /**
   * Sends a reserved-type message on every established link; returns how many. Throws
   * InvalidMessageError for a body that cannot be sent.
   */
  send(type: ReservedTypeName, body: ReservedBody): number {
    return this.sendWhere(type, body, () => true);
  }

  /** Like send(), on the established links to one peer only (by node name). */
  sendTo(peerName: string, type: ReservedTypeName, body: ReservedBody): number {
    return this.sendWhere(type, body, (c) => c.peer?.name === peerName);
  }

  private sendWhere(type: ReservedTypeName, body: ReservedBody, pick: (c: HeartbeatConnection) => boolean): number {
    const { payload } = encodePayload({ type, body }, this.ctx.epoch());
    // A peer with the same settings would refuse a larger frame as `oversize` and drop the link.
    if (MIN_BODY_BYTES + payload.length > this.settings.maxFrameBytes) {
      throw new InvalidMessageError(`${type} body too large: ${payload.length} bytes of payload, maxFrameBytes ${this.settings.maxFrameBytes}`);
    }
    let n = 0;
    for (const c of this.conns) if (pick(c) && c.sendMessage(type, body)) n++;
    return n;
  }

  /** Changes the heartbeat interval (and the defaults derived from it) on live links. */
  updateInterval(ms: number): void {
    positive(ms, 'intervalMs');
    this.settings.intervalMs = ms;
    this.deriveIntervalSettings();
    for (const c of this.conns) c.settingsChanged();
    // A round now announces the new interval before any longer gap than the peer expects (as BFD
    // announces a slower Desired Min TX before it slows down); the next rounds follow at the new pace.
    if (this.roundTimer !== undefined) this.round();
    this.log.info({ intervalMs: ms }, 'heartbeat interval changed');
  }

  /**
   * Stops listening and dialling and closes every connection: established ones get a GOODBYE
   * with `goodbye` as the reason (default "shutdown"; false sends none). Idempotent.
   */
  close(opts: { goodbye?: string | false } = {}): Promise<void> {
    this.closePromise ??= this.doClose(opts.goodbye === undefined ? 'shutdown' : opts.goodbye);
    return this.closePromise;
  }

  private async doClose(goodbye: string | false): Promise<void> {
    this.closing = true;
    this.clock.clearTimeout(this.roundTimer);
    this.roundTimer = undefined;
    for (const slot of this.slots) {
      this.clock.clearTimeout(slot.timer);
      slot.timer = undefined;
    }
    const waits: Promise<unknown>[] = this.servers.map(
      (s) => new Promise<void>((resolve) => s.close(() => resolve())),
    );
    for (const c of this.conns) {
      c.close(goodbye === false ? undefined : goodbye);
      waits.push(c.closed);
    }
    await Promise.all(waits);
  }

  // --- internals -----------------------------------------------------------------------------

  /**
   * One heartbeat round every intervalMs, sent on every link with the same `sentAt` and summary:
   * the receiver counts a round once however many links carried it, so a second path adds
   * redundancy without doubling the beat rate its failure detector sees.
   */
  private scheduleRound(): void {
    this.clock.clearTimeout(this.roundTimer);
    this.roundTimer = this.clock.setTimeout(() => this.round(), this.settings.intervalMs);
  }

  /** One heartbeat on every link, then the next round one interval later. */
  private round(): void {
    if (this.closing) return;
    const summary = this.currentSummary();
    if (summary) {
      const sentAt = this.clock.now();
      const links: string[] = [];
      for (const c of this.conns) if (c.sendRoundHeartbeat(sentAt, summary) && c.established) links.push(c.link);
      if (links.length > 0) this.fire('sent', { sentAt, links });
    }
    this.scheduleRound();
  }

  private deriveIntervalSettings(): void {
    const i = this.settings.intervalMs;
    this.settings.idleTimeoutMs = this.opts.idleTimeoutMs ?? Math.max(5 * i, 1000);
    this.settings.maxFramesPerSecond = this.opts.maxFramesPerSecond ?? Math.max(100, Math.ceil(20_000 / i));
  }

  private boundAddress(server: Server): HostPort | undefined {
    const a = server.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  private currentSummary(): HealthSummary | undefined {
    try {
      // The interval is the links' fact, not the caller's: stamped here from what the rounds use.
      const s = { ...this.opts.summary(), intervalMs: this.settings.intervalMs };
      encodePayload({ type: 'heartbeat', body: { sentAt: 0, summary: s } }, 0); // validates
      this.lastSummary = s;
    } catch (err) {
      this.rateLog.log('error', 'summary', { err }, 'health summary callback failed or returned an invalid summary; resending the last good one');
    }
    return this.lastSummary;
  }

  /**
   * `in:<remoteAddress>`, or with `#2`, `#3`... while another established link holds that name
   * (several paths from one source address). Never tears down the other connection: both are
   * genuine, and a stale one goes by idle timeout or when its session is retired.
   */
  private uniqueLinkName(conn: HeartbeatConnection): string {
    const base = `in:${conn.remoteAddress}`;
    const taken = new Set([...this.conns].filter((c) => c !== conn && c.established).map((c) => c.link));
    let name = base;
    for (let i = 2; taken.has(name); i++) name = `${base}#${i}`;
    return name;
  }

  private dial(slot: DialSlot): void {
    slot.timer = undefined;
    if (this.closing) return;
    let socket: Socket;
    try {
      socket = connect({
        host: slot.target.host,
        port: slot.target.port,
        ...(slot.localAddress !== undefined ? { localAddress: slot.localAddress } : {}),
      });
    } catch (err) {
      this.rateLog.log('error', `dial:${slot.link}`, { link: slot.link, err }, 'heartbeat dial failed');
      slot.timer = this.clock.setTimeout(() => this.dial(slot), slot.backoff.next());
      return;
    }
    const conn = new HeartbeatConnection(socket, { link: slot.link, direction: 'dial', remoteAddress: slot.target.host }, this.ctx, this.hooks);
    slot.conn = conn;
    this.conns.add(conn);
    conn.start();
  }

  private onAccept(socket: Socket): void {
    socket.on('error', () => {}); // errors are handled by the connection; this covers refused sockets
    const addr = socket.remoteAddress;
    if (this.closing || addr === undefined) {
      socket.destroy();
      return;
    }
    const n = this.perSource.get(addr) ?? 0;
    const max = this.opts.maxConnectionsPerSource ?? 4;
    const total = this.opts.maxConnections ?? 64;
    if (n >= max || this.accepted >= total) {
      const err = new TooManyConnectionsError(n >= max ? `more than ${max} connections from ${addr}` : `more than ${total} connections in total`);
      socket.destroy();
      this.reportRejected(err, undefined, addr);
      return;
    }
    this.perSource.set(addr, n + 1);
    this.accepted++;
    const conn = new HeartbeatConnection(socket, { link: `in:${addr}`, direction: 'accept', remoteAddress: addr }, this.ctx, this.hooks);
    this.conns.add(conn);
    conn.start();
  }

  private reportRejected(err: FrameRejectedError, link: string | undefined, remoteAddress: string | undefined): void {
    this.rateLog.warn(
      `rejected:${err.reason}`,
      { reason: err.reason, ...(link !== undefined ? { link } : {}), remoteAddress },
      `heartbeat connection rejected: ${err.message}`,
    );
    const ev: RejectedEvent = { reason: err.reason, message: err.message };
    if (link !== undefined) ev.link = link;
    if (remoteAddress !== undefined) ev.remoteAddress = remoteAddress;
    this.fire('rejected', ev);
  }

  /** Emits without letting a listener's exception into socket handling. */
  private fire<K extends keyof HeartbeatLinksEvents>(event: K, ...args: HeartbeatLinksEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: HeartbeatLinksEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'heartbeat event listener threw');
    }
  }

  private makeHooks(): ConnectionHooks {
    return {
      established: (conn, change) => {
        const peer = conn.peer!;
        if (change.kind !== 'same') {
          const ev: PeerSessionEvent = { kind: change.kind, name: change.name, role: change.role, session: change.session };
          if (change.previous !== undefined) ev.previous = change.previous;
          this.log.info({ peer: change.name, session: change.session, previous: change.previous }, change.kind === 'new' ? 'heartbeat peer session' : 'heartbeat peer restarted (new session)');
          this.fire('peer-session', ev);
        }
        if (change.previous !== undefined) {
          for (const other of this.conns) {
            if (other !== conn && other.peer?.session === change.previous) other.destroy('peer-restarted');
          }
        }
        if (conn.direction === 'accept') conn.rename(this.uniqueLinkName(conn));
        const slot = this.slots.find((s) => s.conn === conn);
        slot?.backoff.reset();
        this.log.info({ link: conn.link, peer: peer.name, direction: conn.direction }, 'heartbeat link up');
        this.fire('link-up', {
          link: conn.link,
          direction: conn.direction,
          remoteAddress: conn.remoteAddress,
          peerName: peer.name,
          peerRole: peer.role,
          peerSession: peer.session,
        });
      },
      heartbeat: (conn, seq, body, receivedAt) => {
        const peer = conn.peer!;
        this.fire('heartbeat', {
          link: conn.link,
          peerName: peer.name,
          peerSession: peer.session,
          seq,
          sentAt: body.sentAt,
          summary: body.summary,
          receivedAt,
          epoch: conn.peerEpoch ?? 0,
        });
      },
      rtt: (conn, rttMs, sentAt) => this.fire('rtt', { link: conn.link, rttMs, sentAt, peerName: conn.peer!.name }),
      epoch: (conn, epoch) => {
        const peer = conn.peer!;
        this.fire('epoch', { link: conn.link, peerName: peer.name, peerSession: peer.session, epoch });
      },
      goodbye: (conn, reason) => {
        const peer = conn.peer!;
        this.log.info({ link: conn.link, peer: peer.name, reason }, 'heartbeat peer said goodbye');
        this.fire('goodbye', { link: conn.link, peerName: peer.name, peerSession: peer.session, reason });
      },
      message: (conn, type, body) => {
        const peer = conn.peer!;
        this.fire('message', { link: conn.link, peerName: peer.name, peerSession: peer.session, type, body, epoch: conn.peerEpoch ?? 0 });
      },
      rejected: (conn, err) => this.reportRejected(err, conn.link, conn.remoteAddress),
      closed: (conn, reason, wasEstablished) => {
        this.conns.delete(conn);
        if (conn.direction === 'accept') {
          this.accepted--;
          const n = (this.perSource.get(conn.remoteAddress) ?? 1) - 1;
          if (n > 0) this.perSource.set(conn.remoteAddress, n);
          else this.perSource.delete(conn.remoteAddress);
        }
        if (wasEstablished) {
          const peer = conn.peer;
          this.log.info({ link: conn.link, reason }, 'heartbeat link down');
          this.fire('link-down', { link: conn.link, reason, peerName: peer?.name, peerSession: peer?.session });
        } else if (conn.direction === 'dial' && (reason === 'connect-failed' || reason === 'connect-timeout')) {
          this.rateLog.log('warn', `dial:${conn.link}`, { link: conn.link, reason }, 'heartbeat peer unreachable; redialling');
        }
        const slot = this.slots.find((s) => s.conn === conn);
        if (slot !== undefined) {
          slot.conn = undefined;
          if (!this.closing) {
            const delay = slot.backoff.next();
            slot.timer = this.clock.setTimeout(() => this.dial(slot), delay);
          }
        }
      },
    };
  }
}
