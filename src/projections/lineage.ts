import { z } from "zod";
import type { Recorded } from "../events/catalogue.ts";
import { generationId, jobId, nodeId } from "../events/ids.ts";
import { firstIssue } from "../events/issue.ts";

/** Ancestors kept per node and job: enough history to find a common ancestor after any outage. */
export const LINEAGE_ANCESTORS_MAX = 64;
/** Paths remembered per generation; past this the generation counts as "wrote everything". */
export const PATHS_TRACKED_MAX = 10_000;

export interface Written {
  paths: Set<string>;
  /** More paths than PATHS_TRACKED_MAX, or a wholesale change (a restore): every path may differ. */
  overflow: boolean;
}

/**
 * What one node knows of its own data history for one job, after DRBD's generation identifiers:
 * its current generation, the ancestors before it (newest first), and the paths it wrote in each
 * generation of that line, so a resync ships only what can differ.
 */
export interface LineageView {
  job: string;
  node: string;
  current: string | null;
  ancestors: string[];
  /** Keys are only `current` and `ancestors`: a generation that leaves the line takes its paths along. */
  writtenSince: Map<string, Written>;
  /** The last batch this node applied from its peer. */
  lastApplied: { generation: string; batch: number } | null;
  /** This node's own capture position and how far the peer acknowledged it: the queue lies between. */
  lastCaptured: number | null;
  lastAcked: number | null;
}

/** Per job, then per node. Names are Map keys in memory only; summaries use arrays. */
export type LineageState = Map<string, Map<string, LineageView>>;
export const initialLineage: LineageState = new Map();

function emptyView(job: string, node: string): LineageView {
  return { job, node, current: null, ancestors: [], writtenSince: new Map(), lastApplied: null, lastCaptured: null, lastAcked: null };
}

const chainOf = (view: { current: string | null; ancestors: readonly string[] }) => (view.current === null ? [] : [view.current, ...view.ancestors]);

function withView(state: LineageState, view: LineageView): LineageState {
  const nodes = new Map(state.get(view.job));
  nodes.set(view.node, view);
  return new Map(state).set(view.job, nodes);
}

function addPaths(view: LineageView, generation: string, paths: readonly string[], overflow: boolean): LineageView {
  const before = view.writtenSince.get(generation) ?? { paths: new Set<string>(), overflow: false };
  if (before.overflow) return view; // already "everything": nothing more to remember
  const merged = new Set(before.paths);
  for (const p of paths) merged.add(p);
  const full = overflow || merged.size > PATHS_TRACKED_MAX;
  const writtenSince = new Map(view.writtenSince).set(generation, { paths: full ? new Set() : merged, overflow: full });
  return { ...view, writtenSince };
}

/** Moves `view` onto `generation`, whose line before it is `parentLine` (newest first), keeping bounds. */
function enter(view: LineageView, generation: string, parentLine: readonly string[]): LineageView {
  if (view.current === generation) return view;
  const ancestors = parentLine.filter((g) => g !== generation).slice(0, LINEAGE_ANCESTORS_MAX);
  const kept = new Set([generation, ...ancestors]);
  const writtenSince = new Map([...view.writtenSince].filter(([g]) => kept.has(g)));
  return { ...view, current: generation, ancestors, writtenSince };
}

/**
 * The line (newest first) that ends in `generation` as far as this state knows it: the view's own
 * line when the generation is on it, else another node's view in a merged journal (forensic replay),
 * else just the generation itself.
 */
function lineOf(state: LineageState, own: LineageView, generation: string): string[] {
  for (const view of [own, ...(state.get(own.job)?.values() ?? [])]) {
    const line = chainOf(view);
    const at = line.indexOf(generation);
    if (at >= 0) return line.slice(at);
  }
  return [generation];
}

/** A capture or written-paths report for a generation not on this node's line means the node moved onto it. */
function onto(view: LineageView, generation: string): LineageView {
  return chainOf(view).includes(generation) ? view : enter(view, generation, chainOf(view));
}

/**
 * Nothing of this node's queue is outstanding any more: it went over with a resync, or the node's data
 * was replaced (a resync target, a restore). The acknowledged position moves past it, so resuming
 * starts after the last batch captured.
 */
const settleQueue = (view: LineageView): LineageView =>
  view.lastCaptured === null ? view : { ...view, lastAcked: Math.max(view.lastAcked ?? 0, view.lastCaptured) };

/**
 * Leaving a generation with nothing of it outstanding (every batch this node captured in it was
 * acknowledged): the peer holds all of its writes, so they can no longer differ and a later
 * resync need not read them.
 */
function settleWritten(view: LineageView): LineageView {
  return leave(view);
}

