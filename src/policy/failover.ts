import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { check, input, type Decision } from "./decision.ts";

/**
 * Local faults on the active node: a resource past its restart threshold, or the public NIC
 * down. The job moves to the peer when the peer is connected; otherwise moving it would only
 * stop the service, so it stays and an alert says why.
 */
export function decideFailover(state: ClusterState, job: JobView, _now: number): Decision | null {
  const { self, membership } = state;
  if (job.active !== self || job.phase !== "in") return null;
  const fault = findFault(job, self);
  if (!fault) return null;
  const to = job.nodes.find((n) => n !== self) ?? self;
  const peerConnected = membership.peerStatus === "connected";
  // Decided once per fault; a move declined for want of the peer is decided again once it is back
  // (found by the simulator, seed 210: the job stayed on a dead application for good).
  const last = job.lastDecision;
  const retry = last?.kind === "failover-declined" && peerConnected && membership.peerSinceSeq > last.seq;
  if (last && last.at >= fault.since && !retry) return null;
  const reasons = [
    input("fault", { resource: fault.resource, kind: fault.kind, failures: fault.failures, restartMax: job.restartMax, error: fault.error ?? null }),
    check("peer-connected", peerConnected, membership.peerStatus),
  ];
  if (!peerConnected) return { kind: "failover-declined", job: job.name, code: "failover-peer-not-connected", reasons };
  return { kind: "failover", job: job.name, code: fault.kind === "nic" ? "nic-down" : "monitor-threshold", to, reasons };
}

/**
 * Whether a failing resource is restarted where it is: a NIC cannot be, and past the threshold a
 * restart only hides a broken host, so the job moves. The runner and this policy both ask here.
 */
export function restartsInPlace(kind: string, failures: number, restartMax: number): boolean {
  return kind !== "nic" && failures <= restartMax;
}

function findFault(job: JobView, self: string) {
  for (const resource of job.resources) {
    const status = job.resourceStatus.get(resource.name)?.get(self);
    if (!status || status.status !== "failed") continue;
    if (!restartsInPlace(resource.kind, status.failures, job.restartMax))
      return { resource: resource.name, kind: resource.kind, failures: status.failures, since: status.since, error: status.error };
  }
  return null;
}

/**
 * How long a job that failed on both nodes waits before it is tried again when nothing journaled
 * changed: a fault that clears by itself (a NIC back within the deadtime, so no link went down)
 * leaves no fact behind (simulator seed 2995: both NICs failed for under a second).
 */
export const FAILED_RETRY_MS = 10_000;

/**
 * A job that failed to start here and runs nowhere, while the peer is connected: asked of the
 * peer again (it may be able to run it: this node's NIC may be the fault) whenever something
 * changed since the last attempt (the peer reconnected, a link came back), and at most every
 * FAILED_RETRY_MS otherwise. A job is never left failed on both nodes while one of them could run it.
 */
export function decideRetryElsewhere(state: ClusterState, job: JobView, now: number): Decision | null {
  const { self, membership } = state;
  if (job.phase !== "failed" || job.active !== null || job.lastError?.node !== self) return null;
  if (membership.peerStatus !== "connected") return null;
  const changedSeq = Math.max(membership.peerSinceSeq, membership.linkUpSeq);
  // The last attempt is the last move decided; the decision that led to the failed start (a
  // recovery, a resume) is not one (sim seed 1537 with a witness: a recovery's start failed on a
  // dead NIC, and the move to the peer waited 10 s).
  const last = job.lastDecision?.kind === "failover" ? job.lastDecision : null;
  if (last && last.seq > changedSeq && now - last.at < FAILED_RETRY_MS) return null;
  const to = job.nodes.find((n) => n !== self) ?? self;
  return {
    kind: "failover",
    job: job.name,
    code: "start-failed",
    to,
    reasons: [
      input("failed-here", { resource: job.lastError.resource, error: job.lastError.error, at: job.lastError.at }),
      check("peer-connected", true, membership.peerStatus),
      check("changed-or-waited-since-last-attempt", true, { lastAttemptSeq: last?.seq ?? null, changedSeq, lastAttemptAt: last?.at ?? null, retryAfterMs: FAILED_RETRY_MS }),
    ],
  };
}
