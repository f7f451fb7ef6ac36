import type { Reason } from "../events/ids.ts";
import type { LineageSummary } from "../projections/lineage.ts";
import { check, input } from "./decision.ts";

export type LineageVerdict =
  | { kind: "in-sync"; resumeFrom: number | null; reasons: Reason[] }
  | { kind: "source"; from: string; to: string; paths: string[] | "all"; commonAncestor: string | null; reasons: Reason[] }
  | { kind: "diverged"; commonAncestor: string | null; reasons: Reason[] };

const chain = (s: LineageSummary) => (s.current === null ? [] : [s.current, ...s.ancestors]);

/**
 * The paths that can differ when `newer` descends from `common`: everything the newer side wrote
 * after the common generation, and everything either side wrote in the common generation itself
 * (batches of it may have been in flight when the link broke). Overflow anywhere means all.
 */
function pathsSince(newer: LineageSummary, older: LineageSummary, common: string | null): string[] | "all" {
  if (common === null) return "all";
  const line = chain(newer);
  const generations = new Set(line.slice(0, line.indexOf(common) + 1));
  const paths = new Set<string>();
  for (const summary of [newer, older]) {
    for (const [generation, written, overflow] of summary.written) {
      if (!generations.has(generation) || (summary === older && generation !== common)) continue;
      if (overflow) return "all";
      for (const p of written) paths.add(p);
    }
  }
  return [...paths].sort();
}

/**
 * Which host has the newer data, from the two nodes' lineage alone: equal generations are in
 * sync; a generation in the other side's ancestry is older and the other side is the source;
 * otherwise both wrote since they parted, and only an operator may choose (a gray link).
 */
export function compareLineage(local: LineageSummary, peer: LineageSummary): LineageVerdict {
  const reasons: Reason[] = [
    input("local", { node: local.node, current: local.current, ancestors: local.ancestors.length }),
    input("peer", { node: peer.node, current: peer.current, ancestors: peer.ancestors.length }),
  ];
  if (local.current === peer.current) {
    reasons.push(check("same-generation", true, local.current));
    return { kind: "in-sync", resumeFrom: local.current === null ? null : Math.min(local.lastApplied?.batch ?? 0, peer.lastApplied?.batch ?? 0), reasons };
  }
  if (peer.current === null || chain(local).includes(peer.current)) {
    reasons.push(check("peer-generation-is-my-ancestor", true, peer.current));
    return { kind: "source", from: local.node, to: peer.node, paths: pathsSince(local, peer, peer.current), commonAncestor: peer.current, reasons };
  }
  if (local.current === null || chain(peer).includes(local.current)) {
    reasons.push(check("my-generation-is-peer-ancestor", true, local.current));
    return { kind: "source", from: peer.node, to: local.node, paths: pathsSince(peer, local, local.current), commonAncestor: local.current, reasons };
  }
  const peerLine = new Set(chain(peer));
  const commonAncestor = chain(local).find((g) => peerLine.has(g)) ?? null;
  reasons.push(check("one-side-descends-from-the-other", false), input("common-ancestor", commonAncestor));
  return { kind: "diverged", commonAncestor, reasons };
}

/**
 * reverse-when-consistent: replication back to a returning node starts by itself only when lineage
 * proves it has nothing the survivor lacks — its generation is the survivor's or an ancestor of
 * it, and everything it captured had been acknowledged when it was lost.
 */
export function mayReverseAutomatically(survivor: LineageSummary, returning: LineageSummary): { ok: boolean; reasons: Reason[] } {
  const verdict = compareLineage(survivor, returning);
  const survivorIsSource = verdict.kind === "in-sync" || (verdict.kind === "source" && verdict.from === survivor.node);
  const reasons = [check("survivor-is-newer-or-equal", survivorIsSource, verdict.kind), check("returning-queue-was-empty", returning.queueEmpty)];
  return { ok: survivorIsSource && returning.queueEmpty, reasons };
}

/**
 * An operator's source choice for a gray (or any) link. Choosing the side lineage shows as older
 * loses the newer side's writes: that needs force, and the answer says what would be lost.
 */
export function decideSourceSelection(local: LineageSummary, peer: LineageSummary, from: string, force: boolean) {
  const source = from === local.node ? local : peer;
  const losing = from === local.node ? peer : local;
  const verdict = compareLineage(local, peer);
  const againstNewer = verdict.kind === "source" && verdict.from !== from;
  const lost = verdict.kind === "source" ? verdict.paths : "all";
  const reasons: Reason[] = [input("verdict", verdict.kind), input("chosen-source", source.node), check("not-the-older-side", !againstNewer), input("force", force)];
  if (againstNewer && !force) return { allowed: false, code: "source-is-older-needs-force", losing: { node: losing.node, paths: lost }, reasons };
  return { allowed: true, code: againstNewer ? "forced-older-source" : verdict.kind === "diverged" ? "divergence-resolved" : "source-selected", losing: { node: losing.node, paths: lost }, reasons };
}
