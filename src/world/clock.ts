/**
 * The injected world: time. Production passes `systemClock`/`systemTimers`; the deterministic
 * simulator (test/sim) passes virtual ones, so a whole cluster runs in one process from a seed.
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch (journal `at`, HLC physical part). */
  now(): number;
  /** Monotonic milliseconds: for timeouts and deadtime, immune to wall-clock steps. */
  monotonic(): number;
}

export interface TimerHandle {
  cancel(): void;
}

export interface Timers {
  after(ms: number, fn: () => void): TimerHandle;
  every(ms: number, fn: () => void): TimerHandle;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};

export const systemTimers: Timers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
};
