import { constants as fsConstants } from "node:fs";
import { chmod, copyFile, link, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { DuetEvent } from "../events/catalogue.ts";
import { fsyncPath } from "./durable.ts";

import { SNAPSHOTS_KEPT_DEFAULT } from "../config/schema.ts";

export class SnapshotError extends Error {
  /** not-found: no snapshot of that name; refused: anything else (a target that is not empty, ...). */
  constructor(
    message: string,
    readonly kind: "not-found" | "refused" = "refused",
  ) {
    super(message);
    this.name = "SnapshotError";
  }
}

const metaSchema = z.strictObject({
  name: z.string(),
  job: z.string(),
  node: z.string(),
  at: z.number(),
  generation: z.string().nullable(),
  batch: z.number().int().nonnegative(),
  files: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  reason: z.enum(["operator", "schedule", "before-source-select"]),
});
export type SnapshotInfo = z.infer<typeof metaSchema>;
const META = "snapshot.json";


/**
 * Snapshots of a job's replica: trees of hard links, so taking one costs a walk of the tree, not a
 * copy of its data. The applier copies a file before writing to it while a snapshot shares it
 * (copy-before-write), so a snapshot never changes afterwards. Snapshots live in `dir`, which must
 * be on the same file system as the roots (root i of the job is `dir/NAME/i`).
 */
export function createSnapshots(options: { job: string; node: string; roots: readonly string[]; dir: string; keep?: number; report?: (events: DuetEvent[]) => Promise<void> | void; now?: () => number }) {
  let keep = options.keep ?? SNAPSHOTS_KEPT_DEFAULT;
  const now = options.now ?? Date.now;
  let last = "";

  /** Sortable by time and unique within this process, even for two in one millisecond. */
  const nextName = () => {
    let name = new Date(now()).toISOString().replaceAll(":", "-");
    for (let n = 1; name <= last; n++) name = `${new Date(now()).toISOString().replaceAll(":", "-")}-${n}`;
    last = name;
    return name;
  };

  async function linkTree(from: string, to: string, counts: { files: number; bytes: number }): Promise<void> {
    const info = await lstat(from);
    await mkdir(to, { mode: info.mode & 0o7777 });
    await chmod(to, info.mode & 0o7777);
    for (const name of (await readdir(from)).sort()) {
      const source = join(from, name);
      const entry = await lstat(source);
      if (entry.isDirectory()) await linkTree(source, join(to, name), counts);
      else if (entry.isSymbolicLink()) await symlink(await readlink(source), join(to, name));
      else if (entry.isFile()) {
        await link(source, join(to, name));
        counts.files += 1;
        counts.bytes += entry.size;
      }
      // Devices, sockets and fifos are not mirrored, so not kept either.
    }
  }

  /** Makes `to` hold exactly what `from` holds, files copied (reflinked where the file system can). */
  async function copyTree(from: string, to: string): Promise<void> {
    const info = await lstat(from);
    await mkdir(to, { recursive: true });
    await chmod(to, info.mode & 0o7777);
    const wanted = new Set(await readdir(from));
    for (const name of await readdir(to)) if (!wanted.has(name)) await rm(join(to, name), { recursive: true, force: true });
    for (const name of [...wanted].sort()) {
      const source = join(from, name);
      const target = join(to, name);
      const entry = await lstat(source);
      const existing = await lstat(target).catch(() => null);
      if (existing && (entry.isDirectory() !== existing.isDirectory() || !entry.isDirectory())) await rm(target, { recursive: true, force: true });
      if (entry.isDirectory()) await copyTree(source, target);
      else if (entry.isSymbolicLink()) await symlink(await readlink(source), target);
      else if (entry.isFile()) {
        await copyFile(source, target, fsConstants.COPYFILE_FICLONE);
        await chmod(target, entry.mode & 0o7777);
      }
    }
  }

  const store = {
    dir: options.dir,
    /** How many are kept from the next prune on (a configuration change). */
    setKeep(count: number): void {
      keep = count;
    },

    /** A snapshot at a batch boundary: the caller makes sure no batch is being applied meanwhile. */
    async take(reason: SnapshotInfo["reason"], at: { generation: string | null; batch: number }): Promise<SnapshotInfo> {
      await mkdir(options.dir, { recursive: true, mode: 0o700 });
      const name = nextName();
      const building = join(options.dir, `.tmp-${name}`);
      await rm(building, { recursive: true, force: true });
      await mkdir(building, { mode: 0o700 });
      const counts = { files: 0, bytes: 0 };
      try {
        for (const [i, root] of options.roots.entries()) await linkTree(root, join(building, String(i)), counts);
        const info: SnapshotInfo = { name, job: options.job, node: options.node, at: now(), generation: at.generation, batch: at.batch, files: counts.files, bytes: counts.bytes, reason };
        await writeFile(join(building, META), JSON.stringify(info, null, 2));
        await fsyncPath(join(building, META));
        await rename(building, join(options.dir, name));
        await fsyncPath(options.dir);
        await options.report?.([{ type: "SnapshotTaken", data: { job: options.job, node: options.node, snapshot: name, generation: at.generation ?? "0000000000000000", batch: at.batch, bytes: counts.bytes, reason } }]);
        await store.prune();
        return info;
      } catch (error) {
        await rm(building, { recursive: true, force: true });
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "EXDEV") throw new SnapshotError(`snapshots of ${options.job} must be on the same file system as its data: ${options.dir} is not (hard links cannot cross file systems)`);
        throw error;
      }
    },

    /** Oldest first. */
    async list(): Promise<SnapshotInfo[]> {
      const names = (await readdir(options.dir).catch(() => [] as string[])).filter((n) => !n.startsWith(".tmp-")).sort();
      const out: SnapshotInfo[] = [];
      for (const name of names) {
        const meta = metaSchema.safeParse(JSON.parse(await readFile(join(options.dir, name, META), "utf8").catch(() => "null")));
        if (meta.success) out.push(meta.data);
      }
      return out;
    },

    /** Removes the oldest beyond the kept count, journaling each. */
    async prune(): Promise<string[]> {
      const all = await store.list();
      const gone = all.slice(0, Math.max(0, all.length - keep)).map((s) => s.name);
      for (const name of gone) {
        await rm(join(options.dir, name), { recursive: true, force: true });
        await options.report?.([{ type: "SnapshotPruned", data: { job: options.job, node: options.node, snapshot: name } }]);
      }
      return gone;
    },

    /**
     * Restores a snapshot: in place (every root made equal to it; the caller makes sure the job
     * runs nowhere) or into `to` (root i into `to/i`; `to` must not exist or be empty). Files are
     * copies, so the snapshot stays as it was.
     */
    async restore(name: string, restoreOptions: { to?: string; by: string }): Promise<SnapshotInfo> {
      const info = (await store.list()).find((s) => s.name === name);
      if (!info) throw new SnapshotError(`snapshot ${JSON.stringify(name)} of ${options.job} not found on ${options.node} (duet snapshot list ${options.job})`, "not-found");
      if (restoreOptions.to !== undefined) {
        const present = await readdir(restoreOptions.to).catch((e: NodeJS.ErrnoException) => {
          if (e.code === "ENOENT") return [];
          if (e.code === "ENOTDIR") throw new SnapshotError(`restore target ${restoreOptions.to} is a file; give a new or empty directory`);
          throw new SnapshotError(`restore target ${restoreOptions.to}: ${e.message}`);
        });
        if (present.length > 0) throw new SnapshotError(`restore target ${restoreOptions.to} is not empty; give a new or empty directory`);
      }
      for (const [i, root] of options.roots.entries()) await copyTree(join(options.dir, name, String(i)), restoreOptions.to === undefined ? root : join(restoreOptions.to, String(i)));
      await options.report?.([
        { type: "SnapshotRestored", data: { job: options.job, node: options.node, snapshot: name, target: restoreOptions.to === undefined ? "in-place" : "elsewhere", ...(restoreOptions.to === undefined ? {} : { directory: restoreOptions.to }), by: restoreOptions.by } },
      ]);
      return info;
    },
  };
  return store;
}

export type Snapshots = ReturnType<typeof createSnapshots>;
