/**
 * A scripted QMP server on a real socket, for unit tests of the QMP client (and anything that
 * drives one) without QEMU. It greets like QEMU 7.2, answers qmp_capabilities, and then leaves
 * every reply to the test: replies out of order, late, malformed, or never.
 */
import net from 'node:net';
import { join } from 'node:path';

export interface ReceivedCommand {
  execute: string;
  /** Sent with exec-oob. */
  oob: boolean;
  id: unknown;
  arguments: Record<string, unknown> | undefined;
  raw: string;
}

export interface FakeQmpServerOptions {
  /** Unix socket in this dir (path `dir/qmp.sock`, or `path`) unless `tcp` is set. */
  dir?: string;
  path?: string;
  /** Listen on 127.0.0.1 instead; `port` 0 (default) picks a free one. */
  tcp?: boolean;
  port?: number;
  /**
   * Sent on connect: an object (as a JSON line), a raw string (sent verbatim), or null for nothing;
   * or a function of the connection's index (0 for the first) returning one of those.
   */
  greeting?: Greeting | ((index: number) => Greeting);
  /** Capabilities in the default greeting. Default ["oob"]. */
  capabilities?: string[];
  /** Answer qmp_capabilities by itself. Default true. */
  autoCapabilities?: boolean;
  /** Called for each command after negotiation, e.g. to answer automatically. */
  onCommand?: (cmd: ReceivedCommand, conn: FakeQmpConnection) => void;
}

type Greeting = object | string | null;

export const FAKE_VERSION = { qemu: { major: 7, minor: 2, micro: 22 }, package: 'fake' };

/** A FIFO that hands items to whoever waits, with a timeout so a broken test fails instead of hanging. */
class AsyncQueue<T> {
  private items: T[] = [];
  private waiting: Array<(item: T) => void> = [];

  push(item: T): void {
    const w = this.waiting.shift();
    if (w) w(item);
    else this.items.push(item);
  }

  next(timeoutMs: number, what: string): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise<T>((resolve, reject) => {
      const take = (it: T) => {
        clearTimeout(timer);
        resolve(it);
      };
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== take);
        reject(new Error(`fake QMP server: no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.push(take);
    });
  }
}

export class FakeQmpConnection {
  readonly commands: ReceivedCommand[] = [];
  /** What the client asked qmp_capabilities to enable. */
  capabilitiesEnabled: string[] | undefined;
  readonly closed: Promise<void>;
  private readonly queue = new AsyncQueue<ReceivedCommand>();
  private buffer = '';
  private negotiated = false;

  constructor(
    readonly socket: net.Socket,
    private readonly opts: FakeQmpServerOptions,
    /** 0 for the server's first connection. */
    readonly index: number,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined); // the client resetting us is part of the tests
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.onData(text));
    const chosen = typeof opts.greeting === 'function' ? opts.greeting(index) : opts.greeting;
    const g = chosen === undefined ? { QMP: { version: FAKE_VERSION, capabilities: opts.capabilities ?? ['oob'] } } : chosen;
    if (typeof g === 'string') this.sendRaw(g);
    else if (g !== null) this.send(g);
  }

  /** The next command received after negotiation (in arrival order). */
  nextCommand(timeoutMs = 5000): Promise<ReceivedCommand> {
    return this.queue.next(timeoutMs, 'command');
  }

  reply(id: unknown, value: unknown = {}): void {
    this.send({ return: value, id });
  }

  error(id: unknown, errorClass: string, desc: string): void {
    this.send({ id, error: { class: errorClass, desc } });
  }

  event(event: string, data?: Record<string, unknown>, timestamp = { seconds: 1_700_000_000, microseconds: 123_456 }): void {
    this.send(data === undefined ? { timestamp, event } : { timestamp, event, data });
  }

  send(msg: object): void {
    this.sendRaw(`${JSON.stringify(msg)}\r\n`);
  }

  sendRaw(text: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(text);
  }

  /** Close cleanly (FIN), optionally after writing something. */
  end(text?: string): void {
    if (text === undefined) this.socket.end();
    else this.socket.end(text);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(text: string): void {
    this.buffer += text;
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl < 0) return;
      const raw = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (raw) this.onLine(raw);
    }
  }

  private onLine(raw: string): void {
    const msg = JSON.parse(raw) as Record<string, unknown>;
    const oob = typeof msg['exec-oob'] === 'string';
    const cmd: ReceivedCommand = {
      execute: String(oob ? msg['exec-oob'] : msg.execute),
      oob,
      id: msg.id,
      arguments: msg.arguments as Record<string, unknown> | undefined,
      raw,
    };
    if (!this.negotiated && cmd.execute === 'qmp_capabilities' && this.opts.autoCapabilities !== false) {
      this.negotiated = true;
      const enable = cmd.arguments?.enable;
      this.capabilitiesEnabled = Array.isArray(enable) ? enable.map(String) : [];
      this.reply(cmd.id, {});
      return;
    }
    this.commands.push(cmd);
    this.queue.push(cmd);
    this.opts.onCommand?.(cmd, this);
  }
}

export class FakeQmpServer {
  readonly connections: FakeQmpConnection[] = [];
  /** `unix:PATH` or `tcp:127.0.0.1:PORT`, ready for QmpClient. */
  address = '';
  path: string | undefined;
  port: number | undefined;
  private readonly queue = new AsyncQueue<FakeQmpConnection>();
  private readonly server: net.Server;

  private constructor(opts: FakeQmpServerOptions) {
    this.server = net.createServer((socket) => {
      const conn = new FakeQmpConnection(socket, opts, this.connections.length);
      this.connections.push(conn);
      this.queue.push(conn);
    });
  }

  static async start(opts: FakeQmpServerOptions = {}): Promise<FakeQmpServer> {
    const fake = new FakeQmpServer(opts);
    const listen = (...args: unknown[]) =>
      new Promise<void>((resolve, reject) => {
        fake.server.once('error', reject);
        (fake.server.listen as (...a: unknown[]) => void)(...args, () => {
          fake.server.off('error', reject);
          resolve();
        });
      });
    if (opts.tcp) {
      await listen(opts.port ?? 0, '127.0.0.1');
      fake.port = (fake.server.address() as net.AddressInfo).port;
      fake.address = `tcp:127.0.0.1:${fake.port}`;
    } else {
      fake.path = opts.path ?? join(opts.dir ?? '.', 'qmp.sock');
      await listen(fake.path);
      fake.address = `unix:${fake.path}`;
    }
    return fake;
  }

  /** The next client connection (in arrival order). */
  nextConnection(timeoutMs = 5000): Promise<FakeQmpConnection> {
    return this.queue.next(timeoutMs, 'connection');
  }

  /** Stop listening and drop every connection; for unix sockets the socket file goes too. Idempotent. */
  async close(): Promise<void> {
    if (!this.server.listening) {
      for (const c of this.connections) c.destroy();
      return;
    }
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.destroy();
    await closed;
  }
}
