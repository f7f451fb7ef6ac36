import type { Reason } from "../events/ids.ts";
import type { LineageSummary } from "../projections/lineage.ts";
import { LINEAGE_ANCESTORS_MAX } from "../projections/lineage.ts";
import { check, input } from "./decision.ts";

/** Paths that may differ: a sorted list, or "all" when some generation overflowed or there is no shared history. */
export type Paths = string[] | "all";

export type LineageVerdict =
  /** Same data line. `sender` (the side with a queue) resends the batches after `resumeFrom`, its acknowledged position. */
  | { kind: "in-sync"; resumeFrom: number | null; sender: string | null; reasons: Reason[] }
  /** `from` holds everything `to` holds and more: resync `paths`. A null ancestor means `to` has no lineage at all. */
  | { kind: "source"; from: string; to: string; paths: Paths; commonAncestor: string | null; reasons: Reason[] }
  /** Both sides hold writes the other lacks: a gray link until an operator selects the source. */
  | { kind: "diverged"; commonAncestor: string | null; localOnly: Paths; peerOnly: Paths; reasons: Reason[] }
  /** Lineage cannot tell (no lineage on either side, histories longer than kept, summaries of different pairs). */
  | { kind: "unknown"; reason: string; reasons: Reason[] };

const chain = (s: LineageSummary) => (s.current === null ? [] : [s.current, ...s.ancestors]);

/**
 * What `side` may hold that a node still at `common` lacks: its writes in every generation after
 * `common`, and in `common` itself, since batches of it may not have reached the other side (the
 * projection forgets a generation's paths once all of them were acknowledged).
 * Overflow anywhere, or no common generation, means every path.
 */
function writtenSince(side: LineageSummary, common: string | null): Paths {
  const line = chain(side);
  const at = common === null ? -1 : line.indexOf(common);
  if (at < 0) return "all";
  const generations = new Set(line.slice(0, at + 1));
  const paths = new Set<string>();
  for (const [generation, written, overflow] of side.written) {
    if (!generations.has(generation)) continue;
    if (overflow) return "all";
    for (const p of written) paths.add(p);
  }
  return [...paths].sort();
}


const facts = (s: LineageSummary) => ({ node: s.node, current: s.current, ancestors: s.ancestors.length, queueEmpty: s.queueEmpty, lastAcked: s.lastAcked, lastApplied: s.lastApplied });

/**
 * Which host has the newer data, from the two nodes' lineage alone (DESIGN.md, "Replication and
 * lineage"): equal generations are in sync; a generation on the other side's line is older, and the
 * other side is the source — unless the older side still had batches in flight, which the newer side
 * never received: then both hold writes the other lacks, as when both wrote alone, and only an
 * operator may choose. Undelivered batches count as held: a lost acknowledgement errs towards gray.
 */
export function compareLineage(local: LineageSummary, peer: LineageSummary): LineageVerdict {
  const reasons: Reason[] = [input("local", facts(local)), input("peer", facts(peer))];
  const unknown = (reason: string): LineageVerdict => ({ kind: "unknown", reason, reasons });
  if (local.job !== peer.job) return unknown(`summaries of different jobs: ${local.job} and ${peer.job}`);
  if (local.node === peer.node) return unknown(`both summaries are of node ${local.node}`);
  if (local.current === null && peer.current === null) return unknown("neither side has lineage for this job");

  const diverged = (common: string | null): LineageVerdict => {
    reasons.push(input("common-ancestor", common));
    return { kind: "diverged", commonAncestor: common, localOnly: writtenSince(local, common), peerOnly: writtenSince(peer, common), reasons };
  };

  if (local.current === peer.current) {
    reasons.push(check("same-generation", true, local.current), check("at-most-one-queue", local.queueEmpty || peer.queueEmpty));
    // Both wrote in one generation while connected (two writers): each holds batches the other lacks.
    if (!local.queueEmpty && !peer.queueEmpty) return diverged(local.current);
    const sender = !local.queueEmpty ? local : !peer.queueEmpty ? peer : null;
    return { kind: "in-sync", resumeFrom: sender === null ? null : (sender.lastAcked ?? 0), sender: sender?.node ?? null, reasons };
  }

  const newerOlder: [LineageSummary, LineageSummary] | null =
    peer.current === null || chain(local).includes(peer.current) ? [local, peer] : local.current === null || chain(peer).includes(local.current) ? [peer, local] : null;
  if (newerOlder !== null) {
    const [newer, older] = newerOlder;
    reasons.push(check("older-generation-on-newer-line", true, { newer: newer.node, older: older.node }), check("older-queue-empty", older.queueEmpty));
    if (!older.queueEmpty) return diverged(older.current);
    return { kind: "source", from: newer.node, to: older.node, paths: writtenSince(newer, older.current), commonAncestor: older.current, reasons };
  }

  reasons.push(check("older-generation-on-newer-line", false));
  const peerLine = new Set(chain(peer));
  const common = chain(local).find((g) => peerLine.has(g)) ?? null;
  // A line cut at the bound may hide the other side's generation: that is not proof of divergence.
  const truncated = local.ancestors.length >= LINEAGE_ANCESTORS_MAX || peer.ancestors.length >= LINEAGE_ANCESTORS_MAX;
  if (common === null && truncated) {
    reasons.push(check("line-complete", false, LINEAGE_ANCESTORS_MAX));
    return unknown(`no shared generation within the last ${LINEAGE_ANCESTORS_MAX} ancestors`);
  }
  return diverged(common);
}

