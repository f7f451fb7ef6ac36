import type { Reason } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { ACK_RATE_WINDOW_MS, mirrorColour, oldestUnackedAt, UNACKED_SAMPLE_MS, type ReplicationView } from "../projections/replication.ts";
import { check } from "./decision.ts";

export interface SwitchoverGate {
  allowed: boolean;
  /** "allowed", or the first failed condition's name; every failed one is in reasons. */
  code: string;
  reasons: Reason[];
}

/**
 * How long a switchover may wait for the queue to drain. The move stops the application first and
 * then waits for the queue to drain before the peer starts (failing back here if it does not), so
 * a queue that keeps up is no reason to refuse; one that would take longer than this to drain is.
 */
export const SWITCHOVER_LAG_MAX_MS = 5000;

/**
 * A planned move is allowed only when nothing can be lost by it: the peer connected, the data
 * link green, verification done and the queue keeping up (it drains once the application has
 * stopped; asking for an empty queue refused every switchover of a job that writes steadily). A
 * refusal names every failed condition, so an operator fixes them all at once.
 */
export function decideSwitchover(state: ClusterState, jobName: string, to: string, now: number): SwitchoverGate {
  const job = state.jobs.get(jobName);
  if (!job) return gate([check("job-exists", false, jobName)]);
  const reasons: Reason[] = [
    check("job-exists", true, jobName),
    check("job-brought-in", job.phase === "in" && job.active !== null, { phase: job.phase, active: job.active }),
    check("target-is-the-other-node", job.nodes.includes(to) && to !== job.active, { to, nodes: job.nodes, active: job.active }),
    check("peer-connected", state.membership.peerStatus === "connected", state.membership.peerStatus),
  ];
  if (job.mirrors.length === 0) {
    reasons.push(check("data", true, "no mirrored paths"));
  } else {
    const view = state.replication.get(jobName);
    const colour = mirrorColour(view, true, state.membership.peerStatus === "connected");
    reasons.push(
      check("data-link-green", colour === "green", colour),
      check("verification-done", view?.verification.state === "done", view?.verification.state ?? "none"),
      // A path added to the running job and not yet verified: the peer's copy is not the job's.
      check("added-paths-verified", (view?.addedPaths.length ?? 0) === 0, view?.addedPaths.map((a) => a.path) ?? []),
      queueCheck(view, now, job.switchoverLagMaxMs ?? SWITCHOVER_LAG_MAX_MS),
    );
  }
  return gate(reasons);
}

/**
 * How long the queue takes to drain at the rate the peer acknowledged bytes over the last
 * ACK_RATE_WINDOW_MS (or since acknowledgements began, if later); null when nothing was
 * acknowledged in that window, so no rate is known.
 */
export function drainEstimate(view: ReplicationView | undefined, now: number): { ackedBytesPerSecond: number | null; drainEstimateMs: number | null } {
  const recent = (view?.acked ?? []).filter((x) => x.at >= now - ACK_RATE_WINDOW_MS && x.at <= now);
  const bytes = recent.reduce((sum, x) => sum + x.bytes, 0);
  if (recent.length === 0 || bytes === 0) return { ackedBytesPerSecond: null, drainEstimateMs: null };
  const spanMs = Math.min(ACK_RATE_WINDOW_MS, now - recent[0]!.at + UNACKED_SAMPLE_MS);
  const perMs = bytes / spanMs;
  return { ackedBytesPerSecond: Math.round(perMs * 1000), drainEstimateMs: Math.ceil((view?.queue.bytes ?? 0) / perMs) };
}

/**
 * Empty, or draining within MAXMS at the recent acknowledgement rate. With no acknowledgement in
 * the window (a burst just captured), the oldest write's age stands in: younger than MAXMS.
 */
function queueCheck(view: ReplicationView | undefined, now: number, maxMs: number): Reason {
  const batches = view?.queue.batches ?? 0;
  const oldest = oldestUnackedAt(view);
  const lagMs = oldest === null ? null : Math.max(0, now - oldest);
  const { ackedBytesPerSecond, drainEstimateMs } = drainEstimate(view, now);
  const drains = drainEstimateMs !== null ? drainEstimateMs <= maxMs : lagMs !== null && lagMs <= maxMs;
  const ok = batches === 0 || drains;
  return check("queue-keeping-up", ok, { batches, bytes: view?.queue.bytes ?? 0, oldestUnackedMs: lagMs, ackedBytesPerSecond, drainEstimateMs, maxMs });
}

/** The failed conditions of a refused switchover, the queue's with the estimate it was judged by. */
export function refusalText(reasons: Reason[]): string {
  return reasons
    .filter((r) => r.ok === false)
    .map((r) => {
      if (r.name !== "queue-keeping-up") return r.name;
      const q = r.value as { batches: number; bytes: number; oldestUnackedMs: number | null; ackedBytesPerSecond?: number | null; drainEstimateMs?: number | null; maxMs: number };
      const age = q.oldestUnackedMs === null ? "of unknown age" : `${q.oldestUnackedMs} ms old`;
      const waiting = `${q.batches} batches, ${q.bytes} bytes waiting, the oldest ${age}`;
      const behind = `the replica is that far behind, more than the ${q.maxMs} ms a switchover waits for it`;
      if (q.drainEstimateMs === undefined) return `queue-keeping-up (${waiting}: ${behind})`; // journaled before the estimate
      if (q.drainEstimateMs === null) return `queue-keeping-up (${waiting}, nothing acknowledged in the last ${ACK_RATE_WINDOW_MS / 1000} s: ${behind})`;
      return `queue-keeping-up (${waiting}; at the ${q.ackedBytesPerSecond} bytes/s acknowledged lately it drains in about ${q.drainEstimateMs} ms, more than the ${q.maxMs} ms a switchover waits for it)`;
    })
    .join(", ");
}

function gate(reasons: Reason[]): SwitchoverGate {
  const failed = reasons.find((r) => r.ok === false);
  return { allowed: failed === undefined, code: failed ? failed.name : "allowed", reasons };
}
