import fc from "fast-check";
import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { evolveCluster, initialCluster, projectCluster } from "../../src/projections/cluster.ts";
import { linksState } from "../../src/projections/membership.ts";
import { mirrorColour } from "../../src/projections/replication.ts";
import { recordedArb, stamp } from "../arbitraries.ts";

describe("cluster projection", () => {
  it("folds any event sequence to the same state twice", () => {
    fc.assert(
      fc.property(recordedArb(), (events) => {
        expect(projectCluster("a", events)).toEqual(projectCluster("a", events));
      }),
      { numRuns: 300 },
    );
  });

  it("gives the same state from any prefix's state plus the rest as from the whole fold", () => {
    fc.assert(
      fc.property(recordedArb(), fc.nat(), (events, cut) => {
        const at = events.length === 0 ? 0 : cut % (events.length + 1);
        const prefix = projectCluster("a", events.slice(0, at));
        // The prefix state goes through msgpackr as a journal checkpoint would.
        const packr = new Packr({ moreTypes: true });
        const restored = packr.unpack(packr.pack(prefix));
        const resumed = events.slice(at).reduce(evolveCluster, restored);
        expect(resumed).toEqual(projectCluster("a", events));
      }),
      { numRuns: 300 },
    );
  });

  it("never changes the state it was given", () => {
    fc.assert(
      fc.property(recordedArb(), (events) => {
        const states = [initialCluster("a")];
        for (const e of events) states.push(evolveCluster(states.at(-1)!, e));
        const snapshot = JSON.stringify(states.map((s) => [...s.jobs.entries()].map(([k, v]) => [k, v.phase, v.active])));
        events.reduce(evolveCluster, states[0]!);
        expect(JSON.stringify(states.map((s) => [...s.jobs.entries()].map(([k, v]) => [k, v.phase, v.active])))).toBe(snapshot);
      }),
      { numRuns: 100 },
    );
  });

  it("keeps a job named __proto__ as an ordinary job", () => {
    const state = projectCluster("a", stamp([
      { type: "JobCreated", data: { job: "__proto__", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors: [] } },
      { type: "JobBroughtIn", data: { job: "__proto__", node: "a" } },
    ]));
    expect(state.jobs.get("__proto__")).toMatchObject({ phase: "in", active: "a" });
  });

  it("counts links: normal when all are up, partial when some, fault when none", () => {
    const up = (link: string) => ({ type: "LinkUp" as const, data: { node: "a", peer: "b", link, kind: "udp" as const } });
    const down = (link: string) => ({ type: "LinkDown" as const, data: { node: "a", peer: "b", link, kind: "udp" as const, lastHeardAt: 1 } });
    expect(linksState(projectCluster("a", stamp([up("u0"), up("u1")])).membership)).toBe("normal");
    expect(linksState(projectCluster("a", stamp([up("u0"), up("u1"), down("u1")])).membership)).toBe("partial");
    expect(linksState(projectCluster("a", stamp([up("u0"), down("u0")])).membership)).toBe("fault");
  });

  it("refuses an acknowledgement that goes backwards, naming both batches", () => {
    const events = stamp([
      { type: "BatchAcked", data: { job: "web", node: "a", by: "b", batch: 7 } },
      { type: "BatchAcked", data: { job: "web", node: "a", by: "b", batch: 5 } },
    ]);
    expect(() => projectCluster("a", events)).toThrow(/went backwards from 7 to 5/);
  });

  it("colours the mirror: yellow until verified, green when verified and connected, red on peer loss, gray on divergence until a source is selected", () => {
    const base = stamp([
      { type: "PeerSeen", data: { node: "a", peer: "b" } },
      { type: "VerificationStarted", data: { job: "web", node: "a", files: 1, bytes: 10 } },
    ]);
    const colour = (events: typeof base, connected = true) => mirrorColour(projectCluster("a", events).replication.get("web"), true, connected);
    expect(colour(base)).toBe("yellow");
    const verified = stamp([...base, { type: "VerificationCompleted", data: { job: "web", node: "a", differingBlocks: 0, shippedBytes: 0 } }]);
    expect(colour(verified)).toBe("green");
    expect(colour(verified, false)).toBe("red");
    const diverged = stamp([...verified, { type: "DivergenceDetected", data: { job: "web", node: "a", local: "0123456789abcdef", peer: "fedcba9876543210", commonAncestor: null } }]);
    expect(colour(diverged)).toBe("gray");
    expect(colour(diverged, false)).toBe("gray");
    const selected = stamp([...diverged, { type: "SourceSelected", data: { job: "web", from: "b", by: "admin", force: false, keptSnapshot: "s1", losingPaths: 2 } }]);
    expect(colour(selected)).toBe("yellow");
    const refused = stamp([...verified, { type: "OpRefused", data: { job: "web", node: "a", batch: 3, path: "../etc/passwd", reason: "escapes the mirror root" } }]);
    expect(colour(refused)).toBe("red");
  });
});

describe("configured links", () => {
  it("count as down from the agent's start until they report, so links are not called normal too early", () => {
    const started: DuetEvent = { type: "AgentStarted", data: { node: "a", version: "t", pid: 1, configHash: "h", heartbeatIntervalMs: 500, suspectMs: 1000, deadtimeMs: 3000, pingTimeoutMs: 500, selfFenceGraceMs: 1000, links: [{ link: "lan", kind: "udp" }, { link: "tcp", kind: "tcp" }] } };
    const tcpUp: DuetEvent = { type: "LinkUp", data: { node: "a", peer: "b", link: "tcp", kind: "tcp" } };
    const lanUp: DuetEvent = { type: "LinkUp", data: { node: "a", peer: "b", link: "lan", kind: "udp" } };
    expect(linksState(projectCluster("a", stamp([started])).membership)).toBe("fault");
    expect(linksState(projectCluster("a", stamp([started, tcpUp])).membership)).toBe("partial");
    expect(linksState(projectCluster("a", stamp([started, tcpUp, lanUp])).membership)).toBe("normal");
  });
});
