import type { Stats } from "node:fs";
import { constants as fsConstants } from "node:fs";
import { lstat, mkdir, open, readdir, readFile, readlink, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Packr } from "msgpackr";
import { blocksChecksum, blockSumOfPieces, checksumOfBlockSums, CHECKSUM_BLOCK_BYTES, PIECE_BYTES, PIECE_SUM_BYTES, pieceSums, type BatchOp } from "./batch.ts";
import { BATCH_BUFFER_BYTES, returnBatchBuffer, takeBatchBuffer } from "./batch-buffers.ts";
import { fsyncPath } from "./durable.ts";

/**
 * Block size of the change index: its checksums make a write op's checksum, and a file larger
 * than FINE_FILE_MAX is compared in these only.
 */
export const BLOCK_BYTES = CHECKSUM_BLOCK_BYTES;
/**
 * Files larger than this keep no piece checksums (16 bytes per 4 KiB: 4 MiB per GiB of file),
 * in the index or a manifest page, and are compared in 64 KiB blocks.
 */
export const FINE_FILE_MAX = 1024 * 1024 * 1024;
/** Bytes read from a file at once; a multiple of BLOCK_BYTES. */
export const READ_BYTES = 16 * BLOCK_BYTES;
/** Block bytes per batch; a larger change is split over several batches. */
export const SCAN_BATCH_DATA_MAX = BATCH_BUFFER_BYTES;
/** Entries the index holds; a tree beyond this is refused with a clear error rather than eating memory. */
export const INDEX_ENTRIES_MAX = 2_000_000;

export type Entry =
  /**
   * `blocks`: checksums of the 64 KiB blocks. `pieces`: PIECE_SUM_BYTES checksums of each 4 KiB
   * piece, for files up to FINE_FILE_MAX, so only the pieces of a differing block that differ
   * are shipped. An entry built from lstat alone has neither: every block counts as changed.
   */
  | { kind: "file"; mode: number; size: number; mtimeNs: string; ino: number; blocks: string[]; pieces?: Buffer }
  | { kind: "dir"; mode: number }
  | { kind: "link"; target: string };

type FileEntry = Extract<Entry, { kind: "file" }>;

/** What the active node last shipped of each path, keyed by path relative to the mirror root. */
export type ChangeIndex = Map<string, Entry>;

export interface ScanResult {
  /** Ops in apply order with the bytes of their blocks, split to at most SCAN_BATCH_DATA_MAX each. */
  batches: { ops: BatchOp[]; data: Buffer }[];
  index: ChangeIndex;
  bytesRead: number;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Loads the persisted index (empty when there is none yet). */
export async function loadIndex(file: string): Promise<ChangeIndex> {
  const bytes = await readFile(file).catch(() => null);
  if (!bytes) return new Map();
  return new Map(packr.unpack(bytes) as [string, Entry][]);
}

/** Saves the index atomically: a crash leaves the old one or the new one, never half. */
export async function saveIndex(file: string, index: ChangeIndex): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, packr.pack([...index]));
  await fsyncPath(`${file}.tmp`);
  await rename(`${file}.tmp`, file);
}

/** lstat calls a walk has in flight at once. */
const WALK_CONCURRENCY = 64;

/** A link's target, or null when the path is gone or no longer a link since it was looked at. */
async function readLinkIfThere(path: string): Promise<string | null> {
  return readlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT" || error.code === "EINVAL" || error.code === "ENOTDIR") return null;
    throw error;
  });
}

async function walk(root: string, relative: string, out: Map<string, Stats>): Promise<void> {
  const names = await readdir(join(root, relative)).catch((error: NodeJS.ErrnoException) => {
    // Removed while we walked: the next scan sees it gone.
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return [] as string[];
    throw error;
  });
  names.sort();
  // A directory's entries are looked at side by side (a cold cache otherwise waits on each inode
  // in turn), then taken in order, each subdirectory walked where it sorts.
  const infos: (Stats | null)[] = [];
  for (let at = 0; at < names.length; at += WALK_CONCURRENCY)
    infos.push(
      ...(await Promise.all(
        names.slice(at, at + WALK_CONCURRENCY).map((name) =>
          lstat(join(root, relative, name)).catch((error: NodeJS.ErrnoException) => {
            if (error.code === "ENOENT") return null;
            throw error;
          }),
        ),
      )),
    );
  for (const [i, name] of names.entries()) {
    const path = relative ? `${relative}/${name}` : name;
    const info = infos[i]!;
    if (info === null) continue;
    if (out.size >= INDEX_ENTRIES_MAX) throw new Error(`mirror ${root}: more than ${INDEX_ENTRIES_MAX} entries`);
    out.set(path, info);
    if (info.isDirectory()) await walk(root, path, out);
  }
}