function leave(view: LineageView): LineageView {
  if (view.current === null || (view.lastCaptured !== null && (view.lastAcked ?? 0) < view.lastCaptured)) return view;
  const written = view.writtenSince.get(view.current);
  if (!written || written.overflow || written.paths.size === 0) return view;
  return { ...view, writtenSince: new Map(view.writtenSince).set(view.current, { paths: new Set(), overflow: false }) };
}

export function evolveLineage(state: LineageState, event: Recorded): LineageState {
  switch (event.type) {
    case "GenerationStarted": {
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      const parentLine = d.parent === null ? [] : lineOf(state, view, d.parent);
      const moved = enter(leave(view), d.generation, parentLine);
      if (d.reason === "restored") return withView(state, settleQueue(addPaths(moved, d.generation, [], true)));
      if (d.reason === "source-selected") return withView(state, settleQueue(moved));
      return moved === view ? state : withView(state, moved);
    }
    case "BatchCaptured": {
      const d = event.data;
      const view = onto(state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node), d.generation);
      const paths = d.ops.flatMap((op) => (op.op === "rename" ? [op.path, op.to] : [op.path]));
      return withView(state, { ...addPaths(view, d.generation, paths, false), lastCaptured: Math.max(view.lastCaptured ?? 0, d.batch) });
    }
    case "PathsWritten": {
      const d = event.data;
      const view = onto(state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node), d.generation);
      return withView(state, addPaths(view, d.generation, d.paths, d.overflow));
    }
    case "BatchApplied": {
      // The standby follows the writer's line: batches of a new generation G continue from what it held,
      // so G descends from its current one (a different line arrives only after a resync). A node with
      // no lineage holds these batches but not G's earlier data: it joins the line by a full resync.
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      const moved = view.current === null || view.current === d.generation ? view : enter(view, d.generation, chainOf(view));
      return withView(state, { ...moved, lastApplied: { generation: d.generation, batch: d.batch } });
    }
    case "BatchAcked": {
      const d = event.data;
      const view = state.get(d.job)?.get(d.node) ?? emptyView(d.job, d.node);
      // Everything captured is acknowledged: the peer holds those writes, so they can no longer
      // differ (as when leaving a generation). Keeps the set, and each fold of it, small.
      return withView(state, settleWritten({ ...view, lastAcked: Math.max(view.lastAcked ?? 0, d.batch) }));
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

/** The view of `node` for `job`, or the empty one: a node that never wrote or applied has no lineage. */
export function lineageView(state: LineageState, job: string, node: string): LineageView {
  return state.get(job)?.get(node) ?? emptyView(job, node);
}

const writtenEntry = z.tuple([generationId, z.array(z.string()).max(PATHS_TRACKED_MAX), z.boolean()]);

/** The plain summary a node sends its peer on reconnect, and what the comparison reads. */
export const lineageSummarySchema = z
  .strictObject({
    node: nodeId,
    job: jobId,
    current: generationId.nullable(),
    ancestors: z.array(generationId).max(LINEAGE_ANCESTORS_MAX),
    /** [generation, paths written in it, overflow], for the generations of the line only. */
    written: z.array(writtenEntry).max(LINEAGE_ANCESTORS_MAX + 1),
    /** Everything this node captured was acknowledged by the peer (or went over with a resync). */
    queueEmpty: z.boolean(),
    /** Where a peer resumes sending this node's queue from: its last acknowledged batch. */
    lastAcked: z.number().int().nonnegative().nullable(),
    lastApplied: z.strictObject({ generation: generationId, batch: z.number().int().nonnegative() }).nullable(),
  })
  .check((ctx) => {
    const line = new Set(chainOf(ctx.value));
    for (const [i, [generation]] of ctx.value.written.entries())
      if (!line.has(generation)) ctx.issues.push({ code: "custom", input: generation, path: ["written", i, 0], message: `generation ${generation} is not on this node's line` });
  });
export type LineageSummary = z.infer<typeof lineageSummarySchema>;

export function lineageSummary(view: LineageView): LineageSummary {
  return {
    node: view.node,
    job: view.job,
    current: view.current,
    ancestors: [...view.ancestors],
    written: [...view.writtenSince].map(([g, w]): [string, string[], boolean] => [g, [...w.paths].sort(), w.overflow]),
    queueEmpty: view.lastCaptured === null || (view.lastAcked ?? 0) >= view.lastCaptured,
    lastAcked: view.lastAcked,
    lastApplied: view.lastApplied,
  };
}

/** A summary that arrived from the network: validated, with the field that was wrong named. */
export function parseLineageSummary(input: unknown): LineageSummary {
  const parsed = lineageSummarySchema.safeParse(input);
  if (!parsed.success) {
    throw new Error(`lineage summary: ${firstIssue(parsed.error, "(top)").text}`);
  }
  return parsed.data;
}
