import type { Reason } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { mirrorColour, oldestUnackedAt, type ReplicationView } from "../projections/replication.ts";
import { check } from "./decision.ts";

export interface SwitchoverGate {
  allowed: boolean;
  /** "allowed", or the first failed condition's name; every failed one is in reasons. */
  code: string;
  reasons: Reason[];
}

/**
 * The oldest write a switchover may find waiting for the peer's acknowledgement. The move stops
 * the application first and then waits for the queue to drain before the peer starts (failing back
 * here if it does not), so a queue that keeps up is no reason to refuse; one that lags this far is.
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
      queueCheck(view, now, job.switchoverLagMaxMs ?? SWITCHOVER_LAG_MAX_MS),
    );
  }
  return gate(reasons);
}

/** Empty, or its oldest write younger than MAXMS (unknown age: not keeping up). */
function queueCheck(view: ReplicationView | undefined, now: number, maxMs: number): Reason {
  const batches = view?.queue.batches ?? 0;
  const oldest = oldestUnackedAt(view);
  const lagMs = oldest === null ? null : Math.max(0, now - oldest);
  const ok = batches === 0 || (lagMs !== null && lagMs <= maxMs);
  return check("queue-keeping-up", ok, { batches, bytes: view?.queue.bytes ?? 0, oldestUnackedMs: lagMs, maxMs });
}

/** The failed conditions of a refused switchover, the queue's with the estimate it was judged by. */
export function refusalText(reasons: Reason[]): string {
  return reasons
    .filter((r) => r.ok === false)
    .map((r) => {
      if (r.name !== "queue-keeping-up") return r.name;
      const q = r.value as { batches: number; bytes: number; oldestUnackedMs: number | null; maxMs: number };
      const age = q.oldestUnackedMs === null ? "of unknown age" : `${q.oldestUnackedMs} ms old`;
      return `queue-keeping-up (${q.batches} batches, ${q.bytes} bytes waiting, the oldest ${age}: the replica is that far behind, more than the ${q.maxMs} ms a switchover waits for it)`;
    })
    .join(", ");
}

function gate(reasons: Reason[]): SwitchoverGate {
  const failed = reasons.find((r) => r.ok === false);
  return { allowed: failed === undefined, code: failed ? failed.name : "allowed", reasons };
}
