import { describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { projectCluster } from "../../src/projections/cluster.ts";
import { parseRelayedFact, reconcile } from "../../src/agent/peer-link.ts";
import { stamp } from "../arbitraries.ts";

const created: DuetEvent = { type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors: [] } };
const stateOf = (events: DuetEvent[]) => projectCluster("a", stamp(events, "a"));

describe("reconciling with the peer after a reconnect", () => {
  it("learns that the peer runs a job it missed while the link was down", () => {
    const { facts, giveUp } = reconcile(stateOf([created]), "b", [{ job: "web", phase: "in", since: 5 }]);
    expect(facts).toEqual([{ type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
    expect(giveUp).toEqual([]);
  });

  it("learns that the peer no longer runs a job", () => {
    const { facts } = reconcile(stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }]), "b", []);
    expect(facts).toEqual([{ type: "JobBroughtOut", data: { job: "web", node: "b" } }]);
  });

  it("a job found running on both nodes is kept by the node that brought it in last; the other gives it up", () => {
    const mine = stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "a" } }]);
    const mySince = mine.jobs.get("web")!.phaseSince;
    const later = reconcile(mine, "b", [{ job: "web", phase: "in", since: mySince + 1000 }]);
    expect(later.giveUp).toEqual([{ job: "web", peerSince: mySince + 1000, mySince }]);
    expect(later.facts).toEqual([{ type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
    const earlier = reconcile(mine, "b", [{ job: "web", phase: "in", since: mySince - 1000 }]);
    expect(earlier.giveUp).toEqual([]);
    expect(earlier.facts).toEqual([]);
  });

  it("both nodes reach the same answer from the same two reports (ties go to the lower name)", () => {
    const onA = projectCluster("a", stamp([created, { type: "JobBroughtIn", data: { job: "web", node: "a" } }], "a", 1000));
    const onB = projectCluster("b", stamp([created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }], "b", 1000));
    const since = onA.jobs.get("web")!.phaseSince;
    expect(onB.jobs.get("web")!.phaseSince).toBe(since);
    const aGivesUp = reconcile(onA, "b", [{ job: "web", phase: "in", since }]).giveUp.length === 1;
    const bGivesUp = reconcile(onB, "a", [{ job: "web", phase: "in", since }]).giveUp.length === 1;
    expect([aGivesUp, bGivesUp]).toEqual([false, true]);
  });
});

describe("relayed facts", () => {
  it("accepts only job facts about the peer itself", () => {
    expect(parseRelayedFact({ type: "JobBroughtIn", data: { job: "web", node: "b" } }, "b").type).toBe("JobBroughtIn");
    expect(() => parseRelayedFact({ type: "JobBroughtIn", data: { job: "web", node: "a" } }, "b")).toThrow(/names node a, expected the peer b/);
    expect(() => parseRelayedFact({ type: "TakeoverDecided", data: {} }, "b")).toThrow(/relayed fact: expected/);
    expect(() => parseRelayedFact({ type: "JobBroughtIn", data: { job: 5, node: "b" } }, "b")).toThrow();
  });
});
