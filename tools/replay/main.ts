import { writeFile } from "node:fs/promises";
import { projectCluster } from "../../src/projections/cluster.ts";
import { clusterView } from "../../src/api/views.ts";
import { describe, explainJournal, renderExplanation } from "./explain.ts";
import { renderHtml } from "./html.ts";
import { loadJournal, type LoadedJournal } from "./load.ts";
import { mergeJournals, type TimelineEntry } from "./merge.ts";

export interface ReplayOptions {
  /** ISO time or epoch ms: show each node's state at that moment. */
  at?: string;
  json?: boolean;
  html?: string;
}

const time = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 23);

/** `duet replay`: exit 0 when every decision re-checks, 1 on any mismatch, 2 on unreadable input. */
export async function runReplay(paths: string[], options: ReplayOptions = {}): Promise<{ output: string; exitCode: number }> {
  let journals: LoadedJournal[];
  try {
    journals = await Promise.all(paths.map((p) => loadJournal(p)));
  } catch (error) {
    return { output: `replay: ${(error as Error).message}`, exitCode: 2 };
  }
  const timeline = mergeJournals(journals);
  const explanations = journals.flatMap((j) => explainJournal(j, journals.find((o) => o !== j)));
  const mismatches = explanations.filter((e) => !e.recheck.matches);
  const at = options.at === undefined ? undefined : /^\d+$/.test(options.at) ? Number(options.at) : Date.parse(options.at);
  if (at !== undefined && Number.isNaN(at)) return { output: `replay: --at: expected an ISO time like 2026-11-24T03:12:00Z or epoch milliseconds, got "${options.at}"`, exitCode: 2 };
  const states = at === undefined ? [] : journals.map((j) => clusterView(projectCluster(j.node, j.records.filter((r) => r.at <= at))));
  if (options.html) await writeFile(options.html, renderHtml(timeline, explanations));
  const exitCode = mismatches.length > 0 ? 1 : 0;
  if (options.json) return { output: JSON.stringify({ journals: journals.map((j) => ({ node: j.node, source: j.source, records: j.records.length, verified: j.verified })), timeline: timeline.map((e) => e.record), explanations, states }, null, 2), exitCode };

  const lines: string[] = [];
  if (mismatches.length > 0) lines.push(`MISMATCH: ${mismatches.length} decision(s) do not follow from the journal they are in (see below)`, "");
  for (const j of journals) lines.push(`journal of ${j.node}: ${j.records.length} records from ${j.source}${j.verified.ok ? ", hash chain verified" : `, CHAIN BROKEN: ${j.verified.message}`}`);
  lines.push("");
  if (at !== undefined) {
    lines.push(`state at ${time(at)}:`);
    for (const s of states) lines.push(...renderState(s));
    lines.push("");
  }
  lines.push("timeline:", ...renderTimeline(timeline), "");
  if (explanations.length === 0) lines.push("no automatic decisions in these journals.");
  for (const e of explanations) lines.push(...renderExplanation(e), "");
  return { output: lines.join("\n"), exitCode };
}

function renderState(s: ReturnType<typeof clusterView>): string[] {
  return [
    `  ${s.node}: peer ${s.peer ?? "?"} ${s.peerStatus}; links ${s.links.map((l) => `${l.link} ${l.up ? "up" : "down"}`).join(", ") || "none"}`,
    ...s.jobs.map((j) => `    job ${j.name}: ${j.phase}${j.active ? ` on ${j.active}` : ""}; data link ${j.replication.colour}`),
  ];
}

function renderTimeline(timeline: TimelineEntry[]): string[] {
  const first = timeline[0]?.record.at ?? 0;
  const lines: string[] = [];
  for (const { record, journal } of timeline) {
    const text = describe(record);
    if (text) lines.push(`  ${time(record.at)}  +${((record.at - first) / 1000).toFixed(3).padStart(8)} s  [${journal}] ${text}`);
  }
  return lines;
}

