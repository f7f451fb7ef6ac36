import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { DuetEvent } from "../events/catalogue.ts";
import { lateTickGuard, type Clock, type Timers } from "../world/clock.ts";
import type { DatagramTransport } from "../world/transport.ts";
import { hrMs, micros, SLOT, sharedBytes, type AgentMessage, type ThreadMessage } from "./beat-shared.ts";
import { openWire, type WireOptions, type WireSink } from "./beat-wire.ts";
import { createDetector } from "./detector.ts";
import type { FrameRejection } from "./frame.ts";

export type { HeartbeatLink } from "./beat-wire.ts";

/** Rejected frames are journaled at most once per link and reason in this window, with a count. */
export const REJECTION_REPORT_INTERVAL_MS = 10_000;
/**
 * Frames that do not yet echo this node's boot: one or two per link after either side starts are
 * the normal handshake; more in one window are worth a record (a replay of captured frames).
 */
export const UNCONFIRMED_REPORTED_FROM = 5;
export const TCP_LINK = "tcp";
export const DETECTOR_TICK_MS = 100;
/** How long the heartbeat thread waits for its first sockets, or to close them, before giving up. */
const THREAD_START_TIMEOUT_MS = 10_000;

/**
 * How long the heartbeat thread goes on sending after the agent's loop last renewed its lease:
 * the suspicion time less an interval, and at least two intervals so that renewals every tick keep
 * it alive. It bounds how long a hung loop still looks alive to the peer; it is not what keeps a
 * takeover safe: a loop that stalls past suspectMs asks the peer on waking before it acts, and the
 * peer takes over only after the lease and then a deadtime of silence.
 */
export function beatLeaseMs(intervalMs: number, suspectMs: number, deadtimeMs: number): number {
  return Math.max(2 * intervalMs, Math.min(suspectMs, deadtimeMs) - intervalMs);
}

/** The wire's options (who, the key, the links, the interval) and the detector's. */
export interface HeartbeatOptions extends WireOptions {
  suspectMs: number;
  deadtimeMs: number;
  transport: DatagramTransport;
  clock: Clock;
  timers: Timers;
  report: (events: DuetEvent[]) => void;
  /**
   * Sockets and frames in a worker thread of their own, on the system's clock and UDP (the
   * transport above is then unused): frames keep their timing while this loop is busy (API load,
   * GC), up to the lease it renews at every detector tick. The simulator keeps them in its world.
   */
  thread?: boolean;
  /** The jobs this node holds, said in its frames: read at every detector tick. */
  holds?: () => string[];
}

/** The newest frame's word on the jobs the peer holds, and when (monotonic) it was read. */
export interface PeerHolds {
  jobs: string[];
  at: number;
}

/**
 * UDP heartbeat links plus the failure detector. Every interval each link sends a sealed frame and
 * the detector ticks; good frames feed it, bad ones are dropped, counted and reported at a bounded
 * rate. The peer channel counts as one more link, fed through heardTcp.
 */
