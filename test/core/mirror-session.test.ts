import { describe, expect, it } from "vitest";
import type { JobView } from "../../src/projections/jobs.ts";
import type { LineageSummary } from "../../src/projections/lineage.ts";
import { decideReleaseAddedPath, planMirrorSession, type SessionFacts } from "../../src/policy/mirror-session.ts";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { projectCluster } from "../../src/projections/cluster.ts";
import { stamp } from "../arbitraries.ts";

const G1 = "1111111111111111";
const G2 = "2222222222222222";
const summary = (node: string, current: string, ancestors: string[], written: [string, string[], boolean][], queueEmpty = true): LineageSummary => ({
  node,
  job: "web",
  current,
  ancestors,
  written,
  queueEmpty,
  lastAcked: null,
  lastApplied: null,
});
const job = (over: Partial<JobView> = {}): JobView => ({
  name: "web",
  nodes: ["a", "b"],
  policy: "when-consistent",
  reverseWhenConsistent: false,
  restartMax: 3,
  resources: [],
  mirrors: ["/srv/web"],
  phase: "in",
  phaseSince: 0,
  active: "b",
  resourceStatus: new Map(),
  lastDecision: null,
  lastError: null,
  takeovers: 0,
  monitorFailures: 0,
  restarts: 0,
  ...over,
});
// b took web over from a and wrote 0/orders.txt in a generation of its own; a returns, its queue empty.
const survivor = summary("b", G2, [G1], [[G2, ["0/orders.txt"], false], [G1, [], false]]);
const returning = summary("a", G1, [], [[G1, [], false]]);
const facts = (over: Partial<SessionFacts>): SessionFacts => ({ mode: "normal", self: "b", peer: "a", job: job(), local: survivor, peerSummary: returning, applied: 0, queueComplete: true, verified: false, ...over });
const tookOver = { active: "b", startedBy: "takeover", lastDecision: { kind: "takeover", code: "takeover", at: 0, seq: 1 } };

