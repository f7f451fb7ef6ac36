import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import { lstat, mkdir, open, readdir, readFile, readlink, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Packr } from "msgpackr";
import { blocksChecksum, type BatchOp } from "./batch.ts";

/**
 * Block size of the change index. 64 KiB keeps the index of a 1 GiB file at 16,384 checksums
 * (about 0.5 MiB) while a 4 KiB change still ships one block; 4 KiB blocks would make the index
 * 16 times larger for the same files.
 */
export const BLOCK_BYTES = 64 * 1024;
/** Block bytes per batch; a larger change is split over several batches. */
export const SCAN_BATCH_DATA_MAX = 4 * 1024 * 1024;
/** Entries the index holds; a tree beyond this is refused with a clear error rather than eating memory. */
export const INDEX_ENTRIES_MAX = 2_000_000;

type Entry =
  | { kind: "file"; mode: number; size: number; mtimeNs: string; ino: number; blocks: string[] }
  | { kind: "dir"; mode: number }
  | { kind: "link"; target: string };

/** What the active node last shipped of each path, keyed by path relative to the mirror root. */
export type ChangeIndex = Map<string, Entry>;

export interface ScanResult {
  /** Ops in apply order with the bytes of their blocks, split to at most SCAN_BATCH_DATA_MAX each. */
  batches: { ops: BatchOp[]; data: Buffer }[];
  index: ChangeIndex;
  bytesRead: number;
}

const packr = new Packr({ useRecords: false, moreTypes: false });
const blockSum = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

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
  const handle = await open(`${file}.tmp`, "r");
  await handle.sync();
  await handle.close();
  await rename(`${file}.tmp`, file);
}

async function walk(root: string, relative: string, out: Map<string, Stats>): Promise<void> {
  for (const name of (await readdir(join(root, relative))).sort()) {
    const path = relative ? `${relative}/${name}` : name;
    const info = await lstat(join(root, path));
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
export async function scanChanges(root: string, index: ChangeIndex): Promise<ScanResult> {
  const seen = new Map<string, Stats>();
  await walk(root, "", seen);
  const next: ChangeIndex = new Map();
  const removes: BatchOp[] = [];
  const updates: { op: BatchOp; data: Buffer }[] = [];
  let bytesRead = 0;

  // Renames: a path gone from the index whose inode now appears, unchanged, under a new name.
  const goneByInode = new Map<number, string>();
  for (const [path, entry] of index) if (!seen.has(path) && entry.kind === "file") goneByInode.set(entry.ino, path);
  const renamed = new Set<string>();

  for (const [path, info] of seen) {
    const old = index.get(path);
    if (info.isSymbolicLink()) {
      const target = await readlink(join(root, path));
      next.set(path, { kind: "link", target });
      if (old?.kind !== "link" || old.target !== target) updates.push({ op: { op: "symlink", path, target }, data: Buffer.alloc(0) });
    } else if (info.isDirectory()) {
      const mode = info.mode & 0o7777;
      next.set(path, { kind: "dir", mode });
      if (old?.kind !== "dir") updates.push({ op: { op: "mkdir", path, mode }, data: Buffer.alloc(0) });
      else if (old.mode !== mode) updates.push({ op: { op: "chmod", path, mode }, data: Buffer.alloc(0) });
    } else if (info.isFile()) {
      const mode = info.mode & 0o7777;
      const mtimeNs = String(info.mtimeMs); // sub-millisecond on Linux file systems with nanosecond times
      const from = goneByInode.get(info.ino);
      const moved = from !== undefined ? index.get(from) : undefined;
      if (old === undefined && moved?.kind === "file" && moved.size === info.size && moved.mtimeNs === mtimeNs) {
        updates.push({ op: { op: "rename", path: from!, to: path }, data: Buffer.alloc(0) });
        renamed.add(from!);
        next.set(path, { ...moved, mode });
        if (moved.mode !== mode) updates.push({ op: { op: "chmod", path, mode }, data: Buffer.alloc(0) });
        continue;
      }
      if (old?.kind === "file" && old.size === info.size && old.mtimeNs === mtimeNs && old.ino === info.ino) {
        next.set(path, { ...old, mode });
        if (old.mode !== mode) updates.push({ op: { op: "chmod", path, mode }, data: Buffer.alloc(0) });
        continue;
      }
      if (old !== undefined && old.kind !== "file") removes.push({ op: "remove", path });
      const content = await readFile(join(root, path));
      bytesRead += content.length;
      const blocks: string[] = [];
      const changed: [number, Buffer][] = [];
      for (let at = 0, i = 0; at < content.length; at += BLOCK_BYTES, i++) {
        const block = content.subarray(at, at + BLOCK_BYTES);
        const sum = blockSum(block);
        blocks.push(sum);
        if (old?.kind !== "file" || old.blocks[i] !== sum) changed.push([at, block]);
      }
      const data = Buffer.concat(changed.map(([, b]) => b));
      next.set(path, { kind: "file", mode, size: content.length, mtimeNs, ino: info.ino, blocks });
      updates.push({ op: { op: "write", path, blocks: changed.map(([at, b]) => [at, b.length]), size: content.length, sha256: blocksChecksum(data) }, data });
      if (old?.kind !== "file" || old.mode !== mode) updates.push({ op: { op: "chmod", path, mode }, data: Buffer.alloc(0) });
    }
    // Devices, sockets and fifos are not mirrored.
  }

  // Removed paths: only the top-most of a removed subtree (remove is recursive on the replica).
  const removed = [...index.keys()].filter((p) => !seen.has(p) && !renamed.has(p)).sort();
  for (const path of removed) if (!removed.some((other) => path.startsWith(`${other}/`))) removes.push({ op: "remove", path });

  return { batches: split([...removes.map((op) => ({ op, data: Buffer.alloc(0) })), ...updates]), index: next, bytesRead };
}

/** Cuts the ordered ops into batches of bounded data; a single large write is split by blocks. */
function split(items: { op: BatchOp; data: Buffer }[]): ScanResult["batches"] {
  const batches: ScanResult["batches"] = [];
  let ops: BatchOp[] = [];
  let parts: Buffer[] = [];
  let size = 0;
  const flush = () => {
    if (ops.length > 0) batches.push({ ops, data: Buffer.concat(parts) });
    ops = [];
    parts = [];
    size = 0;
  };
  for (const item of items) {
    if (item.op.op !== "write" || item.data.length + size <= SCAN_BATCH_DATA_MAX) {
      ops.push(item.op);
      parts.push(item.data);
      size += item.data.length;
      continue;
    }
    // A write too big for one batch: its blocks go out in several writes of the same final size.
    const write = item.op;
    let offset = 0;
    let pending: [number, number][] = [];
    let pendingBytes = 0;
    const emit = () => {
      const data = item.data.subarray(offset - pendingBytes, offset);
      ops.push({ ...write, blocks: pending, sha256: blocksChecksum(data) });
      parts.push(data);
      size += data.length;
      pending = [];
      pendingBytes = 0;
    };
    for (const [at, len] of write.blocks) {
      if (size + pendingBytes + len > SCAN_BATCH_DATA_MAX) {
        if (pending.length > 0) emit();
        flush();
      }
      pending.push([at, len]);
      pendingBytes += len;
      offset += len;
    }
    if (pending.length > 0 || write.blocks.length === 0) emit();
  }
  flush();
  return batches;
}
