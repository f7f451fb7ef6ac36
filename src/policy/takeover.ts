import type { Reason } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { linksState, peerGoneVerdict, peerReleasedAfterMs, verdictSinceLoss } from "../projections/membership.ts";
import type { ReplicationView } from "../projections/replication.ts";
import type { ReplicaBehind } from "../events/job.ts";
import { check, input, peerGoneChecks, type Decision } from "./decision.ts";
import { claimFacts, claimSince } from "./witness.ts";

/**
 * The standby's answer when the node active for a job is lost (DESIGN.md's table). Every policy
 * first needs a tiebreaker verdict recorded after the loss that confirms the peer is gone and
 * this node is connected: a node that cannot prove that never takes over, whatever the policy.
 * Returns null while there is nothing to decide (peer not lost, job not on the peer, verdict
 * still pending, or this loss already decided).
 */
export function decideTakeover(state: ClusterState, job: JobView, now: number): Decision | null {
  const stage = takeoverStage(state, job, now);
  if (stage === "claim") return null;
  // With a witness the standby already looks on a suspicion, but only a takeover is decided then:
  // a blip of the network must not journal a decline.
  if (stage?.kind === "decline" && state.membership.peerStatus === "suspected") return null;
  return stage;
}

/**
 * The jobs whose takeover waits for this node to ask the witness for their holder key (the agent
 * asks, and journals the answer as WitnessClaimed): every other condition of the takeover holds.
 */
export function witnessClaimNeeded(state: ClusterState, now: number): string[] {
  return [...state.jobs.values()].filter((job) => takeoverStage(state, job, now) === "claim").map((job) => job.name);
}

const WITNESS_DECLINES = new Set(["witness-held-by-peer", "witness-unreachable"]);

/** decideTakeover, or "claim": a takeover that waits for the witness's holder key. */
function takeoverStage(state: ClusterState, job: JobView, now: number): Decision | "claim" | null {
  const { membership, self } = state;
  const peer = membership.peer;
  // With a witness a suspicion is enough to look: the key, free only once the peer's lease has
  // run out, is the proof the loss's deadtime would otherwise stand in for.
  const looking = membership.peerStatus === "lost" || (membership.witness !== null && membership.peerStatus === "suspected");
  if (!looking || peer === null) return null;
  if (job.active !== peer || !job.nodes.includes(self)) return null;
  const verdict = membership.witness !== null ? peerGoneVerdict(membership) : verdictSinceLoss(membership);
  if (!verdict) return null; // the agent runs the tiebreaker on PeerLost (with a witness: PeerSuspected); decide once it reports
  // Decided once per verdict (and per witness answer): a decline is decided again only on a newer
  // one (tiebreakerNeeded), or when the peer's key may have expired since the witness refused it.
  const witness = membership.witness === null ? null : claimSince(job, verdict.seq, now);
  const last = job.lastDecision;
  if (last && last.seq > Math.max(verdict.seq, witness?.claim?.seq ?? 0)) {
    if (!(witness?.retry && last.kind === "decline" && WITNESS_DECLINES.has(last.code))) return null;
  }

  const replica = state.replication.get(job.name);
  const behind = replicaBehind(replica, peer, now);
  const gone = peerGoneChecks(verdict);
  const reasons: Reason[] = [
    input("peer-lost-since", membership.peerSince),
    input("links", { state: linksState(membership), links: [...membership.links.values()].map((l) => ({ link: l.link, up: l.up, since: l.since })) }),
    gone.reasons[0]!,
    input("policy", job.policy),
    input("replica", replicaFacts(job, replica)),
    ...(job.mirrors.length > 0 ? [input("replica-behind", behind ?? "no queue report from the peer")] : []),
    ...gone.reasons.slice(1),
  ];
  // What the replica may lack goes with the answer either way: after a decline the operator
  // deciding on a manual takeover needs it most.
  const lag = job.mirrors.length > 0 ? { behind } : {};
  const decline = (code: string): Decision => ({ kind: "decline", job: job.name, code, reasons, ...lag });
  if (gone.refusal) return decline(gone.refusal);

  switch (job.policy) {
    case "manual":
      return decline("policy-manual");
    case "when-consistent": {
      const consistent = isConsistent(job, replica);
      reasons.push(check("replica-consistent", consistent));
      return consistent ? takeover(job, self, reasons) : decline("replica-not-consistent");
    }
    case "allow-difference": {
      const notDiverged = !replica?.diverged;
      reasons.push(check("replica-not-diverged", notDiverged));
      return notDiverged ? takeover(job, self, reasons) : decline("replica-diverged");
    }
    case "unconditional":
      return takeover(job, self, reasons);
  }

  // With only a ping tiebreaker the standby knows it is connected, not that the peer is dead: a peer
  // cut off from everything runs the job until it fences itself. The standby takes over only once
  // that has certainly happened (usually already by the deadtime); a fence command that confirmed
  // the peer is off needs no wait.
  function takeover(job: JobView, self: string, reasons: Reason[]): Decision | "claim" | null {
    // With a witness the peer's expired lease is the proof that it let go (it fences itself before
    // then): no wait for its self-fence, but no start without the key.
    if (witness !== null) {
      if (witness.claim === null || witness.retry) return "claim";
      if (!witness.claim.won && membership.peerStatus === "suspected") return null; // asked again at claimRetryMs
      reasons.push(check("witness-key-won", witness.claim.won, claimFacts(witness.claim)));
      if (!witness.claim.won) return decline(witness.claim.error !== null ? "witness-unreachable" : "witness-held-by-peer");
    }
    // Under keep-running the peer may run the job past its lease while it heard this node; it
    // brings the job out once it stops hearing it, so the key alone proves nothing until then: the
    // wait of the ping path applies (sim seed 965: the peer lost etcd, then everything; the key
    // was free at once and the job ran on both for 300 ms).
    const keyIsProof = witness !== null && membership.witness?.unreachable !== "keep-running";
    if (!keyIsProof && verdict!.method !== "fence") {
      const neededMs = peerReleasedAfterMs(membership.settings);
      // Never heard since this agent started: the silence began at its start, a deadtime before the loss.
      // After a decline because the peer's host still answered: it may have been cut off only just
      // before this verdict, its agent back and about to fence what it runs (seed 2011), so the
      // wait counts from the verdict that found it silent.
      const silentSince = declinedForLivePeer(job, membership.peerSinceSeq) ? verdict!.at : membership.peerLastHeardAt || (membership.peerSince ?? now) - membership.settings.deadtimeMs;
      if (now - silentSince < neededMs) return null; // the reactor's tick decides again once it has passed
      reasons.push(check("peer-had-time-to-fence-itself", true, { silentForMs: now - silentSince, neededMs }));
    }
    return { kind: "takeover", job: job.name, code: "takeover", to: self, reasons, ...lag };
  }
}

