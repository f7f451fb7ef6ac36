import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { verdictSinceLoss } from "../projections/membership.ts";
import { check, input, type Decision } from "./decision.ts";

/**
 * The active node that lost its peer and cannot reach its own tiebreaker targets is probably the
 * one cut off; the peer may be taking over. After a grace period (links can come back) it brings
 * its jobs out, so the job never runs on two nodes at once.
 */
export function decideSelfFence(state: ClusterState, job: JobView, now: number): Decision | null {
  const { membership, self } = state;
  if (job.active !== self || job.phase !== "in" || membership.peerStatus !== "lost") return null;
  if (job.lastDecision && job.lastDecision.seq > membership.peerSinceSeq) return null;
  const verdict = verdictSinceLoss(membership);
  if (verdict?.verdict !== "isolated") return null;
  const graceMs = membership.settings.selfFenceGraceMs;
  if (now - verdict.at < graceMs) return null;
  return {
    kind: "self-fence",
    job: job.name,
    code: "isolated",
    reasons: [
      input("peer-lost-since", membership.peerSince),
      check("tiebreaker-reaches-targets", false, { verdict: verdict.verdict, method: verdict.method, at: verdict.at }),
      check("grace-elapsed", true, { graceMs, isolatedForMs: now - verdict.at }),
    ],
  };
}