export async function startHeartbeat(options: HeartbeatOptions) {
  const { clock, timers, report } = options;
  const detector = createDetector({
    self: options.self,
    peer: options.peer,
    suspectMs: options.suspectMs,
    deadtimeMs: options.deadtimeMs,
    startedAt: clock.monotonic(),
    links: [...options.links.map((l) => ({ id: l.id, kind: "udp" as const })), { id: TCP_LINK, kind: "tcp" as const }],
  });
  const stats = { rejected: {} as Partial<Record<FrameRejection, number>> };
  const pending = new Map<string, { link: string; reason: FrameRejection; count: number; sinceAt: number; reportedAt: number }>();
  // The detector runs on monotonic time (immune to clock steps); journaled times are wall-clock.
  const wallOf = (monotonic: number) => Math.round(clock.now() - (clock.monotonic() - monotonic));
  const wallOrNever = (monotonic: number) => (monotonic === 0 ? 0 : wallOf(monotonic));
  const toWall = (events: DuetEvent[]): DuetEvent[] =>
    events.map((e) => {
      switch (e.type) {
        case "LinkDown":
          return { ...e, data: { ...e.data, lastHeardAt: wallOf(e.data.lastHeardAt) } };
        case "PeerSuspected":
          return { ...e, data: { ...e.data, lastHeardAt: wallOrNever(e.data.lastHeardAt) } };
        case "PeerLost":
          return { ...e, data: { ...e.data, lastHeardAt: wallOrNever(e.data.lastHeardAt) } };
        default:
          return e;
      }
    });
  const emit = (events: DuetEvent[]) => events.length > 0 && report(toWall(events));

  function reject(index: number, reason: FrameRejection): void {
    const link = options.links[index]!.id;
    stats.rejected[reason] = (stats.rejected[reason] ?? 0) + 1;
    const key = `${link}\u0000${reason}`;
    const entry = pending.get(key) ?? { link, reason, count: 0, sinceAt: clock.now(), reportedAt: 0 };
    entry.count += 1;
    pending.set(key, entry);
    flushRejections(false);
  }

  function flushRejections(force: boolean): void {
    const now = clock.now();
    const events: DuetEvent[] = [];
    for (const entry of pending.values()) {
      if (entry.count === 0 || (!force && now - entry.reportedAt < REJECTION_REPORT_INTERVAL_MS)) continue;
      if (entry.reason === "unconfirmed" && entry.count < UNCONFIRMED_REPORTED_FROM) {
        if (now - entry.sinceAt >= REJECTION_REPORT_INTERVAL_MS) Object.assign(entry, { count: 0, sinceAt: now });
        continue;
      }
      events.push({ type: "FramesRejected", data: { node: options.self, link: entry.link, count: entry.count, reason: entry.reason, sinceAt: entry.sinceAt } });
      entry.count = 0;
      entry.reportedAt = now;
      entry.sinceAt = now;
    }
    if (events.length > 0) report(events);
  }

  let peerHolds: PeerHolds | null = null;
  const sink: HeartbeatSink = {
    heard: (index, at) => emit(detector.heard(options.links[index]!.id, at)),
    holds: (jobs, at) => (peerHolds = { jobs, at }),
    rejected: reject,
  };
  const leaseMs = beatLeaseMs(options.intervalMs, options.suspectMs, options.deadtimeMs);
  let failedOnce = false;
  const failed = (message: string) =>
    !failedOnce &&
    (failedOnce = true) &&
    report([{ type: "AlertRaised", data: { node: options.self, code: "heartbeat-thread", message: `the heartbeat thread stopped: ${message}; no frames go out` } }]);
  const wire = options.thread ? await startThreadWire(wireOptions(options), sink, leaseMs, failed) : await startLocalWire(options, sink);

  // The detector looks more often than frames go out: a loss is seen within 100 ms of the deadtime,
  // not up to a whole interval later (that interval would add to every takeover).
  // A tick late by this process's own stall is skipped: the frames that waited behind the stall
  // are read first, so this node never calls the peer silent for its own pause.
  const tickMs = Math.min(DETECTOR_TICK_MS, options.intervalMs);
  const late = lateTickGuard(clock, tickMs);
  let saidHolds = "[]";
  const tick = timers.every(tickMs, () => {
    wire.renew(clock.monotonic() + leaseMs);
    const holds = options.holds?.() ?? [];
    const said = JSON.stringify(holds);
    if (said !== saidHolds) {
      saidHolds = said;
      wire.setHolds(holds);
    }
    wire.fold();
    if (late() === null) emit(detector.tick(clock.monotonic()));
    flushRejections(false);
  });

  return {
    heardTcp(_at: number): void {
      emit(detector.heard(TCP_LINK, clock.monotonic()));
    },
    state: () => {
      wire.fold();
      return detector.state();
    },
    stats: () => ({ ...wire.counts(), rejected: { ...stats.rejected } }),
    /** What the peer's newest v3 frame said it holds; null before one came. */
    peerHolds: (): PeerHolds | null => peerHolds,
    async stop(): Promise<void> {
      tick.cancel();
      flushRejections(true);
      await wire.close();
    },
  };
}
export type Heartbeat = Awaited<ReturnType<typeof startHeartbeat>>;

/** What the wires hand the detector: the wire's sink, with the peer's claims apart. */
interface HeartbeatSink extends WireSink {
  holds(jobs: string[], at: number): void;
}

