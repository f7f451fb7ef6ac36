import type { Reason } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { mirrorColour } from "../projections/replication.ts";
import { check } from "./decision.ts";

export interface SwitchoverGate {
  allowed: boolean;
  /** "allowed", or the first failed condition's name; every failed one is in reasons. */
  code: string;
  reasons: Reason[];
}

/**
 * A planned move is allowed only when nothing can be lost by it: the peer connected, the data
 * link green, verification done and the queue empty. A refusal names every failed condition,
 * so an operator fixes them all at once instead of one per attempt.
 */
export function decideSwitchover(state: ClusterState, jobName: string, to: string, _now: number): SwitchoverGate {
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
      check("queue-empty", (view?.queue.batches ?? 0) === 0, { batches: view?.queue.batches ?? 0, bytes: view?.queue.bytes ?? 0 }),
    );
  }
  return gate(reasons);
}

function gate(reasons: Reason[]): SwitchoverGate {
  const failed = reasons.find((r) => r.ok === false);
  return { allowed: failed === undefined, code: failed ? failed.name : "allowed", reasons };
}
