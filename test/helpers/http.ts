/**
 * Plain HTTP requests from tests and benchmarks to the servers they start (an agent's metrics
 * endpoint, Prometheus's API), and fetching an agent's /metrics exposition.
 */
import { request, type Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';

/** A port on 127.0.0.1, `HOST:PORT`, or both apart. */
export type HttpTarget = number | string | { host: string; port: number };

export interface HttpRequestOptions {
  /** Default GET. */
  method?: string;
  body?: string;
  headers?: Record<string, string>;
  /** A keep-alive agent to reuse one connection (as Prometheus does); default a connection of its own. */
  agent?: HttpAgent;
  /** Give up (reject) after this long without an answer; default: no limit. */
  timeoutMs?: number;
}

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Request written to body received, as seen here. */
  ms: number;
}

function hostPort(target: HttpTarget): { host: string; port: number } {
  if (typeof target === 'number') return { host: '127.0.0.1', port: target };
  if (typeof target === 'object') return target;
  const sep = target.lastIndexOf(':');
  return { host: target.slice(0, sep), port: Number(target.slice(sep + 1)) };
}

/** One request; resolves with any status. Without `agent`, on its own connection (no keep-alive pool left behind). */
export function httpRequest(target: HttpTarget, path: string, opts: HttpRequestOptions = {}): Promise<HttpReply> {
  const { host, port } = hostPort(target);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request(
      { host, port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false, ...(opts.timeoutMs !== undefined && { timeout: opts.timeoutMs }) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - t0 }));
        res.on('error', reject);
      },
    );
    if (opts.timeoutMs !== undefined) {
      const s = opts.timeoutMs / 1000;
      req.on('timeout', () => req.destroy(new Error(`${opts.method ?? 'GET'} http://${host}:${port}${path}: no answer within ${s} s`)));
    }
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** GET with the 5 s limit the end-to-end tests and benchmarks use. */
export function httpGet(target: HttpTarget, path: string, opts: Pick<HttpRequestOptions, 'agent'> = {}): Promise<HttpReply> {
  return httpRequest(target, path, { ...opts, timeoutMs: 5000 });
}

/** GET /metrics (the Prometheus text exposition); rejects unless the answer is 200. */
export async function fetchMetrics(target: HttpTarget, opts: Pick<HttpRequestOptions, 'agent'> = {}): Promise<HttpReply> {
  const r = await httpGet(target, '/metrics', opts);
  if (r.status !== 200) {
    const { host, port } = hostPort(target);
    throw new Error(`GET http://${host}:${port}/metrics: ${r.status} ${r.body}`);
  }
  return r;
}
