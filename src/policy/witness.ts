import type { ClusterState } from "../projections/cluster.ts";
import type { JobView, WitnessClaim } from "../projections/jobs.ts";
import type { WitnessView } from "../projections/membership.ts";
import { check, input, type Decision } from "./decision.ts";

/**
 * How long before its lease can have expired in etcd's eyes the active brings its jobs out: the
 * fence itself (the reactor's tick, journaling, `ip addr del`: SELF_FENCE_MARGIN_MS's 500 ms),
 * plus 5% of the lease for the two clocks' rates (etcd times the lease on the leader's clock).
 */
export function witnessFenceMarginMs(ttlMs: number): number {
  return 500 + Math.ceil(ttlMs * 0.05);
}

/** How often a lease is renewed: a quarter of its TTL (the witness session and the policy agree on it here). */
export function witnessRenewMs(ttlMs: number): number {
  return Math.max(250, Math.floor(ttlMs / 4));
}

/** When the active must have fenced its jobs if its lease is not renewed by then. */
export function witnessFenceAt(witness: WitnessView): number {
  return witness.validUntil - witnessFenceMarginMs(witness.ttlMs);
}

/**
 * The active node's answer to its own lease running out (tiebreaker.witness): its jobs come out
 * before etcd can let the holder keys go, since the standby may win a key the moment its lease
 * has expired. With `unreachable: keep-running` they stay while the peer is heard (it does not
 * take over a node it hears): Patroni's failsafe mode. A key this node asked for again under a
 * new lease and found held by the peer is the same answer at once: the peer holds the job.
 */
export function decideWitnessFence(state: ClusterState, job: JobView, now: number): Decision | null {
  const { membership, self } = state;
  const witness = membership.witness;
  if (witness === null || job.active !== self || (job.phase !== "in" && job.phase !== "bringing-in")) return null;
  if (job.lastDecision?.kind === "self-fence" && job.lastDecision.seq > Math.max(witness.seq, job.runSeq ?? 0)) return null;
  // Only a renewal's answer: a start's own refusal is the start's to handle (it waits, then fails).
  const claim = job.claim?.purpose === "renew" && job.claim.seq > (job.runSeq ?? 0) ? job.claim : null;
  const lost = claim && !claim.won && claim.holder !== null && claim.holder !== self ? claim : null;
  if (lost) {
    return { kind: "self-fence", job: job.name, code: "witness-held-by-peer", reasons: [input("witness-lease", leaseFacts(witness)), check("holder-key-ours", false, { holder: lost.holder, revision: lost.revision, at: lost.at })] };
  }
  if (witness.state === "held" || witness.state === "granting") return null;
  // A start still waiting for its key fails by itself without one: nothing to fence (sim seed 108:
  // that fence's clean-up turned the failed start into "out" on the peer, and nobody retried).
  const keyedRun = job.claim !== undefined && job.claim.won && job.claim.seq > (job.runSeq ?? 0);
  if (job.phase === "bringing-in" && !keyedRun) return null;
  const fenceAt = witnessFenceAt(witness);
  const peerHeard = membership.peerStatus === "connected";
  if (witness.unreachable === "keep-running" && peerHeard) return null;
  // The peer is connected and may reach the witness (this node's NIC, or its path to etcd, is the
  // fault): the job moves there while there is time for a graceful stop, a renewal period before
  // the fence. The peer starts it once the key is free (given back, or this lease run out).
  const moveAt = fenceAt - witnessRenewMs(witness.ttlMs);
  const moved = job.lastDecision?.kind === "failover" && job.lastDecision.seq > witness.seq;
  if (peerHeard && !moved && now >= moveAt && job.phase === "in") {
    const to = job.nodes.find((n) => n !== self) ?? self;
    return { kind: "failover", job: job.name, code: "witness-lost", to, reasons: [input("witness-lease", leaseFacts(witness)), check("lease-renewed", false, { state: witness.state, since: witness.at }), check("peer-connected", true, membership.peerStatus), check("move-before-the-fence", true, { moveAt, fenceAt })] };
  }
  if (now < fenceAt) return null;
  return {
    kind: "self-fence",
    job: job.name,
    code: "witness-lease-lost",
    reasons: [
      input("witness-lease", leaseFacts(witness)),
      check("lease-renewed", false, { state: witness.state, since: witness.at }),
      check("fence-before-lease-expires", true, { fenceAt, validUntil: witness.validUntil, marginMs: witnessFenceMarginMs(witness.ttlMs) }),
      ...(witness.unreachable === "keep-running" ? [check("peer-heard", false, { peerStatus: membership.peerStatus })] : []),
    ],
  };
}

/**
 * The standby's claim for a job the lost peer ran, as the takeover policy reads it: the last one
 * since SINCE (the loss's verdict). `retry`: a claim the peer's key refused may be asked again once
 * the peer's lease can have expired (its holderTtlMs), or a second later if the witness did not answer.
 */
export function claimSince(job: JobView, since: number, now: number): { claim: WitnessClaim | null; retry: boolean } {
  const claim = job.claim && job.claim.seq > since && job.claim.purpose === "takeover" ? job.claim : null;
  if (claim === null || claim.won) return { claim, retry: false };
  return { claim, retry: now >= claim.at + claimRetryMs(claim) };
}

/**
 * When a refused claim is worth asking again: just after the holder's lease can have run out
 * (etcd revokes expired leases every 500 ms, so a key just past its TTL is asked for every 100 ms),
 * or a second later when the witness did not answer.
 */
export function claimRetryMs(claim: { holderTtlMs?: number | null; error?: string | null }): number {
  if (claim.error) return 1000;
  return Math.max(100, (claim.holderTtlMs ?? 900) + 100);
}

export function claimFacts(claim: WitnessClaim) {
  return { won: claim.won, holder: claim.holder, revision: claim.revision, at: claim.at, ...(claim.holderTtlMs === null ? {} : { holderTtlMs: claim.holderTtlMs }), ...(claim.error ? { error: claim.error } : {}) };
}

function leaseFacts(w: WitnessView) {
  return { state: w.state, leaseId: w.leaseId, ttlMs: w.ttlMs, validUntil: w.validUntil, unreachable: w.unreachable };
}
