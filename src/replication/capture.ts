import { rm } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import watcher from "@parcel/watcher";
import type { DuetEvent } from "../events/catalogue.ts";
import type { Timers, TimerHandle } from "../world/clock.ts";
import { inMirror, makeBatch } from "./batch.ts";
import type { BatchQueue } from "./queue.ts";
import { adoptManifest, loadIndex, saveIndex, scanChanges, type ChangeIndex } from "./scan.ts";

/**
 * How long reported changes gather before a scan. The watcher already waits 50 ms to coalesce a
 * burst (@parcel/watcher's minimum), so this only gathers what arrives during a running scan.
 */
export const CAPTURE_COALESCE_MS = 2;
/**
 * The change index is written at most this often (and when capture stops). An index older than the
 * queue only makes a restart find some changes again, which applying takes twice harmlessly; an
 * index newer than the queue would lose changes, so it is only ever written after its batches.
 */
export const INDEX_SAVE_MS = 5000;
/** The safety-net rescan of the whole tree, for anything the watcher missed. */
export const CAPTURE_RESCAN_MS = 60_000;
/** Queued bytes beyond which capture waits: changes stay in the tree and are found when it drains. */
export const CAPTURE_QUEUE_MAX_BYTES = 1024 * 1024 * 1024;

export interface CaptureOptions {
  job: string;
  node: string;
  roots: readonly string[];
  /** Where the change indexes live (one per root). */
  stateDir: string;
  queue: BatchQueue;
  /** The last batch number this node captured for the job (from the journal). */
  lastCaptured: number;
  /** The generation a new batch belongs to; may journal a GenerationStarted first. */
  generation: () => Promise<string>;
  report: (events: DuetEvent[]) => Promise<void>;
  /** A batch was queued: the sender may go on. */
  onQueued: () => void;
  timers: Timers;
  now: () => number;
  onError: (error: Error) => void;
}

/**
 * Capture on the active node: a recursive watcher over each mirrored root reports changed paths;
 * after a short pause they are scanned against the change index, and the changed blocks become
 * numbered write batches in the on-disk queue (BatchCaptured journals their metadata). A periodic
 * full rescan catches what the watcher missed. One scan runs at a time.
 */
