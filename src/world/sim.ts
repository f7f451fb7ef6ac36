import type { Clock, TimerHandle, Timers } from "./clock.ts";
import type { RandomSource } from "./random.ts";
import type { DatagramSocket, DatagramTransport } from "./transport.ts";
import type { ListenHandlers, PeerStream, PeerStreams, StreamEndpoint } from "./streams.ts";

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
  // Jitter draws from its own sequence: how often a node redials leaves its ids as they were.
  const jitter = seededRandom(seed ^ 0x9e3779b9);
  return {
    hex: (bytes) => Array.from({ length: bytes }, () => Math.floor(next() * 256).toString(16).padStart(2, "0")).join(""),
    fraction: jitter,
  };
}

/**
 * Virtual time for the simulator: timers fire in (time, creation) order when the test advances
 * the clock, never by themselves, so a run is a pure function of its seed and its script.
 */
export function createVirtualWorld(startMs = 1_700_000_000_000) {
  let now = startMs;
  let nextId = 0;
  const queue = timerHeap();
  const schedule = (at: number, fn: () => void, every?: number) => {
    const entry: TimerEntry = { at, id: nextId++, fn, every, cancelled: false };
    queue.push(entry);
    return entry;
  };
  // Whole milliseconds, as Date.now(): journal times and reports carry integers in production.
  const clock: Clock = { now: () => Math.floor(now), monotonic: () => now - startMs };
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
      const next = queue.peek();
      if (!next || next.at > until) break;
      queue.pop();
      now = next.at;
      next.fn();
      if (next.every !== undefined && !next.cancelled) {
        next.at = now + next.every; // keeps its id: ties run in the order first scheduled
        queue.push(next);
      }
    }
    now = until;
  }
  /** When the next timer fires (null: none is waiting): a simulator steps from event to event. */
  const nextAt = (): number | null => queue.peek()?.at ?? null;
  return { clock, timers, advanceTo, advanceBy: (ms: number) => advanceTo(now + ms), nextAt };
}

interface TimerEntry {
  at: number;
  id: number;
  fn: () => void;
  every?: number;
  cancelled: boolean;
}

/**
 * The virtual timers, earliest first (ties in the order scheduled): a binary heap, so a step
 * costs log n, not a sort of every timer waiting. Cancelled entries are dropped as they surface.
 */
function timerHeap() {
  const heap: TimerEntry[] = [];
  const before = (x: TimerEntry, y: TimerEntry) => x.at < y.at || (x.at === y.at && x.id < y.id);
  const swap = (i: number, j: number) => ([heap[i], heap[j]] = [heap[j]!, heap[i]!]);
  function up(i: number) {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) return;
      swap(i, parent);
      i = parent;
    }
  }
  function down(i: number) {
    for (;;) {
      const [l, r] = [2 * i + 1, 2 * i + 2];
      let least = i;
      if (l < heap.length && before(heap[l]!, heap[least]!)) least = l;
      if (r < heap.length && before(heap[r]!, heap[least]!)) least = r;
      if (least === i) return;
      swap(i, least);
      i = least;
    }
  }
  function pop(): TimerEntry | undefined {
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      down(0);
    }
    return top;
  }
  return {
    push(entry: TimerEntry) {
      heap.push(entry);
      up(heap.length - 1);
    },
    /** The earliest timer not cancelled. */
    peek(): TimerEntry | undefined {
      while (heap[0]?.cancelled) pop();
      return heap[0];
    },
    pop,
  };
}

