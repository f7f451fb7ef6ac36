import { constants as fsConstants } from "node:fs";
import { chmod, copyFile, lstat, mkdir, open, readdir, readFile, rename, rm, symlink, truncate, writeFile, type FileHandle } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize } from "node:path";
import type { DuetEvent } from "../events/catalogue.ts";
import { BatchError, blocksChecksum, decodeBatch, encodeBatch, type Batch, type BatchOp } from "./batch.ts";
import { resolveMirrorPath, UnsafePathError } from "./safepath.ts";
import { fsyncPath, syncFileSystem } from "./durable.ts";

export interface StageOptions {
  /** false for a verification's batch: neither staged nor fsynced one by one. */
  durable?: boolean;
  /** The batch already decoded from the bytes passed (decoding checks every op: once is enough). */
  decoded?: Batch;
}

export class RefusedBatchError extends Error {
  constructor(
    readonly batch: number,
    readonly path: string,
    readonly reason: string,
  ) {
    super(`batch ${batch} refused: ${path}: ${reason}`);
    this.name = "RefusedBatchError";
  }
}

/** A verification's bytes written between background flushes (see unflushedBytes). */
const WRITEBACK_BYTES = 128 * 1024 * 1024;

/** fsyncs at once: the file system commits them together (one journal commit, not one each). */
const SYNC_CONCURRENCY = 32;

async function inParallel<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += SYNC_CONCURRENCY) await Promise.all(items.slice(i, i + SYNC_CONCURRENCY).map(work));
}

/** Like inParallel, but every item runs; returns each item's error (undefined where it succeeded), in order. */
async function inParallelSettled<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<unknown[]> {
  const errors: unknown[] = new Array(items.length);
  await inParallel([...items.keys()], (i) => work(items[i]!).catch((error: unknown) => void (errors[i] = error)));
  return errors;
}

/** Ops that add a symlink, move or remove entries: they change what later paths resolve through. */
const isStructural = (b: Batch) => b.ops.some((op) => op.op === "symlink" || op.op === "rename" || op.op === "remove");

/**
 * The standby's side of a mirror. Each batch is checked whole first (checksum, every path inside
 * the root, every write's bytes) so a bad batch writes nothing; then staged and fsynced, applied in
 * order, fsynced, and only then recorded as applied. Every op is idempotent, so a crash anywhere
 * is repaired by applying the staged batch again: the replica always ends at a batch boundary.
 */
