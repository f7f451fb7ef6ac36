import { createHmac, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { Packr } from "msgpackr";
import { createFrameCodec, FRAME_MAX_BYTES, type FrameCodec } from "../../src/cluster/frame.ts";
import { startHeartbeat, type Heartbeat } from "../../src/cluster/heartbeat.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { udpTransport } from "../../src/world/transport.ts";

const key = randomBytes(32);
const packr = new Packr({ useRecords: false });
const mac = (body: Uint8Array) => createHmac("sha256", key).update(body).digest();
/** A sender's frames are accepted only once it has heard the receiver's boot (it echoes it). */
const hears = (sender: FrameCodec, receiver: FrameCodec, at = 1) => sender.open(receiver.seal("hello", at), "hello");
const codecs = (boot = "boot-1") => {
  const pair = {
    a: createFrameCodec({ cluster: "c", self: "a", peer: "b", key, boot }),
    b: createFrameCodec({ cluster: "c", self: "b", peer: "a", key, boot: "boot-b" }),
  };
  hears(pair.a, pair.b);
  return pair;
};

describe("heartbeat frames", () => {
  it("a sealed frame opens once; a replay, another link or another key is refused", () => {
    const { a, b } = codecs();
    const frame = a.seal("lan", 1000);
    expect(b.open(frame, "lan")).toEqual({ ok: true, from: "a", sentAt: 1000, holds: [] });
    expect(b.open(frame, "lan")).toEqual({ ok: false, reason: "replayed" });
    expect(b.open(a.seal("lan", 1001), "backup")).toEqual({ ok: false, reason: "replayed" });
    const stranger = createFrameCodec({ cluster: "c", self: "a", peer: "b", key: randomBytes(32), boot: "x" });
    expect(b.open(stranger.seal("lan", 2000), "lan")).toEqual({ ok: false, reason: "bad-mac" });
  });

  it("a restarted peer is believed, and frames of its previous boot stay refused", () => {
    const { b } = codecs();
    const first = createFrameCodec({ cluster: "c", self: "a", peer: "b", key, boot: "boot-1" });
    hears(first, b);
    const captured = first.seal("lan", 1000);
    expect(b.open(first.seal("lan", 1500), "lan").ok).toBe(true);
    const second = createFrameCodec({ cluster: "c", self: "a", peer: "b", key, boot: "boot-2" });
    hears(second, b);
    expect(b.open(second.seal("lan", 2000), "lan").ok).toBe(true);
    expect(b.open(captured, "lan")).toEqual({ ok: false, reason: "replayed" });
    const old = createFrameCodec({ cluster: "c", self: "a", peer: "b", key, boot: "boot-1" });
    hears(old, b);
    for (let i = 0; i < 5; i++) old.seal("lan", 0);
    expect(b.open(old.seal("lan", 3000), "lan")).toEqual({ ok: false, reason: "replayed" });
  });

  it("frames captured before the receiver restarted are refused after it restarts; the live peer is believed within a frame", () => {
    const a = createFrameCodec({ cluster: "c", self: "a", peer: "b", key, boot: "a-1" });
    const before = createFrameCodec({ cluster: "c", self: "b", peer: "a", key, boot: "b-1" });
    hears(a, before);
    const captured = [1000, 1500, 2000].map((t) => a.seal("lan", t));
    for (const frame of captured) expect(before.open(frame, "lan").ok).toBe(true);
    // b's agent restarts: its memory of a's frames is gone, its boot is new.
    const after = createFrameCodec({ cluster: "c", self: "b", peer: "a", key, boot: "b-2" });
    for (const frame of captured) expect(after.open(frame, "lan")).toEqual({ ok: false, reason: "unconfirmed" });
    // The real a hears b's new boot from b's next frame, and its frames are believed again.
    expect(a.open(after.seal("lan", 2100), "lan").ok).toBe(true);
    expect(after.open(a.seal("lan", 2200), "lan")).toEqual({ ok: true, from: "a", sentAt: 2200, holds: [] });
    // Old frames replayed to a after that do not make it echo b's old boot.
    expect(a.open(before.seal("lan", 500), "lan").ok).toBe(false);
    expect(after.open(a.seal("lan", 2300), "lan").ok).toBe(true);
  });

  it("a frame says which jobs its sender holds, cut short to stay small; a v2 frame says nothing of jobs", () => {
    const { a, b } = codecs();
    expect(b.open(a.seal("lan", 1000, ["shop", "web"]), "lan")).toMatchObject({ ok: true, holds: ["shop", "web"] });
    const many = Array.from({ length: 60 }, (_, i) => `job-with-a-long-name-${i}`);
    const frame = a.seal("lan", 1001, many);
    expect(frame.length).toBeLessThanOrEqual(FRAME_MAX_BYTES);
    const opened = b.open(frame, "lan");
    expect(opened.ok && opened.holds!.length).toBeGreaterThan(0);
    expect(opened.ok && many.slice(0, opened.holds!.length)).toEqual(opened.ok && opened.holds);
    // An agent not yet upgraded sends v2 frames: believed, with no word on jobs.
    const v2 = packr.pack([2, "c", "a", "lan", "boot-1", 99, 1002, "boot-b"]);
    expect(b.open(Buffer.concat([v2, mac(v2)]), "lan")).toEqual({ ok: true, from: "a", sentAt: 1002, holds: null });
    const badHolds = packr.pack([3, "c", "a", "lan", "boot-1", 100, 1003, "boot-b", [1, 2]]);
    expect(b.open(Buffer.concat([badHolds, mac(badHolds)]), "lan")).toEqual({ ok: false, reason: "malformed" });
  });

  it("a peer that sends v2 frames (not yet upgraded) is answered in v2, which it reads; once it sends v3, v3 again", () => {
    const { a, b } = codecs();
    const versionOf = (frame: Buffer) => (packr.unpack(frame.subarray(0, frame.length - 32)) as unknown[])[0];
    expect(versionOf(b.seal("lan", 1000, ["shop"]))).toBe(3);
    const v2 = packr.pack([2, "c", "a", "lan", "boot-old", 1, 1002, "boot-b"]);
    expect(b.open(Buffer.concat([v2, mac(v2)]), "lan").ok).toBe(true);
    const answer = b.seal("lan", 1003, ["shop"]);
    expect(versionOf(answer)).toBe(2);
    expect((packr.unpack(answer.subarray(0, answer.length - 32)) as unknown[]).length).toBe(8);
    // The peer upgraded (a new boot): v3 again; its captured v2 frame replayed later changes nothing.
    expect(b.open(a.seal("lan", 1004), "lan").ok).toBe(true);
    expect(versionOf(b.seal("lan", 1005))).toBe(3);
    expect(b.open(Buffer.concat([v2, mac(v2)]), "lan").ok).toBe(false);
    expect(versionOf(b.seal("lan", 1006))).toBe(3);
  });

  it("garbage, oversized and foreign-cluster frames are refused without throwing", () => {
    const { b } = codecs();
    expect(b.open(Buffer.alloc(0), "lan").ok).toBe(false);
    expect(b.open(Buffer.alloc(600), "lan")).toEqual({ ok: false, reason: "oversized" });
    const foreign = createFrameCodec({ cluster: "other", self: "a", peer: "b", key, boot: "x" });
    expect(b.open(foreign.seal("lan", 1), "lan")).toEqual({ ok: false, reason: "unknown-peer" });
  });

  it("any change to a sealed frame's bytes is refused (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 1, max: 255 }), (position, flip) => {
        const { a, b } = codecs();
        const frame = Buffer.from(a.seal("lan", 5000));
        const at = position % frame.length;
        frame[at] = frame[at]! ^ flip;
        expect(b.open(frame, "lan").ok).toBe(false);
      }),
    );
  });
});

