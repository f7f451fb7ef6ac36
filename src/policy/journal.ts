import type { DuetEvent } from "../events/catalogue.ts";
import type { DecisionBasis } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import type { Decision } from "./decision.ts";
import { behindLine } from "./takeover.ts";

/**
 * The events that journal what decide() returned, in the order they go in: each decision with the
 * state's seq and the time it was made on, then one SelfFenceDecided per cause, then an alert for
 * each decline a person has to read. The shell appends them before it acts; it picks no type.
 */
export function decisionEvents(decisions: readonly Decision[], state: ClusterState, basis: DecisionBasis): DuetEvent[] {
  const self = state.self;
  const peer = state.membership.peer ?? "unknown";
  const events = decisions.filter((d) => d.kind !== "self-fence").map((d) => decisionEvent(d, state, peer, basis));
  for (const code of ["stalled", "isolated", "witness-lease-lost", "witness-held-by-peer"] as const) {
    const fenced = decisions.filter((d) => d.kind === "self-fence" && d.code === code);
    if (fenced.length === 0) continue;
    const graceMs = code === "isolated" ? state.membership.settings.selfFenceGraceMs : 0;
    events.push({ type: "SelfFenceDecided", data: { node: self, jobs: fenced.map((d) => d.job), graceMs, reasons: fenced[0]!.reasons, code, ...basis } });
  }
  for (const d of decisions) {
    const message = declineMessage(d, self, peer);
    if (message !== null) events.push({ type: "AlertRaised", data: { node: self, job: d.job, code: d.code, message } });
  }
  return events;
}

function decisionEvent(d: Decision, state: ClusterState, peer: string, basis: DecisionBasis): DuetEvent {
  const self = state.self;
  const policy = state.jobs.get(d.job)!.policy;
  const behind = d.behind === undefined ? {} : { behind: d.behind };
  switch (d.kind) {
    case "takeover":
      return { type: "TakeoverDecided", data: { job: d.job, by: self, from: peer, policy, reasons: d.reasons, ...behind, ...basis } };
    case "decline":
      return { type: "TakeoverDeclined", data: { job: d.job, by: self, from: peer, policy, code: d.code, reasons: d.reasons, ...behind, ...basis } };
    case "failover":
      return { type: "FailoverDecided", data: { job: d.job, from: self, to: d.to ?? peer, cause: failoverCause(d.code), reasons: d.reasons, ...basis } };
    case "failover-declined":
      return { type: "FailoverDeclined", data: { job: d.job, node: self, code: d.code, reasons: d.reasons, ...basis } };
    case "resume":
      return { type: "ResumeDecided", data: { job: d.job, node: self, reasons: d.reasons, ...basis } };
    case "recover":
      return { type: "RecoveryDecided", data: { job: d.job, node: self, code: d.code, reasons: d.reasons, ...basis } };
    case "recovery-declined":
      return { type: "RecoveryDeclined", data: { job: d.job, node: self, code: d.code, reasons: d.reasons, ...basis } };
    default:
      throw new Error(`policy: a ${d.kind} decision for job ${d.job} has no event of its own`);
  }
}

function failoverCause(code: string): "nic-down" | "start-failed" | "monitor-threshold" | "witness-lost" {
  return code === "nic-down" || code === "start-failed" || code === "witness-lost" ? code : "monitor-threshold";
}

/** The sentence an operator reads for a decision that leaves a job where it is; null for the others. */
function declineMessage(d: Decision, self: string, peer: string): string | null {
  if (d.kind === "recovery-declined") return `job ${d.job} ran on ${self} when its agent last stopped; ${peer} is lost but may have taken it over (${d.code}), so it stays out here; it resumes once ${peer} is back and runs it nowhere, or: duet job bring-in ${d.job} --on ${self}`;
  if (d.kind === "failover-declined") return `job ${d.job} has a fault on ${self} but ${peer} is not connected: it stays here`;
  if (d.kind !== "decline") return null;
  const why = (d.reasons.find((r) => r.name === "tiebreaker-confirmed")?.value as { why?: string } | undefined)?.why;
  if (d.code === "peer-alive-on-public-network") {
    const seen = d.reasons.find((r) => r.name === "peer-silent-on-public-network")?.value as { answered?: string[] } | undefined;
    return `node ${peer} is silent on every link but answers on the public network (${seen?.answered?.join(", ") ?? "ARP"}): its agent may be hung or the link between the nodes cut, and it may still run job ${d.job}; not taken over. If ${peer} is really down: duet job bring-in ${d.job} --on ${self}`;
  }
  if (d.code === "witness-held-by-peer") {
    const claim = d.reasons.find((r) => r.name === "witness-key-won")?.value as { holder?: string; revision?: number } | undefined;
    return `node ${peer} is silent on every link, but the witness says ${claim?.holder ?? peer} still holds job ${d.job} (revision ${claim?.revision ?? "?"}): its lease is being renewed, so it is alive and may run the job; not taken over while it holds the key`;
  }
  if (d.code === "witness-unreachable") return `node ${peer} is lost and job ${d.job} was not taken over: the witness did not answer, and no node takes a job over without winning its key; asked again in a second`;
  if (d.code === "tiebreaker-failed") return `node ${peer} is lost and job ${d.job} was not taken over: the tiebreaker could not run (${why ?? "no output"}); to take it over: duet job bring-in ${d.job} --on ${self}`;
  const lag = d.behind === undefined ? "" : ` (${behindLine(d.behind)})`;
  return `node ${peer} is lost and job ${d.job} was not taken over (${d.code}); to take it over: duet job bring-in ${d.job} --on ${self}${lag}`;
}