/** FNV-1a of a string: a seed per address. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A simulated datagram network with seeded drops and delays, and partitions between addresses. */
export function createSimNetwork(world: ReturnType<typeof createVirtualWorld>, options: { seed: number; dropRate?: number; delayMs?: [number, number] }) {
  // One sequence per sender: what one node sends draws the same delays and drops whatever the
  // other node did meanwhile, so a seed replays even where two nodes' real I/O interleave.
  const senders = new Map<string, () => number>();
  const randomOf = (address: string) => {
    let r = senders.get(address);
    if (!r) senders.set(address, (r = seededRandom(options.seed ^ hash(address))));
    return r;
  };
  const sockets = new Map<string, ((bytes: Buffer, from: { address: string; port: number }) => void)[]>();
  const cut = new Set<string>();
  /** Addresses that neither send nor receive: a NIC down, a host crashed. A heal leaves them. */
  const down = new Set<string>();
  let dropRate = options.dropRate ?? 0;
  /** Datagrams sent by these addresses, as an eavesdropper on the wire keeps them. */
  const recording = new Map<string, { to: string; port: number; fromPort: number; bytes: Buffer }[]>();
  const key = (address: string, port: number) => `${address}:${port}`;
  const [minDelay, maxDelay] = options.delayMs ?? [0, 2];
  const transport: DatagramTransport = {
    async bind(address, port): Promise<DatagramSocket> {
      const handlers: ((bytes: Buffer, from: { address: string; port: number }) => void)[] = [];
      sockets.set(key(address, port), handlers);
      return {
        send(bytes, to, toPort) {
          const random = randomOf(address);
          if (!open(address, to) || random() < dropRate) return;
          const copy = Buffer.from(bytes);
          recording.get(address)?.push({ to, port: toPort, fromPort: port, bytes: copy });
          world.timers.after(minDelay + random() * (maxDelay - minDelay), () => {
            for (const h of sockets.get(key(to, toPort)) ?? []) h(copy, { address, port });
          });
        },
        onMessage: (handler) => handlers.push(handler),
        close: () => sockets.delete(key(address, port)),
      };
    },
  };
  const open = (from: string, to: string) => !cut.has(`${from}|${to}`) && !down.has(from) && !down.has(to);
  const delay = (from: string) => minDelay + randomOf(from)() * (maxDelay - minDelay);
  const streams = createSimStreams(world.timers, open, delay);
  return {
    transport,
    /** Whether what FROM sends reaches TO now. */
    open,
    /** The peer channel's streams as seen from a node with these addresses (one per link). */
    streamsFor: streams.streamsFor,
    partition(a: string, b: string) {
      cut.add(`${a}|${b}`);
      cut.add(`${b}|${a}`);
    },
    /** Only what A sends to B is lost (an asymmetric cut). */
    cutOneWay(a: string, b: string) {
      cut.add(`${a}|${b}`);
    },
    heal() {
      cut.clear();
      streams.resume();
    },
    /** ADDRESS neither sends nor receives (up: false) until it is up again. */
    setUp(address: string, up: boolean) {
      if (up) down.delete(address);
      else down.add(address);
      if (up) streams.resume();
    },
    /** The share of datagrams lost from now on (streams lose nothing: TCP retransmits). */
    setDropRate(rate: number) {
      dropRate = rate;
    },
    /** Keeps every datagram ADDRESS sends from now on; returns them as they are kept. */
    record(address: string) {
      const kept: { to: string; port: number; fromPort: number; bytes: Buffer }[] = [];
      recording.set(address, kept);
      return kept;
    },
    /** A datagram replayed with FROM as its source by an attacker on TO's network (FROM itself may be down). */
    inject(from: { address: string; port: number }, to: { address: string; port: number }, bytes: Buffer) {
      if (down.has(to.address)) return;
      for (const h of sockets.get(key(to.address, to.port)) ?? []) h(Buffer.from(bytes), from);
    },
    /** The host with these addresses rebooted: its connections are gone, and the peers' ends learn it (RST). */
    reset: (addresses: readonly string[]) => streams.reset(addresses),
  };
}

/**
 * TCP between simulated hosts, on virtual time: ordered bytes, each chunk after a delay. A cut
 * holds what was written (TCP retransmits) until the path is open again; a connect across a cut is
 * never answered, one to an address nobody listens on is refused. Not TLS: the simulation's
 * peers are who they say they are.
 */
