/**
 * Helpers for the heartbeat link tests: starting HeartbeatLinks with teardown, waiting for
 * events, a raw protocol peer that can misbehave on purpose, and a TCP proxy that can cut,
 * freeze or record a path. Not a test file itself (tap runs *.test.ts only).
 */
import { randomBytes } from 'node:crypto';
import { once, type EventEmitter } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { deriveConnectionKey, newNonce, newSessionId } from '../../src/heartbeat/auth.js';
import { encodeFrame, FrameReader, sealFrame, type DecodedFrame } from '../../src/heartbeat/frame.js';
import { HeartbeatLinks, type HeartbeatLinksEvents, type HeartbeatLinksOptions } from '../../src/heartbeat/links.js';
import type { HealthSummary, Message } from '../../src/heartbeat/messages.js';
import { PROTOCOL_VERSION } from '../../src/heartbeat/protocol.js';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export const key = (): Buffer => randomBytes(32);

export const summaryOf = (role: string): (() => HealthSummary) => () => ({
  role,
  coloMode: role === 'primary' ? 'primary' : 'secondary',
  qemuReachable: true,
  agentState: 'healthy',
});

/** A started HeartbeatLinks with fast test timings, closed at teardown. */
export async function startLinks(
  t: Teardown,
  opts: Partial<HeartbeatLinksOptions> & Pick<HeartbeatLinksOptions, 'nodeName'>,
): Promise<HeartbeatLinks> {
  const role = opts.role ?? 'primary';
  const links = new HeartbeatLinks({
    role,
    intervalMs: 25,
    helloTimeoutMs: 1000,
    reconnectInitialMs: 20,
    reconnectMaxMs: 100,
    closeGraceMs: 100,
    summary: summaryOf(role),
    ...opts,
  } as HeartbeatLinksOptions);
  t.teardown(() => links.close({ goodbye: false }));
  await links.start();
  return links;
}

export function portOf(links: HeartbeatLinks, i = 0): number {
  const a = links.listenAddresses()[i];
  if (a === undefined) throw new Error('not listening');
  return a.port;
}

/** Resolves with the first `event` whose payload satisfies `pred`; rejects after timeoutMs. */
export function waitEvent<K extends keyof HeartbeatLinksEvents>(
  links: HeartbeatLinks,
  event: K,
  pred: (arg: HeartbeatLinksEvents[K][0]) => boolean = () => true,
  timeoutMs = 5000,
): Promise<HeartbeatLinksEvents[K][0]> {
  return new Promise((resolve, reject) => {
    const em = links as unknown as EventEmitter;
    const timer = setTimeout(() => {
      em.off(event, on);
      reject(new Error(`timed out waiting for ${String(event)}`));
    }, timeoutMs);
    const on = (arg: HeartbeatLinksEvents[K][0]): void => {
      if (!pred(arg)) return;
      clearTimeout(timer);
      em.off(event, on);
      resolve(arg);
    };
    em.on(event, on);
  });
}

/** Records every payload of `event` into an array. */
export function record<K extends keyof HeartbeatLinksEvents>(links: HeartbeatLinks, event: K): Array<HeartbeatLinksEvents[K][0]> {
  const out: Array<HeartbeatLinksEvents[K][0]> = [];
  (links as unknown as EventEmitter).on(event, (arg: HeartbeatLinksEvents[K][0]) => out.push(arg));
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `pred()` holds; throws after timeoutMs so a broken test fails fast. */
export async function until(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Opens a plain TCP socket to 127.0.0.1:port, destroyed at teardown. */
export async function rawSocket(t: Teardown, port: number, localAddress?: string): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  await once(s, 'connect');
  return s;
}

/** Resolves when the socket is closed (by either side); rejects after timeoutMs. */
export function closedOf(s: Socket, timeoutMs = 5000): Promise<void> {
  if (s.destroyed && s.closed) return Promise.resolve();
  s.resume(); // unread data (the listener's HELLO) would hold back 'end' and so 'close'
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('socket not closed in time')), timeoutMs);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * A hand-driven protocol peer (dialer side). It knows the key, so it can complete a handshake
 * and then misbehave in ways a real agent never would: floods, foreign sessions, unknown types.
 */
export class RawPeer {
  readonly session = newSessionId();
  readonly nonce = newNonce();
  readonly frames: DecodedFrame[] = [];
  connKey: Buffer | undefined;
  private seq = 0;
  private readonly reader: FrameReader;
  private waiters: Array<() => void> = [];

