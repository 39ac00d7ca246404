/**
 * A fault-injecting TCP proxy, for integration tests, benchmarks and the demo's partition drill.
 *
 * It sits between two heartbeat agents or between two QEMU processes: it listens on a loopback
 * address, dials the target for every accepted connection and copies bytes both ways. Faults are
 * switched at run time, per direction where that makes sense:
 *
 * - `delay(ms, jitterMs, dir)`: every chunk waits ms (+ up to jitterMs) before it is forwarded.
 *   Order is kept: a chunk is never released before the one read ahead of it, so under jitter a
 *   burst drifts towards ms + jitterMs (head-of-line blocking, as on one TCP stream).
 * - `drop(p, dir)`: each chunk is discarded with probability p, from a seeded RNG. A chunk is
 *   whatever one socket read returned, not a frame, so dropping CORRUPTS a framed stream (half a
 *   frame can go missing). That is intended: it is for robustness tests of the decoders. To lose
 *   whole frames reliably, make the sender write one frame per write and pace the writes.
 * - `blackhole()`: a silent partition. Nothing is forwarded in either direction, no FIN and no
 *   RST reach anyone, and both TCP connections stay open. The proxy stops reading, so the
 *   senders' kernel buffers fill as they would behind a dead link; bytes already read are held.
 *   New connections are accepted, but the target is not dialled until heal(), just as a SYN
 *   would not get through. On heal() the held bytes flow in order, as TCP retransmission would
 *   deliver them. To lose the bytes instead, use drop(1).
 * - `cut()`: every current connection is reset (RST on both sides) and every new one is reset
 *   as soon as it is accepted, until heal().
 * - `halfOpen(dir)`: the proxy stops reading the sending side of dir, like a peer that stopped
 *   calling read(): the sender's writes queue up in its kernel and then in its writableLength.
 * - `stopAccepting()`: the listener closes (new connections are refused by the kernel, as by a
 *   host whose service is gone); open connections keep whatever faults are in force. Final: a
 *   proxy that stopped accepting never listens again (its port is free for someone else).
 * - `heal()`: all faults off; connections that survived a blackhole or halfOpen carry on.
 *
 * Directions are 'c2s' (bytes from the client that connected to the proxy, towards the target),
 * 's2c' (the target's replies) and 'both'.
 *
 * Delays use the injectable Clock, so a FakeClock holds delayed chunks until advance().
 */
