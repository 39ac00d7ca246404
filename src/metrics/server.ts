/**
 * The metrics HTTP server (node:http) on metrics.listen:
 *
 *   GET /metrics  Prometheus text exposition of the agent's registry
 *   GET /healthz  200 or 503 with a small JSON (the rule is in health.ts)
 *   GET /status   the agent's status() as JSON
 *   anything else 404; a method other than GET 405; a request with a body 413
 *
 * It faces whoever can reach the port, so it is bounded: no request body is read, headers are
 * small, slow or idle clients are cut off after a few seconds, and only a few connections are
 * served at once (the rest are dropped on accept). close() ends every connection at once, so a
 * scraper's keep-alive socket never delays the agent's shutdown.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Agent } from '../agent.js';
import { formatHostPort, parseHostPort, type HostPort } from '../heartbeat/address.js';
import { silentLogger, type Logger } from '../log.js';
import type { Clock } from '../util/clock.js';
import { MetricsListenError, MetricsOptionsError } from './errors.js';
import { DEFAULT_MAX_EVENT_LOOP_LAG_MS, EventLoopLag, healthVerdict } from './health.js';

/** What the server reads: the exposition (AgentMetrics fits). */
export interface ExpositionSource {
  text(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsServerOptions {
  /** HOST:PORT; port 0 picks a free port (see address()). */
  listen: string;
  metrics: ExpositionSource;
  /** The agent, or anything else with a state and a status (the witness). */
  agent: { readonly state: Agent['state'] | string; status(): unknown };
  /** Connections served at once; more are dropped on accept. Default 16. */
  maxConnections?: number;
  /** Time to receive a whole request (headers included). Default 5000. */
  requestTimeoutMs?: number;
  /** Idle time allowed on a kept-alive connection between requests, and on a socket at all. Default 5000. */
  idleTimeoutMs?: number;
  /** /healthz fails above this event-loop lag. Default 1000. */
  maxEventLoopLagMs?: number;
  clock?: Clock;
  logger?: Logger;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
/** A request body beyond this ends the connection at once. */
const MAX_DISCARDED_BODY_BYTES = 64 * 1024;

export class MetricsServer {
  private readonly server: Server;
  private readonly log: Logger;
  private readonly target: HostPort;
  private readonly lag: EventLoopLag;
  private bound: HostPort | undefined;
  private closePromise: Promise<void> | undefined;

  constructor(private readonly opts: MetricsServerOptions) {
    this.log = (opts.logger ?? silentLogger()).child({ component: 'metrics' });
    try {
      this.target = parseHostPort(opts.listen, true);
    } catch (err) {
      throw new MetricsOptionsError(`metrics.listen ${JSON.stringify(opts.listen)} is not HOST:PORT`, { cause: err });
    }
    const requestTimeout = opts.requestTimeoutMs ?? 5000;
    const idle = opts.idleTimeoutMs ?? 5000;
    this.server = createServer(
      {
        maxHeaderSize: 8192,
        requestTimeout,
        headersTimeout: requestTimeout,
        keepAliveTimeout: idle,
        // How often request/headers timeouts are checked (default 30 s, which would let them run long).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(requestTimeout / 2))),
      },
      (req, res) => void this.handle(req, res),
    );
    this.server.maxConnections = opts.maxConnections ?? 16;
    this.server.timeout = idle; // a socket with no traffic at all (e.g. a client that stopped reading)
    this.server.maxRequestsPerSocket = 1000;
    // Malformed, oversized or too slow requests: node's default clientError handling answers
    // 400/431/408 when it can and destroys the socket, which is what we want.
    this.lag = new EventLoopLag(opts.clock ? { clock: opts.clock } : {});
  }

  /** Binds; resolves with the bound address. Rejects with MetricsListenError. */
  async listen(): Promise<HostPort> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new MetricsListenError(`metrics server cannot listen on ${this.opts.listen}: ${err.message}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen({ host: this.target.host, port: this.target.port }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (err) => this.log.error({ err }, 'metrics server error'));
    const a = this.server.address() as AddressInfo;
    this.bound = { host: a.address, port: a.port };
    this.lag.start();
    this.log.info({ listen: formatHostPort(this.bound) }, 'metrics listening');
    return this.bound;
  }

  /** The bound address (the real port when 0 was asked for); undefined before listen(). */
  address(): HostPort | undefined {
    return this.bound;
  }

  /** Stops listening and ends every open connection. Idempotent. */
  close(): Promise<void> {
    this.closePromise ??= new Promise<void>((resolve) => {
      this.lag.stop();
      if (!this.server.listening) {
        resolve();
        return;
      }
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closePromise;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    // A body is never used: it is discarded (up to a small cap, so the client gets the answer
    // rather than a reset) and the connection closes after the answer.
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    if (hasBody) {
      res.shouldKeepAlive = false;
      let discarded = 0;
      req.on('data', (chunk: Buffer) => {
        discarded += chunk.length;
        if (discarded > MAX_DISCARDED_BODY_BYTES) req.socket.destroy();
      });
      req.on('error', () => undefined);
    }
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      this.send(res, 405, TEXT_TYPE, 'method not allowed\n');
      return;
    }
    if (hasBody) {
      this.send(res, 413, TEXT_TYPE, 'request body not accepted\n');
      return;
    }
    const path = (req.url ?? '/').split('?', 1)[0];
    try {
      switch (path) {
        case '/metrics':
          this.send(res, 200, this.opts.metrics.contentType, await this.opts.metrics.text());
          return;
        case '/healthz': {
          const report = healthVerdict(this.opts.agent.state, this.lag.lagMs, this.opts.maxEventLoopLagMs ?? DEFAULT_MAX_EVENT_LOOP_LAG_MS);
          this.send(res, report.ok ? 200 : 503, JSON_TYPE, `${JSON.stringify(report)}\n`);
          return;
        }
        case '/status':
          this.send(res, 200, JSON_TYPE, `${JSON.stringify(this.opts.agent.status())}\n`);
          return;
        default:
          this.send(res, 404, TEXT_TYPE, 'not found: try /metrics, /healthz or /status\n');
      }
    } catch (err) {
      this.log.error({ err, path }, 'metrics request failed');
      this.send(res, 500, TEXT_TYPE, 'internal error\n');
    }
  }

  private send(res: ServerResponse, status: number, contentType: string, body: string): void {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }
}
