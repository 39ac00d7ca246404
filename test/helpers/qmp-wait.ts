/**
 * Waiting on a QmpClient in tests with real timers, so that a broken expectation fails after a few
 * seconds with a message instead of hanging until tap's file timeout (the client itself may be on a
 * FakeClock whose timers never fire on their own).
 */
import type { QmpClient } from '../../src/qmp/client.js';
import type { QmpClientEvents, QmpClientStatus, QmpStatusChange } from '../../src/qmp/events.js';

/** Resolves with the next status change to `status` (immediately with a synthetic change if already there). */
export function waitForStatus(client: QmpClient, status: QmpClientStatus, timeoutMs = 5000): Promise<QmpStatusChange> {
  if (client.status === status) return Promise.resolve({ from: status, to: status, reason: 'already', at: 0 });
  return nextClientEvent(client, 'status', timeoutMs, (c) => c.to === status, `status ${status}`).then(([c]) => c);
}

/** Resolves with the arguments of the next `name` event passing `filter`. */
export function nextClientEvent<K extends keyof QmpClientEvents>(
  client: QmpClient,
  name: K,
  timeoutMs = 5000,
  filter: (...args: QmpClientEvents[K]) => boolean = () => true,
  what: string = String(name),
): Promise<QmpClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const on = (...args: QmpClientEvents[K]) => {
      if (!filter(...args)) return;
      cleanup();
      resolve(args);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${what} within ${timeoutMs} ms (client status ${client.status})`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      (client.off as (n: K, l: typeof on) => void)(name, on);
    };
    (client.on as (n: K, l: typeof on) => void)(name, on);
  });
}
