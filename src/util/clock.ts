/**
 * Time as the agent sees it: a monotonic `now()` plus timers.
 *
 * Everything that waits or measures takes a Clock instead of calling the globals, so that unit
 * tests can drive time by hand (the approach MQTT.js's KeepaliveManager takes with its timer
 * abstraction). `now()` is monotonic: wall-clock jumps (NTP, an operator's `date -s`) must never
 * make a live peer look dead.
 */
export type TimerHandle = { readonly __timer: unique symbol } | object;

export interface Clock {
  /** Milliseconds from an arbitrary origin; never goes backwards. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return t;
  },
  clearTimeout: (handle) => {
    if (handle !== undefined) clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
