import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { decodeBatch } from "../../src/replication/batch.ts";
import { createCapture } from "../../src/replication/capture.ts";
import { createBatchQueue } from "../../src/replication/queue.ts";
import { loadIndex, readManifest } from "../../src/replication/scan.ts";
import { systemTimers } from "../../src/world/clock.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("capture on a node that becomes the source without an index (switchover, takeover)", () => {
  it("starts from lstat alone, fills in the checksums while it runs, and ships a file changed before it was read whole", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    const root = join(dir, "data");
    await mkdir(join(root, "sub"), { recursive: true });
    const past = new Date(Date.now() - 60_000); // not racy: the fill may take these as they are
    for (const [name, size] of [["a.bin", 300_000], ["sub/b.bin", 5_000], ["changed.bin", 70_000]] as const) {
      await writeFile(join(root, name), Buffer.alloc(size, name.length));
      await utimes(join(root, name), past, past);
    }
    const queue = createBatchQueue(join(dir, "queue"));
    await queue.open();
    const errors: Error[] = [];
    const capture = createCapture({
      job: "web", node: "b", roots: [root], stateDir: join(dir, "capture"), queue, lastCaptured: 0,
      generation: async () => "0000000000000001", report: async () => undefined, onQueued: () => undefined,
      timers: systemTimers, now: () => Date.now(), onError: (error) => errors.push(error),
    });
    await capture.open();
    const opened = await loadIndex(join(dir, "capture", "index-0"));
    expect(opened.get("a.bin")).toMatchObject({ kind: "file", size: 300_000, blocks: [] }); // nothing read yet

    // the application writes before the fill reaches this file: capture ships it, whole
    await writeFile(join(root, "changed.bin"), Buffer.alloc(70_000, 42));
    await capture.start();
    await capture.indexed();
    await capture.flush();
    await capture.stop();

    const filled = await loadIndex(join(dir, "capture", "index-0"));
    const manifest = await readManifest(root, "all", { pieces: true });
    for (const path of ["a.bin", "sub/b.bin", "changed.bin"]) {
      const [entry, truth] = [filled.get(path), manifest.get(path)];
      expect(entry?.kind === "file" && truth?.kind === "file" && entry.blocks, path).toEqual(truth?.kind === "file" && truth.blocks);
      expect(entry?.kind === "file" && entry.pieces?.equals((truth as { pieces: Buffer }).pieces), path).toBe(true);
    }
    const shipped = (await Promise.all(queue.numbers().map(async (n) => decodeBatch(Buffer.concat((await queue.get(n))!))))).flatMap((b) => b.ops);
    expect(shipped.filter((op) => op.op === "write").map((op) => [op.path, op.op === "write" && op.blocks])).toEqual([["0/changed.bin", [[0, 70_000]]]]);
    expect(errors).toEqual([]);
  });
});
