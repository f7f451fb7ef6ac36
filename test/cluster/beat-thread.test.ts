import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { beatLeaseMs, startHeartbeat, type Heartbeat } from "../../src/cluster/heartbeat.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { udpTransport } from "../../src/world/transport.ts";

const TIMINGS = { intervalMs: 100, suspectMs: 1000, deadtimeMs: 2500 };
const LEASE_MS = beatLeaseMs(TIMINGS.intervalMs, TIMINGS.suspectMs, TIMINGS.deadtimeMs);
const port = 38000 + ((process.pid * 7) % 900);
const address = { a: "127.0.0.81", b: "127.0.0.82" };
const link = (self: "a" | "b") => {
  const peer = self === "a" ? "b" : "a";
  return [{ id: "lan", local: { address: address[self], port }, peer: { address: address[peer], port } }];
};

// Node a, in a process of its own with its heartbeat thread: on "block N" its agent loop is held
// for N ms (as a flood of API requests or a long GC would), and it says when it is free again.
const endpoint = `
  import { startHeartbeat } from ${JSON.stringify(new URL("../../src/cluster/heartbeat.ts", import.meta.url).pathname)};
  import { systemClock, systemTimers } from ${JSON.stringify(new URL("../../src/world/clock.ts", import.meta.url).pathname)};
  import { udpTransport } from ${JSON.stringify(new URL("../../src/world/transport.ts", import.meta.url).pathname)};
  import { createInterface } from "node:readline";
  const [options] = process.argv.slice(1);
  const hb = await startHeartbeat({ ...JSON.parse(options), key: Buffer.alloc(32, 7), transport: udpTransport, clock: systemClock, timers: systemTimers, thread: true, holds: () => ["shop"], report: () => undefined });
  console.log("ready");
  createInterface({ input: process.stdin }).on("line", async (line) => {
    const [verb, ms] = line.split(" ");
    if (verb === "stop") { await hb.stop(); process.exit(0); }
    console.log("blocking");
    const end = Date.now() + Number(ms);
    while (Date.now() < end) {}
    console.log("unblocked");
  });
`;

let child: ChildProcess;
let lines: AsyncIterator<string>;
let b: Heartbeat;
const events: { type: DuetEvent["type"]; at: number }[] = [];
const said = async (expected: string) => {
  for (;;) {
    const next = await lines.next();
    if (next.done) throw new Error(`a ended before saying ${expected}`);
    if (next.value === expected) return performance.now();
  }
};
const heardAt = () => b.state().links.find((l) => l.id === "lan")!.lastHeardAt;
const until = async (what: string, ok: () => boolean, ms = 10_000) => {
  for (const end = performance.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 10))) if (performance.now() > end) throw new Error(`not ${what} within ${ms} ms`);
};

beforeAll(async () => {
  const options = { self: "a", peer: "b", cluster: "c", boot: `a-${process.pid}`, links: link("a"), ...TIMINGS };
  child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", endpoint, JSON.stringify(options)], { stdio: ["pipe", "pipe", "inherit"] });
  lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  b = await startHeartbeat({ self: "b", peer: "a", cluster: "c", key: Buffer.alloc(32, 7), boot: `b-${process.pid}`, links: link("b"), ...TIMINGS, transport: udpTransport, clock: systemClock, timers: systemTimers, report: (es) => events.push(...es.map((e) => ({ type: e.type, at: performance.now() }))) });
  await said("ready");
  await until("b hears a", () => b.state().peer === "seen");
}, 30_000);
afterAll(async () => {
  child?.stdin?.write("stop\n");
  await b?.stop();
  child?.kill("SIGKILL");
});

/** The longest b goes without a frame from a while a's loop is held for MS, sampled every 10 ms. */
async function gapWhileBlocked(ms: number): Promise<{ gapMs: number; blockedAt: number }> {
  child.stdin!.write(`block ${ms}\n`);
  const blockedAt = await said("blocking");
  let gapMs = 0;
  const sampler = setInterval(() => (gapMs = Math.max(gapMs, performance.now() - (heardAt() ?? 0))), 10);
  await said("unblocked");
  clearInterval(sampler);
  return { gapMs, blockedAt };
}

describe("heartbeats in a thread of their own", () => {
  it("a's frames say which jobs a holds", async () => {
    await until("b reads a's jobs", () => b.peerHolds()?.jobs.includes("shop") === true);
    expect(b.peerHolds()!.at).toBeLessThanOrEqual(performance.now());
  });

  it("a's loop held for 600 ms: its frames still reach b on time, and b suspects nothing", async () => {
    const before = events.length;
    const { gapMs } = await gapWhileBlocked(600);
    console.log(`a's loop held 600 ms: b went at most ${gapMs.toFixed(0)} ms without a frame (interval ${TIMINGS.intervalMs} ms)`);
    // On a's loop, the frames would have stopped for the whole 600 ms.
    expect(gapMs).toBeLessThan(450);
    expect(events.slice(before).map((e) => e.type)).not.toContain("PeerSuspected");
  });

  it("a's loop held past its lease: the thread stops sending, so b loses a; frames resume when the loop does", async () => {
    const before = events.length;
    const blocked = gapWhileBlocked(TIMINGS.deadtimeMs + LEASE_MS + 1000);
    await until("b loses a", () => events.slice(before).some((e) => e.type === "PeerLost"), 8000);
    const lastFrame = b.state().lastHeardAt!;
    const { blockedAt } = await blocked;
    const lost = events.slice(before).find((e) => e.type === "PeerLost")!;
    // b lost a during the hold, and a's last frame went out within its lease of the hold's start.
    expect(lost.at).toBeGreaterThan(blockedAt);
    expect(events.slice(before).find((e) => e.type === "PeerSeen")?.at ?? Infinity).toBeGreaterThan(lost.at);
    console.log(`a's loop held past its ${LEASE_MS} ms lease: the last frame came ${(lastFrame - blockedAt).toFixed(0)} ms into the hold`);
    await until("b hears a again", () => b.state().peer === "seen", 5000);
    expect(lastFrame - blockedAt).toBeLessThan(LEASE_MS + 2 * TIMINGS.intervalMs + 300);
  }, 20_000);
});
