import type { Recorded } from "../../src/events/catalogue.ts";
import { describe, type Explanation } from "./explain.ts";
import { byNode, createFold, type NodeJournal } from "./fold.ts";
import type { Violation } from "./invariants.ts";
import { renderExplanation } from "./timeline.ts";

/** Bands drawn per lane; past it the rest of the lane is one "changes omitted" band. */
export const HTML_SEGMENTS_PER_LANE_MAX = 2000;
/** Rows of the fact table; the text output has them all. */
export const HTML_TABLE_ROWS_MAX = 5000;
const LABEL_CHARS_MAX = 40;
const OMITTED = "changes omitted";

const COLOURS = new Map([
  ["up", "#2e9e44"],
  ["connected", "#2e9e44"],
  ["down", "#c8322f"],
  ["lost", "#c8322f"],
  ["unknown", "#9a9a9a"],
  ["out", "#c9c9c9"],
  ["bringing-in", "#7fb2e5"],
  ["bringing-out", "#e8a64c"],
  ["failed", "#c8322f"],
  [OMITTED, "#666"],
]);
/** "in on NODE" gets the colour of that node, so a move of the job shows as a change of colour. */
const ACTIVE_COLOURS = ["#2f6fc0", "#7a4fb5"];
const colourOf = (value: string, nodes: readonly string[]) => {
  const known = COLOURS.get(value);
  if (known) return known;
  const active = / on (.*)$/.exec(value)?.[1];
  const index = active === undefined ? -1 : nodes.indexOf(active);
  return index < 0 ? "#888" : ACTIVE_COLOURS[index % ACTIVE_COLOURS.length]!;
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&#39;"));
}

interface Segment {
  from: number;
  to: number;
  value: string;
}
interface Lane {
  label: string;
  segments: Segment[];
}

/**
 * One node's lanes as its own journal saw them: each link, the peer, and each job's phase and
 * active node. They end shortly after the node's last record (`tailMs`, so the last state shows):
 * past it the journal says nothing, as after a crash.
 */
function nodeLanes(journal: NodeJournal, tailMs: number): Lane[] {
  const end = (journal.events.at(-1)?.at ?? 0) + tailMs;
  const fold = createFold(journal.node);
  const open = new Map<string, { since: number; value: string }>();
  const closed = new Map<string, Segment[]>();
  const set = (label: string, at: number, value: string) => {
    const current = open.get(label);
    if (current?.value === value || current?.value === OMITTED) return;
    if (current) {
      const segments = closed.get(label) ?? [];
      segments.push({ from: current.since, to: at, value: current.value });
      closed.set(label, segments);
      if (segments.length >= HTML_SEGMENTS_PER_LANE_MAX - 1) value = OMITTED;
    }
    open.set(label, { since: at, value });
  };
  let previous = fold.state();
  for (const record of journal.events) {
    const state = fold.apply(record);
    if (state === previous) continue;
    previous = state;
    const m = state.membership;
    for (const l of m.links.values()) set(`${journal.node} · link ${l.link}`, record.at, l.up ? "up" : "down");
    if (m.peer !== null) set(`${journal.node} · peer ${m.peer}`, record.at, m.peerStatus);
    for (const j of state.jobs.values()) set(`${journal.node} · job ${j.name}`, record.at, j.active ? `${j.phase} on ${j.active}` : j.phase);
  }
  for (const [label, current] of open) closed.set(label, [...(closed.get(label) ?? []), { from: current.since, to: Math.max(end, current.since), value: current.value }]);
  return [...closed].sort(([a], [b]) => a.localeCompare(b)).map(([label, segments]) => ({ label, segments }));
}

/**
 * One self-contained page (inline CSS and SVG; no script, no external URL) with lanes over time:
 * per node its links, its peer and each job's phase and active node, and its decisions as markers
 * whose reasons show in a tooltip and in the explanations below. Every name is escaped. Lanes fold
 * each node's whole journal when given (`merged` shows a relayed fact once, but the node that
 * received it acted on it), else the records of `merged`.
 */
