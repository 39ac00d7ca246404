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
import { Etcd3, type IOptions } from 'etcd3';

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

export function createEtcdClient(endpoints: string[]): Etcd3 {
  return new Etcd3({
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
