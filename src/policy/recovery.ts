import type { Reason } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { verdictSinceLoss } from "../projections/membership.ts";
import { check, input, peerGoneChecks, type Decision } from "./decision.ts";

/**
 * A job this node's journal says ran here when its agent (re)started. The peer may have taken it
 * over while this agent was down, so nothing starts it again until either the peer has said, in
 * the hello after connecting, that it does not run it (a peer that does keeps it: reconcile), or
 * the peer is lost and the same checks as a takeover pass: a tiebreaker verdict after the loss
 * that confirms it, and no answer from the peer on the public network. Otherwise the job is
 * brought out here, as a self-fence, and resumes like one once the peer is back.
 */
export function decideRecovery(state: ClusterState, job: JobView, _now: number): Decision | null {
  const { membership, self } = state;
  if (!job.recovering || job.active !== self) return null;
  // Both reported the job after this restart and the resolution chose this node: the peer lets
  // its copy go, and nothing runs here yet (this node only found the job in its journal).
  const resolved = job.lastDecision;
  if (resolved?.kind === "both-active" && resolved.keeper === self && resolved.seq > membership.startedSeq)
    return { kind: "recover", job: job.name, code: "kept-after-both-active", reasons: [input("agent-started-seq", membership.startedSeq), input("both-active-resolved-seq", resolved.seq), check("this-node-keeps-it", true, { keeper: resolved.keeper, code: resolved.code })] };
  const report = membership.peerReport;
  if (report && report.seq > membership.startedSeq) {
    if (report.jobs.includes(job.name)) return null; // both run it: the hello's reconcile decides
    return { kind: "recover", job: job.name, code: "peer-does-not-run-it", reasons: [input("agent-started-seq", membership.startedSeq), check("peer-runs-it", false, { peerJobs: report.jobs })] };
  }
  if (membership.peerStatus !== "lost") return null;
  const verdict = verdictSinceLoss(membership);
  if (!verdict) return null; // the agent runs the tiebreaker on PeerLost
  const gone = peerGoneChecks(verdict);
  const reasons: Reason[] = [input("agent-started-seq", membership.startedSeq), input("peer-lost-since", membership.peerSince), ...gone.reasons];
  if (gone.refusal) return { kind: "recovery-declined", job: job.name, code: gone.refusal, reasons };
  return { kind: "recover", job: job.name, code: "peer-lost-confirmed", reasons };
}
