import type { FrameRejection } from "./frame.ts";

/**
 * The memory the agent and its heartbeat thread share, as 64-bit slots of microseconds on the
 * agent's monotonic clock: the lease the agent renews, the frames sent and received, and per link when the
 * last good frame was read. Read with Atomics, so the agent sees the truth even when the
 * thread's messages wait behind a busy loop.
 */
export const SLOT = { leaseUntil: 0, sent: 1, received: 2, heardAt: 3 } as const;
export const sharedBytes = (links: number) => (SLOT.heardAt + links) * BigInt64Array.BYTES_PER_ELEMENT;
/** A slot's value for MS milliseconds. */
export const micros = (ms: number) => BigInt(Math.round(ms * 1000));
/** The process's monotonic clock, the same in every thread (performance.now() is not: each thread has its own origin). */
export const hrMs = () => Number(process.hrtime.bigint()) / 1e6;

/** From the agent to its heartbeat thread. */
export type AgentMessage = { kind: "holds"; jobs: string[] } | { kind: "stop" };

/** From the heartbeat thread to the agent. */
export type ThreadMessage =
  | { kind: "ready" }
  | { kind: "failed"; message: string }
  | { kind: "heard"; at: number; holds: string[] | null }
  | { kind: "rejected"; index: number; reason: FrameRejection }
  | { kind: "closed" };
