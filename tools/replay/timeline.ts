import type { Recorded } from "../../src/events/catalogue.ts";
import type { Reason } from "../../src/events/ids.ts";
import { linksState } from "../../src/projections/membership.ts";
import { mirrorColour } from "../../src/projections/replication.ts";
import { describe, type Explanation, type SideData } from "./explain.ts";
import { stateAtTime, type NodeJournal } from "./fold.ts";

/** Generations shown per side in a text explanation; --json has them all. */
export const ANCESTORS_SHOWN_MAX = 3;

/** One node's state at a moment, as plain data (no Maps): what --at prints and --json carries. */
export interface NodeSnapshot {
  node: string;
  peer: string | null;
  peerStatus: string;
  peerSince: number | null;
  linksState: string;
  links: { link: string; kind: string; up: boolean; since: number }[];
  jobs: { name: string; phase: string; phaseSince: number; active: string | null; policy: string; colour: string; generation: string | null }[];
}

/** Each node's state after every record it journaled up to `at`, as its own journal shows it. */
export function snapshotsAt(journals: readonly NodeJournal[], at: number): NodeSnapshot[] {
  return journals.map((journal) => {
    const state = stateAtTime(journal, at);
    const m = state.membership;
    const connected = m.peerStatus === "connected";
    return {
      node: journal.node,
      peer: m.peer,
      peerStatus: m.peerStatus,
      peerSince: m.peerSince,
      linksState: linksState(m),
      links: [...m.links.values()].map((l) => ({ link: l.link, kind: l.kind, up: l.up, since: l.since })),
      jobs: [...state.jobs.values()]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((j) => ({
          name: j.name,
          phase: j.phase,
          phaseSince: j.phaseSince,
          active: j.active,
          policy: j.policy,
          colour: mirrorColour(state.replication.get(j.name), j.mirrors.length > 0, connected),
          generation: state.lineage.get(j.name)?.get(journal.node)?.current ?? null,
        })),
    };
  });
}

/** `--at`: each node's peer, links and jobs (phase, active node, mirror colour) at that moment, as text. */
export function stateAt(journals: readonly NodeJournal[], at: number): string {
  const lines = [`state at ${stamp(at)} (each node as its own journal shows it):`];
  for (const s of snapshotsAt(journals, at)) {
    const links = s.links.map((l) => `${l.link} ${l.up ? "up" : "down"}`).join(", ") || "none";
    lines.push(`  ${s.node}: peer ${s.peer ?? "?"} ${s.peerStatus}${s.peerSince === null ? "" : ` since ${clock(s.peerSince)}`}; links ${links} (${s.linksState})`);
    for (const j of s.jobs)
      lines.push(`    job ${j.name}: ${j.phase}${j.active ? ` on ${j.active}` : ""} since ${clock(j.phaseSince)}; policy ${j.policy}; data link ${j.colour}${j.generation ? `; generation ${j.generation}` : ""}`);
    if (s.jobs.length === 0) lines.push("    no jobs known yet");
  }
  return lines.map(printable).join("\n");
}

/**
 * The merged timeline as text: a MISMATCH headline if any decision does not follow from its
 * journal, the caller's preface (sources, --at state), one line per notable fact with its time
 * relative to the first record, then every decision explained as an indented tree.
 */
export function renderTimeline(merged: readonly Recorded[], explanations: readonly Explanation[], preface: readonly string[] = [], unverifiedFrom: ReadonlyMap<string, number> = new Map()): string {
  const lines: string[] = [];
  const mismatches = explanations.filter((e) => !e.recheck.matches);
  if (mismatches.length > 0) {
    lines.push(`MISMATCH: ${mismatches.length} decision(s) do not follow from the journal they are in:`);
    for (const e of mismatches) lines.push(`  ${e.kind} (${e.code}) of job ${e.job} on ${e.node} at ${e.time} (seq ${e.seq})`);
    lines.push("");
  }
  lines.push(...preface);
  const bad = new Set(mismatches.map((e) => `${e.node}#${e.seq}`));
  const first = merged[0]?.at ?? 0;
  lines.push(merged.length === 0 ? "timeline: no records." : `timeline, in hybrid-clock order; each time is the journaling node's own clock (from ${new Date(first).toISOString()}):`);
  for (const record of merged) {
    const text = describe(record);
    if (!text) continue;
    const brokenFrom = unverifiedFrom.get(record.node);
    const mark = `${bad.has(`${record.node}#${record.seq}`) ? "MISMATCH " : ""}${brokenFrom !== undefined && record.seq >= brokenFrom ? "UNVERIFIED " : ""}`;
    lines.push(`  ${clock(record.at)}  ${relative(record.at - first)}  [${record.node}] ${mark}${text}`);
  }
  lines.push("");
  if (explanations.length === 0) lines.push("no automatic decisions in these journals.");
  for (const e of explanations) lines.push(...renderExplanation(e), "");
  return lines.map(printable).join("\n");
}