/**
 * Compares the tree under `root` with the index and returns the ops that bring a replica from the
 * index's state to the tree's: only changed blocks of changed files are read and shipped (a file
 * whose size, mtime and inode are unchanged is not read at all), renames are found by inode,
 * symlinks are shipped as links, special files are skipped. The periodic rescan and the start-up
 * scan both use it, so changes made while the agent was down are found too.
 */
export async function scanChanges(root: string, index: ChangeIndex, options: ScanOptions = {}): Promise<ScanResult> {
  const seen = new Map<string, Stats>();
  const scoped = options.only !== undefined || options.shallow !== undefined;
  const deep = scopeTest(options.only ?? []);
  const shallow = new Set(options.shallow ?? []);
  const inScope = scoped ? (path: string) => shallow.has(path) || deep(path) : () => true;
  if (scoped) await walkScope(root, options.only ?? [], seen, shallow);
  else await walk(root, "", seen);
  // A file modified within the file system's time granularity of the scan may change again without
  // its mtime moving: such entries are remembered as "racy" and read again next time (as git does).
  const now = options.now ?? Date.now();
  const mtimeKey = (info: Stats) => indexMtime(info, now);
  const unchanged = (entry: Entry | undefined, info: Stats, sameInode: boolean): FileEntry | null => (describesFile(entry, info, now, sameInode) ? entry : null);
  const next: ChangeIndex = new Map([...index].filter(([path]) => !inScope(path)));
  const out = createBatcher(options.onBatch);
  let bytesRead = 0;

  // Renames: a path gone from the index whose inode now appears, unchanged, under a new name.
  const goneByInode = new Map<number, string>();
  for (const [path, entry] of index) if (inScope(path) && !seen.has(path) && entry.kind === "file") goneByInode.set(entry.ino, path);
  const renamed = new Set<string>();
  // Directories replaced by a file or link: what was inside went with them.
  const kindChanged: string[] = [];

  // Small files that look changed are read ahead, several at once: a tree of many small files
  // otherwise waits on three system calls per file, one after another.
  const entries = [...seen];
  const readAhead = new Map<string, Promise<Buffer | null>>();
  let ahead = 0;
  const readMore = (from: number) => {
    for (ahead = Math.max(ahead, from + 1); readAhead.size < READ_AHEAD_FILES && ahead < entries.length; ahead++) {
      const [path, info] = entries[ahead]!;
      if (info.isFile() && info.size < READ_BYTES && !options.statOnly && !unchanged(index.get(path), info, true)) readAhead.set(path, readSmallFile(join(root, path), info.size));
    }
  };

  for (const [i, [path, info]] of entries.entries()) {
    readMore(i);
    const early = readAhead.get(path);
    readAhead.delete(path);
    const old = index.get(path);
    const kind = info.isSymbolicLink() ? "link" : info.isDirectory() ? "dir" : info.isFile() ? "file" : null;
    if (kind === null) continue; // devices, sockets and fifos are not mirrored
    // A path that changed kind (file -> dir, dir -> link, ...) is removed on the replica first.
    if (old !== undefined && old.kind !== kind) {
      await out.push({ op: "remove", path });
      if (old.kind === "dir") kindChanged.push(path);
    }
    const was = old?.kind === kind ? old : undefined;
    if (kind === "link") {
      const target = await readLinkIfThere(join(root, path));
      if (target === null) {
        // Gone (or no longer a link) since the walk: what the replica holds under it goes too,
        // and the change that did it is seen by the watcher or the next scan.
        if (was !== undefined) await out.push({ op: "remove", path });
        continue;
      }
      next.set(path, { kind: "link", target });
      if (was?.kind !== "link" || was.target !== target) await out.push({ op: "symlink", path, target });
      continue;
    }
    const mode = info.mode & 0o7777;
    if (kind === "dir") {
      next.set(path, { kind: "dir", mode });
      if (was === undefined) await out.push({ op: "mkdir", path, mode });
      else if (was.kind === "dir" && was.mode !== mode) await out.push({ op: "chmod", path, mode });
      continue;
    }
    const mtimeNs = mtimeKey(info);
    const from = goneByInode.get(info.ino);
    const moved = from !== undefined ? index.get(from) : undefined;
    const movedHere = old === undefined ? unchanged(moved, info, false) : null;
    if (movedHere) {
      await out.push({ op: "rename", path: from!, to: path });
      renamed.add(from!);
      next.set(path, { ...movedHere, mode });
      if (movedHere.mode !== mode) await out.push({ op: "chmod", path, mode });
      continue;
    }
    const kept = unchanged(was, info, true);
    if (kept) {
      next.set(path, { ...kept, mode });
      if (kept.mode !== mode) await out.push({ op: "chmod", path, mode });
      continue;
    }
    if (options.statOnly) {
      next.set(path, { kind: "file", mode, size: info.size, mtimeNs, ino: info.ino, blocks: [] });
      continue;
    }
    // Changed blocks go into batches as they are read: a large file never sits in memory whole.
    const write = out.beginWrite(path, info.size);
    const read = await readChangedBlocks(join(root, path), info.size, was?.kind === "file" ? was : undefined, write, (await early) ?? undefined);
    if (read === null) {
      // Gone since the walk: the replica's copy goes too (the index forgets it).
      if (was !== undefined) await out.push({ op: "remove", path });
      continue;
    }
    bytesRead += read.size;
    next.set(path, { kind: "file", mode, size: read.size, mtimeNs, ino: info.ino, blocks: read.blocks, ...(read.pieces ? { pieces: read.pieces } : {}) });
    // Re-read (racy, or touched) but no block and not the size changed: nothing to ship.
    await write.end(read.size, was?.kind !== "file" || was.size !== read.size);
    if (was?.kind !== "file" || was.mode !== mode) await out.push({ op: "chmod", path, mode });
  }

  // Removed paths last (a rename may take a file out of a removed directory first), and only the
  // top-most of a removed subtree (remove is recursive on the replica).
  const removed = [...index.keys()].filter((p) => inScope(p) && !seen.has(p) && !renamed.has(p)).sort();
  const gone = new Set([...removed, ...kindChanged]);
  const covered = (path: string) => {
    for (let at = path.lastIndexOf("/"); at > 0; at = path.lastIndexOf("/", at - 1)) if (gone.has(path.slice(0, at))) return true;
    return false;
  };
  for (const path of removed) if (!covered(path)) await out.push({ op: "remove", path });

  return { batches: await out.finish(), index: next, bytesRead };
}

