/**
 * Gateway reachability (`arbiter.gateways`): before a takeover, a node checks that it can still
 * reach the network its clients use (a router, a core switch's management address, a service
 * every client depends on). A node that has lost its peer *because it is the one cut off* would
 * otherwise take over a VM nobody can reach, and, if the arbiter is on its side of the cut, keep
 * the lease from the node that still serves clients. This is the "ping node" of keepalived's
 * track scripts and Pacemaker's ocf:pacemaker:ping, done with TCP so that no raw socket (root,
 * CAP_NET_RAW) is needed.
 *
 * Each target gets one TCP connect, all in parallel:
 * - connected: reachable;
 * - refused (ECONNREFUSED, or a reset): reachable too. The RST came back from the target's host,
 *   so packets went there and back: the network path works, which is all we ask. Nothing has to
 *   listen on the port, so any port of a router will do. Caveat: a *local* firewall rule that
 *   rejects (rather than drops) the target would fake such an answer; reject rules on the path
 *   make a check meaningless, use targets that only drop rules can cut.
 * - anything else (timeout, EHOSTUNREACH, ENETUNREACH, a name that does not resolve): unreachable.
 * The socket is destroyed as soon as the answer is known; the target sees at most a connection
 * that opened and closed.
 *
 * need `any`: one answering target is enough (several routers, any of them proves the uplink);
 * `all`: every target must answer. No targets: the check is off and passes.
 *
 * Rejects only with FenceOptionsError for targets or options that can never work.
 */
import { connect, isIPv6 } from 'node:net';
import { systemClock, type Clock } from '../util/clock.js';
import { FenceOptionsError } from './fence-errors.js';

export interface GatewayTarget {
  host: string;
  port: number;
}

export interface GatewayCheckOptions {
  targets: ReadonlyArray<GatewayTarget>;
  /** A target that has not answered within this is unreachable, ms. */
  timeoutMs: number;
  need: 'any' | 'all';
  clock?: Clock;
}

export interface GatewayResult {
  /** host:port ([host]:port for IPv6). */
  target: string;
  reachable: boolean;
  /** How long the answer took, ms. */
  ms: number;
  /** Why it is unreachable, or the refusal that proved it reachable (ECONNREFUSED). */
  error?: string;
}

export interface GatewayCheckResult {
  ok: boolean;
  results: GatewayResult[];
}

/** Socket errors that mean "a live host answered": the path works. */
const ANSWERED = new Set(['ECONNREFUSED', 'ECONNRESET']);

export function formatTarget(t: GatewayTarget): string {
  return isIPv6(t.host) ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

function validate(opts: GatewayCheckOptions): void {
  if (opts.need !== 'any' && opts.need !== 'all') throw new FenceOptionsError(`gateway need must be any or all, got ${String(opts.need)}`);
  if (!(opts.timeoutMs > 0) || !Number.isFinite(opts.timeoutMs)) throw new FenceOptionsError(`gateway timeoutMs must be > 0, got ${opts.timeoutMs}`);
  for (const t of opts.targets) {
    if (typeof t.host !== 'string' || t.host === '') throw new FenceOptionsError('gateway target has an empty host');
    if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) {
      throw new FenceOptionsError(`gateway target ${t.host}: port must be 1..65535, got ${t.port}`);
    }
  }
}

export async function checkGateways(opts: GatewayCheckOptions): Promise<GatewayCheckResult> {
  validate(opts);
  const clock = opts.clock ?? systemClock;
  const results = await Promise.all(opts.targets.map((t) => probe(t, opts.timeoutMs, clock)));
  const ok = results.length === 0 || (opts.need === 'all' ? results.every((r) => r.reachable) : results.some((r) => r.reachable));
  return { ok, results };
}

function probe(t: GatewayTarget, timeoutMs: number, clock: Clock): Promise<GatewayResult> {
  const target = formatTarget(t);
  const started = clock.now();
  return new Promise((resolve) => {
    let settled = false;
    const socket = connect({ host: t.host, port: t.port });
    const finish = (reachable: boolean, error?: string) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      socket.destroy();
      const r: GatewayResult = { target, reachable, ms: clock.now() - started };
      if (error !== undefined) r.error = error;
      resolve(r);
    };
    const timer = clock.setTimeout(() => finish(false, 'timeout'), timeoutMs);
    socket.once('connect', () => finish(true));
    // `on`, not `once`: a second error after settling must not become an uncaught exception.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? err.message;
      finish(ANSWERED.has(code), code);
    });
  });
}
