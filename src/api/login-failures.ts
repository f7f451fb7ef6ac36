import type { DuetEvent } from "../events/catalogue.ts";
import type { Clock, TimerHandle, Timers } from "../world/clock.ts";

/** Failed logins are journaled at most once per period, with a count: a flood is one record a minute. */
export const LOGIN_FAILURES_REPORT_MS = 60_000;
/** Addresses named in one record; the rest are counted. */
const ADDRESSES_MAX = 20;

/**
 * Collects failed logins and hands them to `record` as one LoginsFailed per period: the first
 * failure of a quiet period at once (an attack shows as it starts), the rest when the period ends.
 */
export function createLoginFailureReport(options: { node: string; clock: Clock; timers: Timers; record: (events: DuetEvent[]) => Promise<unknown>; periodMs?: number }) {
  const periodMs = options.periodMs ?? LOGIN_FAILURES_REPORT_MS;
  let pending: { count: number; sinceAt: number; from: Map<string, number> } | null = null;
  let lastReportAt = -Infinity;
  let timer: TimerHandle | null = null;
  let total = 0;

  function flush(): Promise<unknown> {
    timer = null;
    if (!pending) return Promise.resolve();
    const sorted = [...pending.from].sort((x, y) => y[1] - x[1]);
    const named = sorted.slice(0, ADDRESSES_MAX);
    const event: DuetEvent = { type: "LoginsFailed", data: { node: options.node, count: pending.count, sinceAt: pending.sinceAt, from: named.map(([address, count]) => ({ address: address.slice(0, 64), count })), otherAddresses: sorted.length - named.length } };
    pending = null;
    lastReportAt = options.clock.now();
    return options.record([event]);
  }

  return {
    /** Failed logins since the agent started (for /metrics). */
    total: () => total,
    failed(from: string): void {
      total += 1;
      const now = options.clock.now();
      pending ??= { count: 0, sinceAt: now, from: new Map() };
      pending.count += 1;
      pending.from.set(from, (pending.from.get(from) ?? 0) + 1);
      if (timer) return;
      const waitMs = lastReportAt + periodMs - now;
      if (waitMs <= 0) void flush();
      else timer = options.timers.after(waitMs, () => void flush());
    },
    close(): Promise<unknown> {
      timer?.cancel();
      return flush();
    },
  };
}