  private constructor(
    readonly socket: Socket,
    private readonly sharedKey: Buffer,
    readonly name: string,
  ) {
    this.reader = new FrameReader({ key: sharedKey });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(chunk);
        for (let f = this.reader.next(); f !== undefined; f = this.reader.next()) {
          this.frames.push(f);
          if (f.message.type === 'hello') {
            this.connKey = deriveConnectionKey(sharedKey, this.nonce, Buffer.from(f.message.body.nonce, 'hex'));
            this.reader.setKey(this.connKey);
          }
          for (const w of this.waiters) w();
        }
      } catch {
        socket.destroy();
      }
    });
  }

  static async connect(t: Teardown, port: number, sharedKey: Buffer, o: { name?: string; localAddress?: string } = {}): Promise<RawPeer> {
    return new RawPeer(await rawSocket(t, port, o.localAddress), sharedKey, o.name ?? `raw-${randomBytes(3).toString('hex')}`);
  }

  /** A frame from this peer; defaults: our session, next seq, connection key once known. */
  frame(message: Message, o: { session?: string; seq?: number; key?: Buffer; epoch?: number } = {}): Buffer {
    return encodeFrame({
      session: o.session ?? this.session,
      seq: o.seq ?? ++this.seq,
      message,
      epoch: o.epoch ?? 0,
      key: o.key ?? this.connKey ?? this.sharedKey,
    });
  }

  /** A sealed frame with an arbitrary type number (under the connection key). */
  rawFrame(typeCode: number, payload: Buffer): Buffer {
    return sealFrame({ version: PROTOCOL_VERSION, typeCode, session: this.session, seq: ++this.seq, payload }, this.connKey ?? this.sharedKey);
  }

  hello(): Buffer {
    return this.frame({
      type: 'hello',
      body: { name: this.name, role: 'secondary', session: this.session, protocolVersion: PROTOCOL_VERSION, nonce: this.nonce.toString('hex') },
    });
  }

  heartbeat(): Buffer {
    return this.frame({ type: 'heartbeat', body: { sentAt: performance.now(), summary: summaryOf('secondary')() } });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** HELLO both ways, then our first keyed HEARTBEAT: the listener sees the link come up. */
  async handshake(): Promise<void> {
    this.write(this.hello());
    await this.waitFrame((f) => f.message.type === 'hello');
    this.write(this.heartbeat());
  }

  waitFrame(pred: (f: DecodedFrame) => boolean, timeoutMs = 5000): Promise<DecodedFrame> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const f = this.frames.find(pred);
        if (f === undefined) return false;
        this.waiters = this.waiters.filter((w) => w !== waiter);
        clearTimeout(timer);
        resolve(f);
        return true;
      };
      const waiter = (): void => void check();
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('timed out waiting for a frame'));
      }, timeoutMs);
      if (!check()) this.waiters.push(waiter);
    });
  }

  /** True once the listener ACKed one of our heartbeats: the listener is serving us. */
  async acked(): Promise<boolean> {
    await this.waitFrame((f) => f.message.type === 'ack');
    return true;
  }
}

/** A TCP forwarder between a dialer and a listener, to cut, freeze or record one path. */
export class Proxy {
  /** Bytes the dialer sent, per proxied connection. */
  readonly recorded: Buffer[][] = [];
  private readonly pairs = new Set<[Socket, Socket]>();
  private readonly frozen: Socket[] = [];
  private refusing = false;
  private constructor(
    private readonly server: Server,
    private readonly targetPort: number,
  ) {
    server.on('connection', (client) => this.onConnection(client));
  }

  static async start(t: Teardown, targetPort: number): Promise<Proxy> {
    const server = createServer();
    const p = new Proxy(server, targetPort);
    t.teardown(() => p.close());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return p;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Destroys every proxied connection; `refuse` also closes new ones at once (a cut path). */
  cut(refuse = true): void {
    this.refusing = refuse;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  restore(): void {
    this.refusing = false;
  }

  /**
   * Stops forwarding without closing anything, and stops passing closes on: both ends see a
   * silent, half-open path (new connections are refused until restore()).
   */
  freeze(): void {
    this.refusing = true;
    for (const pair of this.pairs) {
      for (const s of pair) {
        s.pause();
        s.removeAllListeners('data');
        s.removeAllListeners('close');
        this.frozen.push(s);
      }
    }
    this.pairs.clear();
  }

  close(): Promise<void> {
    this.cut();
    for (const s of this.frozen) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private onConnection(client: Socket): void {
    client.on('error', () => {});
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: this.targetPort });
    upstream.on('error', () => {});
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const rec: Buffer[] = [];
    this.recorded.push(rec);
    client.on('data', (d: Buffer) => {
      rec.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', end);
    upstream.on('close', end);
  }
}
