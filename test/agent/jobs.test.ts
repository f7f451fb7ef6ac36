import { describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { projectCluster } from "../../src/projections/cluster.ts";
import { createJobControl, type JobHost } from "../../src/agent/jobs.ts";
import { Refusal } from "../../src/api/ports.ts";
import { createVirtualWorld } from "../../src/world/sim.ts";
import { stamp } from "../arbitraries.ts";

const created: DuetEvent = { type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors: [] } };
const started: DuetEvent = { type: "AgentStarted", data: { node: "a", version: "t", pid: 1, configHash: "h", heartbeatIntervalMs: 500, suspectMs: 1000, deadtimeMs: 3000, pingTimeoutMs: 500, selfFenceGraceMs: 1000, links: [] } };

/**
 * A job control for node SELF on the journal EVENTS, with the world's timers; what it journals is
 * kept in `recorded`. PEER: how the peer answers (default: not connected).
 */
function controlOn(self: string, events: DuetEvent[], peer: Partial<JobHost["peer"]> = {}, world = createVirtualWorld()) {
  const state = projectCluster(self, stamp(events, self));
  const recorded: DuetEvent[] = [];
  const jobs = createJobControl({
    self,
    state: () => state,
    head: () => events.length,
    now: () => world.clock.now(),
    timers: world.timers,
    record: async (batch) => (recorded.push(...batch), batch.map((_, i) => ({ seq: events.length + recorded.length - batch.length + i + 1 }))),
    runner: () => undefined,
    peer: { connected: () => false, request: async () => ({ ok: true }), relay: () => undefined, ...peer },
    log: () => undefined,
  });
  return { jobs, recorded, world };
}

describe("asking the peer to act on a job", () => {
  it("a connection destroyed but not yet seen closed is asked again after a pause, never in the same turn (found by the simulator, seed 71)", async () => {
    let asked = 0;
    const { jobs, world } = controlOn("a", [created, started, { type: "PeerSeen", data: { node: "a", peer: "b" } }, { type: "JobBroughtIn", data: { job: "web", node: "b" } }], {
      // The channel still holds the connection, whose socket is already destroyed.
      connected: () => true,
      request: async () => {
        // Before, the retry spun in microtasks until the deadline: stop it here so the test ends.
        if (++asked > 1000) return { ok: true };
        throw new Error("connection to b lost before the frame was sent: nothing heard from b for 1999 ms");
      },
    });
    await jobs.bringOut("web", "admin");
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(asked, "requests made before any virtual time passed").toBe(1);
    for (let ms = 0; ms < 3200; ms += 10) {
      world.advanceBy(10);
      for (let i = 0; i < 10; i++) await Promise.resolve();
    }
    // One every 50 ms until the deadline (a deadtime), then given up.
    expect(asked).toBeGreaterThan(10);
    expect(asked).toBeLessThanOrEqual(3000 / 50 + 2);
  });

  it("a bring-out asked here while the job runs on the peer, out of reach, is refused: it would stop nothing (found by the simulator, seed 77)", async () => {
    const { jobs, recorded } = controlOn("a", [created, started, { type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
    const refusal = await jobs.bringOut("web", "admin").catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(Refusal);
    expect(refusal).toMatchObject({ code: "peer-not-connected", message: expect.stringContaining("runs on b, which is not connected") });
    expect(recorded).toEqual([]);
  });

  it("a bring-in on a node that cannot hear its peer and reaches no ping target is refused, forced or not (found by the simulator, seed 1347)", async () => {
    const cutOff: DuetEvent[] = [
      created,
      started,
      { type: "PeerSeen", data: { node: "a", peer: "b" } },
      { type: "PeerLost", data: { node: "a", peer: "b", lastHeardAt: 1, deadtimeMs: 3000 } },
      { type: "TiebreakerResult", data: { node: "a", peer: "b", method: "ping", purpose: "peer-lost", verdict: "isolated", targets: [{ target: "10.0.0.254", ok: false }] } },
    ];
    const { jobs, recorded } = controlOn("a", cutOff);
    for (const force of [false, true]) {
      const refusal = await jobs.bringIn("web", "admin", "a", force).catch((e: unknown) => e);
      expect(refusal).toMatchObject({ code: "isolated", message: expect.stringContaining("reaches none of its ping targets") });
    }
    expect(recorded).toEqual([]);
  });

  it("two fenced nodes resuming a job at once: each answers the other's question at once, and only the lower name starts it (found by the simulator, seed 3453)", async () => {
    // Before, each asked under its own job lock for the other's: both waited for the request's
    // timeout (120 s), and the job stayed down meanwhile.
    const world = createVirtualWorld();
    const fenced = (self: string): DuetEvent[] => [
      created,
      { ...started, data: { ...started.data, node: self } } as DuetEvent,
      { type: "PeerSeen", data: { node: self, peer: self === "a" ? "b" : "a" } },
    ];
    const starts: string[] = [];
    const controls = new Map<string, ReturnType<typeof createJobControl>>();
    for (const self of ["a", "b"]) {
      const state = projectCluster(self, stamp(fenced(self), self));
      const other = self === "a" ? "b" : "a";
      controls.set(
        self,
        createJobControl({
          self,
          state: () => state,
          head: () => 3,
          now: () => world.clock.now(),
          timers: world.timers,
          record: async (events) => events.map((_, i) => ({ seq: 4 + i })),
          runner: () => ({ bringIn: async () => (starts.push(self), { ok: true }) }) as never,
          peer: { connected: () => true, request: (req) => controls.get(other)!.onPeerRequest(req as never), relay: () => undefined },
          log: () => undefined,
        }),
      );
    }
    const both = Promise.all([controls.get("a")!.resumeHere("web"), controls.get("b")!.resumeHere("web")]);
    for (let i = 0; i < 200; i++) {
      world.advanceBy(10);
      for (let j = 0; j < 10; j++) await Promise.resolve();
    }
    const outcome = await Promise.race([both, new Promise((r) => setTimeout(() => r("stuck"), 2000))]);
    expect(outcome, "neither waits for the other's lock").not.toBe("stuck");
    expect(starts).toEqual(["a"]);
  });
});
