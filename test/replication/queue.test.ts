import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { encodeBatchParts, encodedLength, makeBatch } from "../../src/replication/batch.ts";
import { createBatchQueue, QUEUE_MEMORY_MAX_BYTES } from "../../src/replication/queue.ts";
import { takeBatchBuffer } from "../../src/replication/batch-buffers.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function queueDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "duet-queue-"));
  dirs.push(dir);
  return dir;
}
const encoded = (n: number, bytes: number) => encodeBatchParts(batch(n, bytes), false);
const batch = (n: number, bytes: number) => makeBatch("web", "1111111111111111", n, [{ op: "write", path: "0/f", blocks: [[0, bytes]], size: bytes, sha256: "x" }], Buffer.alloc(bytes, n));

describe("the batch queue", () => {
  it("realtime batches are files that survive a restart; a sync's batches live in memory and do not", async () => {
    const dir = await queueDir();
    const queue = createBatchQueue(dir);
    await queue.open();
    await queue.put(1, encoded(1, 1000));
    const stop = queue.sending();
    await queue.put(2, encoded(2, 1000), false);
    stop();
    expect(await readdir(dir)).toEqual(["1.batch"]);
    expect(queue.numbers()).toEqual([1, 2]);
    expect(encodedLength((await queue.get(2))!)).toBeGreaterThan(1000);
    expect(Buffer.concat((await queue.get(1))!)).toEqual(Buffer.concat(encoded(1, 1000))); // read back from its file whole
    const reopened = createBatchQueue(dir);
    await reopened.open();
    expect(reopened.numbers()).toEqual([1]);
  });

  it("overlapping drops count each batch once", async () => {
    const queue = createBatchQueue(await queueDir());
    await queue.open();
    for (let n = 1; n <= 6; n++) await queue.put(n, encoded(n, 1000), n % 2 === 0);
    await Promise.all([queue.dropThrough(3), queue.dropThrough(4), queue.dropThrough(4)]);
    expect(queue.numbers()).toEqual([5, 6]);
    const left = queue.stats();
    expect(left.batches).toBe(2);
    expect(left.bytes).toBe(encodedLength((await queue.get(5))!) + encodedLength((await queue.get(6))!));
  });

  it("while a sender drains it, a sync's batches wait for room in memory; with none, they go to disk", async () => {
    const dir = await queueDir();
    const queue = createBatchQueue(dir);
    await queue.open();
    const size = 4 * 1024 * 1024;
    const fit = Math.floor(QUEUE_MEMORY_MAX_BYTES / (size + 1024));
    const stop = queue.sending();
    for (let n = 1; n <= fit; n++) await queue.put(n, encoded(n, size), false);
    let put = false;
    const waiting = queue.put(fit + 1, encoded(fit + 1, size), false).then(() => (put = true));
    await new Promise((r) => setImmediate(r));
    expect(put).toBe(false); // full: the scan waits for the sender
    await queue.dropThrough(1);
    await waiting;
    expect(await readdir(dir)).toEqual([]);
    stop(); // the sender is gone: what does not fit goes to disk instead of waiting for ever
    await queue.put(fit + 2, encoded(fit + 2, size), false);
    expect(await readdir(dir)).toEqual([`${fit + 2}.batch`]);
  });

  it("a batch's data buffer serves the next batch once the peer acknowledged it or it went to disk, never when it was only superseded", async () => {
    const dir = await queueDir();
    const queue = createBatchQueue(dir);
    await queue.open();
    const pooled = (n: number) => {
      const data = takeBatchBuffer().subarray(0, 1000).fill(n);
      return encodeBatchParts(makeBatch("web", "1111111111111111", n, [{ op: "write", path: "0/f", blocks: [[0, 1000]], size: 1000, sha256: "x" }], data), false);
    };
    const stop = queue.sending();
    const superseded = pooled(1);
    await queue.put(1, superseded, false);
    await queue.dropThrough(1);
    expect(takeBatchBuffer().buffer).not.toBe(superseded[1]!.buffer); // may still sit in a socket's buffer
    const acknowledged = pooled(2);
    await queue.put(2, acknowledged, false);
    await queue.dropThrough(2, { acknowledged: true });
    expect(takeBatchBuffer().buffer).toBe(acknowledged[1]!.buffer);
    stop();
    const spilled = pooled(3);
    await queue.put(3, spilled, true);
    expect(takeBatchBuffer().buffer).toBe(spilled[1]!.buffer);
    expect(Buffer.concat((await queue.get(3))!).subarray(-1000)).toEqual(Buffer.alloc(1000, 3)); // read back from its file
  });
});
