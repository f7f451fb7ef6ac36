import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { linksState } from "../projections/membership.ts";
import { mirrorColour } from "../projections/replication.ts";

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
    },
    lastDecision: job.lastDecision,
    lastError: job.lastError,
  };
}
