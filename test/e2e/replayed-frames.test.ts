import { createSocket, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Recorded } from "../../src/events/catalogue.ts";
import { startProcessPair } from "./process-pair.ts";

const A = "127.0.0.71";
const B = "127.0.0.72";
const base = 25000 + ((process.pid * 13) % 900);
let pair: Awaited<ReturnType<typeof startProcessPair>>;

function bindUdp(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket("udp4");
    socket.once("error", reject);
    socket.bind(port, address, () => resolve(socket));
  });
}

const since = (events: Recorded[], seq: number, type: string) => events.filter((e) => e.seq > seq && e.type === type);

beforeAll(async () => {
  pair = await startProcessPair({ name: "replayed-frames", addresses: { a: A, b: B }, ports: { api: base, peer: base + 1, heartbeat: base + 2 } });
  pair.start("a");
  pair.start("b");
  await pair.until("a and b connected", 20_000, async () => (await pair.cluster("a")).peerStatus === "connected" && (await pair.cluster("b")).peerStatus === "connected");
}, 40_000);

afterAll(async () => {
  await pair.close();
});

describe("heartbeat frames captured on the wire and replayed after a restart", () => {
  it("are refused: the restarted agent journals no LinkUp or PeerSeen for a dead peer, and reports the frames rejected", async () => {
    // Capture: with a's agent stopped, b's frames to a's heartbeat address arrive at the recorder
    // bound there instead, authentic and fresh, as a capture on the wire would hold them.
    await pair.stop("a");
    const recorder = await bindUdp(A, base + 2);
    const captured: Buffer[] = [];
    recorder.on("message", (frame) => captured.push(frame));
    await pair.until("6 frames of b captured", 15_000, async () => captured.length >= 6, 50);
    recorder.close();
    await pair.stop("b");

    // a restarts; b is dead. Replay what was captured, at the rate b sent it, for 4 s.
    pair.start("a");
    await pair.client("a");
    const startedAt = (await pair.events("a")).findLast((e) => e.type === "AgentStarted")!.seq;
    const replayer = await bindUdp("127.0.0.1", 0);
    for (let i = 0; i < 8; i++) {
      for (const frame of captured) replayer.send(frame, base + 2, A);
      await new Promise((r) => setTimeout(r, 500));
    }
    replayer.close();
    const events = await pair.events("a");
    expect(since(events, startedAt, "LinkUp"), "links a replay brought up").toEqual([]);
    expect(since(events, startedAt, "PeerSeen"), "the dead peer seen again").toEqual([]);
    expect((await pair.cluster("a")).peerStatus).not.toBe("connected");
    const rejected = since(events, startedAt, "FramesRejected");
    expect(rejected.length, "the replay reported as rejected frames").toBeGreaterThan(0);
    // Frames of b's last boot that echo a's previous boot, not this one: unconfirmed.
    expect(rejected.map((e) => (e.data as { reason: string }).reason)).toContain("unconfirmed");
  }, 60_000);
});
