import { lstat } from "node:fs/promises";
import { join } from "node:path";
import type { DuetEvent } from "../events/catalogue.ts";
import type { Timers, TimerHandle } from "../world/clock.ts";
import { CHECKSUM_BLOCK_BYTES, encodeBatchParts, encodedLength, inMirror, makeBatch } from "./batch.ts";
import type { BatchQueue } from "./queue.ts";
import { adoptManifest, describesFile, fileSums, FINE_FILE_MAX, isRacy, loadIndex, saveIndex, scanChanges, type ChangeIndex, type Entry } from "./scan.ts";
import { watchTree } from "./watch.ts";

/** How long reported changes gather before a scan: a burst of writes becomes one batch. */
export const CAPTURE_COALESCE_MS = 5;
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
/** The background fill of a stat-only index starts this long after capture: the job's application starts first. */
export const FILL_DELAY_MS = 5000;
/** The background fill of a stat-only index hands its checksums over this often (files, bytes). */
const FILL_MERGE_FILES = 1000;
const FILL_MERGE_BYTES = 256 * 1024 * 1024;

type FileEntry = Extract<Entry, { kind: "file" }>;
/** An index entry built from lstat alone, still to be read and checksummed. */
const unread = (entry: Entry | undefined): entry is FileEntry => entry?.kind === "file" && entry.blocks.length === 0 && entry.size > 0;

/** A stat-only entry with the checksums read (or told) of the same content. */
const withSums = (entry: FileEntry, sums: { blocks: string[]; pieces?: Buffer }): FileEntry => ({ ...entry, blocks: sums.blocks, ...(sums.pieces ? { pieces: sums.pieces } : {}) });

/** This node's stat-only index with the peer's checksums of each file of the same size (the stats stay this node's). */
function withPeerChecksums(own: ChangeIndex, peer: ChangeIndex): ChangeIndex {
  const out: ChangeIndex = new Map();
  for (const [path, entry] of own) {
    const theirs = peer.get(path);
    out.set(path, unread(entry) && theirs?.kind === "file" && theirs.size === entry.size ? withSums(entry, theirs) : entry);
  }
  return out;
}

export interface CaptureOptions {
  job: string;
  node: string;
  roots: readonly string[];
  /** Where the change indexes live (one per root). */
  stateDir: string;
  queue: BatchQueue;
  /** The last batch number this node captured for the job (from the journal). */
  lastCaptured: number;
  /**
   * The peer cannot hold this job's data yet (its first bring-in here): the verification that must
   * follow reads and checksums everything, so a missing index is not filled in the background.
   */
  peerHasNothing?: boolean;
  /**
   * Per root, the change index the peer kept while it was the source (a switchover): it says what
   * the peer holds, which is what an index means, so it replaces this node's own (absent or from
   * an older turn as source). Taken for each file of the same size here; other files are read in
   * the background.
   */
  peerIndexes?: readonly (ChangeIndex | null)[];
  /** The generation a new batch belongs to; may journal a GenerationStarted first. */
  generation: () => Promise<string>;
  report: (events: DuetEvent[]) => Promise<void>;
  /** A batch was queued: the sender may go on. */
  onQueued: () => void;
  timers: Timers;
  now: () => number;
  onError: (error: Error) => void;
  /** Default FILL_DELAY_MS. */
  fillDelayMs?: number;
  /**
   * Roots added to a running job and not yet verified against the peer: neither watched nor
   * scanned until `release` gives the replica's manifest for them (their index would otherwise
   * take the replica's copy as equal, and ship only what changes from now on).
   */
  heldRoots?: readonly number[];
}

/**
 * Capture on the active node: a recursive watcher over each mirrored root reports changed paths;
 * after a short pause they are scanned against the change index, and the changed blocks become
 * numbered write batches in the on-disk queue (BatchCaptured journals their metadata). A periodic
 * full rescan catches what the watcher missed. One scan runs at a time.
 */
