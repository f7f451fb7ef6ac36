import type { JobView } from "../projections/jobs.ts";
import type { Reason } from "../events/ids.ts";
import type { LineageSummary } from "../projections/lineage.ts";
import type { AddedPath } from "../projections/replication.ts";
import { check } from "./decision.ts";
import { compareLineage, mayReverseAutomatically, resyncPaths, type Paths } from "./lineage.ts";

export type SessionMode = "normal" | "verify" | "selected";

export type SessionPlan =
  /** In sync and verified: stream the queue from the replica's applied position. */
  | { kind: "resume"; next: number }
  /**
   * Resync by sending the queue: the replica holds this node's data up to its applied batch and
   * every batch captured since is still queued, so those batches are exactly what it lacks
   * (DRBD's quick resync from its bitmap): no file is read on either side.
   */
  | { kind: "replay"; next: number; scope: Paths }
  /** Bring the replica level first: every path (verification) or the paths lineage names (resync). */
  | { kind: "sync"; scope: Paths; as: "verification" | "resync"; why: string }
  /** Stop: the sides may differ, or this side may not write over the other; only an operator restarts it. */
  | { kind: "gray"; why: string };

export interface SessionFacts {
  mode: SessionMode;
  self: string;
  peer: string;
  job: JobView;
  local: LineageSummary;
  peerSummary: LineageSummary;
  /** The replica's applied position for this node's batches. */
  applied: number;
  /** Every batch this node captured after `applied` is still queued (false if the replica claims more than was captured). */
  queueComplete: boolean;
  verified: boolean;
}

/**
 * What a mirror session does, from both sides' lineage (pure): the source side of a job asks the
 * replica for its summary and applied position, then resumes, resyncs, verifies, or stops gray.
 */
export function planMirrorSession(facts: SessionFacts): SessionPlan {
  const { mode, self, peer, job, local, peerSummary, applied, verified } = facts;
  const name = job.name;
  const verdict = compareLineage(local, peerSummary);
  if (mode === "selected") {
    // An operator chose this side: everything either side wrote since they parted goes this way.
    const scope = resyncPaths(verdict);
    const why = `an operator selected ${self} as the source`;
    return scope === "all" || verdict.kind === "in-sync" ? { kind: "sync", scope: "all", as: "verification", why } : { kind: "sync", scope, as: "resync", why };
  }
  if (verdict.kind === "in-sync" && verdict.sender === peer) {
    // The same generation, but the returning node captured batches this node never acknowledged
    // (it was lost mid-stream and this node took over): replication back would erase them.
    return { kind: "gray", why: `${peer} holds batches it captured that ${self} never received; choose which side's data to keep with duet source select ${name} --from NODE` };
  }
  // The replica's last applied batch is of the generation it holds, and its applied position
  // (recorded only once a batch is whole on disk) is not behind its journal: it wrote nothing and
  // no verification was cut short since (a verification records its position only at its end),
  // so it is this node's data as of that position. A journal behind the position only lost the
  // last facts to a crash.
  const heldSince = peerSummary.current !== null && peerSummary.lastApplied?.generation === peerSummary.current && peerSummary.lastApplied.batch <= applied;
  if (verdict.kind === "in-sync") {
    if (mode === "verify") return { kind: "sync", scope: "all", as: "verification", why: "an operator asked for a verification" };
    if (!facts.queueComplete) return { kind: "sync", scope: "all", as: "verification", why: `batches after ${peer}'s position ${applied} are no longer queued` };
    if (verified) return { kind: "resume", next: applied + 1 };
    // Not verified in this generation, yet the replica already follows it: a replay (or resync)
    // cut short after its first batch. The rest of it is still queued: send that, as before.
    if (heldSince) return { kind: "replay", next: applied + 1, scope: writtenIn(local) };
    return { kind: "sync", scope: "all", as: "verification", why: `${peer} was not verified in this generation and may hold a verification cut short` };
  }
  if (verdict.kind === "source" && verdict.from === self) {
    // The old active returning after this node took the job over (automatically, or by an operator
    // after a declined takeover): replication back to it starts by itself only under
    // `unconditional`, or with reverseWhenConsistent when lineage proves it holds nothing this node
    // lacks (DESIGN.md, take-over policies). A standby that was merely away always resyncs. How
    // this run began is what counts, not the last decision: a takeover long ago, followed by a
    // switchover back and forth, leaves the last decision a takeover while the peer was a standby.
    const tookOver = job.active === self && (job.startedBy === "takeover" || job.startedBy === "decline") && !verified;
    if (tookOver && job.policy !== "unconditional" && !(job.reverseWhenConsistent && mayReverseAutomatically(local, peerSummary).ok))
      return {
        kind: "gray",
        why: `${peer} ran ${name} before ${self} took it over; ${job.reverseWhenConsistent ? "lineage cannot prove it holds nothing this node lacks" : "reverseWhenConsistent is off"}, so replication back to it waits for an operator (duet source select ${name} --from ${self})`,
      };
    if (mode === "verify") return { kind: "sync", scope: "all", as: "verification", why: "an operator asked for a verification" };
    // heldSince: still on its old generation, so nothing of this line reached it since.
    if (heldSince && facts.queueComplete) return { kind: "replay", next: applied + 1, scope: verdict.paths };
    const why =
      peerSummary.current === null
        ? `${peer} holds no data of ${name} yet`
        : heldSince
          ? `batches after ${peer}'s position ${applied} are no longer queued`
          : `${peer} holds an older generation and its position cannot be trusted to replay from`;
    return verdict.paths === "all" ? { kind: "sync", scope: "all", as: "verification", why: peerSummary.current === null ? why : `${why}; lineage cannot name the paths written since` } : { kind: "sync", scope: verdict.paths, as: "resync", why };
  }
  if (verdict.kind === "source") return { kind: "gray", why: `${peer} holds newer data (generation ${peerSummary.current}) than ${self}, where the job runs; select the source explicitly (duet source select ${name} --from NODE)` };
  if (verdict.kind === "diverged") return { kind: "gray", why: `both nodes wrote since generation ${verdict.commonAncestor ?? "(none shared)"}; choose which side's data to keep with duet source select ${name} --from NODE` };
  return { kind: "gray", why: `lineage cannot tell which side is newer (${verdict.reason}); choose with duet source select ${name} --from NODE` };
}

/** The paths this node wrote in its current generation ("all" past what lineage tracks). */
function writtenIn(local: LineageSummary): Paths {
  const entry = local.written.find(([generation]) => generation === local.current);
  return entry === undefined ? [] : entry[2] ? "all" : entry[1];
}

/**
 * Whether the source may make the replica's copy of a path added to the running job equal to its
 * own (pure). It may when the replica's copy is empty, when an operator asked (duet job verify on
 * the side whose copy is right), or when the replica neither ran the job when the path was added
 * nor brought it in since: its copy was never the application's. Otherwise either copy may be the
 * newer, and the path stays held.
 */
export function decideReleaseAddedPath(added: AddedPath | undefined, facts: { peer: string; mode: SessionMode; replicaFiles: number }): { ok: boolean; reasons: Reason[] } {
  const reasons = [
    check("replica-copy-empty", facts.replicaFiles === 0, facts.replicaFiles),
    check("operator-verify", facts.mode === "verify", facts.mode),
    check("replica-never-ran-job-since-added", added !== undefined && !added.ranOn.includes(facts.peer), { peer: facts.peer, ranOn: added?.ranOn ?? null }),
  ];
  return { ok: reasons.some((r) => r.ok === true), reasons };
}