describe("what a mirror session does", () => {
  it("a standby that was merely away is resynced by itself, only the paths written since", () => {
    expect(planMirrorSession(facts({}))).toMatchObject({ kind: "sync", scope: ["0/orders.txt"], as: "resync" });
  });

  it("a standby away while this node wrote: its queue is sent as the resync when it still holds every batch since the replica's position", () => {
    const away = { ...returning, lastApplied: { generation: G1, batch: 41 } };
    expect(planMirrorSession(facts({ peerSummary: away, applied: 41 }))).toEqual({ kind: "replay", next: 42, scope: ["0/orders.txt"] });
    // a batch dropped from the queue (acknowledged by an earlier replica, or lost with a restart): compare instead
    expect(planMirrorSession(facts({ peerSummary: away, applied: 41, queueComplete: false }))).toMatchObject({ kind: "sync", scope: ["0/orders.txt"], as: "resync" });
    // the replica's recorded position behind its journal (a sync cut short): compare
    expect(planMirrorSession(facts({ peerSummary: away, applied: 40 }))).toMatchObject({ kind: "sync", as: "resync" });
    // ahead of it (killed before the fact of its last batch was journaled): that batch is whole there
    expect(planMirrorSession(facts({ peerSummary: away, applied: 42 }))).toEqual({ kind: "replay", next: 43, scope: ["0/orders.txt"] });
    // its last applied batch was of another generation than the one it holds: compare
    expect(planMirrorSession(facts({ peerSummary: { ...away, lastApplied: { generation: G2, batch: 41 } }, applied: 41 }))).toMatchObject({ kind: "sync", as: "resync" });
    // a node that holds nothing yet is verified whole, and the plan says so
    const empty = { ...returning, current: null, ancestors: [], written: [] };
    expect(planMirrorSession(facts({ peerSummary: empty }))).toMatchObject({ kind: "sync", scope: "all", as: "verification", why: "a holds no data of web yet" });
    // a node that never applied anything of this line, or an operator's verify: never from the queue
    expect(planMirrorSession(facts({ peerSummary: returning, applied: 0 }))).toMatchObject({ kind: "sync" });
    expect(planMirrorSession(facts({ peerSummary: away, applied: 41, mode: "verify" }))).toMatchObject({ kind: "sync", scope: "all", as: "verification" });
    // the old active returning after a takeover is still gray without reverse: the queue changes nothing
    expect(planMirrorSession(facts({ job: job(tookOver), peerSummary: away, applied: 41 }))).toMatchObject({ kind: "gray" });
  });

  it("the old active returning after a takeover: gray unless the policy says reverse", () => {
    expect(planMirrorSession(facts({ job: job(tookOver) }))).toMatchObject({ kind: "gray", why: expect.stringContaining("reverseWhenConsistent is off") });
    expect(planMirrorSession(facts({ job: job({ ...tookOver, reverseWhenConsistent: true }) }))).toMatchObject({ kind: "sync", scope: ["0/orders.txt"], as: "resync" });
    expect(planMirrorSession(facts({ job: job({ ...tookOver, policy: "unconditional" }) }))).toMatchObject({ kind: "sync", as: "resync" });
    // an operator's takeover after a declined one counts the same
    expect(planMirrorSession(facts({ job: job({ active: "b", startedBy: "decline", lastDecision: { kind: "decline", code: "policy-manual", at: 0, seq: 1 } }) }))).toMatchObject({ kind: "gray" });
  });

  it("a takeover long past does not make a standby that was merely away the old active: the run since began by a switchover", () => {
    // b took over once; later the job was switched to a and back to b (startedBy "request"), and
    // a was away while b wrote: the last decision is still that takeover.
    const switchedBack = job({ active: "b", startedBy: "request", lastDecision: { kind: "takeover", code: "takeover", at: 0, seq: 1 } });
    expect(planMirrorSession(facts({ job: switchedBack }))).toMatchObject({ kind: "sync", scope: ["0/orders.txt"], as: "resync" });
  });

  it("after a partition in which the standby declined: no writes on either side resume in sync; the active's writes alone resync the standby", () => {
    // a kept the job (b found it alive on the public network and declined); b's journal holds the
    // decline, a's holds none: nothing makes the link gray.
    const kept = job({ active: "a", startedBy: "request" });
    const a1 = summary("a", G1, [], [[G1, [], false]]);
    const b1 = { ...summary("b", G1, [], [[G1, [], false]]), lastApplied: { generation: G1, batch: 41 } };
    const onA = (over: Partial<SessionFacts>) => facts({ self: "a", peer: "b", job: kept, local: a1, peerSummary: b1, applied: 41, ...over });
    expect(planMirrorSession(onA({ verified: true }))).toEqual({ kind: "resume", next: 42 });
    // a wrote alone during the cut: a new generation of its own, b still at G1 with nothing queued
    const a2 = summary("a", G2, [G1], [[G2, ["0/cut.txt"], false], [G1, [], false]]);
    expect(planMirrorSession(onA({ local: a2 }))).toEqual({ kind: "replay", next: 42, scope: ["0/cut.txt"] });
  });

  it("the returning node with batches it captured and never had acknowledged is never written over by itself", () => {
    const busy = summary("a", G1, [], [[G1, ["0/lost.txt"], false]], false);
    expect(planMirrorSession(facts({ job: job({ ...tookOver, reverseWhenConsistent: true }), peerSummary: busy }))).toMatchObject({ kind: "gray" });
    const sameGeneration = summary("b", G1, [], [[G1, [], false]]);
    expect(planMirrorSession(facts({ local: sameGeneration, peerSummary: busy }))).toMatchObject({ kind: "gray", why: expect.stringContaining("never received") });
  });

  it("in sync: resume from the replica's position only when verified and every batch since is still queued", () => {
    const b1 = summary("b", G1, [], [[G1, [], false]]);
    const a1 = summary("a", G1, [], [[G1, [], false]]);
    expect(planMirrorSession(facts({ local: b1, peerSummary: a1, applied: 41, verified: true }))).toEqual({ kind: "resume", next: 42 });
    expect(planMirrorSession(facts({ local: b1, peerSummary: a1, applied: 41, verified: true, queueComplete: false }))).toMatchObject({ kind: "sync", scope: "all", as: "verification" });
    expect(planMirrorSession(facts({ local: b1, peerSummary: a1, verified: false }))).toMatchObject({ kind: "sync", scope: "all" });
    expect(planMirrorSession(facts({ local: b1, peerSummary: a1, verified: true, mode: "verify" }))).toMatchObject({ kind: "sync", scope: "all", as: "verification" });
  });

  it("a replay cut short after its first batch (the replica already follows the new generation) goes on from the queue, never verifies", () => {
    // b wrote 0/orders.txt in G2 while a was away; a applied batches 42..44 of G2 and was killed
    const b2 = summary("b", G2, [G1], [[G2, ["0/orders.txt"], false], [G1, [], false]]);
    const a2 = { ...summary("a", G2, [G1], [[G2, [], false], [G1, [], false]]), lastApplied: { generation: G2, batch: 44 } };
    expect(planMirrorSession(facts({ local: b2, peerSummary: a2, applied: 44 }))).toEqual({ kind: "replay", next: 45, scope: ["0/orders.txt"] });
    // its recorded position behind its journal: a verification cut short, whose batches record no position
    expect(planMirrorSession(facts({ local: b2, peerSummary: a2, applied: 41 }))).toMatchObject({ kind: "sync", scope: "all", as: "verification", why: expect.stringContaining("cut short") });
    // a batch since its position no longer queued
    expect(planMirrorSession(facts({ local: b2, peerSummary: a2, applied: 44, queueComplete: false }))).toMatchObject({ kind: "sync", scope: "all", why: expect.stringContaining("no longer queued") });
  });

  it("the peer newer than where the job runs, or both wrote apart: gray; a selected source resyncs what either side wrote", () => {
    expect(planMirrorSession(facts({ local: returning, peerSummary: survivor, self: "a", peer: "b", job: job({ active: "a" }) }))).toMatchObject({ kind: "gray", why: expect.stringContaining("holds newer data") });
    const aApart = summary("a", "3333333333333333", [G1], [["3333333333333333", ["0/a-only.txt"], false], [G1, [], false]]);
    expect(planMirrorSession(facts({ peerSummary: aApart }))).toMatchObject({ kind: "gray", why: expect.stringContaining("both nodes wrote") });
    expect(planMirrorSession(facts({ peerSummary: aApart, mode: "selected" }))).toMatchObject({ kind: "sync", scope: ["0/a-only.txt", "0/orders.txt"], as: "resync" });
  });
});