const wireOptions = (o: HeartbeatOptions): WireOptions => ({ self: o.self, peer: o.peer, cluster: o.cluster, key: o.key, boot: o.boot, links: o.links, intervalMs: o.intervalMs });

/** The links on this loop, in this world: what the simulator runs. */
async function startLocalWire(options: HeartbeatOptions, sink: HeartbeatSink) {
  const counts = { sent: 0, received: 0 };
  const counting: WireSink = {
    heard(index, at, holds) {
      counts.received += 1;
      sink.heard(index, at, null);
      if (holds) sink.holds(holds, at);
    },
    rejected: sink.rejected,
  };
  const wire = await openWire(wireOptions(options), options, counting, () => true, () => (counts.sent += 1));
  return { renew: (_until: number) => undefined, fold: () => undefined, setHolds: wire.setHolds, counts: () => ({ ...counts }), close: async () => wire.close() };
}

/**
 * The links in a worker thread (beat-thread.ts). Each good frame's time lands in shared memory and
 * a message pokes this loop; fold() reads the shared times first, so a tick after a busy spell
 * judges by when frames really arrived, not by when their messages got through.
 */
async function startThreadWire(options: WireOptions, sink: HeartbeatSink, leaseMs: number, failed: (message: string) => void) {
  const shared = new SharedArrayBuffer(sharedBytes(options.links.length));
  const slots = new BigInt64Array(shared);
  const folded = options.links.map(() => 0n);
  // The thread reads this loop's performance.now() as its own hrtime less this origin.
  const originMs = hrMs() - performance.now();
  Atomics.store(slots, SLOT.leaseUntil, micros(performance.now() + leaseMs));
  const worker = threadWorker({ options, shared, originMs });
  const fold = () => {
    for (const [index] of options.links.entries()) {
      const at = Atomics.load(slots, SLOT.heardAt + index);
      if (at <= folded[index]!) continue;
      folded[index] = at;
      sink.heard(index, Number(at) / 1000, null);
    }
  };
  let closed: () => void = () => undefined;
  await new Promise<void>((resolve, reject) => {
    const timeout = setTimeout(() => reject(new Error("the heartbeat thread did not start")), THREAD_START_TIMEOUT_MS);
    worker.on("message", (message: ThreadMessage) => {
      if (message.kind === "ready") resolve();
      if (message.kind === "failed") reject(new Error(message.message));
      if (message.kind === "heard") {
        fold();
        if (message.holds) sink.holds(message.holds, message.at);
      }
      if (message.kind === "rejected") sink.rejected(message.index, message.reason);
      if (message.kind === "closed") closed();
      if (message.kind !== "heard" && message.kind !== "rejected") clearTimeout(timeout);
    });
    worker.once("error", (error) => reject(error));
  }).catch(async (error: Error) => {
    await worker.terminate();
    throw error;
  });
  let stopping = false;
  worker.on("error", (error) => failed(error.message));
  worker.on("exit", (code) => stopping || failed(`exit code ${code}`));
  return {
    renew: (until: number) => Atomics.store(slots, SLOT.leaseUntil, micros(until)),
    setHolds: (jobs: readonly string[]) => worker.postMessage({ kind: "holds", jobs: [...jobs] } satisfies AgentMessage),
    fold,
    counts: () => ({ sent: Number(Atomics.load(slots, SLOT.sent)), received: Number(Atomics.load(slots, SLOT.received)) }),
    async close(): Promise<void> {
      stopping = true;
      const done = new Promise<void>((resolve) => {
        closed = resolve;
        worker.once("exit", () => resolve());
        setTimeout(resolve, THREAD_START_TIMEOUT_MS).unref();
      });
      worker.postMessage({ kind: "stop" } satisfies AgentMessage);
      await done;
      await worker.terminate();
    },
  };
}

/**
 * beat-thread.ts beside this file. Compiled, it runs as it is; from TypeScript sources (tests,
 * benches) the thread registers tsx first: Node 20 does not pass the loader on to threads.
 */
function threadWorker(workerData: unknown): Worker {
  const entry = new URL(`./beat-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData });
  return new Worker(`import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`, { eval: true, workerData });
}