/**
 * The job's last decision declined its takeover because the lost peer still answered on the
 * network, after seq AFTER: such a decline is looked at again while the peer stays lost
 * (tiebreakerNeeded), and a takeover after it waits from the verdict that found the peer silent.
 */
export function declinedForLivePeer(job: JobView, after: number): boolean {
  const last = job.lastDecision;
  return last?.kind === "decline" && last.code === "peer-alive-on-public-network" && last.seq > after;
}

/** What the lost peer's last queue report said the replica lacked, aged to `now`. */
export function replicaBehind(replica: ReplicationView | undefined, peer: string, now: number): ReplicaBehind | null {
  const q = replica?.peerQueue;
  if (!q || q.node !== peer) return null;
  const ago = Math.max(0, now - q.at);
  return { batches: q.batches, bytes: q.bytes, oldestUnackedMs: q.oldestUnackedMs === null ? null : q.oldestUnackedMs + ago, reportedMsAgo: ago };
}

/** What a takeover, or its decline, said the replica may have lacked (the old active's last queue report). */
export function behindLine(behind: ReplicaBehind | null): string {
  if (behind === null) return "no queue report from the old active: what the replica lacked is unknown";
  const as = `as the old active reported ${behind.reportedMsAgo} ms before the decision`;
  if (behind.batches === 0) return `the replica lacked nothing, ${as}`;
  const oldest = behind.oldestUnackedMs === null ? "" : `, the oldest unacknowledged write ${behind.oldestUnackedMs} ms old`;
  return `the replica was behind by ${behind.batches} batches (${behind.bytes} bytes)${oldest}, ${as}`;
}

/** Consistent: verified, not diverged, not mid-resync, nothing refused. A job without mirrors has no data to doubt. */
export function isConsistent(job: JobView, replica: ReplicationView | undefined): boolean {
  if (job.mirrors.length === 0) return true;
  if (!replica) return false;
  return replica.verification.state === "done" && !replica.diverged && !replica.resync && !replica.refused;
}

function replicaFacts(job: JobView, replica: ReplicationView | undefined) {
  if (job.mirrors.length === 0) return { mirrors: 0 };
  if (!replica) return { verification: "none" };
  return {
    verification: replica.verification.state,
    lastApplied: replica.lastApplied,
    resyncing: replica.resync !== null,
    diverged: replica.diverged !== null,
    refused: replica.refused?.reason ?? null,
  };
}
