import { describe, expect, it } from "vitest";
import { startPeerChannel, type PeerChannel } from "../../src/cluster/peer-channel.ts";
import { createSimNetwork, createVirtualWorld, seededRandom } from "../../src/world/sim.ts";

/**
 * The real peer channel on simulated TCP and a virtual clock: what the whole-agent simulator
 * will run between its nodes. Time moves only when the test advances it.
 */
const KEEPALIVE_MS = 200;
const A = ["10.0.0.1", "10.1.0.1"];
const B = ["10.0.0.2", "10.1.0.2"];
const PORT = 7330;

async function pairOnSimNetwork(seed: number) {
  const world = createVirtualWorld();
  const net = createSimNetwork(world, { seed, delayMs: [1, 4] });
  const trace: string[] = [];
  const at = () => world.clock.monotonic();
  const open = (self: "a" | "b"): PeerChannel => {
    const [mine, theirs] = self === "a" ? [A, B] : [B, A];
    return startPeerChannel({
      self,
      peer: self === "a" ? "b" : "a",
      cluster: "sim",
      key: Buffer.alloc(32, 1),
      listen: mine.map((address) => ({ address, port: PORT })),
      connect: theirs.map((address) => ({ address, port: PORT })),
      dial: self === "a",
      keepaliveMs: KEEPALIVE_MS,
      timers: world.timers,
      clock: world.clock,
      streams: net.streamsFor(mine),
      random: seededRandom(seed + (self === "a" ? 1 : 2)),
      onRequest: async (body) => ({ echo: body, by: self }),
      onUp: () => trace.push(`${at()} ${self} up`),
      onDown: (reason) => trace.push(`${at()} ${self} down: ${reason}`),
    });
  };
  const a = open("a");
  const b = open("b");
  /** Advances virtual time in steps, letting the promises each step resolves run before the next. */
  const run = async (ms: number, stepMs = 5) => {
    for (let t = 0; t < ms; t += stepMs) {
      world.advanceBy(stepMs);
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
  };
  return { world, net, a, b, trace, run, at };
}

describe("the peer channel on simulated TCP, in virtual time", () => {
  it("connects, answers a request, drops on a cut after three keepalives of silence, and redials after the heal", async () => {
    const { net, a, b, trace, run, at } = await pairOnSimNetwork(7);
    await run(50);
    expect(a.connected() && b.connected()).toBe(true);
    const answer = a.request({ ask: 1 }, 1000);
    await run(20);
    await expect(answer).resolves.toEqual({ echo: { ask: 1 }, by: "b" });

    const cutAt = at();
    for (const i of [0, 1]) net.partition(A[i]!, B[i]!);
    await run(3 * KEEPALIVE_MS + 2 * KEEPALIVE_MS);
    expect(a.connected() || b.connected()).toBe(false);
    const downs = trace.filter((line) => / down: nothing heard/.test(line)).map((line) => Number(line.split(" ")[0]) - cutAt);
    expect(downs).toHaveLength(2);
    for (const ms of downs) expect(ms).toBeGreaterThan(3 * KEEPALIVE_MS);
    // Requests across the cut fail clearly rather than hang.
    await expect(a.request({ ask: 2 }, 1000)).rejects.toThrow("peer b is not connected");

    net.heal();
    await run(6000);
    expect(a.connected() && b.connected()).toBe(true);
    const again = b.request({ ask: 3 }, 1000);
    await run(20);
    await expect(again).resolves.toEqual({ echo: { ask: 3 }, by: "a" });
    await a.close();
    await b.close();
  });

  it("a seed replays exactly: the same trace, to the virtual millisecond", async () => {
    const traceOf = async (seed: number) => {
      const { net, a, b, trace, run } = await pairOnSimNetwork(seed);
      await run(100);
      net.partition(A[0]!, B[0]!);
      net.partition(A[1]!, B[1]!);
      await run(1000);
      net.heal();
      await run(6000);
      await a.close();
      await b.close();
      return trace;
    };
    const first = await traceOf(42);
    expect(first.length).toBeGreaterThanOrEqual(6); // up, down, up on each side
    expect(await traceOf(42)).toEqual(first);
  });
});