/** One decision as a tree: what happened, each side's data, the policy's reasons, and the recheck. */
export function renderExplanation(e: Explanation): string[] {
  const c = e.chain;
  const r = e.recheck;
  const verdict = e.unverified
    ? `UNVERIFIED (${e.unverified}): not re-checked as sound`
    : r.matches
    ? `re-checked: the policy reaches the same decision on the state at seq ${r.basisSeq}${r.exact ? ", at the time it was made" : ""}${r.note ? ` (${r.note})` : ""}`
    : `MISMATCH: replaying the policy gives ${r.replayed ? `${r.replayed.kind} (${r.replayed.code})` : "no decision"}, the journal says ${r.journaled.kind} (${r.journaled.code})${r.note ? ` (${r.note})` : ""}`;
  const lines = [`why: ${e.kind} (${e.code}) of job ${e.job} on ${e.node} at ${e.time} (seq ${e.seq})`];
  if (!r.matches || e.unverified) lines.push(`  ${verdict}`);
  lines.push(`  links on ${e.node}:${c.links.length === 0 ? " none known" : ""}`);
  for (const l of c.links)
    lines.push(`    ${l.link} (${l.kind}) ${l.up ? "up" : "down"} since ${clock(l.since)}${l.lastHeardAt === null ? "" : `, last frame ${clock(l.lastHeardAt)}`}`);
  lines.push(
    c.peerLost
      ? `  peer ${c.peer.name ?? "?"} lost at ${clock(c.peerLost.at)}: every link silent for ${c.peerLost.deadtimeMs} ms (last frame ${c.peerLost.lastHeardAt ? clock(c.peerLost.lastHeardAt) : "never"})`
      : `  peer ${c.peer.name ?? "?"} ${c.peer.status}${c.peer.since === null ? "" : ` since ${clock(c.peer.since)}`}`,
  );
  const tb = c.tiebreaker;
  lines.push(
    tb
      ? `  tiebreaker (${tb.method}): ${tb.verdict} at ${clock(tb.at)}${tb.sinceLoss ? ", after the loss" : ", before the loss: it proves nothing about it"}${tb.targets.length ? `; targets ${tb.targets.map((t) => `${t.target} ${t.ok ? `answered${t.ms === undefined ? "" : ` in ${t.ms} ms`}` : "silent"}`).join(", ")}` : ""}`
      : "  tiebreaker: none asked",
  );
  lines.push(`  policy: ${c.policy === null ? "job unknown to this journal" : JSON.stringify(c.policy)}`);
  lines.push("  data:", ...c.data.map((s) => `    ${renderSide(s)}`));
  lines.push("  story:", ...c.facts.map((f) => `    ${clock(f.at)} [${f.node}] ${f.text}`));
  lines.push("  reasons journaled with it:", ...(e.reasons.length ? renderReasons(e.reasons, "    ") : ["    none"]));
  lines.push(`  ${verdict}`);
  return lines;
}

function renderSide(s: SideData): string {
  if (!s.known) return `${s.node}: not known (its journal was not given)`;
  const mirror = s.colour === "none" ? "no mirrored paths" : `data link ${s.colour ?? "?"}; queue ${s.queue ? `${s.queue.batches} batch(es), ${s.queue.bytes} bytes` : "empty"}; verification ${s.verification ?? "none"}; batches captured ${s.lastCaptured ?? 0}, applied ${s.lastApplied ?? 0}, acked ${s.lastAcked ?? 0}`;
  const ancestors = s.ancestors.length === 0 ? "" : ` (ancestors ${s.ancestors.slice(0, ANCESTORS_SHOWN_MAX).join(", ")}${s.ancestors.length > ANCESTORS_SHOWN_MAX ? ", …" : ""})`;
  return `${s.node}: ${mirror}; generation ${s.generation ?? "none"}${ancestors}`;
}

function renderReasons(reasons: readonly Reason[], indent: string): string[] {
  return reasons.flatMap((r) => [
    `${indent}${r.ok === undefined ? "·" : r.ok ? "✓" : "✗"} ${r.name}${r.value === undefined ? "" : `: ${JSON.stringify(r.value)}`}`,
    ...renderReasons(r.because ?? [], `${indent}  `),
  ]);
}

// Negative when a node's clock was behind: the timeline is in hybrid-clock order, not wall-clock order.
const relative = (ms: number) => `${ms < 0 ? "-" : "+"}${(Math.abs(ms) / 1000).toFixed(3).padStart(8)} s`;
const clock = (ms: number) => new Date(ms).toISOString().slice(11, 23);
const stamp = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 23);

/** Names and messages are user input: a control character must not rewrite the operator's terminal. */
export function printable(line: string): string {
  return line.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
