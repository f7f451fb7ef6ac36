import { z } from "zod";

/** Node's timers hold at most this (about 24.8 days); a larger delay fires at once, every 1 ms. */
export const DURATION_MAX_MS = 2 ** 31 - 1;

/** A duration in milliseconds with a sane floor and Node's ceiling, each error saying which bound. */
export function durationMs(minMs: number) {
  return z
    .number({ error: "expected a number of milliseconds" })
    .int("expected whole milliseconds")
    .min(minMs, `expected at least ${minMs} ms`)
    .max(DURATION_MAX_MS, `expected at most ${DURATION_MAX_MS} ms (about 24.8 days: Node's timers hold no more)`);
}
