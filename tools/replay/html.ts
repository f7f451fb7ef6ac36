import type { Recorded } from "../../src/events/catalogue.ts";
import { describe, renderExplanation, type Explanation } from "./explain.ts";
import type { TimelineEntry } from "./merge.ts";

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const COLOURS: Record<string, string> = { up: "#3a3", down: "#c33", connected: "#3a3", lost: "#c33", in: "#37c", out: "#ccc", "bringing-in": "#9cf", "bringing-out": "#fc9", failed: "#c33" };

interface Segment {
  from: number;
  to: number;
  value: string;
}

/** Lanes as each node saw them: its links, its peer, and every job's phase and active node. */
function lanes(timeline: TimelineEntry[], end: number): Map<string, Segment[]> {
  const open = new Map<string, { since: number; value: string }>();
  const result = new Map<string, Segment[]>();
  const set = (lane: string, at: number, value: string) => {
    const current = open.get(lane);
    if (current?.value === value) return;
    if (current) result.set(lane, [...(result.get(lane) ?? []), { from: current.since, to: at, value: current.value }]);
    open.set(lane, { since: at, value });
  };
  for (const { record: r, journal } of timeline) {
    if (r.type === "LinkUp" || r.type === "LinkDown") set(`${journal} · link ${r.data.link}`, r.at, r.type === "LinkUp" ? "up" : "down");
    if (r.type === "PeerSeen" || r.type === "PeerLost") set(`${journal} · peer ${r.data.peer}`, r.at, r.type === "PeerSeen" ? "connected" : "lost");
    if (r.type === "JobBroughtIn") set(`job ${r.data.job}`, r.at, `in on ${r.data.node}`);
    if (r.type === "JobBroughtOut") set(`job ${r.data.job}`, r.at, "out");
    if (r.type === "JobStartFailed") set(`job ${r.data.job}`, r.at, "failed");
  }
  for (const [lane, current] of open) result.set(lane, [...(result.get(lane) ?? []), { from: current.since, to: end, value: current.value }]);
  return result;
}

/** One self-contained page (inline CSS and SVG, no scripts, no external URLs) with lanes over time. */
export function renderHtml(timeline: TimelineEntry[], explanations: Explanation[]): string {
  const records: Recorded[] = timeline.map((e) => e.record);
  const start = records[0]?.at ?? 0;
  const end = Math.max(start + 1, records.at(-1)?.at ?? start + 1);
  const width = 1000;
  const x = (at: number) => 220 + ((at - start) / (end - start)) * (width - 240);
  const rows = [...lanes(timeline, end).entries()].sort(([a], [b]) => a.localeCompare(b));
  const rowHeight = 22;
  const svgRows = rows
    .map(([lane, segments], i) => {
      const y = 20 + i * rowHeight;
      const rects = segments
        .map((s) => {
          const colour = COLOURS[s.value] ?? (s.value.startsWith("in on") ? COLOURS.in : "#999");
          return `<rect x="${x(s.from).toFixed(1)}" y="${y}" width="${Math.max(1, x(s.to) - x(s.from)).toFixed(1)}" height="${rowHeight - 6}" fill="${colour}"><title>${escape(`${lane}: ${s.value} from ${new Date(s.from).toISOString()} to ${new Date(s.to).toISOString()}`)}</title></rect>` +
            `<text x="${(x(s.from) + 3).toFixed(1)}" y="${y + 12}" font-size="10" fill="#fff">${escape(s.value)}</text>`;
        })
        .join("");
      return `<text x="4" y="${y + 12}" font-size="12">${escape(lane)}</text>${rects}`;
    })
    .join("\n");
  const markerY = 20 + rows.length * rowHeight + 10;
  const markers = explanations
    .map((e) => `<g><circle cx="${x(e.at).toFixed(1)}" cy="${markerY}" r="6" fill="${e.recheck.matches ? "#333" : "#f00"}"/><title>${escape(`${e.journaled.kind} ${e.journaled.code} of ${e.job} on ${e.node}`)}</title></g>`)
    .join("");
  const events = timeline
    .map(({ record, journal }) => ({ record, journal, text: describe(record) }))
    .filter((e) => e.text)
    .map((e) => `<tr><td>${escape(new Date(e.record.at).toISOString())}</td><td>${escape(e.journal)}</td><td>${escape(e.text!)}</td></tr>`)
    .join("\n");
  const details = explanations
    .map((e) => `<details${e.recheck.matches ? "" : " open"}><summary class="${e.recheck.matches ? "ok" : "bad"}">${escape(`${e.journaled.kind} (${e.journaled.code}) of ${e.job} on ${e.node} at ${new Date(e.at).toISOString()}${e.recheck.matches ? "" : " — MISMATCH"}`)}</summary><pre>${escape(renderExplanation(e).join("\n"))}</pre></details>`)
    .join("\n");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>duet replay</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}svg{background:#fafafa;border:1px solid #ddd}table{border-collapse:collapse;font-size:13px}td{padding:2px 8px;border-bottom:1px solid #eee;vertical-align:top}.bad{color:#c00;font-weight:bold}.ok{color:#262}pre{background:#f4f4f4;padding:8px;overflow:auto}</style>
</head><body>
<h1>duet replay</h1>
<p>${escape(`${records.length} records from ${new Date(start).toISOString()} to ${new Date(end).toISOString()}; ${explanations.length} automatic decision(s), ${explanations.filter((e) => !e.recheck.matches).length} mismatch(es).`)}</p>
<svg width="${width}" height="${markerY + 20}">${svgRows}
<text x="4" y="${markerY + 4}" font-size="12">decisions</text>${markers}</svg>
<h2>Decisions</h2>
${details || "<p>none</p>"}
<h2>Timeline</h2>
<table>${events}</table>
</body></html>
`;
}
