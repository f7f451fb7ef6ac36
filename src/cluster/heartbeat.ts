import type { DuetEvent } from "../events/catalogue.ts";
import { lateTickGuard, type Clock, type Timers } from "../world/clock.ts";
import type { DatagramSocket, DatagramTransport } from "../world/transport.ts";
import { createDetector } from "./detector.ts";
import { createFrameCodec, type FrameRejection } from "./frame.ts";

/** Rejected frames are journaled at most once per link and reason in this window, with a count. */
export const REJECTION_REPORT_INTERVAL_MS = 10_000;
/**
 * Frames that do not yet echo this node's boot: one or two per link after either side starts are
 * the normal handshake; more in one window are worth a record (a replay of captured frames).
 */
export const UNCONFIRMED_REPORTED_FROM = 5;
export const TCP_LINK = "tcp";
export const DETECTOR_TICK_MS = 100;

export interface HeartbeatLink {
  id: string;
  local: { address: string; port: number };
  peer: { address: string; port: number };
}

export interface HeartbeatOptions {
  self: string;
  peer: string;
  cluster: string;
  key: Buffer;
  boot: string;
  links: HeartbeatLink[];
  intervalMs: number;
  suspectMs: number;
  deadtimeMs: number;
  transport: DatagramTransport;
  clock: Clock;
  timers: Timers;
  report: (events: DuetEvent[]) => void;
}

/**
 * UDP heartbeat links plus the failure detector. Every interval each link sends a sealed frame and
 * the detector ticks; good frames feed it, bad ones are dropped, counted and reported at a bounded
 * rate. The peer channel counts as one more link, fed through heardTcp.
 */
export async function startHeartbeat(options: HeartbeatOptions) {
  const { clock, timers, report } = options;
  const codec = createFrameCodec({ cluster: options.cluster, self: options.self, peer: options.peer, key: options.key, boot: options.boot });
  const detector = createDetector({
    self: options.self,
    peer: options.peer,
    suspectMs: options.suspectMs,
    deadtimeMs: options.deadtimeMs,
    startedAt: clock.monotonic(),
    links: [...options.links.map((l) => ({ id: l.id, kind: "udp" as const })), { id: TCP_LINK, kind: "tcp" as const }],
  });
  const stats = { sent: 0, received: 0, rejected: {} as Partial<Record<FrameRejection, number>> };
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

  const sockets: { link: HeartbeatLink; socket: DatagramSocket }[] = [];
  try {
    for (const link of options.links) {
      const socket = await options.transport.bind(link.local.address, link.local.port);
      socket.onMessage((bytes) => {
        const opened = codec.open(bytes, link.id);
        if (opened.ok) {
          stats.received += 1;
          emit(detector.heard(link.id, clock.monotonic()));
        } else reject(link.id, opened.reason);
      });
      sockets.push({ link, socket });
    }
  } catch (error) {
    for (const { socket } of sockets) socket.close();
    throw error;
  }

  function reject(link: string, reason: FrameRejection): void {
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

  const beat = () => {
    const now = clock.now();
    for (const { link, socket } of sockets) {
      try {
        socket.send(codec.seal(link.id, now), link.peer.address, link.peer.port);
        stats.sent += 1;
      } catch {
        // an unreachable peer is what the detector is for
      }
    }
    flushRejections(false);
  };
  const timer = timers.every(options.intervalMs, beat);
  // The detector looks more often than frames go out: a loss is seen within 100 ms of the deadtime,
  // not up to a whole interval later (that interval would add to every takeover).
  // A tick late by this process's own stall is skipped: the frames that waited behind the stall
  // are read first, so this node never calls the peer silent for its own pause.
  const tickMs = Math.min(DETECTOR_TICK_MS, options.intervalMs);
  const late = lateTickGuard(clock, tickMs);
  const tick = timers.every(tickMs, () => late() === null && emit(detector.tick(clock.monotonic())));
  beat();

  return {
    heardTcp(_at: number): void {
      emit(detector.heard(TCP_LINK, clock.monotonic()));
    },
    state: () => detector.state(),
    stats: () => ({ ...stats, rejected: { ...stats.rejected } }),
    async stop(): Promise<void> {
      timer.cancel();
      tick.cancel();
      flushRejections(true);
      for (const { socket } of sockets) socket.close();
    },
  };
}
export type Heartbeat = Awaited<ReturnType<typeof startHeartbeat>>;