export interface ScanOptions {
  /** Scan only these paths (with their subtrees): what a watcher reported, or what lineage says may differ. */
  only?: readonly string[];
  /** Scan these paths too, but not what is under them: a directory reported as changed is not walked again. */
  shallow?: readonly string[];
  /** The scan's wall-clock time, for the racy-mtime rule. */
  now?: number;
  /**
   * Build the index from what lstat says, reading no file (entries without block checksums): for
   * a tree the peer cannot hold yet, which a verification will compare whole anyway.
   */
  statOnly?: boolean;
  /** Receives each batch as soon as it is full, so a large change never sits in memory whole. */
  onBatch?: (batch: { ops: BatchOp[]; data: Buffer }) => Promise<void>;
}

/** Small files read at once, ahead of the scan. */
const READ_AHEAD_FILES = 16;

/**
 * Buffers are sized to the file: a small file must not cost a READ_BYTES allocation (most of a
 * scan's garbage otherwise). One block more than the file holds, so one read finds its end; whole
 * blocks, so a file that grew meanwhile is still read block-aligned.
 */
const readSizeFor = (size: number) => Math.min(READ_BYTES, Math.ceil((size + 1) / BLOCK_BYTES) * BLOCK_BYTES);

/** A small file's whole content in one read, or null (gone, a link now, grown, unreadable): the scan then reads it itself. */
async function readSmallFile(path: string, size: number): Promise<Buffer | null> {
  try {
    const handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    try {
      // One byte more than the file holds, so one read finds its end (a file that grew is read by the scan).
      const buffer = Buffer.allocUnsafe(size + 1);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      return bytesRead < buffer.length ? buffer.subarray(0, bytesRead) : null;
    } finally {
      await handle.close();
    }
  } catch {
    return null;
  }
}