import net from 'node:net';
import { ColoAgentError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import { mulberry32 } from './prng.js';

export type Direction = 'c2s' | 's2c';
export type DirectionSpec = Direction | 'both';

const DIRECTIONS: readonly Direction[] = ['c2s', 's2c'];

export class FaultProxyError extends ColoAgentError {}

/** The proxy could not bind its listening address. */
export class FaultProxyListenError extends FaultProxyError {
  constructor(host: string, port: number, cause: unknown) {
    super('ERR_FAULT_PROXY_LISTEN', `fault proxy could not listen on ${host}:${port}`, { cause });
  }
}

/** A fault was switched on a proxy that was already closed (a test ordering bug). */
export class FaultProxyClosedError extends FaultProxyError {
  constructor() {
    super('ERR_FAULT_PROXY_CLOSED', 'fault proxy is closed');
  }
}

export interface FaultProxyOptions {
  /** Where every accepted connection is forwarded to. */
  targetPort: number;
  /** Default 127.0.0.1. */
  targetHost?: string;
  /** Default 127.0.0.1. */
  listenHost?: string;
  /** Default 0: the kernel picks a free port; read it from `proxy.port`. */
  listenPort?: number;
  /** Seed for drop and jitter decisions; default random. Read it back from `proxy.seed`. */
  seed?: number;
  /**
   * Bytes a direction of one connection may hold (delayed or blackholed) before the proxy stops
   * reading that side, so a long delay applies back-pressure instead of buffering without end.
   * Default 4 MiB.
   */
  maxQueuedBytes?: number;
  clock?: Clock;
  logger?: Logger;
  /** Shown in log lines, to tell several proxies apart. */
  name?: string;
}

export interface DirectionStats {
  forwardedBytes: number;
  forwardedChunks: number;
  droppedBytes: number;
  droppedChunks: number;
}

export interface FaultProxyStats {
  /** Connections accepted and proxied (or held, under blackhole). */
  accepted: number;
  /** Connections reset on arrival because of cut() or close(). */
  refused: number;
  /** Connections currently open. */
  active: number;
  c2s: DirectionStats;
  s2c: DirectionStats;
}

/** The faults in force, as a plain snapshot (for logs and assertions). */
export interface FaultState {
  delay: Record<Direction, { ms: number; jitterMs: number }>;
  drop: Record<Direction, number>;
  halfOpen: Record<Direction, boolean>;
  blackholed: boolean;
  cut: boolean;
}

function cleanFaults(): FaultState {
  return {
    delay: { c2s: { ms: 0, jitterMs: 0 }, s2c: { ms: 0, jitterMs: 0 } },
    drop: { c2s: 0, s2c: 0 },
    halfOpen: { c2s: false, s2c: false },
    blackholed: false,
    cut: false,
  };
}

function emptyDirectionStats(): DirectionStats {
  return { forwardedBytes: 0, forwardedChunks: 0, droppedBytes: 0, droppedChunks: 0 };
}

function directionsOf(spec: DirectionSpec): readonly Direction[] {
  if (spec === 'both') return DIRECTIONS;
  if (spec === 'c2s' || spec === 's2c') return [spec];
  throw new RangeError(`direction must be 'c2s', 's2c' or 'both', got ${String(spec)}`);
}

/**
 * One independent stream per (connection, purpose), so the drops of connection 3 do not depend
 * on how its chunks interleaved with connection 2's: a run is reproducible from the seed as long
 * as each connection sees the same chunks.
 */
function deriveSeed(seed: number, connection: number, stream: number): number {
  let h = (seed ^ Math.imul(connection + 1, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** RST where the platform can (like a crashed peer or a firewall reject), else a plain destroy. */
function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  try {
    // resetAndDestroy() on a socket still connecting waits for the connect; we want it gone now.
    if (socket.connecting || typeof socket.resetAndDestroy !== 'function') socket.destroy();
    else socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

type Item =
  | { kind: 'data'; due: number; chunk: Buffer }
  | { kind: 'eof'; due: number }
  | { kind: 'abort'; due: number };

/** One direction of one connection: what was read and is waiting to be written. */
class PipeState {
  private items: Item[] = [];
  private head = 0;
  queuedBytes = 0;
  /** Due time of the last item queued; later items never get an earlier one (keeps order). */
  lastDue = -Infinity;
  timer: TimerHandle | undefined;
  waitingDrain = false;

  constructor(
    readonly dropRandom: () => number,
    readonly jitterRandom: () => number,
  ) {}

  push(item: Item): void {
    this.items.push(item);
    if (item.kind === 'data') this.queuedBytes += item.chunk.length;
  }

  peek(): Item | undefined {
    return this.items[this.head];
  }

  shift(): Item | undefined {
    const item = this.items[this.head];
    if (item === undefined) return undefined;
    this.head++;
    if (item.kind === 'data') this.queuedBytes -= item.chunk.length;
    // Array.shift() is O(n) on long queues; compact now and then instead.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.queuedBytes = 0;
  }
}

/** What a connection needs from its proxy; shared by reference so fault changes apply live. */
interface ProxyContext {
  readonly faults: FaultState;
  readonly stats: Record<Direction, DirectionStats>;
  readonly clock: Clock;
  readonly seed: number;
  readonly targetHost: string;
  readonly targetPort: number;
  readonly maxQueuedBytes: number;
  readonly log: Logger;
}

class ProxiedConnection {
  private upstream: net.Socket | undefined;
  private upstreamReady = false;
  private clientClosed = false;
  private upstreamClosed = false;
  private done = false;
  private readonly pipes: Record<Direction, PipeState>;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly client: net.Socket,
    readonly index: number,
    private readonly onDone: (conn: ProxiedConnection) => void,
  ) {
    const pipe = (dir: number) =>
      new PipeState(
        mulberry32(deriveSeed(ctx.seed, index, dir * 2)),
        mulberry32(deriveSeed(ctx.seed, index, dir * 2 + 1)),
      );
    this.pipes = { c2s: pipe(0), s2c: pipe(1) };
    client.setNoDelay(true);
    this.attach(client, 'c2s');
    client.on('close', (hadError) => this.onSocketClose('client', hadError));
    // Under a blackhole the target is dialled only on heal(): a partition lets no SYN through.
    if (!ctx.faults.blackholed) this.dial();
  }

  /** Re-evaluate after any fault change. */
  refresh(): void {
    if (this.done) return;
    if (!this.upstream && !this.ctx.faults.blackholed) this.dial();
    for (const dir of DIRECTIONS) this.pump(dir);
  }

  /** Tear down with RST on both sides (cut, close, or a peer that reset). */
  reset(): void {
    if (this.done) return;
    this.done = true;
    for (const dir of DIRECTIONS) {
      this.ctx.clock.clearTimeout(this.pipes[dir].timer);
      this.pipes[dir].timer = undefined;
      this.pipes[dir].clear();
    }
    resetSocket(this.client);
    if (this.upstream) resetSocket(this.upstream);
    this.onDone(this);
  }

  private dial(): void {
    const upstream = net.connect({
      host: this.ctx.targetHost,
      port: this.ctx.targetPort,
      allowHalfOpen: true,
    });
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', (err) => this.ctx.log.debug({ err, conn: this.index }, 'upstream error'));
    upstream.on('close', (hadError) => this.onSocketClose('upstream', hadError));
    upstream.once('connect', () => {
      if (this.done) return;
      this.upstreamReady = true;
      this.attach(upstream, 's2c');
      this.refresh();
    });
  }

  private source(dir: Direction): net.Socket | undefined {
    return dir === 'c2s' ? this.client : this.upstream;
  }

  private sink(dir: Direction): net.Socket | undefined {
    return dir === 'c2s' ? this.upstream : this.client;
  }

  /** Wire the reading side of a socket; the socket stays paused until updateReading() agrees. */
  private attach(socket: net.Socket, dir: Direction): void {
    if (dir === 'c2s') {
      socket.on('error', (err) => this.ctx.log.debug({ err, conn: this.index }, 'client error'));
    }
    socket.pause();
    socket.on('data', (chunk: Buffer) => this.ingress(dir, chunk));
    socket.on('end', () => this.enqueue(dir, { kind: 'eof' }));
  }

  private ingress(dir: Direction, chunk: Buffer): void {
    if (this.done) return;
    const p = this.ctx.faults.drop[dir];
    if (p > 0 && this.pipes[dir].dropRandom() < p) {
      this.ctx.stats[dir].droppedBytes += chunk.length;
      this.ctx.stats[dir].droppedChunks++;
      return;
    }
    this.enqueue(dir, { kind: 'data', chunk });
  }

  private enqueue(dir: Direction, item: { kind: 'data'; chunk: Buffer } | { kind: 'eof' } | { kind: 'abort' }): void {
    if (this.done) return;
    const pipe = this.pipes[dir];
    const { ms, jitterMs } = this.ctx.faults.delay[dir];
    const now = this.ctx.clock.now();
    const due = Math.max(pipe.lastDue, now + ms + (jitterMs > 0 ? pipe.jitterRandom() * jitterMs : 0));
    pipe.lastDue = due;
    pipe.push({ ...item, due });
    this.pump(dir);
  }

  /** Forward every item that is due, then arm one timer for the next. */
  private pump(dir: Direction): void {
    if (this.done) return;
    const pipe = this.pipes[dir];
    this.ctx.clock.clearTimeout(pipe.timer);
    pipe.timer = undefined;
    const sink = this.sink(dir);
    if (this.ctx.faults.blackholed || !this.upstreamReady || !sink) {
      this.updateReading(dir);
      return;
    }
    const now = this.ctx.clock.now();
    for (let item = pipe.peek(); item && item.due <= now; item = pipe.peek()) {
      pipe.shift();
      if (item.kind === 'abort') {
        // The sender vanished abruptly; its peer sees an RST after the bytes sent before it.
        this.reset();
        return;
      }
      if (sink.destroyed || sink.writableEnded) continue;
      if (item.kind === 'eof') {
        sink.end();
        continue;
      }
      this.ctx.stats[dir].forwardedBytes += item.chunk.length;
      this.ctx.stats[dir].forwardedChunks++;
      if (!sink.write(item.chunk) && !pipe.waitingDrain) {
        pipe.waitingDrain = true;
        sink.once('drain', () => {
          pipe.waitingDrain = false;
          this.updateReading(dir);
        });
      }
    }
    const next = pipe.peek();
    if (next) {
      pipe.timer = this.ctx.clock.setTimeout(() => {
        pipe.timer = undefined;
        this.pump(dir);
      }, Math.max(0, next.due - now));
    }
    this.updateReading(dir);
  }

  /** Read from a side only while nothing (fault, back-pressure, full queue) says stop. */
  private updateReading(dir: Direction): void {
    const source = this.source(dir);
    if (this.done || !source || source.destroyed) return;
    const pipe = this.pipes[dir];
    const f = this.ctx.faults;
    const want =
      this.upstreamReady &&
      !f.blackholed &&
      !f.halfOpen[dir] &&
      !pipe.waitingDrain &&
      pipe.queuedBytes < this.ctx.maxQueuedBytes;
    const flowing = source.readableFlowing === true;
    if (want && !flowing) source.resume();
    else if (!want && flowing) source.pause();
  }

  private onSocketClose(side: 'client' | 'upstream', hadError: boolean): void {
    if (side === 'client') this.clientClosed = true;
    else this.upstreamClosed = true;
    if (this.done) return;
    const socket = side === 'client' ? this.client : this.upstream;
    if (side === 'upstream' && !this.upstreamReady) {
      // The target refused or could not be reached: the client sees its connection reset.
      this.reset();
      return;
    }
    if (side === 'client' && !this.upstream) {
      // Gone before the target was ever dialled (blackhole): nothing to tell anyone.
      this.finish();
      return;
    }
    if (hadError || !socket?.readableEnded) {
      // An abrupt close. Queue it behind the bytes already read so delay and blackhole apply.
      this.enqueue(side === 'client' ? 'c2s' : 's2c', { kind: 'abort' });
      return;
    }
    if (this.clientClosed && this.upstreamClosed) this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    for (const dir of DIRECTIONS) {
      this.ctx.clock.clearTimeout(this.pipes[dir].timer);
      this.pipes[dir].clear();
    }
    if (this.upstream) resetSocket(this.upstream);
    this.onDone(this);
  }
}

export class FaultProxy {
  /** The bound listening address (the real port when listenPort was 0). */
  readonly host: string;
  readonly port: number;
  readonly seed: number;
  readonly targetHost: string;
  readonly targetPort: number;

  private readonly faults = cleanFaults();
  private readonly counters = { accepted: 0, refused: 0 };
  private readonly dirStats: Record<Direction, DirectionStats> = {
    c2s: emptyDirectionStats(),
    s2c: emptyDirectionStats(),
  };
  private readonly connections = new Set<ProxiedConnection>();
  private readonly log: Logger;
  private closing: Promise<void> | undefined;
  private unlistened: Promise<void> | undefined;
  private nextIndex = 0;
  private readonly ctx: ProxyContext;

  private constructor(
    private readonly server: net.Server,
    opts: FaultProxyOptions,
    seed: number,
    log: Logger,
  ) {
    const addr = server.address() as net.AddressInfo;
    this.host = addr.address;
    this.port = addr.port;
    this.seed = seed;
    this.targetHost = opts.targetHost ?? '127.0.0.1';
    this.targetPort = opts.targetPort;
    this.log = log;
    this.ctx = {
      faults: this.faults,
      stats: this.dirStats,
      clock: opts.clock ?? systemClock,
      seed,
      targetHost: this.targetHost,
      targetPort: this.targetPort,
      maxQueuedBytes: opts.maxQueuedBytes ?? 4 * 1024 * 1024,
      log,
    };
    server.on('connection', (socket) => this.onConnection(socket));
  }

  /** Bind the listening socket and start forwarding. */
  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    if (!Number.isInteger(opts.targetPort) || opts.targetPort <= 0 || opts.targetPort > 65535) {
      throw new RangeError(`targetPort must be 1..65535, got ${opts.targetPort}`);
    }
    const host = opts.listenHost ?? '127.0.0.1';
    const port = opts.listenPort ?? 0;
    const seed = (opts.seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
    const log = (opts.logger ?? silentLogger()).child({ component: 'fault-proxy', proxy: opts.name });
    // pauseOnConnect: the client is not read until its upstream exists (and faults allow it).
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new FaultProxyListenError(host, port, err));
      server.once('error', onError);
      server.listen({ host, port }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => log.warn({ err }, 'listener error'));
    const proxy = new FaultProxy(server, opts, seed, log);
    log.debug({ port: proxy.port, target: `${proxy.targetHost}:${proxy.targetPort}`, seed }, 'listening');
    return proxy;
  }

  /** `host:port` of the listener, ready for a peer's config. */
  get address(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Hold every chunk ms (+ a random 0..jitterMs) before forwarding it; order is kept. 0 clears. */
  delay(ms: number, jitterMs = 0, direction: DirectionSpec = 'both'): this {
    if (!(ms >= 0) || !Number.isFinite(ms) || !(jitterMs >= 0) || !Number.isFinite(jitterMs)) {
      throw new RangeError(`delay needs finite ms >= 0 and jitterMs >= 0, got ${ms}/${jitterMs}`);
    }
    return this.change({ op: 'delay', ms, jitterMs, direction }, () => {
      for (const d of directionsOf(direction)) this.faults.delay[d] = { ms, jitterMs };
    });
  }

  /** Discard each chunk with this probability (seeded). Corrupts framed streams; see the file comment. */
  drop(probability: number, direction: DirectionSpec = 'both'): this {
    if (!(probability >= 0 && probability <= 1)) {
      throw new RangeError(`drop probability must be within 0..1, got ${probability}`);
    }
    return this.change({ op: 'drop', probability, direction }, () => {
      for (const d of directionsOf(direction)) this.faults.drop[d] = probability;
    });
  }

  /** Silent partition: nothing passes either way, nothing is closed, nothing is refused. */
  blackhole(): this {
    return this.change({ op: 'blackhole' }, () => {
      this.faults.blackholed = true;
    });
  }

  /** Reset every connection now, and every new one on arrival, until heal(). */
  cut(): this {
    return this.change({ op: 'cut' }, () => {
      this.faults.cut = true;
      for (const conn of [...this.connections]) conn.reset();
    });
  }

  /** Stop reading the sender of this direction, so its writes back up. */
  halfOpen(direction: DirectionSpec): this {
    return this.change({ op: 'halfOpen', direction }, () => {
      for (const d of directionsOf(direction)) this.faults.halfOpen[d] = true;
    });
  }

  /** Every fault off; surviving connections resume, held bytes flow in order. */
  heal(): this {
    return this.change({ op: 'heal' }, () => {
      Object.assign(this.faults, cleanFaults());
    });
  }

  /**
   * Close the listener only: from now on the kernel refuses new connections (RST), while the open
   * ones keep the faults in force (blackhole them first for a partition). Resolves once the port
   * is released. Idempotent; close() still ends the open connections.
   */
  stopAccepting(): Promise<void> {
    if (!this.unlistened) {
      this.log.debug('stop accepting');
      this.unlistened = new Promise<void>((resolve) => {
        // The 'close' callback waits for every open connection to end; the port is free at once.
        this.server.close();
        resolve();
      });
    }
    return this.unlistened;
  }

  /** False once stopAccepting() or close() was called. */
  get accepting(): boolean {
    return !this.unlistened && !this.closing;
  }

  /** A snapshot of the counters. */
  stats(): FaultProxyStats {
    return {
      accepted: this.counters.accepted,
      refused: this.counters.refused,
      active: this.connections.size,
      c2s: { ...this.dirStats.c2s },
      s2c: { ...this.dirStats.s2c },
    };
  }

  /** A snapshot of the faults in force. */
  faultState(): FaultState {
    return structuredClone(this.faults);
  }

  /** Stop listening and reset every connection; resolves once the listener is closed. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.log.debug('closing');
      // After stopAccepting() the listener is already closed and the resets below end the rest.
      const closed = this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
      for (const conn of [...this.connections]) conn.reset();
      this.closing = closed;
    }
    return this.closing;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  private change(what: Record<string, unknown>, apply: () => void): this {
    if (this.closing) throw new FaultProxyClosedError();
    apply();
    this.log.debug(what, 'fault change');
    for (const conn of [...this.connections]) conn.refresh();
    return this;
  }

  private onConnection(socket: net.Socket): void {
    if (this.closing || this.faults.cut) {
      this.counters.refused++;
      socket.on('error', () => {});
      resetSocket(socket);
      return;
    }
    this.counters.accepted++;
    const conn = new ProxiedConnection(this.ctx, socket, this.nextIndex++, (c) => this.connections.delete(c));
    this.connections.add(conn);
  }
}

export function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  return FaultProxy.start(opts);
}

/**
 * Start one proxy per options entry, e.g. one per heartbeat link. All or nothing: if one fails
 * to bind, the ones that started are closed again and the first error is thrown.
 */
export async function startFaultProxies(list: readonly FaultProxyOptions[]): Promise<FaultProxy[]> {
  const results = await Promise.allSettled(list.map((opts) => FaultProxy.start(opts)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(
      results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.close()] : [])),
    );
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<FaultProxy>).value);
}

/** Close several proxies (test teardown). */
export async function closeFaultProxies(proxies: Iterable<FaultProxy>): Promise<void> {
  await Promise.all([...proxies].map((p) => p.close()));
}
