import { z } from "zod";
import type { Recorded } from "../events/catalogue.ts";
import { generationId, jobId, nodeId } from "../events/ids.ts";

/** Ancestors kept per node and job: enough history to find a common ancestor after any outage. */
export const LINEAGE_ANCESTORS_MAX = 64;
/** Paths remembered per generation; past this the generation counts as "wrote everything". */
export const PATHS_TRACKED_MAX = 10_000;

export interface Written {
  paths: Set<string>;
  overflow: boolean;
}

/**
 * What one node knows of its own data history for one job, after DRBD's generation identifiers:
 * its current generation, the ancestors before it (newest first), and the paths written (or
 * applied) in each generation, so a resync ships only what can differ.
 */
export interface LineageView {
  job: string;
  node: string;
  current: string | null;
  ancestors: string[];
  written: Map<string, Written>;
  lastApplied: { generation: string; batch: number } | null;
  lastCaptured: number;
  lastAcked: number;
}

/** Per job, then per node. Names are Map keys in memory only; summaries use arrays. */
export type LineageState = Map<string, Map<string, LineageView>>;
export const initialLineage: LineageState = new Map();

function emptyView(job: string, node: string): LineageView {
  return { job, node, current: null, ancestors: [], written: new Map(), lastApplied: null, lastCaptured: 0, lastAcked: 0 };
}

function withView(state: LineageState, view: LineageView): LineageState {
  const next = new Map(state);
  const nodes = new Map(next.get(view.job));
  nodes.set(view.node, view);
  next.set(view.job, nodes);
  return next;
}

function addPaths(view: LineageView, generation: string, paths: readonly string[], overflow: boolean): LineageView {
  const before = view.written.get(generation) ?? { paths: new Set<string>(), overflow: false };
  const merged = new Set(before.paths);
  for (const p of paths) merged.add(p);
  const tooMany = merged.size > PATHS_TRACKED_MAX;
  const written = new Map(view.written);
  written.set(generation, { paths: tooMany ? new Set() : merged, overflow: before.overflow || overflow || tooMany });
  return { ...view, written };
}

/** Moves `view` to `generation` with `parent`, keeping the chain bounded and the written sets of kept generations only. */
function enter(view: LineageView, generation: string, parent: string | null, parentAncestors: readonly string[]): LineageView {
  if (view.current === generation) return view;
  const ancestors = (parent === null ? [] : [parent, ...parentAncestors.filter((g) => g !== parent)]).slice(0, LINEAGE_ANCESTORS_MAX);
  const kept = new Set([generation, ...ancestors]);
  const written = new Map([...view.written].filter(([g]) => kept.has(g)));
  return { ...view, current: generation, ancestors, written };
}

export function evolveLineage(state: LineageState, event: Recorded): LineageState {
  switch (event.type) {
    case "GenerationStarted": {
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      // The parent's own ancestry: ours if the parent is our current line, else whatever we know of it.
      const parentChain = d.parent === view.current ? view.ancestors : d.parent === null ? [] : knownAncestry(state, d.job, d.parent);
      return withView(state, enter(view, d.generation, d.parent, parentChain));
    }
    case "BatchCaptured": {
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      const paths = d.ops.flatMap((op) => (op.op === "rename" ? [op.path, op.to] : [op.path]));
      return withView(state, { ...addPaths(view, d.generation, paths, false), lastCaptured: Math.max(view.lastCaptured, d.batch) });
    }
    case "PathsWritten": {
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      return withView(state, addPaths(view, d.generation, d.paths, d.overflow));
    }
    case "BatchApplied": {
      // The standby's copy follows the writer's line: applying a batch of generation G means holding G's data.
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      const moved = view.current === d.generation ? view : enter(view, d.generation, view.current, view.ancestors);
      return withView(state, { ...moved, lastApplied: { generation: d.generation, batch: d.batch } });
    }
    case "BatchAcked": {
      const d = event.data;
      const view = state.get(d.job)?.get(d.node);
      if (!view) return state;
      return withView(state, { ...view, lastAcked: Math.max(view.lastAcked, d.batch) });
    }
    case "JobDeleted": {
      if (!state.has(event.data.job)) return state;
      const next = new Map(state);
      next.delete(event.data.job);
      return next;
    }
    default:
      return state;
  }
}

function knownAncestry(state: LineageState, job: string, generation: string): string[] {
  for (const view of state.get(job)?.values() ?? []) {
    if (view.current === generation) return view.ancestors;
    const at = view.ancestors.indexOf(generation);
    if (at >= 0) return view.ancestors.slice(at + 1);
  }
  return [];
}

/** The plain summary a node sends its peer on reconnect, and what the comparison reads. */
export const lineageSummary = z.strictObject({
  node: nodeId,
  job: jobId,
  current: generationId.nullable(),
  ancestors: z.array(generationId).max(LINEAGE_ANCESTORS_MAX),
  written: z.array(z.tuple([generationId, z.array(z.string()).max(PATHS_TRACKED_MAX), z.boolean()])).max(LINEAGE_ANCESTORS_MAX + 1),
  /** Everything this node captured was acknowledged by the peer. */
  queueEmpty: z.boolean(),
  lastApplied: z.strictObject({ generation: generationId, batch: z.number().int().nonnegative() }).nullable(),
});
export type LineageSummary = z.infer<typeof lineageSummary>;

export function summarize(view: LineageView | undefined, job: string, node: string): LineageSummary {
  const v = view ?? emptyView(job, node);
  return {
    node,
    job,
    current: v.current,
    ancestors: v.ancestors,
    written: [...v.written].map(([g, w]) => [g, [...w.paths].sort(), w.overflow] as [string, string[], boolean]),
    queueEmpty: v.lastAcked >= v.lastCaptured,
    lastApplied: v.lastApplied,
  };
}

/** A summary that arrived from the network: validated, with the field that was wrong named. */
export function parseLineageSummary(input: unknown): LineageSummary {
  const parsed = lineageSummary.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`lineage summary: ${issue.path.join(".") || "(top)"}: ${issue.message}`);
  }
  return parsed.data;
}
