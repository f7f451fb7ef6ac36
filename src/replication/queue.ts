import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeBatch, type Batch } from "./batch.ts";
import { fsyncPath } from "./durable.ts";

/**
 * Captured batches waiting for the standby's acknowledgement, on disk: a slow or absent standby
 * costs disk, never memory, and an agent restart resends them. One file per batch, written under
 * a temporary name, fsynced and renamed, so a crash never leaves half a batch to send.
 */
export function createBatchQueue(dir: string) {
  const sizes = new Map<number, number>();
  let bytes = 0;
  const file = (n: number) => join(dir, `${n}.batch`);

  return {
    async open(): Promise<void> {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      for (const name of await readdir(dir)) {
        if (name.endsWith(".tmp")) await rm(join(dir, name), { force: true });
        const n = /^(\d+)\.batch$/.exec(name)?.[1];
        if (n === undefined) continue;
        const { size } = await stat(join(dir, name));
        sizes.set(Number(n), size);
        bytes += size;
      }
    },
    /**
     * Queues a batch capture just made. `durable` false for a resync's or verification's batches:
     * a sender that crashes mid-sync starts the sync again, so they need not survive it.
     */
    async put(batch: Batch, durable = true): Promise<number> {
      const encoded = encodeBatch(batch, false);
      const path = file(batch.batch);
      await writeFile(`${path}.tmp`, encoded, { mode: 0o600 });
      if (durable) await fsyncPath(`${path}.tmp`);
      await rename(`${path}.tmp`, path);
      sizes.set(batch.batch, encoded.length);
      bytes += encoded.length;
      return encoded.length;
    },
    /** The encoded batch, or null when it is no longer queued. */
    async get(n: number): Promise<Buffer | null> {
      if (!sizes.has(n)) return null;
      return readFile(file(n)).catch(() => null);
    },
    has: (n: number) => sizes.has(n),
    /** Batch numbers queued, ascending. */
    numbers: () => [...sizes.keys()].sort((a, b) => a - b),
    /** Drops every batch up to `n`: acknowledged, or superseded by a resync. */
    async dropThrough(n: number): Promise<void> {
      for (const [k, size] of [...sizes]) {
        if (k > n) continue;
        await rm(file(k), { force: true });
        sizes.delete(k);
        bytes -= size;
      }
    },
    stats: () => ({ batches: sizes.size, bytes }),
  };
}

export type BatchQueue = ReturnType<typeof createBatchQueue>;