function createSimStreams(timers: Timers, open: (from: string, to: string) => boolean, delay: (from: string) => number) {
  const listeners = new Map<string, ListenHandlers>();
  const ends = new Set<SimStream>();
  let nextPort = 40_000;

  class SimStream implements PeerStream {
    other!: SimStream;
    destroyed = false;
    readonly writableLength = 0;
    private corked = false;
    private outbox: (Buffer | "fin")[] = [];
    private sending = false;
    private handlers = new Map<string, ((arg?: unknown) => void)[]>();
    constructor(
      readonly local: string,
      readonly remote: string,
    ) {
      ends.add(this);
    }
    /** Bytes and the close that arrived before anyone listened: a socket keeps them until read. */
    private unread: { event: string; arg?: unknown }[] = [];
    on(event: string, listener: (arg: never) => void): this {
      this.handlers.set(event, [...(this.handlers.get(event) ?? []), listener as (arg?: unknown) => void]);
      if (event === "data" || event === "close") {
        const waiting = this.unread.filter((u) => u.event === event);
        this.unread = this.unread.filter((u) => u.event !== event);
        for (const u of waiting) (listener as (arg?: unknown) => void)(u.arg);
      }
      return this;
    }
    emit(event: string, arg?: unknown): void {
      const handlers = this.handlers.get(event) ?? [];
      if (handlers.length === 0 && (event === "data" || event === "close")) this.unread.push({ event, arg });
      for (const h of handlers) h(arg);
    }
    write(chunk: Uint8Array): boolean {
      if (this.destroyed) return false;
      this.outbox.push(Buffer.from(chunk));
      if (!this.corked) this.pump();
      return true;
    }
    cork(): void {
      this.corked = true;
    }
    uncork(): void {
      this.corked = false;
      this.pump();
    }
    destroy(): void {
      if (this.destroyed) return;
      this.destroyed = true;
      this.outbox.push("fin");
      this.pump();
      timers.after(0, () => this.emit("close"));
    }
    /** Delivers the outbox in order, one chunk per delay, while the path is open. */
    pump(): void {
      if (this.sending || this.outbox.length === 0 || !open(this.local, this.remote)) return;
      this.sending = true;
      timers.after(delay(this.local), () => {
        this.sending = false;
        if (!open(this.local, this.remote)) return; // held: resumed when the cut heals
        const next = this.outbox.shift()!;
        const peer = this.other;
        if (next === "fin") {
          ends.delete(this);
          if (!peer.destroyed) {
            peer.destroyed = true;
            ends.delete(peer);
            peer.emit("close");
          }
          return;
        }
        if (!peer.destroyed) peer.emit("data", next);
        this.pump();
      });
    }
  }

  function streamsFor(addresses: readonly string[]): PeerStreams {
    // The kernel's choice of source address: the one on the target's network.
    const source = (target: string) => addresses.find((a) => a.split(".").slice(0, 3).join(".") === target.split(".").slice(0, 3).join(".")) ?? addresses[0]!;
    return {
      listen(at: StreamEndpoint, handlers: ListenHandlers) {
        const key = `${at.address}:${at.port}`;
        listeners.set(key, handlers);
        return { close: async () => void listeners.delete(key) };
      },
      dial(targets, handlers) {
        let done = false;
        let refused = 0;
        const giveUp = timers.after(5000, () => {
          if (done) return;
          done = true;
          handlers.failed(null, false);
        });
        for (const target of targets) {
          const from = source(target.address);
          // A SYN across a cut is lost; its answer would be too.
          if (!open(from, target.address) || !open(target.address, from)) continue;
          timers.after(delay(from), () => {
            if (done) return;
            const listener = listeners.get(`${target.address}:${target.port}`);
            if (!listener) {
              if (++refused === targets.length) {
                done = true;
                giveUp.cancel();
                handlers.failed(null, false);
              }
              return;
            }
            done = true;
            giveUp.cancel();
            const port = nextPort++;
            const client = new SimStream(from, target.address);
            const server = new SimStream(target.address, from);
            client.other = server;
            server.other = client;
            listener.connected(server, `${from}:${port}`);
            handlers.connected(client, `${target.address}:${target.port}`);
          });
        }
        return {
          abandon() {
            done = true;
            giveUp.cancel();
          },
        };
      },
    };
  }

  return {
    streamsFor,
    /** After a heal: what each stream held is sent on. */
    resume(): void {
      for (const end of ends) end.pump();
    },
    reset(addresses: readonly string[]): void {
      // The dead process's listening sockets are gone too: a connect is refused (RST).
      for (const key of [...listeners.keys()]) if (addresses.includes(key.slice(0, key.lastIndexOf(":")))) listeners.delete(key);
      for (const end of [...ends]) {
        if (!addresses.includes(end.local)) continue;
        end.destroyed = true;
        ends.delete(end);
        const peer = end.other;
        if (peer.destroyed) continue;
        peer.destroyed = true;
        ends.delete(peer);
        timers.after(delay(end.local), () => peer.emit("close"));
      }
    },
  };
}
