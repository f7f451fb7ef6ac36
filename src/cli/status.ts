import type { clusterView } from "../api/views.ts";
import { behindLine } from "../policy/takeover.ts";
import { configDiffers } from "../projections/membership.ts";

type ClusterJson = ReturnType<typeof clusterView>;
const ago = (since: number | null, now: number) => (since === null ? "" : ` for ${Math.max(0, Math.round((now - since) / 1000))} s`);
const mark = (ok: boolean) => (ok ? "●" : "○");

/** One screen: hosts, links, jobs with where they run, resources, data link colour and queue. */
export function renderStatus(c: ClusterJson, now = Date.now()): string {
  const lines = [
    `node ${c.node}   peer ${c.peer ?? "?"}: ${c.peerStatus}${ago(c.peerSince, now)}   links: ${c.linksState}`,
    ...c.links.map((l) => `  ${mark(l.up)} link ${l.link} (${l.kind}) ${l.up ? "up" : "down"}${ago(l.since, now)}`),
  ];
  const peerConfig = c.config.peerHash === null ? "" : c.config.peerHash === c.config.hash ? `, the same on ${c.peer}` : `; ${c.peer}: version ${c.config.peerVersion ?? "?"}, hash ${c.config.peerHash}`;
  if (c.config.hash !== null) lines.push(`  config version ${c.config.version}, hash ${c.config.hash}${peerConfig}`);
  if (c.config.hash !== null && c.config.peerHash !== null && c.config.hash !== c.config.peerHash)
    lines.push(`  WARNING: ${configDiffers(c.node, { hash: c.config.hash, version: c.config.version }, c.peer ?? "the peer", { hash: c.config.peerHash, ...(c.config.peerVersion === null ? {} : { version: c.config.peerVersion }) })}`);
  if (c.tiebreaker) lines.push(`  tiebreaker: ${c.tiebreaker.verdict} (${c.tiebreaker.method}) at ${new Date(c.tiebreaker.at).toISOString()}`);
  if (c.witness) lines.push(`  ${witnessLine(c.witness, now)}`);
  lines.push("");
  if (c.jobs.length === 0) lines.push("no jobs configured");
  for (const j of c.jobs) {
    lines.push(`job ${j.name}: ${j.phase}${j.active ? ` on ${j.active}` : ""}${ago(j.phaseSince, now)}   policy ${j.policy}   data link ${j.replication.colour}${j.replication.queue ? `   queue ${j.replication.queue.batches} batches / ${j.replication.queue.bytes} bytes` : ""}`);
    for (const r of j.resources) {
      const here = r.status.map((s) => `${s.node}: ${s.status}${s.failures ? ` (${s.failures} failures)` : ""}`).join(", ");
      lines.push(`  ${r.kind.padEnd(7)} ${r.name.padEnd(16)} ${here || "-"}`);
    }
    if (j.lineage) {
      const r = j.replication;
      const v = r.verification;
      const progress = v?.state === "running" ? `verifying ${v.totalBytes > 0 ? Math.floor((100 * v.doneBytes) / v.totalBytes) : 0}%` : v?.state === "done" ? "verified" : "not verified";
      const g = (x: { generation: string | null } | null) => x?.generation ?? "none";
      lines.push(`  data: ${j.mirrors.join(", ")}   ${progress}${r.resync ? `   resync ${r.resync.from} -> ${r.resync.to}` : ""}`);
      lines.push(`  lineage: ${j.lineage.local.node} ${g(j.lineage.local)}, ${j.lineage.peer?.node ?? "peer"} ${g(j.lineage.peer)}: ${j.lineage.newer === "equal" ? "same generation" : j.lineage.newer === null ? "unknown" : j.lineage.newer === "diverged" ? "DIVERGED (duet source select)" : `${j.lineage.newer} is newer`}`);
      if (r.refused) lines.push(`  refused: batch ${r.refused.batch} ${r.refused.path}: ${r.refused.reason}`);
      if (r.addedPaths.length > 0) lines.push(`  added, not mirrored until verified: ${r.addedPaths.join(", ")}`);
    }
    if (j.lastDecision) lines.push(`  last decision: ${j.lastDecision.kind} (${j.lastDecision.code}) at ${new Date(j.lastDecision.at).toISOString()}, seq ${j.lastDecision.seq}`);
    if (j.lastDecision?.behind !== undefined) lines.push(`  ${behindLine(j.lastDecision.behind)}`);
    if (j.witnessKey) lines.push(`  witness key: ${keyLine(c.node, j.witnessKey)}`);
    if (j.lastError) lines.push(`  last error on ${j.lastError.node}: ${j.lastError.resource}: ${j.lastError.error}`);
  }
  if (c.alerts.length > 0) {
    lines.push("", "alerts:");
    for (const a of c.alerts.slice(-5)) lines.push(`  ${new Date(a.at).toISOString()} ${a.code}: ${a.message}`);
  }
  return lines.join("\n");
}


function witnessLine(w: NonNullable<ClusterJson["witness"]>, now: number): string {
  const left = Math.max(0, Math.round((w.validUntil - now) / 1000));
  const rule = `when it cannot renew: ${w.unreachable}`;
  switch (w.state) {
    case "granting":
      return `witness: asking for a lease (${rule})`;
    case "held":
      return `witness: lease ${w.leaseId} held, ${w.ttlMs / 1000} s, renewed (${rule})`;
    case "renew-failing":
      return `witness: UNREACHABLE, lease ${w.leaseId} valid ${left} s more at most (${rule})`;
    case "expired":
      return `witness: NO LEASE since ${new Date(w.since).toISOString()}: no job starts here (${rule})`;
  }
}

function keyLine(self: string, k: NonNullable<ClusterJson["jobs"][number]["witnessKey"]>): string {
  const when = `at ${new Date(k.at).toISOString()}`;
  if (k.givenBack) return `given back by ${self} ${when}`;
  if (k.won) return `held by ${self} (revision ${k.revision}, ${when})`;
  if (k.error) return `not answered (${k.error}, ${when})`;
  return `held by ${k.holder ?? "nobody"} (revision ${k.revision}, ${when})`;
}