export function createApplier(options: { job: string; node: string; roots: readonly string[]; stateDir: string; report?: (events: DuetEvent[]) => Promise<void> | void }) {
  const { roots, stateDir } = options;
  const stagedDir = join(stateDir, "staged");
  const appliedFile = join(stateDir, "applied");
  let lastApplied = 0;
  /** The last batch staged ahead of applying (0 when none is). */
  let lastStaged = 0;
  /** A verification's batches were applied without fsync (and not recorded): flush() makes them durable. */
  let unsynced = false;
  /**
   * Bytes a verification wrote since the last background flush. Every WRITEBACK_BYTES a flush
   * starts without being waited for: the disk writes while the sync goes on, not all at its end.
   */
  let unflushedBytes = 0;
  let writeback: Promise<void> = Promise.resolve();
  /** Their BatchApplied facts, appended while the next batch applies; flush() waits for them. */
  let reporting: Promise<unknown> = Promise.resolve();

  async function check(b: Batch): Promise<void> {
    let offset = 0;
    // Paths an earlier op of this batch removes: a file there may become a directory in the same
    // batch. Applying resolves every path again, against the tree as it then is.
    const removed = new Set<string>();
    const resolve = async (path: string, realDirs?: Set<string>) => {
      try {
        return await resolveMirrorPath(roots, path, realDirs);
      } catch (error) {
        // A parent that an earlier op of this batch removes (a file, or a symlink) may be a directory by
        // then: applying resolves the path again, after that removal.
        const blocker = error instanceof UnsafePathError ? /^(.*) is (?:not a directory|a symlink; a parent must be a real directory)$/.exec(error.reason)?.[1] : undefined;
        if (blocker === undefined || !removed.has(`${path.split("/")[0]}/${blocker}`)) throw error;
        return { relative: path.slice(path.indexOf("/") + 1) };
      }
    };
    const checkPath = async (op: BatchOp, realDirs?: Set<string>): Promise<void> => {
      const { relative } = await resolve(op.path, realDirs);
      if (op.op === "rename") await resolve(op.to);
      if (op.op === "remove") removed.add(op.path);
      if (op.op === "rename" && op.path.split("/")[0] !== op.to.split("/")[0]) throw new UnsafePathError(op.path, `rename to ${op.to} crosses mirrors`);
      if (op.op === "symlink") {
        const target = normalize(join(dirname(relative), op.target));
        if (isAbsolute(op.target) || target.startsWith("..")) throw new UnsafePathError(op.path, `symlink to ${op.target} points outside the mirror root`);
      }
    };
    // Without ops that add links or move or remove entries, no path of the batch can change what
    // another resolves through: they are checked side by side, each directory looked at once.
    const realDirs = new Set<string>();
    const checked = new Map<string, Promise<void>>(); // a file's write and mode are one path to check
    const paths = isStructural(b)
      ? null
      : await inParallelSettled(b.ops, (op) => {
          let check = checked.get(op.path);
          if (!check) checked.set(op.path, (check = checkPath(op, realDirs)));
          return check;
        });
    for (const [i, op] of b.ops.entries()) {
      try {
        if (paths === null) await checkPath(op);
        else if (paths[i] !== undefined) throw paths[i];
      } catch (error) {
        if (error instanceof UnsafePathError) throw new RefusedBatchError(b.batch, op.path, error.reason);
        throw error;
      }
      if (op.op === "write") {
        const length = op.blocks.reduce((sum, [, len]) => sum + len, 0);
        if (blocksChecksum(b.data.subarray(offset, offset + length), b.legacy) !== op.sha256) throw new RefusedBatchError(b.batch, op.path, "the written blocks do not match their checksum");
        offset += length;
      }
    }
    if (offset !== b.data.length) throw new RefusedBatchError(b.batch, "(batch)", `${b.data.length - offset} bytes of data belong to no write`);
  }

  /**
   * A file a snapshot shares (more than one hard link) is copied and the copy put in its place
   * before it is changed, so the snapshot keeps its bytes and mode. Idempotent: after a crash the
   * file has one link again, or the copy is made anew.
   */
  async function copyBeforeWrite(path: string): Promise<void> {
    const info = await lstat(path).catch(() => null);
    if (info === null || !info.isFile() || info.nlink <= 1) return;
    const copy = `${path}.duet-cow`;
    await copyFile(path, copy, fsConstants.COPYFILE_FICLONE);
    await chmod(copy, info.mode & 0o7777);
    await fsyncPath(copy);
    await rename(copy, path);
  }

  /** `durable` false for a verification's batches: nothing is fsynced, flush() does it once at the end. */
  async function applyOps(b: Batch, durable: boolean): Promise<void> {
    const touched = new Set<string>();
    // check() resolved every path against the tree before this batch. Only an op that adds a
    // symlink or moves or removes entries can change what a later path of the same batch resolves
    // through, so only then is each path resolved again as it is applied.
    const structural = isStructural(b);
    const resolve = async (path: string) => {
      if (structural) return (await resolveMirrorPath(roots, path)).absolute;
      const slash = path.indexOf("/");
      return join(roots[Number(path.slice(0, slash))]!, path.slice(slash + 1));
    };
    const madeDirs = new Set<string>();
    const parentOf = async (path: string) => {
      const dir = dirname(path);
      if (!madeDirs.has(dir)) {
        await mkdir(dir, { recursive: true });
        madeDirs.add(dir);
      }
    };
    // Written files are synced together at the end: one batch, one wait, not one per file.
    const written: FileHandle[] = [];
    // Where each write's bytes start in the data, so ops need not apply in order.
    const dataAt: number[] = [];
    for (let at = 0, i = 0; i < b.ops.length; i++) {
      dataAt.push(at);
      const op = b.ops[i]!;
      if (op.op === "write") at += op.blocks.reduce((sum, [, len]) => sum + len, 0);
    }
    const applyOp = async (op: BatchOp, i: number): Promise<void> => {
      let offset = dataAt[i]!;
      const path = await resolve(op.path);
      touched.add(dirname(path));
      switch (op.op) {
        case "write": {
          await parentOf(path);
          await copyBeforeWrite(path);
          // Never through a symlink: a link where the source now has a file is replaced, not followed.
          const flags = fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW;
          const handle = await open(path, flags, 0o644).catch(async (e: NodeJS.ErrnoException) => {
            if (e.code !== "ELOOP") throw e;
            await rm(path, { force: true });
            return open(path, flags, 0o644);
          });
          written.push(handle);
          for (const [at, len] of op.blocks) {
            await handle.write(b.data, offset, len, at);
            offset += len;
          }
          await handle.truncate(op.size);
          break;
        }
        case "truncate":
          await copyBeforeWrite(path);
          await truncate(path, op.size).catch(async (e: NodeJS.ErrnoException) => {
            if (e.code !== "ENOENT") throw e;
            await parentOf(path);
            await writeFile(path, Buffer.alloc(op.size));
          });
          break;
        case "mkdir":
          await mkdir(path, { recursive: true });
          await chmod(path, op.mode);
          break;
        case "remove":
          await rm(path, { recursive: true, force: true });
          madeDirs.clear();
          break;
        case "rename": {
          const to = await resolve(op.to);
          touched.add(dirname(to));
          await parentOf(to);
          // Applied before a crash: the source is gone and the target is in place already.
          await rename(path, to).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== "ENOENT") throw e;
          });
          madeDirs.clear();
          break;
        }
        case "symlink":
          await parentOf(path);
          await rm(path, { force: true, recursive: true });
          await symlink(op.target, path);
          break;
        case "chmod":
          await copyBeforeWrite(path);
          await chmod(path, op.mode);
          break;
      }
    };
    try {
      if (structural) for (const [i, op] of b.ops.entries()) await applyOp(op, i);
      else {
        // Each path's ops in order, different paths side by side (a batch of many small files
        // waits on one round of system calls, not hundreds). A write makes its parent directory on
        // demand, so a directory's own mkdir and mode may come before or after.
        const byPath = new Map<string, number[]>();
        for (const [i, op] of b.ops.entries()) {
          const ops = byPath.get(op.path);
          if (ops) ops.push(i);
          else byPath.set(op.path, [i]);
        }
        await inParallel([...byPath.values()], async (indexes) => {
          for (const i of indexes) await applyOp(b.ops[i]!, i);
        });
      }
      // Contents and directory entries are flushed together: neither needs the other first.
      if (durable) await Promise.all([inParallel(written, (h) => h.sync()), inParallel([...touched], (dir) => fsyncPath(dir).catch(() => undefined))]);
    } finally {
      await Promise.all(written.map((h) => h.close().catch(() => undefined)));
    }
  }

  async function record(batch: number): Promise<void> {
    await writeFile(`${appliedFile}.tmp`, String(batch));
    await fsyncPath(`${appliedFile}.tmp`);
    await rename(`${appliedFile}.tmp`, appliedFile);
    await fsyncPath(stateDir);
    lastApplied = batch;
  }

  const applier = {
    lastApplied: () => lastApplied,
    /** Makes a verification's batches durable (one syncfs per mirror root) and records the applied position. */
    async flush(): Promise<void> {
      await reporting;
      if (!unsynced) return;
      await writeback;
      unflushedBytes = 0;
      for (const root of roots) await syncFileSystem(root);
      unsynced = false;
      await record(lastApplied);
    },
    /**
     * The source starts a new numbering after `position` (its queue was superseded by a resync or
     * verification): batches staged from the old numbering are dropped unapplied.
     */
    async reset(position: number): Promise<void> {
      lastStaged = 0;
      unsynced = false; // what an abandoned sync wrote is compared again by the next one
      await rm(stagedDir, { recursive: true, force: true });
      await mkdir(stagedDir, { recursive: true });
      await record(position);
    },
    /** Reads the applied position and re-applies a batch staged before a crash. */
    async open(): Promise<void> {
      await mkdir(stagedDir, { recursive: true });
      lastApplied = Number((await readFile(appliedFile, "utf8").catch(() => "0")).trim()) || 0;
      const files = await readdir(stagedDir);
      for (const partial of files.filter((f) => f.endsWith(".tmp"))) await rm(join(stagedDir, partial), { force: true });
      const staged = files.filter((f) => f.endsWith(".batch")).sort((x, y) => parseInt(x) - parseInt(y));
      for (const file of staged) {
        const bytes = await readFile(join(stagedDir, file));
        const b = decodeBatch(bytes);
        if (b.batch > lastApplied) await applier.apply(bytes, { decoded: b });
        await rm(join(stagedDir, file), { force: true });
      }
    },
    /** Applies one batch; a duplicate is a no-op, a gap or a bad batch an error that writes nothing. */
    async apply(input: Batch | Buffer, how: StageOptions = {}): Promise<{ applied: boolean }> {
      const staged = await applier.stage(input, how);
      if (staged === null) return { applied: false };
      await applier.applyStaged(staged, how);
      return { applied: true };
    },

    /**
     * Checks a batch whole and makes it durable in staging, ready to apply; null for a duplicate.
     * Batches may be staged ahead of applying (the next one arrives while one applies), in order.
     * A verification's batch (`durable` false) is checked and takes its place in the order, but is
     * not written to staging: an interrupted verification starts over, so no crash needs it re-applied.
     */
    async stage(input: Batch | Buffer, how: StageOptions = {}): Promise<Batch | null> {
      let b: Batch;
      try {
        b = how.decoded ?? (Buffer.isBuffer(input) ? decodeBatch(input) : input);
      } catch (error) {
        if (error instanceof BatchError) await options.report?.([{ type: "OpRefused", data: { job: options.job, node: options.node, batch: 0, path: "(batch)", reason: error.message } }]);
        throw error;
      }
      const after = Math.max(lastApplied, lastStaged);
      if (b.batch <= after) return null;
      if (b.batch !== after + 1) throw new BatchError(`batch ${b.batch} arrived after ${after}: batches apply in order, ${after + 1} is missing`);
      try {
        await check(b);
      } catch (error) {
        if (error instanceof RefusedBatchError) await options.report?.([{ type: "OpRefused", data: { job: options.job, node: options.node, batch: b.batch, path: error.path, reason: error.reason } }]);
        throw error;
      }
      if (how.durable === false) {
        lastStaged = b.batch;
        return b;
      }
      const staged = join(stagedDir, `${b.batch}.batch`);
      await mkdir(stagedDir, { recursive: true });
      // Staged under a temporary name and renamed: a crash mid-stage leaves no half batch to re-apply
      // (and nothing of it was applied yet, since applying starts after the rename).
      // The bytes as they arrived (decoded and checked above) when there are any: no second encoding.
      await writeFile(`${staged}.tmp`, Buffer.isBuffer(input) ? input : encodeBatch(b));
      await fsyncPath(`${staged}.tmp`);
      await rename(`${staged}.tmp`, staged);
      await fsyncPath(stagedDir);
      lastStaged = b.batch;
      return b;
    },

    /** Applies a staged batch (the one after the last applied), then records it and reports BatchApplied. */
    async applyStaged(b: Batch, how: StageOptions = {}): Promise<void> {
      if (b.batch !== lastApplied + 1) throw new BatchError(`batch ${b.batch} is not the next to apply (${lastApplied + 1})`);
      const applied: DuetEvent = { type: "BatchApplied", data: { job: options.job, node: options.node, batch: b.batch, generation: b.generation } };
      if (how.durable === false) {
        await applyOps(b, false);
        lastApplied = b.batch;
        unsynced = true;
        unflushedBytes += b.data.length;
        if (unflushedBytes >= WRITEBACK_BYTES) {
          unflushedBytes = 0;
          // Not awaited (flush() waits for it); one at a time; a failure surfaces in flush()'s own sync.
          writeback = writeback.then(() => Promise.all(roots.map((root) => syncFileSystem(root))).then(() => undefined, () => undefined));
        }
        const reported = Promise.resolve(options.report?.([applied]));
        reported.catch(() => undefined); // surfaces in flush()
        reporting = Promise.all([reporting, reported]);
        return;
      }
      if (unsynced) await applier.flush(); // a durable batch is never recorded over a verification's unsynced bytes
      await applyOps(b, true);
      // The position and the fact are written side by side: a crash between them leaves the batch
      // staged, and opening again re-applies it and records both.
      await Promise.all([record(b.batch), options.report?.([applied])]);
      await rm(join(stagedDir, `${b.batch}.batch`), { force: true });
    },
  };
  return applier;
}
