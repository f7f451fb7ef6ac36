import { appendFile, mkdir, mkdtemp, open, rm, truncate, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { decodeBatch } from "../../src/replication/batch.ts";
import { loadIndex, readManifest } from "../../src/replication/scan.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { systemClock, type Timers } from "../../src/world/clock.ts";
import { captureRig } from "./capture-rig.ts";
import { tree } from "./trees.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("capture on a node that becomes the source without an index (switchover, takeover)", () => {
  it("starts from lstat alone, fills in the checksums while it runs, and ships a file changed before it was read whole", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    const { root, queue, capture, errors } = await captureRig(dir, { peerHasNothing: false });
    await mkdir(join(root, "sub"), { recursive: true });
    const past = new Date(Date.now() - 60_000); // not racy: the fill may take these as they are
    for (const [name, size] of [["a.bin", 300_000], ["sub/b.bin", 5_000], ["changed.bin", 70_000]] as const) {
      await writeFile(join(root, name), Buffer.alloc(size, name.length));
      await utimes(join(root, name), past, past);
    }
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

  it("stopped before its background fill begins, capture stops at once and leaves the index to the next start", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    const { root, capture } = await captureRig(dir, { peerHasNothing: false, fillDelayMs: 600_000 });
    await writeFile(join(root, "a.bin"), Buffer.alloc(100_000, 1));
    const past = new Date(Date.now() - 60_000);
    await utimes(join(root, "a.bin"), past, past); // not racy: no scan reads it either
    await capture.open();
    await capture.start();
    await capture.stop(); // a hang here (waiting out the delay) fails the test by its timeout
    expect((await loadIndex(join(dir, "capture", "index-0"))).get("a.bin")).toMatchObject({ blocks: [] });
  });

  it("a write the watcher reported just before a stop becomes a batch, though its coalesce window never ended", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    // Timers that fire only when the test says: the coalesce window stays open until the stop.
    const held: (() => void)[] = [];
    let scheduled: () => void = () => undefined;
    const timers: Timers = {
      after: (_ms, fn) => {
        let live = true;
        held.push(() => live && fn());
        scheduled();
        return { cancel: () => void (live = false) };
      },
      every: () => ({ cancel: () => undefined }),
    };
    const { root, queue, capture, errors } = await captureRig(dir, { timers });
    await capture.open();
    await capture.start();
    held.shift()!(); // the first full scan
    await capture.flush();
    const reported = new Promise<void>((resolve) => (scheduled = resolve));
    await writeFile(join(root, "last.txt"), "written 1 ms before the bring-out");
    await reported; // the watcher saw it and opened a coalesce window
    await capture.stop();

    const batches = await Promise.all(queue.numbers().map(async (n) => decodeBatch(Buffer.concat((await queue.get(n))!))));
    expect(batches.flatMap((b) => b.ops).map((op) => op.path)).toContain("0/last.txt");
    expect(errors).toEqual([]);
  });

  it("a root added to running capture is held, then released against the replica's copy: only what differs ships", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    const { queue, capture, errors } = await captureRig(dir);
    await capture.open();
    await capture.start();
    await capture.flush();
    const [extra, replicaCopy] = [join(dir, "extra"), join(dir, "replica-extra")];
    await mkdir(extra);
    await mkdir(replicaCopy);
    for (const root of [extra, replicaCopy]) await writeFile(join(root, "same.txt"), "on both");
    await writeFile(join(extra, "new.txt"), "only on the source");
    await writeFile(join(replicaCopy, "stale.txt"), "only on the replica");
    const ops = async () => (await Promise.all(queue.numbers().map(async (n) => decodeBatch(Buffer.concat((await queue.get(n))!))))).flatMap((b) => b.ops);

    expect(await capture.addRoots([extra])).toEqual([1]);
    await writeFile(join(extra, "held.txt"), "written while held");
    await capture.flush();
    expect(capture.held()).toEqual([1]);
    expect((await ops()).filter((op) => op.path.startsWith("1/"))).toEqual([]);

    const shipped = await capture.release(1, await readManifest(replicaCopy, "all", { pieces: true }));
    const released = (await ops()).filter((op) => op.path.startsWith("1/"));
    expect(released.filter((op) => op.op === "write").map((op) => op.path).sort()).toEqual(["1/held.txt", "1/new.txt"]);
    expect(released).toContainEqual({ op: "remove", path: "1/stale.txt" });
    expect(shipped.bytes).toBeGreaterThan(0);
    expect(capture.held()).toEqual([]);
    // Watched from now on, like the first root.
    await writeFile(join(extra, "after.txt"), "written once released");
    await capture.flush();
    expect((await ops()).map((op) => op.path)).toContain("1/after.txt");
    await capture.stop();
    expect(errors).toEqual([]);
  });

  it("files appended to, overwritten and cut while capture scans them reach the replica exactly", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    const { root, replica, capture, errors, drain } = await captureRig(dir);
    await capture.open();
    await capture.start();
    // A fixed pseudo-random run (no seed to chase): sizes around the 4 MiB a batch holds.
    let state = 7;
    const next = (max: number) => ((state = (state * 1103515245 + 12345) % 2 ** 31), state % max);
    const MiB = 1024 * 1024;
    const files = ["a.bin", "b.bin", "c.bin"].map((name) => join(root, name));
    for (let i = 0; i < 60; i++) {
      const file = files[next(files.length)]!;
      const fill = Buffer.alloc(1 + next(3 * MiB), 1 + next(250));
      switch (next(4)) {
        case 0:
          await appendFile(file, fill);
          break;
        case 1: {
          const handle = await open(file, "a+").then(async (h) => (await h.close(), open(file, "r+")));
          await handle.write(fill, 0, fill.length, next(6 * MiB));
          await handle.close();
          break;
        }
        case 2:
          await truncate(file, next(5 * MiB)).catch(() => undefined);
          break;
        default:
          await writeFile(file, fill);
      }
      if (i % 6 === 0) await drain();
    }
    await capture.flush();
    await drain();
    await capture.stop();
    expect(await tree(replica)).toEqual(await tree(root));
    expect(errors).toEqual([]);
  }, 60_000);

  it("a burst of 10,000 new files is captured in batches whose facts each fit a journal record, and all of them reach the replica", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-capture-"));
    dirs.push(dir);
    const journal = await openJournal({ dir: join(dir, "journal"), node: "a", clock: systemClock });
    const facts: number[] = [];
    const { root, replica, capture, errors, drain } = await captureRig(dir, {
      report: async (events) => {
        await journal.append(events);
        for (const e of events) if (e.type === "BatchCaptured") facts.push(e.data.ops.length);
      },
    });
    await capture.open();
    await capture.start();
    // Before: one batch of 10,000 ops, a fact of ~1.6 MB that the journal refused ("a record holds at most 65536").
    await mkdir(join(root, "burst"));
    for (let i = 0; i < 10_000; i += 500) await Promise.all(Array.from({ length: 500 }, (_, k) => writeFile(join(root, "burst", `order-${String(i + k).padStart(5, "0")}.json`), `{"order":${i + k}}`)));
    await capture.flush();
    await drain();
    await capture.stop();
    await journal.close();
    expect(errors).toEqual([]);
    expect(facts.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(10_001); // the files and their directory
    expect(facts.length).toBeGreaterThan(1);
    expect(await tree(replica)).toEqual(await tree(root));
  }, 60_000);
});