/**
 * Reads a file block by block, handing on what differs from `known`: a block whose checksum
 * differs, or, where `known` has piece checksums, each run of differing 4 KiB pieces in it.
 * `whole`: the file's entire content, read ahead (shorter than one read: its end was seen).
 * A file with nothing known ships every block: it is read straight into the batch being built.
 */
async function readChangedBlocks(
  path: string,
  sizeSeen: number,
  known: { blocks: readonly string[]; pieces?: Buffer } | undefined,
  write: FileWrite,
  whole?: Buffer,
): Promise<{ size: number; blocks: string[]; pieces: Buffer | undefined } | null> {
  const handle = whole
    ? null
    : await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT" || error.code === "ELOOP") return null;
        throw error;
      });
  if (handle === null && !whole) return null;
  try {
    const blocks: string[] = [];
    const pieces: Buffer[] = [];
    let size = 0;
    const readBytes = whole ? whole.length + 1 : readSizeFor(sizeSeen);
    // A known file's blocks are read into one scratch buffer and the changed ones copied out.
    let scratch: Buffer | null = null;
    for (;;) {
      // Read up to READ_BYTES at a time (fewer system calls), hash and hand on 64 KiB blocks of it.
      let buffer: Buffer;
      let bytesRead: number;
      let asked: number;
      if (whole) [buffer, bytesRead, asked] = [whole, whole.length, readBytes];
      else {
        buffer = known === undefined ? await write.room(readBytes) : (scratch ??= Buffer.allocUnsafe(readBytes));
        asked = Math.min(readBytes, buffer.length);
        ({ bytesRead } = await handle!.read(buffer, 0, asked, size).catch((error: NodeJS.ErrnoException) => {
          // The file became a directory between its lstat and the open (O_RDONLY opens one too):
          // gone as a file, like one removed; the next scan finds the directory.
          if (error.code === "EISDIR" && size === 0) return { bytesRead: -1 };
          throw error;
        }));
      }
      if (bytesRead < 0) return null;
      if (bytesRead === 0) break;
      for (let at = 0; at < bytesRead; at += BLOCK_BYTES) {
        const block = buffer.subarray(at, Math.min(bytesRead, at + BLOCK_BYTES));
        const sums = pieceSums(block);
        const sum = blockSumOfPieces(sums);
        const i = blocks.length;
        blocks.push(sum);
        pieces.push(sums);
        if (known?.blocks[i] === sum) continue;
        await handOnDiffering(size + at, block, sum, sums, known?.pieces, write.add);
      }
      size += bytesRead;
      // A regular file reads short only at its end (one still growing is racy and read again next scan).
      if (bytesRead < asked) break;
    }
    return { size, blocks, pieces: size <= FINE_FILE_MAX ? Buffer.concat(pieces) : undefined };
  } finally {
    await handle?.close();
  }
}

/**
 * A block that differs: the runs of its pieces whose checksums differ from `knownPieces` (a
 * known piece of another length differs too), or the whole block with its checksum when there are
 * no known pieces there or every piece differs.
 */
async function handOnDiffering(offset: number, block: Buffer, sum: string, sums: Buffer, knownPieces: Buffer | undefined, changed: FileWrite["add"]): Promise<void> {
  const count = sums.length / PIECE_SUM_BYTES;
  const first = (offset / PIECE_BYTES) * PIECE_SUM_BYTES;
  if (!knownPieces || knownPieces.length <= first) return changed(offset, block, sum);
  const differs = (p: number) => {
    const at = first + p * PIECE_SUM_BYTES;
    return at + PIECE_SUM_BYTES > knownPieces.length || knownPieces.compare(sums, p * PIECE_SUM_BYTES, (p + 1) * PIECE_SUM_BYTES, at, at + PIECE_SUM_BYTES) !== 0;
  };
  const runs: [number, number][] = [];
  for (let p = 0; p < count; p++) {
    if (!differs(p)) continue;
    const last = runs.at(-1);
    if (last && last[1] === p) last[1] = p + 1;
    else runs.push([p, p + 1]);
  }
  if (runs.length === 1 && runs[0]![0] === 0 && runs[0]![1] === count) return changed(offset, block, sum);
  for (const [from, to] of runs) await changed(offset + from * PIECE_BYTES, block.subarray(from * PIECE_BYTES, to * PIECE_BYTES), null);
}

