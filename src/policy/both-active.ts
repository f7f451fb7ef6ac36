import type { Reason } from "../events/ids.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { decisionSincePhase, type JobView } from "../projections/jobs.ts";
import { check, input, type Decision } from "./decision.ts";

/** One node's account of a job it runs, as the hello carries it. */
export interface RunningSide {
  node: string;
  /** When it brought the job in. */
  since: number;
  /** Its data's current generation and the line of ancestors before it (newest first). */
  generation?: string | null;
  ancestors?: readonly string[];
  /** How the job came to run there: the kind of the decision or request that started it. */
  how?: string;
}

/**
 * How a job came to run on a node, ranked: a takeover the other node cannot contradict (it was
 * decided after the other was lost and confirmed gone) beats a move both agreed on, which beats a
 * restart that only found the job in its own journal.
 */
const HOW_RANK: Record<string, number> = { takeover: 3, failover: 2, request: 2, resume: 1, recover: 1 };

/**
 * Which node keeps a job found running on both (a partition without fencing, a restart cut off
 * from the survivor). In order: the node whose data descends from the other's (its lineage holds
 * the other's history, so it has the newer data); then the one that came to run it by the
 * stronger decision (HOW_RANK); then the one that ran it first; then the lower name. Both nodes call it with the same two sides,
 * in either order, and reach the same answer with the same reasons.
 */
export function chooseKeeper(job: string, x: RunningSide, y: RunningSide): { job: string; keeper: string; other: string; code: string; reasons: Reason[] } {
  const [first, second] = x.node < y.node ? [x, y] : [y, x];
  const reasons: Reason[] = [input("sides", [first, second].map((s) => ({ node: s.node, since: s.since, generation: s.generation ?? null, how: s.how ?? "unknown" })))];
  const result = (keeper: RunningSide, code: string) => ({ job, keeper: keeper.node, other: keeper === first ? second.node : first.node, code, reasons });
  const descends = (a: RunningSide, b: RunningSide) => !!a.generation && !!b.generation && a.generation !== b.generation && (a.ancestors ?? []).includes(b.generation);
  const firstNewer = descends(first, second);
  const secondNewer = descends(second, first);
  reasons.push(check("one-side-holds-the-others-history", firstNewer !== secondNewer, { newer: firstNewer ? first.node : secondNewer ? second.node : null }));
  if (firstNewer !== secondNewer) return result(firstNewer ? first : second, "newer-data");
  const rank = (s: RunningSide) => HOW_RANK[s.how ?? ""] ?? 0;
  reasons.push(check("one-side-decided-more-strongly", rank(first) !== rank(second), { [first.node]: first.how ?? "unknown", [second.node]: second.how ?? "unknown" }));
  if (rank(first) !== rank(second)) return result(rank(first) > rank(second) ? first : second, "stronger-decision");
  // Equally strong: the later one was decided while the other still ran the job (the partition
  // hid it), so the earlier run is the one nothing contradicts.
  reasons.push(check("one-side-ran-first", first.since !== second.since, { [first.node]: first.since, [second.node]: second.since }));
  if (first.since !== second.since) return result(first.since < second.since ? first : second, "ran-first");
  reasons.push(input("tie-break", "the lower node name keeps it"));
  return result(first, "tie-break");
}

/**
 * A job this node is still starting while the peer, heard again, reports it running (a takeover
 * whose address stayed refused because the peer held it): the start is abandoned. The peer serves
 * the job and this node's start never finished, so nothing ran here that clients reached. Both
 * inputs are journaled with the decision, so replay runs it again on them.
 */
export function decideYieldStart(job: string, here: StartingHere, theirs: RunningSide): Decision | null {
  const requested = here.active === here.node && here.phase === "bringing-in";
  const decided = here.decidedSincePhase !== null && STARTING_DECISIONS.has(here.decidedSincePhase);
  if (!(requested || decided) || theirs.node === here.node) return null;
  return {
    kind: "abandon-start",
    job,
    code: "peer-runs-job",
    reasons: [
      input("here", here),
      input("peer-report", { node: theirs.node, since: theirs.since, generation: theirs.generation ?? null, how: theirs.how ?? "unknown" }),
      check("start-unfinished-here", true, requested ? { phase: here.phase } : { decision: here.decidedSincePhase }),
      check("peer-runs-job", true),
    ],
  };
}

/** Decisions that start a job here: while one is newer than the job's last phase change, its start is under way. */
const STARTING_DECISIONS = new Set(["takeover", "recover"]);

/** What this node's journal says of a job it may be starting. */
export interface StartingHere {
  node: string;
  active: string | null;
  phase: string;
  /** The kind of a decision journaled since the job's last phase change, if any. */
  decidedSincePhase: string | null;
}

export function startingHere(state: ClusterState, job: JobView): StartingHere {
  const last = job.lastDecision;
  // A start that failed here since the decision has ended it (the phase stays the peer's).
  const ended = last !== null && job.lastError?.node === state.self && job.lastError.at >= last.at;
  const decision = ended ? null : (decisionSincePhase(job)?.kind ?? null);
  return { node: state.self, active: job.active, phase: job.phase, decidedSincePhase: decision };
}
