import type { Recorded } from "../events/catalogue.ts";
import type { ReplicaBehind } from "../events/job.ts";

export type JobPhase = "out" | "bringing-in" | "in" | "bringing-out" | "failed";
export type ResourceStatus = { status: "started" | "stopped" | "failed"; failures: number; since: number; error?: string };

export interface JobView {
  name: string;
  nodes: readonly [string, string];
  policy: "manual" | "when-consistent" | "allow-difference" | "unconditional";
  reverseWhenConsistent: boolean;
  restartMax: number;
  switchoverLagMaxMs?: number;
  resources: { name: string; kind: string }[];
  mirrors: string[];
  phase: JobPhase;
  phaseSince: number;
  /** The node the job runs on; null while it is out. */
  active: string | null;
  /** Per resource, per node: the last fact about it. */
  resourceStatus: Map<string, Map<string, ResourceStatus>>;
  /** behind: a takeover's statement of what the replica may have lacked (mirrored jobs). */
  /** keeper: a both-active resolution's choice of the node that keeps the job. */
  lastDecision: { kind: string; code: string; at: number; seq: number; behind?: ReplicaBehind | null; keeper?: string } | null;
  lastError: { node: string; resource: string; error: string; at: number } | null;
  /** The seq of the last phase change, and what started the current run: the decision journaled since the phase before (takeover, recover, resume), else "request" (an operator's or the peer's). */
  phaseSeq?: number;
  startedBy?: string;
  /** The seq that began the current run on `active`: its bring-in request, or the JobBroughtIn if none was seen. */
  runSeq?: number;
  /** Automatic takeovers of this job decided by this node, for /metrics. */
  takeovers: number;
  /** Monitor failures and in-place restarts journaled here, for /metrics. */
  monitorFailures: number;
  restarts: number;
  /**
   * This node brought the job out by a self-fence and nothing has happened to the job since but
   * that bring-out: it may bring the job back in once the peer is back (policy decideResume).
   */
  fencedHere?: boolean;
  /**
   * The journal says the job ran here when this agent (re)started: nothing may start it again but
   * a recovery decision (policy decideRecovery), which waits for the peer's word or its loss.
   */
  recovering?: boolean;
  /** This node's last ask for the job's holder key on the witness (WitnessClaimed), if any. */
  claim?: WitnessClaim;
  /**
   * The node whose run a bring-in request displaced (the request reached a node while the other
   * ran the job): if that start fails, the job is still in there.
   */
  displaced?: string;
  /** When this node last gave the key back (WitnessReleased). */
  keyReleased?: { at: number; seq: number };
}

export interface WitnessClaim {
  won: boolean;
  holder: string | null;
  purpose: "takeover" | "start" | "renew";
  revision: number;
  holderTtlMs: number | null;
  error: string | null;
  at: number;
  seq: number;
}

export type JobsState = Map<string, JobView>;

export const initialJobs: JobsState = new Map();

export function evolveJobs(jobs: JobsState, event: Recorded): JobsState {
  if (event.type === "JobCreated") {
    const d = event.data;
    const existing = jobs.get(d.job);
    const definition = { name: d.job, nodes: d.nodes, policy: d.policy, reverseWhenConsistent: d.reverseWhenConsistent, restartMax: d.restartMax, resources: d.resources, mirrors: d.mirrors, ...(d.switchoverLagMaxMs === undefined ? {} : { switchoverLagMaxMs: d.switchoverLagMaxMs }) };
    const job: JobView = existing
      ? { ...existing, ...definition }
      : { ...definition, phase: "out", phaseSince: event.at, active: null, resourceStatus: new Map(), lastDecision: null, lastError: null, takeovers: 0, monitorFailures: 0, restarts: 0 };
    return withJob(jobs, job);
  }
  const name = jobOf(event);
  if (name === undefined) return jobs;
  const job = jobs.get(name);
  if (!job) return jobs; // facts about a job this node does not know (deleted, or not ours)
  const next = evolveJob(job, event);
  if (next === null) {
    const without = new Map(jobs);
    without.delete(name);
    return without;
  }
  return next === job ? jobs : withJob(jobs, next);
}

/** The job's last decision, if journaled since its last phase change (still under way), else null. */
export function decisionSincePhase(job: JobView): JobView["lastDecision"] {
  return job.lastDecision && job.lastDecision.seq > (job.phaseSeq ?? 0) ? job.lastDecision : null;
}