/**
 * Ops' share of a batch's header, an upper bound of their encoded size: a batch of many small ops
 * is cut before its BatchCaptured fact, which lists them, outgrows a journal record
 * (RECORD_MAX_BYTES, 64 KiB: the rest is the envelope's). A burst of 10,000 new files was one
 * batch, and a fact the journal refused, which stopped capture.
 */
const SCAN_BATCH_HEADER_MAX = 48 * 1024;
const OP_FIXED_BYTES = 128; // field names, a sha256 in hex, sizes and modes
const headerShare = (op: BatchOp) =>
  OP_FIXED_BYTES + Buffer.byteLength(op.path) + (op.op === "rename" ? Buffer.byteLength(op.to) : op.op === "symlink" ? Buffer.byteLength(op.target) : op.op === "write" ? op.blocks.length * 20 : 0);

/** One file's write being built: its changed blocks are placed in the batch's data as they come. */
interface FileWrite {
  /** A block (or run of pieces) at `at` that differs; `sum` is its block checksum when it is a whole block. */
  add(at: number, bytes: Buffer, sum: string | null): Promise<void>;
  /**
   * Where the next bytes of this file can be read to be placed without a copy: free space of the
   * batch's data, at least one block, at most `bytes` (a full batch is sent first to make room).
   */
  room(bytes: number): Promise<Buffer>;
  /** `always`: a new file or a new size must be shipped even when no block changed (a truncation to a block boundary). */
  end(finalSize: number, always: boolean): Promise<void>;
}

/**
 * Collects ops into batches of at most SCAN_BATCH_DATA_MAX block bytes, in order; a write larger
 * than that is split by blocks over several batches, each op keeping the file's final size.
 * Block bytes go into the batch's data buffer as they are handed on (read there directly where
 * they can be), so a batch is one buffer from the start, not a join of many.
 */