describe("a mirror path added to a job that is mirrored already", () => {
  const defined = (mirrors: string[]): DuetEvent => ({ type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors } });
  const brought = (type: "JobBroughtIn" | "JobBroughtOut", node: string): DuetEvent => ({ type, data: { job: "web", node } });
  const added = (events: DuetEvent[]) => projectCluster("a", stamp(events, "a")).replication.get("web")!.addedPaths;

  it("is held with the nodes that ran the job since; a job's first paths are not", () => {
    expect(added([defined(["/srv/web"])])).toEqual([]);
    expect(added([defined([]), defined(["/srv/web"])])).toEqual([]);
    const held = added([defined(["/srv/web"]), brought("JobBroughtIn", "a"), defined(["/srv/web", "/srv/logs"])]);
    expect(held).toEqual([{ path: "/srv/logs", seq: 3, ranOn: ["a"] }]);
    // a takeover by b while it is held makes b's copy possibly the application's
    const later = added([defined(["/srv/web"]), brought("JobBroughtIn", "a"), defined(["/srv/web", "/srv/logs"]), brought("JobBroughtOut", "a"), brought("JobBroughtIn", "b")]);
    expect(later).toEqual([{ path: "/srv/logs", seq: 3, ranOn: ["a", "b"] }]);
  });

  it("is no longer held once verified, or once a definition drops it", () => {
    const base = [defined(["/srv/web"]), defined(["/srv/web", "/srv/logs"])];
    expect(added([...base, { type: "MirrorPathVerified", data: { job: "web", node: "a", path: "/srv/logs", differingBlocks: 0, shippedBytes: 0 } }])).toEqual([]);
    expect(added([...base, defined(["/srv/web"])])).toEqual([]);
  });

  it("a copy is made the source's only when the replica's is empty, never the application's since, or an operator says so", () => {
    const entry = { path: "/srv/logs", seq: 3, ranOn: ["a"] };
    const may = (over: Partial<{ peer: string; mode: "normal" | "verify"; replicaFiles: number }>) => decideReleaseAddedPath(entry, { peer: "b", mode: "normal", replicaFiles: 5, ...over }).ok;
    expect(may({})).toBe(true); // a ran it when it was added; b's copy was never written by it
    expect(may({ peer: "a" })).toBe(false); // b releasing to a, which ran the job: a's copy may be newer
    expect(may({ peer: "a", replicaFiles: 0 })).toBe(true);
    expect(may({ peer: "a", mode: "verify" })).toBe(true);
    expect(decideReleaseAddedPath(undefined, { peer: "b", mode: "normal", replicaFiles: 1 }).ok).toBe(false);
  });
});
