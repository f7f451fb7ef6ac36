import { describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { projectCluster } from "../../src/projections/cluster.ts";
import { helloUntilAnswered, jobsRunningHere, parseRelayedFact, reconcile, type HelloHost } from "../../src/agent/peer-link.ts";
import { peerResponse } from "../../src/agent/peer-protocol.ts";
import { createVirtualWorld } from "../../src/world/sim.ts";
import { chooseKeeper, type RunningSide } from "../../src/policy/both-active.ts";
import { stamp } from "../arbitraries.ts";

const created: DuetEvent = { type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors: [] } };
const stateOf = (events: DuetEvent[]) => projectCluster("a", stamp(events, "a"));

describe("reconciling with the peer after a reconnect", () => {
  it("learns that the peer runs a job it missed while the link was down", () => {
    const { facts, bothActive } = reconcile(stateOf([created]), "b", [{ job: "web", phase: "in", since: 5 }]);
    expect(facts).toEqual([{ type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
    expect(bothActive).toEqual([]);
  });

  it("a view left half-way (a bring-out the peer never heard) is put right by the peer's report (found by the simulator, seed 77)", () => {
    const stuck = stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }, { type: "BringOutRequested", data: { job: "web", by: "admin" } }]);
    expect(stuck.jobs.get("web")).toMatchObject({ phase: "bringing-out", active: "b" });
    const { facts } = reconcile(stuck, "b", [{ job: "web", phase: "in", since: 5 }]);
    expect(facts).toEqual([{ type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
  });

  it("a job this node is letting go of (a self-fence decided, its bring-out under way) is not reported as run here (found by the simulator, seed 3227)", () => {
    const fencing = stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "a" } }, { type: "SelfFenceDecided", data: { node: "a", jobs: ["web"], graceMs: 0, reasons: [] } }]);
    expect(fencing.jobs.get("web")).toMatchObject({ phase: "in", active: "a" });
    expect(jobsRunningHere(fencing)).toEqual([]);
    // But the peer may have judged by a hello sent before the fence: reconciled as both running it (seed 2528).
    const { bothActive, facts } = reconcile(fencing, "b", [{ job: "web", phase: "in", since: 5, how: "request" }]);
    expect(facts).toEqual([]);
    expect(bothActive).toMatchObject([{ job: "web" }]);
  });

  it("a report that crossed a resolution on this connection yields no fact about the job it settled (found by the simulator, seed 3855)", () => {
    const kept = stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "a" } }, { type: "JobBroughtOut", data: { job: "web", node: "a" } }]);
    expect(reconcile(kept, "b", [{ job: "web", phase: "in", since: 5 }]).facts).toEqual([{ type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
    expect(reconcile(kept, "b", [{ job: "web", phase: "in", since: 5 }], new Set(["web"])).facts).toEqual([]);
  });

  it("learns that the peer no longer runs a job", () => {
    const { facts } = reconcile(stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }]), "b", []);
    expect(facts).toEqual([{ type: "JobBroughtOut", data: { job: "web", node: "b" } }]);
  });

  it("a job found running on both is left to the policy, with both sides' reports", () => {
    const mine = stateOf([created, { type: "JobBroughtIn", data: { job: "web", node: "a" } }]);
    const { facts, bothActive } = reconcile(mine, "b", [{ job: "web", phase: "in", since: 5, generation: "g2", ancestors: ["g1"], how: "takeover" }]);
    expect(facts).toEqual([]);
    expect(bothActive).toMatchObject([{ job: "web", keeper: "b", other: "a", code: "stronger-decision" }]);
  });
});