describe("heartbeat links on loopback", () => {
  const running: Heartbeat[] = [];
  afterEach(async () => {
    for (const h of running.splice(0)) await h.stop();
  });
  const port = 20000 + ((process.pid * 7) % 20000);

  function start(self: "a" | "b", events: DuetEvent[], keyUsed = key) {
    const address = self === "a" ? "127.0.0.1" : "127.0.0.2";
    const peerAddress = self === "a" ? "127.0.0.2" : "127.0.0.1";
    return startHeartbeat({
      self,
      peer: self === "a" ? "b" : "a",
      cluster: "c",
      key: keyUsed,
      boot: randomBytes(4).toString("hex"),
      links: [{ id: "lan", local: { address, port }, peer: { address: peerAddress, port } }],
      intervalMs: 50,
      suspectMs: 150,
      deadtimeMs: 300,
      transport: udpTransport,
      clock: systemClock,
      timers: systemTimers,
      report: (e) => events.push(...e),
    }).then((h) => (running.push(h), h));
  }
  const until = async (what: () => boolean, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (!what()) {
      if (Date.now() > deadline) throw new Error("timed out waiting");
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const types = (events: DuetEvent[]) => events.map((e) => e.type);

  it("links come up, go down after the deadtime when the peer stops, and the peer is seen again when it returns", async () => {
    const eventsA: DuetEvent[] = [];
    await start("a", eventsA);
    const b = await start("b", []);
    await until(() => types(eventsA).includes("PeerSeen"));
    expect(types(eventsA).slice(0, 2)).toEqual(["LinkUp", "PeerSeen"]);
    await b.stop();
    running.splice(running.indexOf(b), 1);
    const stoppedAt = Date.now();
    await until(() => types(eventsA).includes("PeerLost"));
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(250);
    expect(types(eventsA)).toEqual(["LinkUp", "PeerSeen", "PeerSuspected", "LinkDown", "PeerLost"]);
    await start("b", []);
    await until(() => types(eventsA).filter((t) => t === "PeerSeen").length === 2);
  });

  it("this process's own stall is not the peer's silence: no suspicion, no loss, when the loop blocks past the deadtime", async () => {
    const eventsA: DuetEvent[] = [];
    await start("a", eventsA);
    await start("b", []);
    await until(() => types(eventsA).includes("PeerSeen"));
    const end = Date.now() + 1000; // a blocked loop (GC, a sync replay): more than 3 deadtimes
    while (Date.now() < end);
    await new Promise((r) => setTimeout(r, 300));
    expect(types(eventsA)).toEqual(["LinkUp", "PeerSeen"]);
  });

  it("frames with a wrong key are dropped, counted and reported once, and never bring a link up", async () => {
    const eventsA: DuetEvent[] = [];
    const a = await start("a", eventsA);
    await start("b", [], randomBytes(32));
    await until(() => (a.stats().rejected["bad-mac"] ?? 0) >= 5);
    expect(types(eventsA).filter((t) => t === "FramesRejected")).toHaveLength(1);
    expect(types(eventsA)).not.toContain("LinkUp");
  });

  it("random datagrams from anywhere never crash the agent", async () => {
    const eventsA: DuetEvent[] = [];
    const a = await start("a", eventsA);
    const socket = createSocket("udp4");
    await new Promise<void>((r) => socket.bind(0, "127.0.0.2", r));
    for (let i = 0; i < 50; i++) socket.send(randomBytes(i * 13), port, "127.0.0.1");
    await until(() => Object.values(a.stats().rejected).reduce((x, y) => x + (y ?? 0), 0) >= 45);
    socket.close();
    expect(types(eventsA)).toContain("FramesRejected");
  });
});
