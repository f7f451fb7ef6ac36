import { compareHlc, type Hlc, type Recorded } from "../../src/events/catalogue.ts";
import type { NodeJournal } from "./fold.ts";

/**
 * What replay can check across two journals that no single decision shows: that a job never ran
 * on both nodes, and that a takeover which counted on the other node fencing itself was followed by
 * that fence. Pure over the journals.
 */
export type Violation =
  | {
      kind: "ran-on-both";
      job: string;
      nodes: [string, string];
      /** The overlap in hybrid-clock wall milliseconds: from the later start to the earlier end. */
      from: Hlc;
      to: Hlc;
      ms: number;
      /** The records that begin and end the overlap, each with its own node's clock reading. */
      ends: { from: RecordRef; to: RecordRef };
      /** How far apart the two clocks were seen to be: an overlap shorter than this may be skew alone. */
      uncertaintyMs: number;
      certain: boolean;
      message: string;
    }
  | {
      kind: "fence-not-journaled";
      job: string;
      /** The node whose takeover counted on the fence, and its TakeoverDecided. */
      node: string;
      seq: number;
      /** The node that should have fenced itself and kept running instead. */
      other: string;
      message: string;
    };

export interface RecordRef {
  node: string;
  seq: number;
  type: string;
  at: number;
}

/** One stretch of a job running on one node, as that node's own journal says. */
interface Run {
  node: string;
  job: string;
  start: Recorded;
  /** The JobBroughtOut or JobStartFailed that ended it, else the last record the node journaled while it ran. */
  end: Recorded;
  ended: boolean;
  fenced: boolean;
}

export function checkInvariants(journals: readonly NodeJournal[]): Violation[] {
  if (journals.length < 2) return [];
  const runs = journals.flatMap(runsOf);
  const skew = clockSkew(journals);
  const violations: Violation[] = [];
  for (const [i, x] of runs.entries())
    for (const y of runs.slice(i + 1)) {
      if (x.job !== y.job || x.node === y.node) continue;
      const overlap = ranOnBoth(x, y, skew);
      if (overlap) violations.push(overlap);
    }
  for (const journal of journals) violations.push(...fencesNotJournaled(journal, runs));
  return violations;
}

/** Every run of every job in one node's own journal (relayed copies of the peer's facts left out). */
function runsOf(journal: NodeJournal): Run[] {
  const self = journal.node;
  const open = new Map<string, Run>();
  const runs: Run[] = [];
  for (const r of journal.events) {
    const data = r.data as { node?: unknown; job?: unknown; jobs?: unknown };
    if (r.type === "AgentStarted" && data.node === self) {
      // A restart ends what this journal can vouch for: the job ran at least until the last record.
      runs.push(...open.values());
      open.clear();
    }
    for (const run of open.values()) run.end = r;
    const job = typeof data.job === "string" ? data.job : null;
    if (job !== null && data.node === self) {
      if (r.type === "JobBroughtIn" && !open.has(job)) open.set(job, { node: self, job, start: r, end: r, ended: false, fenced: false });
      else if ((r.type === "JobBroughtOut" || r.type === "JobStartFailed") && open.has(job)) {
        runs.push({ ...open.get(job)!, end: r, ended: true });
        open.delete(job);
      }
    }
    if (r.type === "SelfFenceDecided" && data.node === self && Array.isArray(data.jobs))
      for (const fenced of data.jobs) if (open.has(fenced as string)) open.get(fenced as string)!.fenced = true;
  }
  return [...runs, ...open.values()];
}

function ranOnBoth(x: Run, y: Run, skewMs: number): Violation | null {
  const [first, second] = compareHlc(x.start.hlc, y.start.hlc) <= 0 ? [x, y] : [y, x];
  const to = compareHlc(first.end.hlc, second.end.hlc) <= 0 ? first.end : second.end;
  const from = second.start;
  if (compareHlc(from.hlc, to.hlc) >= 0) return null;
  const ms = to.hlc[0] - from.hlc[0];
  // The hybrid clock orders cause before effect; between two nodes that did not speak it is only
  // their clocks, so an overlap no longer than they were seen apart may be skew alone.
  const certain = ms > skewMs;
  const iso = (at: number) => new Date(at).toISOString();
  return {
    kind: "ran-on-both",
    job: x.job,
    nodes: [first.node, second.node],
    from: from.hlc,
    to: to.hlc,
    ms,
    ends: { from: ref(from), to: ref(to) },
    uncertaintyMs: skewMs,
    certain,
    message:
      `job ${x.job} ran on both ${first.node} and ${second.node} for ${ms} ms` +
      ` (${iso(from.hlc[0])} to ${iso(to.hlc[0])} by the hybrid clock, clocks seen up to ${skewMs} ms apart)` +
      `: ${second.node} brought it in while ${first.node} still ran it${first.ended ? "" : ` (its journal shows it running to its last record)`}` +
      (certain ? "" : "; the overlap is within the clocks' uncertainty"),
  };
}

const ref = (r: Recorded): RecordRef => ({ node: r.node, seq: r.seq, type: r.type, at: r.at });

/**
 * The largest gap seen between a record's hybrid stamp and its own clock reading, in either
 * journal: a stamp ahead of the clock is the peer's clock, merged from a frame. Zero when the
 * nodes never spoke; then the overlap's length is all replay has.
 */
function clockSkew(journals: readonly NodeJournal[]): number {
  let skew = 0;
  for (const journal of journals) for (const r of journal.events) skew = Math.max(skew, r.hlc[0] - r.at);
  return skew;
}

/**
 * A takeover that waited for the peer to fence itself ("peer-had-time-to-fence-itself"), while the
 * peer's own journal shows the job running past the takeover without a self-fence: the wait
 * proved nothing, and the takeover's explanation must not be read as if the peer had let go.
 */
function fencesNotJournaled(journal: NodeJournal, runs: readonly Run[]): Violation[] {
  const violations: Violation[] = [];
  for (const r of journal.events) {
    if (r.type !== "TakeoverDecided" || r.node !== journal.node) continue;
    if (!r.data.reasons.some((reason) => reason.name === "peer-had-time-to-fence-itself")) continue;
    const theirs = runs.find((run) => run.node === r.data.from && run.job === r.data.job && compareHlc(run.start.hlc, r.hlc) < 0 && compareHlc(run.end.hlc, r.hlc) > 0);
    if (!theirs || theirs.fenced) continue;
    violations.push({
      kind: "fence-not-journaled",
      job: r.data.job,
      node: journal.node,
      seq: r.seq,
      other: theirs.node,
      message: `${journal.node}'s takeover of ${r.data.job} (seq ${r.seq}) counted on ${theirs.node} having fenced itself, but ${theirs.node}'s journal shows the job still running after it with no self-fence`,
    });
  }
  return violations;
}