function evolveJob(job: JobView, event: Recorded): JobView | null {
  const phase = (p: JobPhase, active: string | null = job.active): JobView => ({ ...job, phase: p, phaseSince: event.at, phaseSeq: event.seq, active, displaced: undefined });
  switch (event.type) {
    case "JobDeleted":
      return null;
    case "BringInRequested":
      // The node it is starting on counts as active from now on: if that node is lost mid-start,
      // the standby's takeover policy applies to it (its resources may be partly up there). So
      // does a node asked to start it while the journal says it runs on the other, lost, or is
      // being brought out there (an operator's takeover): its start is one, and yields if that node
      // turns out to run it (seeds 411, 4474).
      // Its phaseSeq stays: the decision that let the operator start it (a decline) is how the run began.
      if ((job.phase === "in" || job.phase === "bringing-out") && job.active !== event.data.on) {
        const displaced = job.phase === "in" && job.active !== null ? job.active : undefined;
        return { ...job, phase: "bringing-in", phaseSince: event.at, active: event.data.on, runSeq: event.seq, displaced };
      }
      return job.phase === "out" || job.phase === "failed" ? { ...phase("bringing-in", event.data.on), runSeq: event.seq } : job;
    case "BringOutRequested":
      return job.phase === "in" ? phase("bringing-out") : job;
    case "JobBroughtIn": {
      const cause = decisionSincePhase(job)?.kind ?? "request";
      const runSeq = job.phase === "bringing-in" && job.active === event.data.node && job.runSeq !== undefined ? job.runSeq : event.seq;
      return { ...phase("in", event.data.node), startedBy: cause, runSeq };
    }
    case "JobBroughtOut":
      // The run a late request displaced has stopped after all; or the node that was to start
      // instead stopped without having started it: the displaced run goes on (seed 3720).
      if (job.displaced === event.data.node) return { ...job, displaced: undefined };
      if (job.displaced !== undefined && job.phase === "bringing-in" && job.active === event.data.node) return { ...phase("in", job.displaced) };
      // A bring-out on the node that is not active (a clean-up, a refused start) changes nothing;
      // nor does one node's clean-up after the other's failed start: the job stays failed, so the
      // node whose start failed asks its peer again (sim seed 141 with a witness: the clean-up of
      // a move turned the peer's failure into "out", and neither node tried again).
      if (job.phase === "failed" && job.lastError !== null && job.lastError.node !== event.data.node) return job;
      return job.active === event.data.node || job.active === null ? phase("out", null) : job;
    case "JobStartFailed": {
      const failed = { ...job, lastError: { node: event.data.node, resource: event.data.resource, error: event.data.error, at: event.at } };
      // A request that reached this node late, while the other ran the job, must not leave the job
      // "failed" where it runs: nothing stopped that run, and the start that was to replace it did
      // not happen (sim seeds 2872, 3720: a bring-in asked before a cut reached the peer after
      // this node had taken the job over, and the witness refused the peer's start).
      const displaced = job.displaced;
      if (displaced !== undefined && displaced !== event.data.node && job.active === event.data.node) return { ...failed, phase: "in", phaseSince: event.at, phaseSeq: event.seq, active: displaced, displaced: undefined };
      return job.active === event.data.node || job.active === null ? { ...failed, phase: "failed", phaseSince: event.at, active: null } : failed;
    }
    case "ResourceStarted":
      return withResource(job, event.data.resource, event.data.node, { status: "started", failures: 0, since: event.at });
    case "ResourceStopped":
      return withResource(job, event.data.resource, event.data.node, { status: "stopped", failures: 0, since: event.at });
    case "ResourceStartFailed":
    case "ResourceStopFailed":
      return withResource(job, event.data.resource, event.data.node, { status: "failed", failures: failuresOf(job, event.data.resource, event.data.node), since: event.at, error: event.data.error });
    case "MonitorFailed":
      return withResource({ ...job, monitorFailures: job.monitorFailures + 1 }, event.data.resource, event.data.node, { status: "failed", failures: event.data.failures, since: event.at, error: event.data.error });
    case "MonitorRecovered":
    case "ResourceRestarted":
      return withResource(event.type === "ResourceRestarted" ? { ...job, restarts: job.restarts + 1 } : job, event.data.resource, event.data.node, { status: "started", failures: failuresOf(job, event.data.resource, event.data.node), since: event.at });
    case "WitnessClaimed": {
      const d = event.data;
      return { ...job, claim: { won: d.won, holder: d.holder, purpose: d.purpose, revision: d.revision, holderTtlMs: d.holderTtlMs ?? null, error: d.error ?? null, at: event.at, seq: event.seq } };
    }
    case "WitnessReleased":
      return { ...job, keyReleased: { at: event.at, seq: event.seq } };
    case "TakeoverDecided":
      return { ...job, takeovers: job.takeovers + 1, lastDecision: { kind: "takeover", code: "takeover", at: event.at, seq: event.seq, ...(event.data.behind === undefined ? {} : { behind: event.data.behind }) } };
    case "TakeoverDeclined":
      return { ...job, lastDecision: { kind: "decline", code: event.data.code, at: event.at, seq: event.seq, ...(event.data.behind === undefined ? {} : { behind: event.data.behind }) } };
    case "FailoverDecided":
      return { ...job, lastDecision: { kind: "failover", code: event.data.cause, at: event.at, seq: event.seq } };
    case "FailoverDeclined":
      return { ...job, lastDecision: { kind: "failover-declined", code: event.data.code, at: event.at, seq: event.seq } };
    case "ResumeDecided":
      return { ...job, lastDecision: { kind: "resume", code: "peer-back", at: event.at, seq: event.seq } };
    case "BothActiveResolved":
      return { ...job, lastDecision: { kind: "both-active", code: event.data.code, at: event.at, seq: event.seq, keeper: event.data.keeper } };
    case "StartAbandoned":
      return { ...job, lastDecision: { kind: "abandon-start", code: event.data.code, at: event.at, seq: event.seq } };
    case "RecoveryDecided":
      return { ...job, recovering: false, lastDecision: { kind: "recover", code: event.data.code, at: event.at, seq: event.seq } };
    case "RecoveryDeclined":
      // Brought out here like a self-fence, and resumed like one once the peer is back and runs it nowhere.
      return { ...job, recovering: false, fencedHere: true, lastDecision: { kind: "self-fence", code: event.data.code, at: event.at, seq: event.seq } };
    default:
      return job;
  }
}

