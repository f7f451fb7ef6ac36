import type { ClusterState } from "../projections/cluster.ts";
import { verdictSinceLoss } from "../projections/membership.ts";
import type { Decision } from "./decision.ts";
import { decideFailover } from "./failover.ts";
import { decideSelfFence } from "./selffence.ts";
import { decideTakeover } from "./takeover.ts";

/**
 * Every automatic decision this node should take now, in a stable order (by job name, then
 * self-fence, failover, takeover). Pure: the same state and time give the same decisions, which
 * is what lets replay re-run a journaled decision and confirm it.
 */
export function decide(state: ClusterState, now: number): Decision[] {
  const decisions: Decision[] = [];
  const names = [...state.jobs.keys()].sort();
  for (const name of names) {
    const job = state.jobs.get(name)!;
    const decision = decideSelfFence(state, job, now) ?? decideFailover(state, job, now) ?? decideTakeover(state, job, now);
    if (decision) decisions.push(decision);
  }
  return decisions;
}

/** The peer is lost and no tiebreaker has spoken since: the agent must ask one before deciding. */
export function needsTiebreaker(state: ClusterState): boolean {
  return state.membership.peerStatus === "lost" && verdictSinceLoss(state.membership) === null;
}