function createBatcher(onBatch: ScanOptions["onBatch"]) {
  const kept: ScanResult["batches"] = [];
  let ops: BatchOp[] = [];
  let headerBytes = 0;
  let data: Buffer | null = null;
  /** Bytes of data taken by the ops pushed so far; `used` adds the write being built. */
  let size = 0;
  let used = 0;
  const arena = () => (data ??= takeBatchBuffer());
  /** Appends bytes at `used`, copying only when they were not read there. */
  const place = (bytes: Buffer) => {
    const into = arena();
    if (bytes.buffer !== into.buffer || bytes.byteOffset !== into.byteOffset + used) bytes.copy(into, used);
    used += bytes.length;
  };
  const flush = async () => {
    if (ops.length === 0) return;
    // A batch that filled its buffer takes it along; a small one (a realtime change) is copied
    // out, so a queued batch never holds more memory than its bytes.
    const full = data !== null && size >= data.length / 2;
    const batch = { ops, data: data === null ? Buffer.alloc(0) : full ? data.subarray(0, size) : Buffer.from(data.subarray(0, size)) };
    if (full) data = null;
    ops = [];
    headerBytes = 0;
    size = used = 0;
    if (onBatch) await onBatch(batch);
    else kept.push(batch);
  };
  const pushOp = async (op: BatchOp) => {
    if (headerBytes + headerShare(op) > SCAN_BATCH_HEADER_MAX) await flush();
    ops.push(op);
    headerBytes += headerShare(op);
  };
  return {
    /** An op without data: mkdir, chmod, symlink, rename, remove. */
    push: pushOp,
    /**
     * A write op built block by block. Ops cut off before the end carry the size the file had when
     * the scan found it; the last carries the size read to the end of the file.
     */
    beginWrite(path: string, sizeSeen: number): FileWrite {
      let pending: [number, number, string | null][] = [];
      /** The size the last op emitted for this file carried (null before the first). */
      let emittedSize: number | null = null;
      const emit = async (fileSize: number) => {
        const bytes = (data ?? Buffer.alloc(0)).subarray(size, used);
        // Whole blocks come with their checksums; runs of pieces of a differing block are hashed here.
        const sums = pending.map(([, , sum]) => sum);
        const sha256 = sums.every((sum) => sum !== null) ? checksumOfBlockSums(sums as string[]) : blocksChecksum(bytes);
        const op: BatchOp = { op: "write", path, blocks: contiguousRanges(pending.map(([at, length]) => [at, length])), size: fileSize, sha256 };
        if (headerBytes + headerShare(op) > SCAN_BATCH_HEADER_MAX && ops.length > 0) {
          // Too many ops for one header: the ops so far go first, this write's bytes with the next.
          const moved = Buffer.from(bytes);
          used = size;
          await flush();
          place(moved);
        }
        ops.push(op);
        headerBytes += headerShare(op);
        size = used;
        pending = [];
        emittedSize = fileSize;
      };
      // A write cut off at a batch's end carries the size the file had when the scan found it, or
      // the end of its own bytes if the file grew since: an op must never truncate what it writes
      // (the rest comes in the next batch; the last op carries the size read to the end).
      const cutSize = () => Math.max(sizeSeen, ...pending.map(([at, length]) => at + length));
      /** Sends the batch (with this file's write so far) when `bytes` more would not fit it. */
      const makeRoom = async (bytes: number) => {
        if (used + bytes <= SCAN_BATCH_DATA_MAX) return;
        if (pending.length > 0) await emit(cutSize());
        await flush();
      };
      return {
        add: async (at, bytes, sum) => {
          // Bytes read into room() are in place already; anything else is copied in.
          const inPlace = data !== null && bytes.buffer === data.buffer && bytes.byteOffset === data.byteOffset + used;
          if (!inPlace) await makeRoom(bytes.length);
          place(bytes);
          pending.push([at, bytes.length, sum]);
        },
        room: async (bytes) => {
          if (SCAN_BATCH_DATA_MAX - used < BLOCK_BYTES) await makeRoom(BLOCK_BYTES);
          const free = arena().subarray(used);
          return free.subarray(0, Math.min(bytes, free.length - (free.length % BLOCK_BYTES)));
        },
        end: async (finalSize, always) => {
          if (pending.length > 0 || (always && emittedSize === null) || (emittedSize !== null && finalSize !== emittedSize)) await emit(finalSize);
        },
      };
    },
    async finish() {
      await flush();
      if (data !== null) returnBatchBuffer(data); // held for small batches, which were copied out
      data = null;
      return kept;
    },
  };
}

/** Adjacent ranges merged: a new file's blocks become one range, written by the replica in one call. */
function contiguousRanges(ranges: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [at, length] of ranges) {
    const last = out.at(-1);
    if (last && last[0] + last[1] === at) last[1] += length;
    else out.push([at, length]);
  }
  return out;
}

/** How close to the scan an mtime must be to count as racy; also covers coarse (1 s) time stamps. */
export const RACY_MS = 1000;
const RACY = "racy";

/**
 * How an index records a file's mtime, for a scan at `now`: "racy" when it is within RACY_MS of
 * the scan (the file may change again without its mtime moving: read it again next time), else
 * the mtime itself (sub-millisecond on Linux file systems with nanosecond times).
 */
export const indexMtime = (info: Stats, now: number): string => (info.mtimeMs > now - RACY_MS ? RACY : String(info.mtimeMs));
export const isRacy = (mtimeNs: string): boolean => mtimeNs === RACY;

/**
 * The entry still describes the file, which then need not be read: same size and (not racy at
 * `now`) mtime, and the same inode where `sameInode` (a rename keeps the inode, not the path).
 */
export function describesFile(entry: Entry | undefined, info: Stats, now: number, sameInode = true): entry is FileEntry {
  if (entry?.kind !== "file" || entry.size !== info.size || (sameInode && entry.ino !== info.ino)) return false;
  const mtime = indexMtime(info, now);
  return !isRacy(mtime) && entry.mtimeNs === mtime;
}