describe("a start under way here while the peer runs the job (decideYieldStart)", () => {
  const lost: DuetEvent[] = [created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }, { type: "TakeoverDecided", data: { job: "web", by: "a", from: "b", policy: "manual", reasons: [] } }];
  const report = [{ job: "web", phase: "in" as const, since: 5, generation: "g1", ancestors: [], how: "request" }];

  it("an operator's takeover still starting when the peer comes back running the job is abandoned too (found by the simulator, seed 411)", () => {
    // The peer's agent died with its host holding the job; the operator brought it in here while
    // the VIP kept answering there. Before, the journal kept saying the job ran on b, so the
    // start was no one's and went on until a cut hid b's address: then both ran it.
    const operator: DuetEvent[] = [created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }, { type: "BringInRequested", data: { job: "web", on: "a", by: "admin" } }];
    expect(stateOf(operator).jobs.get("web")).toMatchObject({ phase: "bringing-in", active: "a" });
    const { yields } = reconcile(stateOf(operator), "b", [{ job: "web", phase: "in", since: 5, how: "recover" }]);
    expect(yields).toMatchObject([{ kind: "abandon-start", job: "web", code: "peer-runs-job" }]);
    // The same after a bring-out asked of b that never reached it (seed 4474).
    const afterBringOut: DuetEvent[] = [created, { type: "JobBroughtIn", data: { job: "web", node: "b" } }, { type: "BringOutRequested", data: { job: "web", by: "admin" } }, { type: "BringInRequested", data: { job: "web", on: "a", by: "admin" } }];
    expect(stateOf(afterBringOut).jobs.get("web")).toMatchObject({ phase: "bringing-in", active: "a" });
  });

  it("a takeover still starting when the peer comes back running the job is abandoned, and nothing else is decided", () => {
    const { yields, bothActive, facts } = reconcile(stateOf(lost), "b", report);
    expect(yields).toMatchObject([{ kind: "abandon-start", job: "web", code: "peer-runs-job" }]);
    expect(bothActive).toEqual([]);
    expect(facts).toEqual([]);
  });

  it("an operator's bring-in still starting here is abandoned too, and the peer's run is learnt", () => {
    const { yields, facts } = reconcile(stateOf([created, { type: "BringInRequested", data: { job: "web", on: "a", by: "admin" } }]), "b", report);
    expect(yields).toMatchObject([{ kind: "abandon-start", job: "web" }]);
    expect(facts).toEqual([{ type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
  });

  it("no start is under way: after it failed here, after it finished, or once abandoned", () => {
    const failed: DuetEvent = { type: "JobStartFailed", data: { job: "web", node: "a", resource: "ip", error: "still answers" } };
    const abandoned: DuetEvent = { type: "StartAbandoned", data: { job: "web", node: "a", code: "peer-runs-job", reasons: [] } };
    expect(reconcile(stateOf([...lost, failed]), "b", report).yields).toEqual([]);
    expect(reconcile(stateOf([...lost, abandoned]), "b", report).yields).toEqual([]);
    const finished = reconcile(stateOf([...lost, { type: "JobBroughtIn", data: { job: "web", node: "a" } }]), "b", report);
    expect(finished.yields).toEqual([]);
    expect(finished.bothActive).toMatchObject([{ job: "web" }]);
  });

  it("a peer that does not run the job leaves the start alone", () => {
    expect(reconcile(stateOf(lost), "b", []).yields).toEqual([]);
  });
});

describe("which node keeps a job found running on both (chooseKeeper)", () => {
  const side = (node: string, over: Partial<RunningSide> = {}): RunningSide => ({ node, since: 1000, generation: "g1", ancestors: [], how: "unknown", ...over });
  const table: [string, RunningSide, RunningSide, string, string][] = [
    ["the survivor's data descends from the restarted node's: the survivor keeps it, though it started earlier", side("a", { generation: "g1", since: 9000, how: "recover" }), side("b", { generation: "g2", ancestors: ["g1"], since: 1000, how: "takeover" }), "b", "newer-data"],
    ["the same data: the takeover beats a restart's recovery", side("a", { how: "recover" }), side("b", { how: "takeover" }), "b", "stronger-decision"],
    ["both took it over (a partition hid each from the other): the one that ran it first, which the other's takeover contradicts", side("a", { how: "takeover", since: 5000 }), side("b", { how: "takeover", since: 1000 }), "b", "ran-first"],
    ["nothing tells them apart: the lower name", side("a"), side("b"), "a", "tie-break"],
    ["both wrote apart (neither descends): decided by how, not by data", side("a", { generation: "ga", ancestors: ["g0"], how: "takeover" }), side("b", { generation: "gb", ancestors: ["g0"], how: "recover" }), "a", "stronger-decision"],
  ];
  it.each(table)("%s", (_what, x, y, keeper, code) => {
    expect(chooseKeeper("web", x, y)).toMatchObject({ keeper, code });
    // Both nodes ask with the sides in their own order: the same answer, the same reasons.
    expect(chooseKeeper("web", y, x)).toEqual(chooseKeeper("web", x, y));
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

describe("saying hello to the peer (helloUntilAnswered)", () => {
  const answer = { ok: true as const, jobs: [{ job: "web", phase: "in" as const, since: 5 }] };
  /** A hello whose first answers fail as ANSWERS says, on a virtual clock. */
  function rig(answers: (() => Promise<unknown>)[]) {
    const world = createVirtualWorld();
    const seen = { asked: [] as number[], applied: [] as unknown[], alerts: [] as string[], live: true };
    const host: HelloHost = {
      ask: async () => {
        seen.asked.push(world.clock.monotonic());
        return peerResponse.parse(await (answers.shift() ?? (async () => answer))());
      },
      apply: async (jobs) => void seen.applied.push(jobs),
      live: () => seen.live,
      alert: async (message) => void seen.alerts.push(message),
      log: () => undefined,
      timers: world.timers,
      peer: "b",
    };
    return { world, seen, host };
  }
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

  it("an answer that fails its schema is raised once and tried again until one is good", async () => {
    const bad = async () => ({ ok: true, jobs: [{ job: "web", phase: "in", since: 5.5 }] });
    const { world, seen, host } = rig([bad, bad, async () => ({ ok: false, code: "busy", message: "try later" })]);
    await helloUntilAnswered(host);
    for (let ms = 0; ms < 8000; ms += 500) {
      world.advanceBy(500);
      await settle();
    }
    expect(seen.asked).toEqual([0, 1000, 3000, 7000]); // after 1, 2 and 4 s
    expect(seen.alerts).toHaveLength(1);
    expect(seen.alerts[0]).toMatch(/^hello to b failed: [\s\S]*since/);
    expect(seen.applied).toEqual([answer.jobs]);
  });

  it("an answer without its jobs is a failure, not a peer that runs nothing", async () => {
    const { world, seen, host } = rig([async () => ({ ok: true })]);
    await helloUntilAnswered(host);
    expect(seen.applied).toEqual([]);
    expect(seen.alerts[0]).toMatch(/names no jobs/);
    world.advanceBy(1000);
    await settle();
    expect(seen.applied).toEqual([answer.jobs]);
  });

  it("is not tried again once its connection is gone (the next one says hello anew)", async () => {
    const { world, seen, host } = rig([async () => Promise.reject(new Error("timed out after 10000 ms"))]);
    await helloUntilAnswered(host);
    seen.live = false;
    world.advanceBy(60_000);
    await settle();
    expect(seen.asked).toEqual([0]);
  });
});
