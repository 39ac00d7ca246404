/**
 * The etcd3 client as the arbiter needs it.
 *
 * Two defaults of etcd3 are replaced:
 * - The per-host circuit breaker (open for 5 s after 3 failures) would block our lease
 *   keepalives for seconds after etcd comes back, long enough to lose a 2 s lease to a short etcd
 *   restart. Our loops pace their own retries, so each host gets a pass-through policy. The
 *   global policy (up to 3 attempts, each on another endpoint) stays.
 * - The watch reconnect backoff (up to 30 s) is capped at 2 s, so epoch changes are seen soon
 *   after etcd returns (the arbiter's poll covers the gap meanwhile).
 */
import type { Etcd3, IOptions } from 'etcd3';

/**
 * etcd3 (and gRPC under it) loaded on the first client only: about 8 MB of an agent's RSS, which
 * agents with `arbiter.mode` none or witness never need (measured with npm run bench:footprint).
 */
let etcd3: typeof import('etcd3') | undefined;

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type HostPolicy = ReturnType<NonNullable<FaultHandling['host']>>;
type WatchBackoff = NonNullable<FaultHandling['watchBackoff']>;

const noDisposable = { dispose(): void {} };

/** etcd3's documented `Policy.noop`, written out: cockatiel is etcd3's dependency, not ours. */
function passThroughPolicy(): HostPolicy {
  const neverAborted = new AbortController().signal;
  return {
    _altReturn: undefined as never,
    onSuccess: () => noDisposable,
    onFailure: () => noDisposable,
    execute: async (fn, signal) => fn({ signal: signal ?? neverAborted }),
  };
}

function cappedBackoff(initialMs: number, maxMs: number, attempt = 0): WatchBackoff {
  return {
    duration: Math.min(maxMs, initialMs * 2 ** attempt),
    next: () => cappedBackoff(initialMs, maxMs, attempt + 1),
  };
}

export async function createEtcdClient(endpoints: string[]): Promise<Etcd3> {
  etcd3 ??= await import('etcd3');
  return new etcd3.Etcd3({
    hosts: endpoints,
    faultHandling: {
      host: () => passThroughPolicy(),
      watchBackoff: cappedBackoff(100, 2000),
    },
    grpcOptions: {
      // Redial a restarted etcd within a second instead of gRPC's default (up to 2 min).
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    },
  });
}

/** etcd3's "this lease is gone" error. Only a client from createEtcdClient raises it: by then the module is loaded. */
export function isLeaseInvalid(err: unknown): boolean {
  return etcd3 !== undefined && err instanceof etcd3.EtcdLeaseInvalidError;
}
