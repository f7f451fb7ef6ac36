import type { ClusterState } from "../projections/cluster.ts";
import type { JobView } from "../projections/jobs.ts";
import { check, input, type Decision } from "./decision.ts";

/**
 * Local faults on the active node: a resource past its restart threshold, or the public NIC
 * down. The job moves to the peer when the peer is connected; otherwise moving it would only
 * stop the service, so it stays and an alert says why.
 */
export function decideFailover(state: ClusterState, job: JobView, _now: number): Decision | null {
  const { self, membership } = state;
  if (job.active !== self || job.phase !== "in") return null;
  const fault = findFault(job, self);
  if (!fault) return null;
  if (job.lastDecision && job.lastDecision.at >= fault.since) return null;
  const to = job.nodes.find((n) => n !== self) ?? self;
  const peerConnected = membership.peerStatus === "connected";
  const reasons = [
    input("fault", { resource: fault.resource, kind: fault.kind, failures: fault.failures, restartMax: job.restartMax, error: fault.error ?? null }),
    check("peer-connected", peerConnected, membership.peerStatus),
  ];
  if (!peerConnected) return { kind: "decline", job: job.name, code: "failover-peer-not-connected", reasons };
  return { kind: "failover", job: job.name, code: fault.kind === "nic" ? "nic-down" : "monitor-threshold", to, reasons };
}

function findFault(job: JobView, self: string) {
  for (const resource of job.resources) {
    const status = job.resourceStatus.get(resource.name)?.get(self);
    if (!status || status.status !== "failed") continue;
    if (resource.kind === "nic" || status.failures > job.restartMax)
      return { resource: resource.name, kind: resource.kind, failures: status.failures, since: status.since, error: status.error };
  }
  return null;
}
