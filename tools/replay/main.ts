import { writeFile } from "node:fs/promises";
import { explainJournals, type Explanation } from "./explain.ts";
import { foldProblems, type NodeJournal } from "./fold.ts";
import { renderHtml } from "./html.ts";
import { checkInvariants, type Violation } from "./invariants.ts";
import { loadJournal, type LoadedJournal } from "./load.ts";
import { mergeJournals } from "./merge.ts";
import { printable, renderTimeline, snapshotsAt, stateAt } from "./timeline.ts";

export interface ReplayOptions {
  /** ISO time or epoch ms: show each node's state at that moment. */
  at?: string;
  json?: boolean;
  /** Write the self-contained timeline page to this file. */
  html?: string;
}

/**
 * `duet replay`: exit 0 when every decision re-checks, 1 on any mismatch, broken hash chain or
 * violated invariant (a job on both nodes, a fence counted on and never made), 2 on unreadable input.
 */
export async function runReplay(paths: string[], options: ReplayOptions = {}): Promise<{ output: string; exitCode: number }> {
  if (paths.length === 0) return { output: "replay: expected one or two journals (directories, exports or gatherinfo bundles), got none", exitCode: 2 };
  const at = parseAt(options.at);
  if (typeof at === "string") return { output: at, exitCode: 2 };
  let loaded: LoadedJournal[];
  try {
    loaded = await Promise.all(paths.map((p) => loadJournal(p)));
  } catch (error) {
    return { output: printable((error as Error).message), exitCode: 2 };
  }
  const journals: NodeJournal[] = loaded.map((j) => ({ node: j.node, events: j.records }));
  const merged = mergeJournals(loaded).map((e) => e.record);
  const explanations = markUnverified(explainJournals(journals), loaded);
  const problems = foldProblems(journals);
  const violations = checkInvariants(journals);
  const broken = loaded.some((j) => !j.verified.ok);
  const exitCode = broken || explanations.some((e) => !e.recheck.matches) || violations.some(counts) ? 1 : 0;
  if (options.html) {
    try {
      await writeFile(options.html, renderHtml(merged, explanations, journals, violations));
    } catch (error) {
      return { output: printable(`replay: --html ${options.html}: ${(error as Error).message}`), exitCode: 2 };
    }
  }

  if (options.json) {
    const sources = loaded.map((j) => ({ node: j.node, source: j.source, records: j.records.length, verified: j.verified }));
    const json = { journals: sources, problems, violations, timeline: merged, explanations, ...(at === undefined ? {} : { at, state: snapshotsAt(journals, at) }) };
    return { output: JSON.stringify(json, null, 2), exitCode };
  }
  const preface: string[] = [];
  for (const j of loaded) {
    if (!j.verified.ok) preface.push(`WARNING: the journal of ${j.node} (${j.source}) fails its hash-chain check: ${j.verified.message}; it may have been edited or damaged`);
  }
  for (const p of problems) preface.push(`WARNING: ${p.node} seq ${p.seq} (${p.type}) does not fold: ${p.message}; replay skipped it`);
  for (const v of violations) preface.push(`${counts(v) ? "PROBLEM" : "WARNING"}: ${v.message}`);
  for (const j of loaded) preface.push(`journal of ${j.node}: ${j.records.length} records from ${j.source}${j.verified.ok ? ", hash chain verified" : ", CHAIN BROKEN"}`);
  preface.push("");
  if (at !== undefined) preface.push(...stateAt(journals, at).split("\n"), "");
  return { output: renderTimeline(merged, explanations, preface, unverifiedFrom(loaded)), exitCode };
}

/** A violation fails the replay unless it may be clock skew alone. */
const counts = (v: Violation) => v.kind !== "ran-on-both" || v.certain;

/** Per node, the first seq that the hash chain no longer vouches for. */
function unverifiedFrom(loaded: readonly LoadedJournal[]): Map<string, number> {
  return new Map(loaded.filter((j) => !j.verified.ok).map((j) => [j.node, j.verified.firstBadSeq ?? 1]));
}

/** A decision at or after a break in its journal's chain is not re-checked as if it were sound. */
function markUnverified(explanations: Explanation[], loaded: readonly LoadedJournal[]): Explanation[] {
  const from = unverifiedFrom(loaded);
  return explanations.map((e) => {
    const first = from.get(e.node);
    return first !== undefined && e.seq >= first ? { ...e, unverified: `at or after the break in ${e.node}'s hash chain at seq ${first}: this record may have been edited` } : e;
  });
}

/** --at as epoch ms or an ISO time; a string is the error to print. */
function parseAt(value: string | undefined): number | undefined | string {
  if (value === undefined) return undefined;
  const at = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Date.parse(value);
  return Number.isFinite(at) ? at : `replay: --at: expected an ISO time like 2026-11-24T03:12:00Z or epoch milliseconds, got ${JSON.stringify(value)}`;
}
