import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { encodedLength, type EncodedBatch } from "./batch.ts";
import { returnBatchBuffer } from "./batch-buffers.ts";

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
  const inMemory = new Map<number, EncodedBatch>();
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
    async put(n: number, encoded: EncodedBatch, durable = true): Promise<number> {
      const length = encodedLength(encoded);
      if (!durable) {
        while (senders > 0 && memoryBytes > 0 && memoryBytes + length > QUEUE_MEMORY_MAX_BYTES) await new Promise<void>((resume) => waiting.push(resume));
        if (senders > 0 || memoryBytes + length <= QUEUE_MEMORY_MAX_BYTES) {
          inMemory.set(n, encoded);
          memoryBytes += length;
          add(n, length);
          return length;
        }
      }
      const path = file(n);
      const handle = await open(`${path}.tmp`, "w", 0o600);
      try {
        const { bytesWritten } = await handle.writev(encoded);
        if (bytesWritten !== length) throw new Error(`queue: wrote ${bytesWritten} of batch ${n}'s ${length} bytes to ${path}.tmp`);
        if (durable) await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(`${path}.tmp`, path);
      add(n, length);
      for (const part of encoded) returnBatchBuffer(part); // on disk now: read back from there
      return length;
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
    async get(n: number): Promise<EncodedBatch | null> {
      if (!sizes.has(n)) return null;
      return inMemory.get(n) ?? readFile(file(n)).then(
        (bytes) => [bytes],
        () => null,
      );
    },
    has: (n: number) => sizes.has(n),
    /** Batch numbers queued, ascending. */
    numbers: () => [...sizes.keys()].sort((a, b) => a - b),
    /**
     * Drops every batch up to `n`: acknowledged, or superseded by a resync. `acknowledged`: the
     * peer received every byte of them, so their buffers can serve the next batches.
     */
    async dropThrough(n: number, how: { acknowledged?: boolean } = {}): Promise<void> {
      // Forgotten at once, files removed after: calls may overlap, and each batch counts once.
      const onDisk: number[] = [];
      for (const [k, size] of [...sizes]) {
        if (k > n) continue;
        const held = inMemory.get(k);
        if (held) {
          inMemory.delete(k);
          memoryBytes -= encodedLength(held);
          if (how.acknowledged) for (const part of held) returnBatchBuffer(part);
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
