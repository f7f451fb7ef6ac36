import type { Recorded } from "../events/catalogue.ts";
import { evolveJobs, initialJobs, recordSelfFence, type JobsState } from "./jobs.ts";
import { evolveMembership, initialMembership, type MembershipState } from "./membership.ts";
import { evolveReplication, initialReplication, type ReplicationState } from "./replication.ts";
import { evolveLineage, initialLineage, type LineageState } from "./lineage.ts";

/** Everything one node knows, folded from its journal. Pure, immutable, msgpackr-serializable. */
export interface ClusterState {
  self: string;
  membership: MembershipState;
  jobs: JobsState;
  replication: ReplicationState;
  lineage: LineageState;
}

export function initialCluster(self: string): ClusterState {
  return { self, membership: initialMembership(self), jobs: initialJobs, replication: initialReplication, lineage: initialLineage };
}

export function evolveCluster(state: ClusterState, event: Recorded): ClusterState {
  const membership = evolveMembership(state.membership, event);
  const jobs = recordSelfFence(evolveJobs(state.jobs, event), event);
  const replication = evolveReplication(state.replication, event, state.self);
  const lineage = evolveLineage(state.lineage, event);
  if (membership === state.membership && jobs === state.jobs && replication === state.replication && lineage === state.lineage) return state;
  return { ...state, membership, jobs, replication, lineage };
}

export function projectCluster(self: string, events: Iterable<Recorded>): ClusterState {
  let state = initialCluster(self);
  for (const event of events) state = evolveCluster(state, event);
  return state;
}

/** The projection the journal checkpoints; rename it when evolve or the state's shape changes. */
export function clusterProjection(self: string) {
  return { name: "cluster@10", initial: initialCluster(self), evolve: evolveCluster };
}
