import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { peerReleasedAfterMs, pingGivenUpAfterMs, verdictSinceSilence } from "../projections/membership.ts";
import { check, input, type Decision } from "./decision.ts";

/**
 * The active node whose peer has gone silent (suspected, long before the standby may take over, or
 * lost) and which cannot reach its own tiebreaker targets is probably the one cut off: the peer may
 * be taking over. After the grace period it brings its jobs out, so the job never runs on two nodes
 * at once; the standby's wait (peerReleasedAfterMs) counts on this happening in time.
 */
export function decideSelfFence(state: ClusterState, job: JobView, now: number): Decision | null {
  const { membership, self } = state;
  if (job.active !== self || job.phase !== "in") return null;
  if (membership.peerStatus !== "suspected" && membership.peerStatus !== "lost") return null;
  const verdict = verdictSinceSilence(membership);
  if (verdict?.verdict !== "isolated") return null;
  // Fenced already in this silence (its bring-out under way, or an operator brought it back in
  // since): once is enough. Any other decision leaves the fence to be made: a takeover before the
  // cut (seed 117), a failover declined for want of the peer after it (seed 747). None that
  // starts the job here can follow an isolated verdict: each needs a newer, confirming one.
  if (job.lastDecision?.kind === "self-fence" && job.lastDecision.seq > membership.silenceSeq) return null;
  // The grace runs from the verdict, but never past what the peer counts on (peerReleasedAfterMs):
  // its ping given up after a suspicion that began with the silence. A verdict that came later (a
  // job started here while the peer was already silent, seed 1983) or came again (the loss's own
  // tiebreaker) leaves that deadline where it was.
  // What an agent's crash left running (a job awaiting recovery) has no grace: the peer has counted
  // this node's silence since the crash, not since the restart (seed 5765).
  const graceMs = job.recovering ? 0 : membership.settings.selfFenceGraceMs;
  const fenceAt = Math.min(verdict.at, membership.peerLastHeardAt + pingGivenUpAfterMs(membership.settings)) + graceMs;
  if (now < fenceAt) return null;
  return {
    kind: "self-fence",
    job: job.name,
    code: "isolated",
    reasons: [
      input("peer-silent-since", membership.peerLastHeardAt),
      input("peer-status", membership.peerStatus),
      check("tiebreaker-reaches-targets", false, { verdict: verdict.verdict, method: verdict.method, at: verdict.at }),
      check("grace-elapsed", true, { graceMs, isolatedForMs: now - verdict.at, fenceAt }),
    ],
  };
}

/**
 * The other half of a self-fence. The node that brought a job out because it seemed cut off brings
 * it back in once its peer is back and has been for a deadtime (time to report anything it
 * started), if the job runs nowhere: the peer never took it over, as when the outage ended before
 * the peer's deadtime. The agent then asks the peer to confirm under the peer's own job lock before
 * it starts anything (a takeover decided just before the peer heard it again may still be running).
 */
export function decideResume(state: ClusterState, job: JobView, now: number): Decision | null {
  const { membership } = state;
  const last = job.lastDecision;
  // A resolution that chose this node to keep the job while it was letting go of it (its hello
  // left before the fence): the other let go too, so the job is resumed here like after a fence.
  const keptWhileFencing = last?.kind === "both-active" && last.keeper === state.self;
  const fence = keptWhileFencing ? { ...last, kind: "self-fence" } : last;
  // A resume the peer could not confirm (the job still out and fenced) is tried again once the peer is back since.
  if (!job.fencedHere || (fence?.kind !== "self-fence" && fence?.kind !== "resume") || job.phase !== "out" || job.active !== null) return null;
  // After a self-fence: the peer back since. After a resume the peer could not confirm: the peer or
  // a link back since (seed 252: a one-way cut left the peer heard, but the channel down).
  // After a stall, or a resolution that kept the job here: the peer never went away (it answered),
  // so it is waited for from the fence, or the resolution, on (seed 240: the peer let the job go
  // too, and it ran nowhere for good; seed 3227 the same after a resolution).
  const stalled = (fence.kind === "self-fence" && fence.code === "stalled") || keptWhileFencing;
  const backSeq = fence.kind === "resume" ? Math.max(membership.peerSinceSeq, membership.linkUpSeq) : membership.peerSinceSeq;
  if (membership.peerStatus !== "connected" || (!stalled && backSeq <= fence.seq)) return null;
  const settleMs = membership.settings.deadtimeMs;
  const connectedForMs = now - (stalled ? Math.max(membership.peerSince ?? fence.at, fence.at) : (membership.peerSince ?? now));
  if (connectedForMs < settleMs) return null; // the reactor's tick decides again once it has passed
  return {
    kind: "resume",
    job: job.name,
    code: "peer-back",
    reasons: [
      input("self-fenced-at", fence.at),
      input("peer-connected-since", membership.peerSince),
      check("peer-connected-for-a-deadtime", true, { connectedForMs, settleMs }),
      check("job-runs-nowhere", true, { phase: job.phase, active: job.active }),
    ],
  };
}

/**
 * A node whose own loop stalled past the suspicion time could not have fenced itself in time, so
 * the peer may have taken its jobs over meanwhile. Before anything else it asks the peer (the
 * agent records the answer as StallChecked); a job the peer does not confirm is still this node's
 * is brought out at once. A peer that did not answer in time counts against a job only if the
 * stall was long enough for the peer to have taken over (its own wait, peerReleasedAfterMs).
 */
export function decideStallFence(state: ClusterState, job: JobView, _now: number): Decision | null {
  const { membership, self } = state;
  const stall = membership.stall;
  if (!stall || !ranThroughStall(state, job) || stall.check === null) return null;
  if (stall.stalledMs < membership.settings.suspectMs) return null;
  if (job.lastDecision && job.lastDecision.seq > stall.seq) return null;
  const confirmed = stall.check.confirmedJobs.includes(job.name);
  const takeoverPossibleAfterMs = peerReleasedAfterMs(membership.settings);
  const fence = stall.check.answered ? !confirmed : stall.stalledMs >= takeoverPossibleAfterMs;
  if (!fence) return null;
  return {
    kind: "self-fence",
    job: job.name,
    code: "stalled",
    reasons: [
      input("stalled-ms", stall.stalledMs),
      check("stall-longer-than-suspicion", true, { stalledMs: stall.stalledMs, suspectMs: membership.settings.suspectMs }),
      check("peer-answered", stall.check.answered),
      stall.check.answered
        ? check("peer-confirms-job-runs-here", false)
        : check("stall-shorter-than-peer-takeover-wait", false, { stalledMs: stall.stalledMs, takeoverPossibleAfterMs }),
    ],
  };
}

/**
 * A job in here whose run began before the stall was journaled: the peer may have taken it over
 * meanwhile. One brought in since cannot have been (found by the simulator, seed 28: a stall
 * never checked, because nothing ran, fenced a job switched over to this node 20 s later).
 */
function ranThroughStall(state: ClusterState, job: JobView): boolean {
  const stall = state.membership.stall;
  return stall !== null && job.active === state.self && job.phase === "in" && (job.runSeq ?? 0) < stall.seq;
}

/** A stall recorded and not yet checked with the peer, while jobs that ran through it run here: the agent asks. */
export function stallCheckNeeded(state: ClusterState): boolean {
  const stall = state.membership.stall;
  if (!stall || stall.check !== null || stall.stalledMs < state.membership.settings.suspectMs) return false;
  return [...state.jobs.values()].some((job) => ranThroughStall(state, job));
}
