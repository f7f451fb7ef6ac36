import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fsyncPath } from "./durable.ts";

/** A sync's batches held in memory at most: about four times the sender's window of 4 MiB batches. */
export const QUEUE_MEMORY_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Captured batches waiting for the standby's acknowledgement, on disk: a slow or absent standby
 * costs disk, never memory, and an agent restart resends them. One file per batch, written under
 * a temporary name, fsynced and renamed, so a crash never leaves half a batch to send.
 *
 * A resync's or verification's batches need not survive a crash (the sync starts over), so they
 * stay in memory up to QUEUE_MEMORY_MAX_BYTES while a sender drains the queue: the scan waits for
 * room rather than write every byte to disk and read it back. With no sender they go to disk.
 */
export function createBatchQueue(dir: string) {
  const sizes = new Map<number, number>();
  let bytes = 0;
  const file = (n: number) => join(dir, `${n}.batch`);
  const inMemory = new Map<number, Buffer>();
  let memoryBytes = 0;
  let senders = 0;
  let waiting: (() => void)[] = [];
  const wake = () => {
    const woken = waiting;
    waiting = [];
    for (const resume of woken) resume();
  };
  const add = (n: number, size: number) => {
    sizes.set(n, size);
    bytes += size;
  };

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
     * Queues batch `n`, which capture just made and encoded (it reports the size first). `durable`
     * false for a resync's or verification's batches: a sender that crashes mid-sync starts the sync
     * again, so they need not survive it.
     */
    async put(n: number, encoded: Buffer, durable = true): Promise<number> {
      if (!durable) {
        while (senders > 0 && memoryBytes > 0 && memoryBytes + encoded.length > QUEUE_MEMORY_MAX_BYTES) await new Promise<void>((resume) => waiting.push(resume));
        if (senders > 0 || memoryBytes + encoded.length <= QUEUE_MEMORY_MAX_BYTES) {
          inMemory.set(n, encoded);
          memoryBytes += encoded.length;
          add(n, encoded.length);
          return encoded.length;
        }
      }
      const path = file(n);
      await writeFile(`${path}.tmp`, encoded, { mode: 0o600 });
      if (durable) await fsyncPath(`${path}.tmp`);
      await rename(`${path}.tmp`, path);
      add(n, encoded.length);
      return encoded.length;
    },
    /**
     * A sender drains the queue from now until `done` is called: while one does, a sync's batches
     * wait in memory for room; once none does, waiting batches go to disk.
     */
    sending(): () => void {
      senders++;
      let done = false;
      return () => {
        if (done) return;
        done = true;
        senders--;
        wake();
      };
    },
    /** The encoded batch, or null when it is no longer queued. */
    async get(n: number): Promise<Buffer | null> {
      if (!sizes.has(n)) return null;
      return inMemory.get(n) ?? readFile(file(n)).catch(() => null);
    },
    has: (n: number) => sizes.has(n),
    /** Batch numbers queued, ascending. */
    numbers: () => [...sizes.keys()].sort((a, b) => a - b),
    /** Drops every batch up to `n`: acknowledged, or superseded by a resync. */
    async dropThrough(n: number): Promise<void> {
      // Forgotten at once, files removed after: calls may overlap, and each batch counts once.
      const onDisk: number[] = [];
      for (const [k, size] of [...sizes]) {
        if (k > n) continue;
        const held = inMemory.get(k);
        if (held) {
          inMemory.delete(k);
          memoryBytes -= held.length;
        } else onDisk.push(k);
        sizes.delete(k);
        bytes -= size;
      }
      wake();
      for (const k of onDisk) await rm(file(k), { force: true });
    },
    stats: () => ({ batches: sizes.size, bytes }),
  };
}

export type BatchQueue = ReturnType<typeof createBatchQueue>;
