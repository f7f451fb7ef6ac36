import type { Clock, TimerHandle, Timers } from "./clock.ts";
import type { RandomSource } from "./random.ts";
import type { DatagramSocket, DatagramTransport } from "./transport.ts";

/** A small seeded PRNG (mulberry32): the same seed gives the same run, which is the point. */
export function seededRandom(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Ids from a seeded sequence: the same seed names the same generations and boots. */
export function seededIds(seed: number): RandomSource {
  const next = seededRandom(seed);
  return {
    hex: (bytes) => Array.from({ length: bytes }, () => Math.floor(next() * 256).toString(16).padStart(2, "0")).join(""),
  };
}

/**
 * Virtual time for the simulator: timers fire in (time, creation) order when the test advances
 * the clock, never by themselves, so a run is a pure function of its seed and its script.
 */
export function createVirtualWorld(startMs = 1_700_000_000_000) {
  let now = startMs;
  let nextId = 0;
  const queue: { at: number; id: number; fn: () => void; every?: number; cancelled: boolean }[] = [];
  const schedule = (at: number, fn: () => void, every?: number) => {
    const entry = { at, id: nextId++, fn, every, cancelled: false };
    queue.push(entry);
    return entry;
  };
  const clock: Clock = { now: () => now, monotonic: () => now - startMs };
  const timers: Timers = {
    after(ms, fn): TimerHandle {
      const e = schedule(now + ms, fn);
      return { cancel: () => (e.cancelled = true) };
    },
    every(ms, fn): TimerHandle {
      const e = schedule(now + ms, fn, ms);
      return { cancel: () => (e.cancelled = true) };
    },
  };
  /** Runs every timer due up to `until`, in order; events they schedule run too if due. */
  function advanceTo(until: number) {
    for (let steps = 0; steps < 10_000_000; steps++) {
      queue.sort((x, y) => x.at - y.at || x.id - y.id);
      const next = queue[0];
      if (!next || next.at > until) break;
      queue.shift();
      if (next.cancelled) continue;
      now = next.at;
      next.fn();
      if (next.every !== undefined && !next.cancelled) {
        next.at = now + next.every;
        queue.push(next);
      }
    }
    now = until;
  }
  return { clock, timers, advanceTo, advanceBy: (ms: number) => advanceTo(now + ms) };
}

/** A simulated datagram network with seeded drops and delays, and partitions between addresses. */
export function createSimNetwork(world: ReturnType<typeof createVirtualWorld>, options: { seed: number; dropRate?: number; delayMs?: [number, number] }) {
  const random = seededRandom(options.seed);
  const sockets = new Map<string, ((bytes: Buffer, from: { address: string; port: number }) => void)[]>();
  const cut = new Set<string>();
  const key = (address: string, port: number) => `${address}:${port}`;
  const [minDelay, maxDelay] = options.delayMs ?? [0, 2];
  const transport: DatagramTransport = {
    async bind(address, port): Promise<DatagramSocket> {
      const handlers: ((bytes: Buffer, from: { address: string; port: number }) => void)[] = [];
      sockets.set(key(address, port), handlers);
      return {
        send(bytes, to, toPort) {
          if (cut.has(`${address}|${to}`) || random() < (options.dropRate ?? 0)) return;
          const copy = Buffer.from(bytes);
          world.timers.after(minDelay + random() * (maxDelay - minDelay), () => {
            for (const h of sockets.get(key(to, toPort)) ?? []) h(copy, { address, port });
          });
        },
        onMessage: (handler) => handlers.push(handler),
        close: () => sockets.delete(key(address, port)),
      };
    },
  };
  return {
    transport,
    partition(a: string, b: string) {
      cut.add(`${a}|${b}`);
      cut.add(`${b}|${a}`);
    },
    heal() {
      cut.clear();
    },
  };
}
