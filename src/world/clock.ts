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

/** Resolves after MS on these timers, or at once when SIGNAL aborts (a wait cut short, not an error). */
export function sleep(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = timers.after(ms, () => {
      signal?.removeEventListener("abort", stop);
      resolve();
    });
    const stop = () => {
      timer.cancel();
      resolve();
    };
    signal?.addEventListener("abort", stop, { once: true });
  });
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

/**
 * For a periodic check that judges silence: whether this tick came late, because this process
 * itself was held up (GC, a blocked loop, a paused VM). After such a stall, timers run before the
 * I/O that waited behind the same stall is read, so what looks like the peer's silence is ours:
 * judge at the next tick instead. Returns the gap since the previous tick when it was late.
 */
export function lateTickGuard(clock: Clock, intervalMs: number): () => number | null {
  let previous = clock.monotonic();
  return () => {
    const now = clock.monotonic();
    const gapMs = now - previous;
    previous = now;
    return gapMs > 2 * intervalMs ? gapMs : null;
  };
}
