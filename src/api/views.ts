import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { linksState } from "../projections/membership.ts";
import { mirrorColour } from "../projections/replication.ts";
import { lineageSummary, lineageView } from "../projections/lineage.ts";
import { compareLineage } from "../policy/lineage.ts";

/** The folded state as plain JSON: Maps become arrays, names stay values. */
export function clusterView(state: ClusterState) {
  const m = state.membership;
  return {
    node: state.self,
    peer: m.peer,
    peerStatus: m.peerStatus,
    peerSince: m.peerSince,
    linksState: linksState(m),
    links: [...m.links.values()].map((l) => ({ link: l.link, kind: l.kind, up: l.up, since: l.since })),
    tiebreaker: m.tiebreaker,
    /** This node's lease on the witness (null: none configured); validUntil is when etcd keeps it at least. */
    witness: m.witness === null ? null : { state: m.witness.state, leaseId: m.witness.leaseId, ttlMs: m.witness.ttlMs, validUntil: m.witness.validUntil, unreachable: m.witness.unreachable, since: m.witness.at },
    /** This node's configuration (version, hash) and the peer's, as its last hello said (null: not heard since this agent started). */
    config: { version: m.config?.version ?? 0, hash: m.configHash, peerVersion: m.peerReport?.configVersion ?? null, peerHash: m.peerReport?.configHash ?? null },
    framesRejected: [...m.framesRejected.entries()].map(([reason, count]) => ({ reason, count })),
    alerts: m.alerts,
    jobs: [...state.jobs.values()].sort((a, b) => a.name.localeCompare(b.name)).map((j) => jobView(state, j)),
  };
}

export function jobView(state: ClusterState, job: JobView) {
  const replica = state.replication.get(job.name);
  return {
    name: job.name,
    nodes: job.nodes,
    policy: job.policy,
    phase: job.phase,
    phaseSince: job.phaseSince,
    active: job.active,
    restartMax: job.restartMax,
    resources: job.resources.map((r) => ({
      name: r.name,
      kind: r.kind,
      status: [...(job.resourceStatus.get(r.name)?.entries() ?? [])].map(([node, s]) => ({ node, ...s })),
    })),
    mirrors: job.mirrors,
    replication: {
      colour: mirrorColour(replica, job.mirrors.length > 0, state.membership.peerStatus === "connected"),
      queue: replica?.queue ?? null,
      verification: replica?.verification ?? null,
      lastCaptured: replica?.lastCaptured ?? null,
      lastApplied: replica?.lastApplied ?? null,
      lastAcked: replica?.lastAcked ?? null,
      capturedBytes: replica?.capturedBytes ?? 0,
      resync: replica?.resync ?? null,
      diverged: replica?.diverged ?? null,
      refused: replica?.refused ?? null,
      /** Paths added to the job and not yet verified against the peer (not mirrored yet). */
      addedPaths: replica?.addedPaths.map((a) => a.path) ?? [],
    },
    lineage: job.mirrors.length === 0 ? null : lineageOf(state, job),
    lastDecision: job.lastDecision,
    /** The job's holder key on the witness, as this node last asked for it (null: never asked). */
    witnessKey: witnessKeyView(job),
    lastError: job.lastError,
    takeovers: job.takeovers,
  };
}

/**
 * Both sides' data generations as this node's journal knows them (the peer's are relayed), and
 * which side lineage calls newer. A hint for operators: the mirror session compares full summaries.
 */
function lineageOf(state: ClusterState, job: JobView) {
  const peer = job.nodes.find((n) => n !== state.self) ?? null;
  const mine = lineageView(state.lineage, job.name, state.self);
  const theirs = peer === null ? null : lineageView(state.lineage, job.name, peer);
  const side = (v: typeof mine) => ({ node: v.node, generation: v.current, ancestors: v.ancestors.slice(0, 5) });
  const replica = state.replication.get(job.name);
  // Gray: both nodes journaled the divergence, and both say so.
  if (replica?.diverged) return { local: { ...side(mine), generation: replica.diverged.local }, peer: theirs === null ? null : { ...side(theirs), generation: replica.diverged.peer }, newer: "diverged", basis: "divergence" };
  // The last session's comparison, held by both journals, while this node's generation is still
  // the one compared: the same answer on both nodes, whatever either knows of the other since.
  const compared = replica?.lineageCompared;
  const mineCompared = compared ? (compared.node === state.self ? compared.generation : compared.peerGeneration) : undefined;
  if (compared && mineCompared === mine.current) {
    const theirsCompared = compared.node === state.self ? compared.peerGeneration : compared.generation;
    return { local: side(mine), peer: theirs === null ? null : { ...side(theirs), generation: theirsCompared }, newer: compared.newer, basis: "session" };
  }
  const verdict = theirs === null ? null : compareLineage(lineageSummary(mine), lineageSummary(theirs));
  const newer = verdict === null ? null : verdict.kind === "source" ? verdict.from : verdict.kind === "in-sync" ? "equal" : verdict.kind;
  return { local: side(mine), peer: theirs === null ? null : side(theirs), newer, basis: "this-node" };
}

/** The job's key as this node last knew it: its last claim's answer, or given back since. */
function witnessKeyView(job: JobView) {
  const claim = job.claim;
  if (!claim) return null;
  const released = job.keyReleased !== undefined && job.keyReleased.seq > claim.seq;
  if (released) return { won: false, holder: null, revision: claim.revision, purpose: claim.purpose, at: job.keyReleased!.at, error: null, givenBack: true };
  return { won: claim.won, holder: claim.holder, revision: claim.revision, purpose: claim.purpose, at: claim.at, error: claim.error, givenBack: false };
}