export function renderHtml(merged: readonly Recorded[], explanations: readonly Explanation[], journals: readonly NodeJournal[] = byNode(merged), violations: readonly Violation[] = []): string {
  const start = merged.reduce((min, r) => Math.min(min, r.at), merged[0]?.at ?? 0);
  const last = merged.reduce((max, r) => Math.max(max, r.at), start);
  const tailMs = Math.max(1, Math.round((last - start) * 0.03));
  const end = last + tailMs;
  const width = 1100;
  const left = 290;
  const x = (at: number) => left + ((at - start) / (end - start)) * (width - left - 20);
  const rowHeight = 22;
  const rows: string[] = [];
  const nodes = journals.map((j) => j.node);
  let y = 30;
  const label = (text: string) =>
    `<text x="4" y="${y + 12}" font-size="12"><title>${escapeHtml(text)}</title>${escapeHtml(text.length > LABEL_CHARS_MAX ? `${text.slice(0, LABEL_CHARS_MAX - 1)}…` : text)}</text>`;
  for (const journal of journals) {
    for (const lane of nodeLanes(journal, tailMs)) {
      const bands = lane.segments.map((s) => {
        const w = Math.max(1, x(s.to) - x(s.from));
        const tip = `${lane.label}: ${s.value} from ${new Date(s.from).toISOString()} to ${new Date(s.to).toISOString()}`;
        const text = w > 40 ? `<text x="${(x(s.from) + 3).toFixed(1)}" y="${y + 12}" font-size="10" fill="#fff">${escapeHtml(s.value)}</text>` : "";
        return `<g><title>${escapeHtml(tip)}</title><rect x="${x(s.from).toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${rowHeight - 6}" fill="${colourOf(s.value, nodes)}" stroke="#fff" stroke-width="0.5"/>${text}</g>`;
      });
      rows.push(`${label(lane.label)}${bands.join("")}`);
      y += rowHeight;
    }
    const markers = explanations
      .filter((e) => e.node === journal.node)
      .map((e) => {
        const tip = renderExplanation(e).join("\n");
        return `<g><title>${escapeHtml(tip)}</title><circle cx="${x(e.at).toFixed(1)}" cy="${y + 8}" r="6" fill="${e.recheck.matches ? "#222" : "#f00"}"/></g>`;
      });
    rows.push(`${label(`${journal.node} · decisions`)}<line x1="${left}" x2="${width - 20}" y1="${y + 8}" y2="${y + 8}" stroke="#ccc"/>${markers.join("")}`);
    y += rowHeight + 10;
  }
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const at = start + f * (end - start);
    const anchor = f === 0 ? "start" : f === 1 ? "end" : "middle";
    return `<line x1="${x(at).toFixed(1)}" x2="${x(at).toFixed(1)}" y1="18" y2="${y}" stroke="#e2e2e2"/><text x="${x(at).toFixed(1)}" y="12" font-size="10" text-anchor="${anchor}">${escapeHtml(new Date(at).toISOString().slice(11, 23))}</text>`;
  });

  const mismatches = explanations.filter((e) => !e.recheck.matches);
  const headline = mismatches.length
    ? `<p class="bad">MISMATCH: ${mismatches.length} decision(s) do not follow from the journal they are in.</p>`
    : `<p class="ok">${explanations.length} automatic decision(s), each reached again by the policy on the replayed journal.</p>`;
  const broken = violations.map((v) => `<p class="bad">${v.kind === "ran-on-both" && !v.certain ? "WARNING" : "PROBLEM"}: ${escapeHtml(v.message)}</p>`).join("\n");
  const details = explanations
    .map((e) => {
      const sound = e.recheck.matches && !e.unverified;
      const title = `${e.kind} (${e.code}) of job ${e.job} on ${e.node} at ${e.time}${e.recheck.matches ? "" : " — MISMATCH"}${e.unverified ? " — UNVERIFIED (hash chain broken)" : ""}`;
      return `<details${sound ? "" : " open"}><summary class="${sound ? "ok" : "bad"}">${escapeHtml(title)}</summary><pre>${escapeHtml(renderExplanation(e).join("\n"))}</pre></details>`;
    })
    .join("\n");
  const notable = merged.flatMap((r) => {
    const text = describe(r);
    return text ? [{ r, text }] : [];
  });
  const facts = notable
    .slice(0, HTML_TABLE_ROWS_MAX)
    .map(({ r, text }) => `<tr><td>${escapeHtml(new Date(r.at).toISOString())}</td><td>${escapeHtml(r.node)}</td><td>${escapeHtml(text)}</td></tr>`)
    .join("\n");
  const more = notable.length > HTML_TABLE_ROWS_MAX ? `<p>${notable.length - HTML_TABLE_ROWS_MAX} more facts are in the text output.</p>` : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>duet replay</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}svg{background:#fafafa;border:1px solid #ddd}table{border-collapse:collapse;font-size:13px}td{padding:2px 8px;border-bottom:1px solid #eee;vertical-align:top}.bad{color:#c00;font-weight:bold}.ok{color:#262}pre{background:#f4f4f4;padding:8px;overflow:auto}</style>
</head><body>
<h1>duet replay</h1>
<p>${escapeHtml(`${merged.length} records from ${new Date(start).toISOString()} to ${new Date(end).toISOString()}.`)}</p>
${headline}
${broken}
<svg width="${width}" height="${y + 10}" role="img" aria-label="lanes over time">${ticks.join("")}
${rows.join("\n")}</svg>
<h2>Decisions</h2>
${details || "<p>none</p>"}
<h2>Timeline</h2>
<table>${facts}</table>
${more}
</body></html>
`;
}
