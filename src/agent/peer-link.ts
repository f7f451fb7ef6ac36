import { validateEvent, type DuetEvent } from "../events/catalogue.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { relayedFact, type PeerRequest } from "./peer-protocol.ts";

type JobReport = Extract<PeerRequest, { kind: "hello" }>["jobs"][number];

/** The jobs this node runs, as the peer should hear them. */
export function jobsRunningHere(state: ClusterState): JobReport[] {
  const reports: JobReport[] = [];
  for (const job of state.jobs.values()) if (job.active === state.self && job.phase === "in") reports.push({ job: job.name, phase: "in", since: job.phaseSince });
  return reports;
}

export interface Reconciliation {
  /** Facts about the peer to record here: where it runs jobs we did not know about, or no longer runs them. */
  facts: DuetEvent[];
  /** Jobs both nodes run: this node is the one that gives them up. */
  giveUp: { job: string; peerSince: number; mySince: number }[];
}

/**
 * Compares what the peer says it runs with what this node believes, after a reconnect (relayed
 * facts may have been lost while the link was down). A job found running on both nodes, which a
 * partition without fencing can cause, is kept by the node that brought it in last (its clients
 * were moved there most recently); both nodes compute the same answer from the same two reports.
 */
export function reconcile(state: ClusterState, peer: string, peerJobs: readonly JobReport[]): Reconciliation {
  const facts: DuetEvent[] = [];
  const giveUp: Reconciliation["giveUp"] = [];
  const peerRuns = new Map(peerJobs.filter((j) => j.phase === "in").map((j) => [j.job, j.since]));
  for (const job of state.jobs.values()) {
    if (!job.nodes.includes(peer)) continue;
    const peerSince = peerRuns.get(job.name);
    if (peerSince !== undefined && job.active !== peer) {
      const runsHere = job.active === state.self && job.phase === "in";
      const peerKeeps = !runsHere || peerSince > job.phaseSince || (peerSince === job.phaseSince && peer < state.self);
      if (runsHere && peerKeeps) giveUp.push({ job: job.name, peerSince, mySince: job.phaseSince });
      if (peerKeeps) facts.push({ type: "JobBroughtIn", data: { job: job.name, node: peer } });
    } else if (peerSince === undefined && job.active === peer) {
      facts.push({ type: "JobBroughtOut", data: { job: job.name, node: peer } });
    }
  }
  return { facts, giveUp };
}

/** A fact the peer relayed: only the relayed kinds, only about the peer itself, and valid. */
export function parseRelayedFact(body: unknown, peer: string): DuetEvent {
  const parsed = relayedFact.safeParse(body);
  if (!parsed.success) throw new Error(`relayed fact: expected {type: ${relayedFact.shape.type.options.join("|")}, data}, got ${JSON.stringify(body)?.slice(0, 200)}`);
  const event = validateEvent(parsed.data.type, parsed.data.data);
  // The node a fact is about: `node`, a resync's source, or where a bring-in starts.
  const data = event.data as { node?: string; from?: string; on?: string };
  const node = data.node ?? data.from ?? data.on;
  if (node !== peer) throw new Error(`relayed fact ${event.type}: names node ${node}, expected the peer ${peer}`);
  return event;
}