/**
 * reverse-when-consistent: replication back to a returning node starts by itself only when lineage
 * proves it has nothing the survivor lacks — its generation is the survivor's or an ancestor of it
 * (it wrote nothing in a generation of its own), and everything it captured was acknowledged.
 */
export function mayReverseAutomatically(survivor: LineageSummary, returning: LineageSummary): { ok: boolean; reasons: Reason[] } {
  const verdict = compareLineage(survivor, returning);
  const onSurvivorLine = verdict.kind === "in-sync" || (verdict.kind === "source" && verdict.from === survivor.node);
  const reasons: Reason[] = [
    input("verdict", verdict.kind),
    check("returning-generation-on-survivor-line", onSurvivorLine, { survivor: survivor.current, returning: returning.current }),
    check("returning-queue-was-empty", returning.queueEmpty),
  ];
  return { ok: onSurvivorLine && returning.queueEmpty, reasons };
}

export interface SourceSelection {
  allowed: boolean;
  code: string;
  /** The side that is overwritten, and which of its writes the chosen source lacks (they are lost). */
  losing: { node: string; paths: Paths };
  reasons: Reason[];
}

/**
 * An operator's source choice (`duet source select JOB --from NODE`). Choosing the side lineage
 * shows as newer, or either side of a divergence, loses only what that choice implies; choosing the
 * older side loses the newer side's writes, so it needs force, and the answer says what is lost.
 */
export function decideSourceSelection(local: LineageSummary, peer: LineageSummary, from: string, force: boolean): SourceSelection {
  const verdict = compareLineage(local, peer);
  const reasons: Reason[] = [input("verdict", verdict.kind), input("chosen-source", from), input("force", force), ...verdict.reasons];
  const losingNode = from === local.node ? peer.node : local.node;
  const refuse = (code: string, paths: Paths): SourceSelection => ({ allowed: false, code, losing: { node: losingNode, paths }, reasons });
  if (from !== local.node && from !== peer.node) return refuse("source-not-in-pair", []);
  if (local.job !== peer.job || local.node === peer.node) return refuse("summaries-do-not-match", []);

  // What the losing side holds that the chosen source lacks.
  let lost: Paths;
  switch (verdict.kind) {
    case "in-sync":
      lost = verdict.sender === losingNode ? writtenSince(losingNode === local.node ? local : peer, local.current) : [];
      break;
    case "source":
      lost = verdict.from === from ? [] : verdict.paths;
      break;
    case "diverged":
      lost = losingNode === local.node ? verdict.localOnly : verdict.peerOnly;
      break;
    case "unknown":
      lost = "all";
      break;
  }
  // Divergence or unknown lineage is exactly what an operator's choice is for; otherwise losing writes needs force.
  const choiceNeeded = verdict.kind === "diverged" || verdict.kind === "unknown";
  const losesWrites = lost === "all" || lost.length > 0;
  reasons.push(check("chosen-source-lacks-nothing", !losesWrites, lost === "all" ? "all" : lost.length));
  if (choiceNeeded) return { allowed: true, code: verdict.kind === "diverged" ? "divergence-resolved" : "unknown-lineage-resolved", losing: { node: losingNode, paths: lost }, reasons };
  if (losesWrites && !force) return refuse("source-is-older-needs-force", lost);
  return { allowed: true, code: losesWrites ? "forced-older-source" : "source-selected", losing: { node: losingNode, paths: lost }, reasons };
}

/**
 * What a resync ships once the source is known: the verdict's paths, or after a divergence every path
 * either side changed since the common ancestor. In sync needs none (the queue resumes instead).
 */
export function resyncPaths(verdict: LineageVerdict): Paths {
  switch (verdict.kind) {
    case "in-sync":
      return [];
    case "source":
      return verdict.paths;
    case "diverged":
      return verdict.localOnly === "all" || verdict.peerOnly === "all" ? "all" : [...new Set([...verdict.localOnly, ...verdict.peerOnly])].sort();
    case "unknown":
      return "all";
  }
}
