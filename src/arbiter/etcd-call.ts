/**
 * Bounded etcd calls. Every call the etcd arbiter makes carries a gRPC deadline (so the library
 * frees the call) and races a timer on our Clock (so the caller gets its answer in time even
 * when a call hangs, e.g. against a SIGSTOPped etcd).
 */
import type { Clock } from '../util/clock.js';
import { EtcdCallTimeoutError } from './etcd-errors.js';

/** Runs `call` with a deadline `ms` from now; rejects with EtcdCallTimeoutError when it is late. */
export function boundedCall<T>(clock: Clock, ms: number, what: string, call: (deadline: Date) => Promise<T>): Promise<T> {
  const limit = Math.max(1, Math.floor(ms));
  const inner = call(new Date(Date.now() + limit));
  // A call that loses the race still settles later; its rejection must not become unhandled.
  inner.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(() => reject(new EtcdCallTimeoutError(what, limit)), limit);
    inner.then(
      (v) => {
        clock.clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clock.clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** A one-line reason for a denial or a log line: the error's message, never its stack. */
export function errorReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const line =
    message
      .split('\n')[0]
      ?.replace(/\.?\s*Resolution note:\s*$/, '') // gRPC's empty trailer
      .trim() || (err instanceof Error ? err.name : 'unknown error');
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/**
 * Resolves after `ms` on `clock`, or sooner when `wake` calls the resume function it is given
 * (close(), or a change in etcd worth a fresh look). `wake` returns its unsubscribe.
 */
export function pause(clock: Clock, ms: number, wake?: (resume: () => void) => () => void): Promise<void> {
  return new Promise((resolve) => {
    let unsubscribe: (() => void) | undefined;
    const timer = clock.setTimeout(() => done(), Math.max(0, ms));
    function done(): void {
      clock.clearTimeout(timer);
      unsubscribe?.();
      resolve();
    }
    unsubscribe = wake?.(done);
  });
}