export function createCapture(options: CaptureOptions) {
  const { roots, queue } = options;
  const indexFile = (i: number) => join(options.stateDir, `index-${i}`);
  let indexes: ChangeIndex[] = [];
  let last = options.lastCaptured;
  let chain: Promise<unknown> = Promise.resolve();
  const pending = roots.map(() => new Set<string>());
  let fullPending = false;
  let coalesce: TimerHandle | null = null;
  let rescan: TimerHandle | null = null;
  const subscriptions: { unsubscribe(): Promise<void> }[] = [];
  let stopped = false;
  const dirty = new Set<number>();
  let lastSaved = 0;
  /** Changed blocks and queued bytes so far: a verification reports how much differed. */
  let blocksShipped = 0;
  let bytesShipped = 0;

  /** Runs `work` after every scan queued before it: scans, resyncs and hand-overs never overlap. */
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const next = chain.then(work, work);
    chain = next.catch(() => undefined);
    return next;
  };

  async function scanRoot(i: number, only: readonly string[] | undefined): Promise<void> {
    const root = roots[i]!;
    let generation: string | null = null;
    const result = await scanChanges(root, indexes[i]!, {
      only,
      now: options.now(),
      onBatch: async (b) => {
        generation ??= await options.generation();
        const batch = makeBatch(options.job, generation, last + 1, inMirror(b.ops, i), b.data);
        const bytes = await queue.put(batch);
        for (const op of batch.ops) if (op.op === "write") blocksShipped += op.blocks.length;
        bytesShipped += bytes;
        last = batch.batch;
        await options.report([{ type: "BatchCaptured", data: { job: options.job, node: options.node, batch: batch.batch, generation, ops: batch.ops, bytes, sha256: batch.sha256 } }]);
        options.onQueued();
      },
    });
    indexes[i] = result.index;
    dirty.add(i);
    if (options.now() - lastSaved >= INDEX_SAVE_MS) await saveIndexes();
  }

  /** Writes the indexes that changed since the last save (their batches are queued already). */
  async function saveIndexes(): Promise<void> {
    for (const i of [...dirty]) {
      await saveIndex(indexFile(i), indexes[i]!);
      dirty.delete(i);
    }
    lastSaved = options.now();
  }

  async function scanPending(): Promise<void> {
    if (stopped) return;
    if (queue.stats().bytes > CAPTURE_QUEUE_MAX_BYTES) return; // resumed by the sender when the queue drains
    const full = fullPending;
    fullPending = false;
    for (const [i, paths] of pending.entries()) {
      if (!full && paths.size === 0) continue;
      const only = full ? undefined : [...paths];
      paths.clear();
      await scanRoot(i, only);
    }
  }

  const schedule = () => {
    if (coalesce !== null || stopped) return;
    coalesce = options.timers.after(CAPTURE_COALESCE_MS, () => {
      coalesce = null;
      void exclusive(scanPending).catch(options.onError);
    });
  };

  return {
    lastCaptured: () => last,
    shipped: () => ({ blocks: blocksShipped, bytes: bytesShipped }),
    exclusive,

    /**
     * Loads the indexes. A root without one is taken as already equal on the peer (after a
     * switchover or takeover the replica was in sync); lineage and verification correct that
     * assumption wherever it may be wrong.
     */
    async open(): Promise<void> {
      indexes = [];
      for (const [i, root] of roots.entries()) {
        let index = await loadIndex(indexFile(i));
        if (index.size === 0) {
          index = (await scanChanges(root, new Map(), { now: options.now() })).index;
          await saveIndex(indexFile(i), index);
        }
        indexes.push(index);
      }
    },

    /** Starts watching, with a full scan first (changes made while this node was not capturing). */
    async start(): Promise<void> {
      stopped = false;
      for (const [i, root] of roots.entries()) {
        const subscription = await watcher.subscribe(root, (error, events) => {
          if (error) fullPending = true; // overflow or a lost watch: rescan everything
          for (const e of events) {
            const path = relative(root, e.path).split(sep).join("/");
            if (path && !path.startsWith("..")) pending[i]!.add(path);
          }
          schedule();
        });
        subscriptions.push(subscription);
      }
      fullPending = true;
      schedule();
      rescan = options.timers.every(CAPTURE_RESCAN_MS, () => {
        fullPending = true;
        schedule();
      });
    },

    /** Scans everything now and waits: what the application wrote is queued when this returns. */
    flush: () => exclusive(async () => {
      fullPending = true;
      await scanPending();
    }),

    /** The queue drained below its bound: scan what waited. */
    resume: () => {
      fullPending = true;
      schedule();
    },

    /**
     * Takes the replica's manifest for `scope` as what the peer holds, so the next scan ships
     * exactly what differs. Called inside `exclusive` by resync and verification.
     */
    async adopt(manifests: ChangeIndex[], scopes: (readonly string[] | "all")[]): Promise<void> {
      for (const [i, manifest] of manifests.entries()) indexes[i] = adoptManifest(indexes[i]!, manifest, scopes[i]!);
    },
    /** A full scan inside an `exclusive` section. */
    scanAll: async () => {
      for (const i of roots.keys()) await scanRoot(i, undefined);
    },

    async stop(): Promise<void> {
      stopped = true;
      coalesce?.cancel();
      rescan?.cancel();
      coalesce = rescan = null;
      for (const s of subscriptions.splice(0)) await s.unsubscribe().catch(() => undefined);
      await chain;
      await saveIndexes();
    },

    /** This node stops being the source: its indexes will not describe the peer's copy any more. */
    async forgetIndexes(): Promise<void> {
      for (const i of roots.keys()) await rm(indexFile(i), { force: true });
      indexes = [];
    },
  };
}

export type Capture = ReturnType<typeof createCapture>;
