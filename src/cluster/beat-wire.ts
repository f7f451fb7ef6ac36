import type { Clock, Timers } from "../world/clock.ts";
import type { DatagramSocket, DatagramTransport } from "../world/transport.ts";
import { createFrameCodec, type FrameRejection } from "./frame.ts";

export interface HeartbeatLink {
  id: string;
  local: { address: string; port: number };
  peer: { address: string; port: number };
}

/** What the wire needs to seal and open frames: plain data, so it can cross to a worker thread. */
export interface WireOptions {
  self: string;
  peer: string;
  cluster: string;
  key: Buffer;
  boot: string;
  links: HeartbeatLink[];
  intervalMs: number;
}

export interface WireSink {
  /** An authentic, fresh frame on link INDEX, read at monotonic AT, with the jobs it says the peer holds. */
  heard(index: number, at: number, holds: string[] | null): void;
  rejected(index: number, reason: FrameRejection): void;
}

/**
 * The heartbeat links' sockets: a sealed frame on every link each interval while `mayBeat()` says
 * the agent is still in charge (its lease), and every frame read, opened and handed to the sink.
 * Frames say which jobs this node holds: a node waking from a stall learns from the frames that
 * waited for it whether the peer took its jobs over, before any connection is made again.
 * The same code runs in the agent's thread (the simulator's world) and in a thread of its own.
 */
export async function openWire(options: WireOptions, world: { transport: DatagramTransport; clock: Clock; timers: Timers }, sink: WireSink, mayBeat: () => boolean, onSent: () => void) {
  const { clock } = world;
  const codec = createFrameCodec(options);
  const sockets: DatagramSocket[] = [];
  let holds: readonly string[] = [];
  try {
    for (const [index, link] of options.links.entries()) {
      const socket = await world.transport.bind(link.local.address, link.local.port);
      socket.onMessage((bytes) => {
        const opened = codec.open(bytes, link.id);
        if (opened.ok) sink.heard(index, clock.monotonic(), opened.holds);
        else sink.rejected(index, opened.reason);
      });
      sockets.push(socket);
    }
  } catch (error) {
    for (const socket of sockets) socket.close();
    throw error;
  }

  const beat = () => {
    if (!mayBeat()) return;
    const now = clock.now();
    for (const [index, link] of options.links.entries()) {
      try {
        sockets[index]!.send(codec.seal(link.id, now, holds), link.peer.address, link.peer.port);
        onSent();
      } catch {
        // an unreachable peer is what the detector is for
      }
    }
  };
  const timer = world.timers.every(options.intervalMs, beat);
  beat();
  return {
    /** The jobs this node holds, said in every frame from now on. */
    setHolds(jobs: readonly string[]): void {
      holds = jobs;
    },
    close(): void {
      timer.cancel();
      for (const socket of sockets) socket.close();
    },
  };
}
export type Wire = Awaited<ReturnType<typeof openWire>>;
