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
export function decideRecovery(state: ClusterState, job: JobView, now: number): Decision | null {
  const { membership, self } = state;
  if (!job.recovering || job.active !== self) return null;
  // Both reported the job after this restart and the resolution chose this node: the peer lets
  // its copy go, and nothing runs here yet (this node only found the job in its journal).
  const resolved = job.lastDecision;
  if (resolved?.kind === "both-active" && resolved.keeper === self && resolved.seq > membership.startedSeq)
    return { kind: "recover", job: job.name, code: "kept-after-both-active", reasons: [input("agent-started-seq", membership.startedSeq), input("both-active-resolved-seq", resolved.seq), check("this-node-keeps-it", true, { keeper: resolved.keeper, code: resolved.code })] };
  // The peer's frames say it holds the job: it took it over while this agent was down. Nothing
  // here is this node's run; what the crash left running (an agent's crash leaves the VIP and the
  // processes) is brought out, even with no hello to settle it (seed 2874: a one-way cut).
  const claims = membership.peerClaims;
  if (claims && claims.seq > membership.startedSeq && claims.jobs.includes(job.name))
    return { kind: "recovery-declined", job: job.name, code: "peer-holds-it", reasons: [input("agent-started-seq", membership.startedSeq), check("peer-frames-claim-it", true, { peerJobs: claims.jobs })] };
  const report = membership.peerReport;
  if (report && report.seq > membership.startedSeq) {
    if (report.jobs.includes(job.name)) return null; // both run it: the hello's reconcile decides
    return { kind: "recover", job: job.name, code: "peer-does-not-run-it", reasons: [input("agent-started-seq", membership.startedSeq), check("peer-runs-it", false, { peerJobs: report.jobs })] };
  }
  // The peer's frames come but the peer channel, which carries this node's bytes too, has not
  // come up in a deadtime: the peer may not hear this node (a one-way cut), count it lost and take
  // the job over; what the crash left running here is let go first. With the channel up the
  // peer hears this node, and a slow hello is only slow.
  const waitedMs = now - membership.startedAt;
  const channelUp = [...membership.links.values()].some((l) => l.kind === "tcp" && l.up);
  if (membership.peerStatus === "connected" && !channelUp && waitedMs >= membership.settings.deadtimeMs)
    return { kind: "recovery-declined", job: job.name, code: "peer-heard-but-unanswered", reasons: [input("agent-started-at", membership.startedAt), check("peer-channel-up", false), check("hello-answered-within-deadtime", false, { waitedMs, deadtimeMs: membership.settings.deadtimeMs })] };
  if (membership.peerStatus !== "lost") return null;
  const verdict = verdictSinceLoss(membership);
  if (!verdict) return null; // the agent runs the tiebreaker on PeerLost
  const gone = peerGoneChecks(verdict);
  const reasons: Reason[] = [input("agent-started-seq", membership.startedSeq), input("peer-lost-since", membership.peerSince), ...gone.reasons];
  if (gone.refusal) return { kind: "recovery-declined", job: job.name, code: gone.refusal, reasons };
  return { kind: "recover", job: job.name, code: "peer-lost-confirmed", reasons };
}