function jobOf(event: Recorded): string | undefined {
  const job = (event.data as { job?: unknown }).job;
  return typeof job === "string" ? job : undefined;
}

function withJob(jobs: JobsState, job: JobView): JobsState {
  const next = new Map(jobs);
  next.set(job.name, job);
  return next;
}

function failuresOf(job: JobView, resource: string, node: string): number {
  return job.resourceStatus.get(resource)?.get(node)?.failures ?? 0;
}

function withResource(job: JobView, resource: string, node: string, status: ResourceStatus): JobView {
  const resourceStatus = new Map(job.resourceStatus);
  const perNode = new Map(resourceStatus.get(resource));
  perNode.set(node, status);
  resourceStatus.set(resource, perNode);
  return { ...job, resourceStatus };
}

/** Marks self-fence decisions on every job they name (the event lists jobs, not one job). */
export function recordSelfFence(jobs: JobsState, event: Recorded): JobsState {
  if (event.type === "AgentStarted") return markRecovering(jobs, event.data.node);
  if (event.type !== "SelfFenceDecided") return clearRecovering(clearFenced(jobs, event), event);
  let next = jobs;
  for (const name of event.data.jobs) {
    const job = next.get(name);
    if (job) next = withJob(next, { ...job, lastDecision: { kind: "self-fence", code: event.data.code ?? "isolated", at: event.at, seq: event.seq }, fencedHere: true });
  }
  return next;
}

/**
 * Anything that happens to a fenced job but its own bring-out (an operator, a start anywhere, a
 * decision to move it) ends its claim to resume. A resume decided does not: if the peer cannot
 * confirm it runs the job nowhere, the job stays out and fenced, and resumes at the peer's next return.
 */
const ENDS_FENCE = new Set(["BringInRequested", "BringOutRequested", "JobBroughtIn", "JobStartFailed", "TakeoverDecided", "FailoverDecided", "JobDeleted"]);
function clearFenced(jobs: JobsState, event: Recorded): JobsState {
  if (!ENDS_FENCE.has(event.type)) return jobs;
  const name = (event.data as { job?: string }).job;
  const job = name === undefined ? undefined : jobs.get(name);
  return job?.fencedHere ? withJob(jobs, { ...job, fencedHere: false }) : jobs;
}

/** This node's agent started: every job its journal says runs (or was starting) here awaits recovery. */
function markRecovering(jobs: JobsState, node: string): JobsState {
  let next = jobs;
  for (const job of jobs.values())
    if (job.active === node && (job.phase === "in" || job.phase === "bringing-in")) next = withJob(next, { ...job, recovering: true });
  return next;
}

/**
 * Whatever moves a recovering job (the peer reported, an operator, a start or stop anywhere) ends
 * the recovery; the peer's bring-out of its own copy does not move the job from here (it is what
 * the loser of a both-active resolution does while this node keeps the job, still to be started).
 */
const ENDS_RECOVERY = new Set(["BringInRequested", "BringOutRequested", "JobBroughtIn", "JobBroughtOut", "JobStartFailed", "JobDeleted", "TakeoverDecided", "FailoverDecided"]);
function clearRecovering(jobs: JobsState, event: Recorded): JobsState {
  if (!ENDS_RECOVERY.has(event.type)) return jobs;
  const name = (event.data as { job?: string }).job;
  const job = name === undefined ? undefined : jobs.get(name);
  if (event.type === "JobBroughtOut" && job?.active !== event.data.node) return jobs;
  return job?.recovering ? withJob(jobs, { ...job, recovering: false }) : jobs;
}