/** The block checksums (and piece checksums up to FINE_FILE_MAX) of a whole file, never through a symlink. */
export async function fileSums(path: string, keepPieces: boolean): Promise<{ size: number; blocks: string[]; pieces?: Buffer }> {
  const blocks: string[] = [];
  const pieces: Buffer[] = [];
  let size = 0;
  const handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const buffer = Buffer.allocUnsafe(READ_BYTES);
    let carry = 0; // bytes of an unfinished block at the start of buffer
    for (;;) {
      const { bytesRead } = await handle.read(buffer, carry, READ_BYTES - carry, null);
      size += bytesRead;
      const filled = carry + bytesRead;
      const whole = bytesRead === 0 ? filled : filled - (filled % BLOCK_BYTES);
      for (let at = 0; at < whole; at += BLOCK_BYTES) {
        const sums = pieceSums(buffer.subarray(at, Math.min(whole, at + BLOCK_BYTES)));
        blocks.push(blockSumOfPieces(sums));
        if (keepPieces) pieces.push(sums);
      }
      if (bytesRead === 0) break;
      carry = filled - whole;
      buffer.copy(buffer, 0, whole, filled);
    }
  } finally {
    await handle.close();
  }
  return { size, blocks, ...(keepPieces ? { pieces: Buffer.concat(pieces) } : {}) };
}

/** Paths at or under any of `scope`. */
function scopeTest(scope: readonly string[]): (path: string) => boolean {
  const roots = new Set(scope);
  return (path) => {
    for (let at = path.length; at > 0; at = path.lastIndexOf("/", at - 1)) if (roots.has(path.slice(0, at))) return true;
    return false;
  };
}

/**
 * Collects the entries of a scoped scan: each path in `scope` with its subtree, and its parent
 * directories (a new directory must be created before what is in it). Missing paths are simply
 * absent, which makes their index entries removals.
 */
async function walkScope(root: string, scope: readonly string[], out: Map<string, Stats>, shallow: ReadonlySet<string> = new Set()): Promise<void> {
  const want = new Set<string>();
  const deep = new Set(scope);
  for (const path of [...scope, ...shallow]) {
    const parts = path.split("/");
    for (let i = 1; i <= parts.length; i++) want.add(parts.slice(0, i).join("/"));
  }
  for (const path of [...want].sort()) {
    if (out.has(path)) continue;
    const info = await lstat(join(root, path)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ENOTDIR") return null;
      throw error;
    });
    if (info === null) continue;
    out.set(path, info);
    if (info.isDirectory() && deep.has(path)) await walk(root, path, out);
  }
  // Sorted, so a parent is always handled before what is in it.
  const sorted = [...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  out.clear();
  for (const [k, v] of sorted) out.set(k, v);
}

/**
 * What a replica holds under `root`, as index entries: block checksums of every file (with
 * `pieces`, its 4 KiB piece checksums too), directory modes, link targets. The active side puts
 * these in place of its own entries for the paths a resync or verification covers, then scans:
 * only pieces that differ are shipped. Inode and mtime are the replica's, never equal to the
 * source's, so every such file is read and compared.
 */
export async function readManifest(root: string, scope: readonly string[] | "all", options: { pieces?: boolean } = {}): Promise<ChangeIndex> {
  const seen = new Map<string, Stats>();
  if (scope === "all") await walk(root, "", seen);
  else await walkScope(root, scope, seen);
  const manifest: ChangeIndex = new Map();
  for (const [path, info] of seen) {
    if (scope !== "all" && !scopeTest(scope)(path)) continue; // parents were walked for scans only
    if (info.isSymbolicLink()) {
      const target = await readLinkIfThere(join(root, path));
      if (target !== null) manifest.set(path, { kind: "link", target });
    } else if (info.isDirectory()) manifest.set(path, { kind: "dir", mode: info.mode & 0o7777 });
    else if (info.isFile()) {
      const { blocks, pieces } = await fileSums(join(root, path), options.pieces === true && info.size <= FINE_FILE_MAX);
      manifest.set(path, { kind: "file", mode: info.mode & 0o7777, size: info.size, mtimeNs: "replica", ino: -1, blocks, ...(pieces ? { pieces } : {}) });
    }
  }
  return manifest;
}

/** The index with `scope` (or everything) described by the replica's manifest instead. */
export function adoptManifest(index: ChangeIndex, manifest: ChangeIndex, scope: readonly string[] | "all"): ChangeIndex {
  if (scope === "all") return new Map(manifest);
  const inScope = scopeTest(scope);
  const next: ChangeIndex = new Map([...index].filter(([path]) => !inScope(path)));
  for (const [path, entry] of manifest) if (inScope(path)) next.set(path, entry);
  return next;
}
