import type { ClusterState } from "../projections/cluster.ts";
import { peerGoneVerdict, verdictSinceLoss, verdictSinceSilence } from "../projections/membership.ts";
import type { Decision } from "./decision.ts";
import { decideFailover, decideRetryElsewhere } from "./failover.ts";
import { decideResume, decideSelfFence, decideStallFence } from "./selffence.ts";
import { declinedForLivePeer, decideTakeover } from "./takeover.ts";
import { decideRecovery } from "./recovery.ts";
import { decideWitnessFence } from "./witness.ts";

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
    const decision = decideRecovery(state, job, now) ?? decideStallFence(state, job, now) ?? decideWitnessFence(state, job, now) ?? decideSelfFence(state, job, now) ?? decideResume(state, job, now) ?? decideFailover(state, job, now) ?? decideRetryElsewhere(state, job, now) ?? decideTakeover(state, job, now);
    if (decision) decisions.push(decision);
  }
  return decisions;
}

/**
 * Which tiebreaker the agent must ask now, if any. The peer lost and no verdict since: the whole
 * tiebreaker (ping, then the fence command). The peer suspected while jobs run here: only whether
 * this node still reaches its ping targets (a fence command never runs on a mere suspicion).
 * "recheck": jobs run here, the peer is still silent, and this node last found it reaches its
 * targets: it asks again now and then (the agent paces it and journals only a changed verdict),
 * since a node cut off later may be the one the peer's clients no longer reach (seed 117).
 * "peer-lost-recheck": the whole tiebreaker again, after a takeover declined for a peer that
 * answered on the network, paced and journaled the same way.
 */
export function tiebreakerNeeded(state: ClusterState): "peer-lost" | "peer-suspected" | "peer-lost-recheck" | "reachability" | "recheck" | null {
  const { membership, self } = state;
  const sinceLoss = verdictSinceLoss(membership);
  if (membership.peerStatus === "lost" && sinceLoss === null) return "peer-lost";
  // With a witness a standby looks on the suspicion (ping and ARP, never a fence command): its
  // takeover waits for the key, not for the deadtime.
  const standby = [...state.jobs.values()].some((job) => job.active === membership.peer && job.nodes.includes(self));
  if (membership.peerStatus === "suspected" && membership.witness !== null && standby && peerGoneVerdict(membership) === null) return "peer-suspected";
  // A takeover declined because the lost peer still answered on the network is looked at again
  // while it stays lost (paced by the agent, journaled only when the answer changes): its host
  // may die afterwards, and nothing else would ask (seed 7071: the job stayed down).
  const declinedAlive = sinceLoss !== null && [...state.jobs.values()].some((job) => job.active === membership.peer && job.nodes.includes(self) && declinedForLivePeer(job, sinceLoss.seq));
  if (membership.peerStatus === "lost" && declinedAlive) return "peer-lost-recheck";
  if (membership.peerStatus !== "suspected" && membership.peerStatus !== "lost") return null;
  const activeHere = [...state.jobs.values()].some((job) => job.active === self && job.phase === "in");
  if (!activeHere) return null;
  const verdict = verdictSinceSilence(membership);
  if (verdict === null) return membership.peerStatus === "suspected" ? "reachability" : null;
  return verdict.verdict === "confirmed" ? "recheck" : null;
}