export function createCapture(options: CaptureOptions) {
  const { queue } = options;
  const roots = [...options.roots]; // grows when a configuration change adds a path
  const held = new Set(options.heldRoots ?? []);
  const indexFile = (i: number) => join(options.stateDir, `index-${i}`);
  let indexes: ChangeIndex[] = [];
  let last = options.lastCaptured;
  let chain: Promise<unknown> = Promise.resolve();
  // Per root: reported paths, and whether their subtrees need a walk (created or removed) or not (updated).
  const pending = roots.map(() => new Map<string, "deep" | "shallow">());
  let fullPending = false;
  let coalesce: TimerHandle | null = null;
  let rescan: TimerHandle | null = null;
  const watches: { close(): void }[] = [];
  let stopped = false;
  /** Capture skipped a scan because the queue was over its bound. */
  let paused = false;
  const dirty = new Set<number>();
  let lastSaved = 0;
  let saving: Promise<void> = Promise.resolve();
  /** Changed blocks and queued bytes so far: a verification reports how much differed. */
  let blocksShipped = 0;
  let bytesShipped = 0;
  /** A missing index was built from lstat alone and is filled in the background once capture starts. */
  let fillNeeded = false;
  let fillTimer: TimerHandle | null = null;
  let filling: Promise<void> = Promise.resolve();

  /**
   * Reads and checksums the files of stat-only entries, one at a time, while the application
   * already runs: a switchover or takeover must not wait for the whole tree to be read. A file
   * whose size, mtime or inode moves while it is read is left to capture, which ships a changed
   * stat-only file whole and indexes it then; checksums are handed over only to entries still as
   * they were.
   */
  async function fillIndexes(): Promise<void> {
    for (const [i, root] of roots.entries()) {
      if (held.has(i)) continue;
      /** Checksums read, and the entry they were read for. */
      let found = new Map<string, { entry: FileEntry; sums: { blocks: string[]; pieces?: Buffer } }>();
      let bytes = 0;
      const merge = () =>
        exclusive(async () => {
          if (stopped || indexes[i] === undefined || found.size === 0) return;
          const index = new Map(indexes[i]); // scans replace the Map, never change it: so does this
          for (const [path, { entry: readFor, sums }] of found) {
            const entry = index.get(path);
            if (unread(entry) && entry.size === readFor.size && entry.mtimeNs === readFor.mtimeNs && entry.ino === readFor.ino) index.set(path, withSums(entry, sums));
          }
          indexes[i] = index;
          dirty.add(i);
          found = new Map();
          bytes = 0;
        });
      const todo = [...(indexes[i] ?? [])].filter(([, entry]) => unread(entry) && !isRacy(entry.mtimeNs)).map(([path]) => path);
      for (const path of todo) {
        if (stopped) return;
        const entry = indexes[i]?.get(path);
        if (!unread(entry)) continue;
        const asIndexed = async () => {
          const info = await lstat(join(root, path)).catch(() => null);
          return info !== null && info.isFile() && describesFile(entry, info, options.now());
        };
        if (!(await asIndexed())) continue;
        const sums = await fileSums(join(root, path), entry.size <= FINE_FILE_MAX).catch(() => null);
        if (sums === null || sums.size !== entry.size || !(await asIndexed())) continue;
        found.set(path, { entry, sums });
        bytes += entry.size;
        if (found.size >= FILL_MERGE_FILES || bytes >= FILL_MERGE_BYTES) await merge();
      }
      await merge();
    }
    if (!stopped) await saveIndexes();
  }

  /** Runs `work` after every scan queued before it: scans, resyncs and hand-overs never overlap. */
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const next = chain.then(work, work);
    chain = next.catch(() => undefined);
    return next;
  };

  async function scanRoot(i: number, only: readonly string[] | undefined, shallow?: readonly string[], durable = true): Promise<void> {
    const root = roots[i]!;
    let generation: string | null = null;
    // A sync's BatchCaptured facts are written while the scan reads on (the journal groups them):
    // an interrupted sync starts over from a reset, so nothing depends on each being durable before
    // its batch is sent. A realtime batch's fact is durable first: a restart must never number a
    // new batch like one the replica already applied.
    const journaled: Promise<void>[] = [];
    const result = await scanChanges(root, indexes[i]!, {
      only,
      shallow,
      now: options.now(),
      onBatch: async (b) => {
        generation ??= await options.generation();
        const batch = makeBatch(options.job, generation, last + 1, inMirror(b.ops, i), b.data);
        const encoded = encodeBatchParts(batch, false);
        const bytes = encodedLength(encoded);
        // In 64 KiB blocks' worth (a range may hold many; a few pieces count as one).
        for (const op of batch.ops) if (op.op === "write") for (const [, length] of op.blocks) blocksShipped += Math.ceil(length / CHECKSUM_BLOCK_BYTES);
        bytesShipped += bytes;
        // The batch file and its fact are written side by side; the batch is sent only once both
        // are (a durable fact alone already keeps a restart from reusing its number).
        const reported = options.report([{ type: "BatchCaptured", data: { job: options.job, node: options.node, batch: batch.batch, generation, ops: batch.ops, bytes, sha256: batch.sha256 } }]);
        reported.catch(() => undefined); // awaited below, or with the sync's other facts
        await queue.put(batch.batch, encoded, durable);
        last = batch.batch; // only now: a sender finding a captured number must find its batch queued
        if (durable) await reported;
        else journaled.push(reported);
        options.onQueued();
      },
    });
    await Promise.all(journaled);
    indexes[i] = result.index;
    dirty.add(i);
    // In the background: writing a large index must not hold up the next batch.
    if (options.now() - lastSaved >= INDEX_SAVE_MS) void saveIndexes().catch(options.onError);
  }

  /**
   * Writes the indexes that changed since the last save. Each is the index as it stood after its
   * batches were queued (scans replace the Map, never change it), and saves run one at a time.
   */
  function saveIndexes(): Promise<void> {
    lastSaved = options.now();
    const due = [...dirty].map((i) => [i, indexes[i]!] as const);
    dirty.clear();
    saving = saving.catch(() => undefined).then(async () => {
      for (const [i, index] of due) await saveIndex(indexFile(i), index);
    });
    return saving;
  }

  async function scanPending(): Promise<void> {
    if (stopped) return;
    if (queue.stats().bytes > CAPTURE_QUEUE_MAX_BYTES) {
      paused = true; // resumed by the sender when the queue drains; the reported paths wait
      return;
    }
    const full = fullPending;
    fullPending = false;
    for (const [i, paths] of pending.entries()) {
      if (held.has(i) || (!full && paths.size === 0)) continue;
      const only = full ? undefined : [...paths].filter(([, how]) => how === "deep").map(([p]) => p);
      const shallow = full ? undefined : [...paths].filter(([, how]) => how === "shallow").map(([p]) => p);
      paths.clear();
      await scanRoot(i, only, shallow);
    }
  }

  async function watchRoot(i: number): Promise<void> {
    const watched = await watchTree(
      roots[i]!,
      (events) => {
        for (const e of events) {
          // A write needs only its own path scanned; a create, remove or rename may carry a subtree.
          if (e.structural || pending[i]!.get(e.path) !== "deep") pending[i]!.set(e.path, e.structural ? "deep" : "shallow");
        }
        schedule();
      },
      (reason) => {
        options.onError(new Error(`watcher: ${reason}; rescanning`));
        fullPending = true;
        schedule();
      },
    );
    watches.push(watched);
  }

  const cancelTimers = () => {
    coalesce?.cancel();
    rescan?.cancel();
    coalesce = rescan = null;
  };

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
     * assumption wherever it may be wrong. Its index is built from lstat alone, so the job starts
     * without reading its data; the checksums are filled in once capture runs.
     */
    async open(): Promise<void> {
      indexes = [];
      for (const [i, root] of roots.entries()) {
        if (held.has(i)) {
          indexes.push(new Map()); // replaced by the replica's manifest when released
          continue;
        }
        const fromPeer = options.peerIndexes?.[i] ?? null;
        let index = fromPeer === null ? await loadIndex(indexFile(i)) : new Map();
        if (index.size === 0) {
          // Only the index is wanted: the batches are dropped as they fill, never held.
          index = (await scanChanges(root, new Map(), { now: options.now(), onBatch: async () => undefined, statOnly: true })).index;
          if (fromPeer !== null) index = withPeerChecksums(index, fromPeer);
          await saveIndex(indexFile(i), index);
        }
        // Also an index saved before its fill ended (the agent stopped meanwhile).
        if (!options.peerHasNothing && [...index.values()].some(unread)) fillNeeded = true;
        indexes.push(index);
      }
    },

    /** Resolves once the background fill of a stat-only index (if any) has ended. */
    indexed: () => filling,

    /** Starts watching, with a full scan first (changes made while this node was not capturing). */
    async start(): Promise<void> {
      stopped = false;
      for (const i of roots.keys()) if (!held.has(i)) await watchRoot(i);
      fullPending = true;
      schedule();
      if (fillNeeded) {
        fillNeeded = false;
        filling = new Promise<void>((resolve) => {
          fillTimer = options.timers.after(options.fillDelayMs ?? FILL_DELAY_MS, () => {
            fillTimer = null;
            resolve(fillIndexes().catch(options.onError));
          });
        });
      }
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

    /** The queue drained: if capture waited for it, scan what waited. */
    resume: () => {
      if (!paused) return;
      paused = false;
      schedule();
    },

    /**
     * Takes the replica's manifest for `scope` as what the peer holds, so the next scan ships
     * exactly what differs. Called inside `exclusive` by resync and verification.
     */
    async adopt(manifests: ChangeIndex[], scopes: (readonly string[] | "all")[]): Promise<void> {
      for (const [i, manifest] of manifests.entries()) if (!held.has(i)) indexes[i] = adoptManifest(indexes[i]!, manifest, scopes[i]!);
    },
    /** A resync's or verification's full scan, inside an `exclusive` section (held roots wait). */
    scanAll: async () => {
      for (const i of roots.keys()) if (!held.has(i)) await scanRoot(i, undefined, undefined, false);
    },

    /** Roots not yet released (see `heldRoots`). */
    held: (): number[] => [...held].sort((x, y) => x - y),

    /** Roots a configuration change added: held until released. Returns their indexes. */
    addRoots: (added: readonly string[]) =>
      exclusive(async () => {
        const first = roots.length;
        for (const root of added) {
          held.add(roots.length);
          roots.push(root);
          pending.push(new Map());
          indexes.push(new Map());
        }
        return added.map((_, k) => first + k);
      }),

    /**
     * Takes the replica's manifest as what it holds under held root `i`, starts watching it and
     * scans it: the batches queued ship exactly what differs. Returns the blocks and bytes queued.
     */
    release: (i: number, manifest: ChangeIndex) =>
      exclusive(async () => {
        if (!held.has(i)) throw new Error(`capture of ${options.job}: root ${i} is not held`);
        const before = { blocks: blocksShipped, bytes: bytesShipped };
        indexes[i] = new Map(manifest);
        held.delete(i);
        if (!stopped) await watchRoot(i);
        await scanRoot(i, undefined);
        await saveIndexes();
        return { blocks: blocksShipped - before.blocks, bytes: bytesShipped - before.bytes };
      }),

    /**
     * Stops capture after a last scan of the paths the watcher reported, peer or no peer: a write
     * made in the last coalesce window before a bring-out, fence or failed start must still become
     * a batch, or lineage would not know this node holds it. The periodic full rescan is left to the
     * next start, which scans everything first anyway.
     */
    async stop(): Promise<void> {
      for (const w of watches.splice(0)) w.close();
      cancelTimers();
      fullPending = false;
      await exclusive(scanPending).catch(options.onError);
      stopped = true;
      cancelTimers(); // a sender's resume() may have scheduled a scan meanwhile
      if (fillTimer !== null) {
        // Not begun yet: the index stays stat-only and the next open() fills it.
        fillTimer.cancel();
        fillTimer = null;
        filling = Promise.resolve();
      }
      await filling;
      await chain;
      await saveIndexes();
    },

  };
}

export type Capture = ReturnType<typeof createCapture>;
