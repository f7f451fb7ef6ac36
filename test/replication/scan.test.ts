import { chmod, lstat, mkdir, mkdtemp, open, readFile, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApplier } from "../../src/replication/apply.ts";
import { BATCH_MAX_BYTES, encodeBatch, inMirror, makeBatch } from "../../src/replication/batch.ts";
import { adoptManifest, BLOCK_BYTES, loadIndex, RACY_MS, readManifest, saveIndex, scanChanges, type ChangeIndex } from "../../src/replication/scan.ts";
import { tree } from "./trees.ts";

const G = "0000000000000001";
/**
 * A scan time at which the files written so far are past the racy window, not at its edge: an
 * mtime carries a fraction of a millisecond that Date.now() drops, so a file written in the same
 * millisecond as `Date.now() + RACY_MS` counts as racy and is read again (seen twice).
 */
const settled = () => Date.now() + 2 * RACY_MS;
let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "duet-scan-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});


/** The active side: scan, ship each batch through the standby's applier, keep the index. */
async function mirror(name: string) {
  const source = join(base, `${name}-src`);
  const target = join(base, `${name}-dst`);
  await mkdir(source);
  await mkdir(target);
  const applier = createApplier({ job: "web", node: "b", roots: [target], stateDir: join(base, `${name}-state`) });
  await applier.open();
  let index: ChangeIndex = new Map();
  let seq = 0;
  return {
    source,
    target,
    /** `now` is when the scan runs: files modified within RACY_MS of it are read again next time. */
    async sync(now = Date.now()) {
      const result = await scanChanges(source, index, { now });
      for (const b of result.batches) await applier.apply(makeBatch("web", G, ++seq, inMirror(b.ops, 0), b.data));
      index = result.index;
      return result;
    },
    index: () => index,
    setIndex: (i: ChangeIndex) => (index = i),
  };
}

describe("finding changes by block checksums", () => {
  it("creates, writes, truncates, renames, deletes, mkdir/rmdir, modes and symlinks all reach the replica", async () => {
    const m = await mirror("all");
    const src = m.source;
    await mkdir(join(src, "docs/deep"), { recursive: true });
    await writeFile(join(src, "docs/a.txt"), "first version");
    await writeFile(join(src, "docs/deep/b.bin"), Buffer.alloc(200_000, 3));
    await symlink("docs/a.txt", join(src, "latest"));
    await m.sync();
    expect(await tree(m.target)).toEqual(await tree(src));

    await writeFile(join(src, "docs/a.txt"), "second");
    await chmod(join(src, "docs/a.txt"), 0o600);
    await rename(join(src, "docs/deep/b.bin"), join(src, "docs/b-renamed.bin"));
    await rm(join(src, "docs/deep"), { recursive: true });
    await rm(join(src, "latest"));
    await symlink("docs/b-renamed.bin", join(src, "latest"));
    await mkdir(join(src, "new-dir"), { mode: 0o700 });
    const handle = await open(join(src, "docs/b-renamed.bin"), "r+");
    await handle.truncate(100_000);
    await handle.close();
    const result = await m.sync();
    expect(await tree(m.target)).toEqual(await tree(src));
    expect(result.batches.flatMap((b) => b.ops.map((o) => o.op))).toEqual(expect.arrayContaining(["remove", "write", "chmod", "symlink", "mkdir"]));
  });

  it("a rename of an unchanged file ships a rename, not its bytes", async () => {
    const m = await mirror("rename");
    await writeFile(join(m.source, "big"), Buffer.alloc(5 * BLOCK_BYTES, 9));
    await m.sync(settled());
    await rename(join(m.source, "big"), join(m.source, "big-renamed"));
    const result = await m.sync(settled());
    expect(result.batches.flatMap((b) => b.ops)).toEqual([{ op: "rename", path: "big", to: "big-renamed" }]);
    expect(result.bytesRead).toBe(0);
    expect(await tree(m.target)).toEqual(await tree(m.source));
  });

  it("a 4 KiB change in a 64 MiB file ships the 4 KiB pieces it touches, not their 64 KiB blocks, also after the index is saved and loaded", async () => {
    const m = await mirror("block");
    await writeFile(join(m.source, "data.img"), Buffer.alloc(64 * 1024 * 1024, 1));
    await m.sync();
    const change = async (at: number, fill: number) => {
      const handle = await open(join(m.source, "data.img"), "r+");
      await handle.write(Buffer.alloc(4096, fill), 0, 4096, at);
      await handle.close();
      const result = await m.sync();
      expect((await readFile(join(m.target, "data.img"))).equals(await readFile(join(m.source, "data.img")))).toBe(true);
      return result.batches.reduce((sum, b) => sum + b.data.length, 0);
    };
    expect(await change(10 * 1024 * 1024 + 100, 2)).toBe(2 * 4096); // unaligned: two pieces
    const file = join(base, "block-index");
    await saveIndex(file, m.index());
    m.setIndex(await loadIndex(file));
    expect(await change(20 * 1024 * 1024, 3)).toBe(4096);
    expect(await change(30 * 1024 * 1024 - 4096, 4)).toBeLessThan(BLOCK_BYTES); // the last piece of a block
  });

  it("after a restart, unchanged files are not read again; changes made while stopped are found", async () => {
    const m = await mirror("restart");
    await writeFile(join(m.source, "a"), Buffer.alloc(300_000, 1));
    await writeFile(join(m.source, "b"), Buffer.alloc(300_000, 2));
    await m.sync(settled());
    const file = join(base, "restart-index");
    await saveIndex(file, m.index());
    // "agent down": b changes; then the agent starts with the saved index
    await writeFile(join(m.source, "b"), Buffer.alloc(300_000, 3));
    m.setIndex(await loadIndex(file));
    const result = await m.sync(settled());
    expect(result.bytesRead).toBe(300_000);
    expect(await tree(m.target)).toEqual(await tree(m.source));
  });

  it("a same-size rewrite within the file system's time granularity is still found (racy mtime)", async () => {
    const m = await mirror("racy");
    const path = join(m.source, "counter");
    await writeFile(path, "0001");
    const { mtime } = await lstat(path);
    await m.sync();
    await writeFile(path, "0002");
    await utimes(path, mtime, mtime); // same size, same mtime: only the racy rule finds it
    await m.sync();
    expect(await readFile(join(m.target, "counter"), "utf8")).toBe("0002");
  });

  it("a scan limited to reported paths ships their changes and leaves other paths alone", async () => {
    const m = await mirror("scoped");
    await mkdir(join(m.source, "d"));
    await writeFile(join(m.source, "d/a"), "a1");
    await writeFile(join(m.source, "b"), "b1");
    await m.sync();
    await writeFile(join(m.source, "d/a"), "a2-longer");
    await writeFile(join(m.source, "b"), "b2-longer");
    await mkdir(join(m.source, "new/deep"), { recursive: true });
    await writeFile(join(m.source, "new/deep/c"), "c");
    const scoped = await scanChanges(m.source, m.index(), { only: ["d/a", "new/deep/c"] });
    expect(scoped.batches.flatMap((b) => b.ops.map((op) => `${op.op} ${op.path}`))).toEqual(["mkdir new", "mkdir new/deep", "write new/deep/c", "chmod new/deep/c", "write d/a"].sort((x, y) => (x.split(" ")[1]! < y.split(" ")[1]! ? -1 : 1)));
    expect(scoped.index.get("b")).toEqual(m.index().get("b"));
  });

  it("a file that became a directory (and back) is replaced on the replica", async () => {
    const m = await mirror("kind");
    await writeFile(join(m.source, "x"), "file");
    await m.sync();
    await rm(join(m.source, "x"));
    await mkdir(join(m.source, "x"));
    await writeFile(join(m.source, "x/inside"), "in");
    await m.sync();
    expect(await tree(m.target)).toEqual(await tree(m.source));
    await rm(join(m.source, "x"), { recursive: true });
    await symlink("elsewhere", join(m.source, "x"));
    await m.sync();
    expect(await tree(m.target)).toEqual(await tree(m.source));
  });

  it("a file renamed out of a directory that is then removed survives on the replica", async () => {
    const m = await mirror("rename-out");
    await mkdir(join(m.source, "old"));
    await writeFile(join(m.source, "old/keep"), Buffer.alloc(100_000, 5));
    await m.sync();
    await rename(join(m.source, "old/keep"), join(m.source, "kept"));
    await rm(join(m.source, "old"), { recursive: true });
    await m.sync(settled());
    expect(await tree(m.target)).toEqual(await tree(m.source));
  });

  it("a resync against the replica's manifest ships the differing 4 KiB pieces, not their 64 KiB blocks", async () => {
    const m = await mirror("fine");
    const content = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 255;
    await writeFile(join(m.source, "db.bin"), content);
    await m.sync();
    // the source changes while the replica is away; then the replica's manifest replaces the index
    const handle = await open(join(m.source, "db.bin"), "r+");
    for (const at of [4096 * 3, 4096 * 100, 4096 * 255]) await handle.write(Buffer.alloc(4096, 1), 0, 4096, at);
    await handle.close();
    m.setIndex(adoptManifest(m.index(), await readManifest(m.target, "all", { pieces: true }), "all"));
    const result = await m.sync();
    expect(result.batches.reduce((sum, b) => sum + b.data.length, 0)).toBe(3 * 4096);
    expect((await readFile(join(m.target, "db.bin"))).equals(await readFile(join(m.source, "db.bin")))).toBe(true);
  });

  it("a large change is split into batches of bounded size that still apply in order", async () => {
    const m = await mirror("split");
    await writeFile(join(m.source, "huge"), Buffer.alloc(40 * 1024 * 1024, 5));
    const result = await m.sync();
    expect(result.batches.length).toBeGreaterThan(2);
    for (const b of result.batches) expect(b.data.length).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect((await readFile(join(m.target, "huge"))).equals(await readFile(join(m.source, "huge")))).toBe(true);
  });

  it("a file that grows while it is read, past a batch's end, reaches the replica whole: a cut-off write never truncates what it wrote", async () => {
    const m = await mirror("grows");
    await writeFile(join(m.source, "a-first.bin"), Buffer.alloc(4 * 1024 * 1024, 1)); // fills the first batch
    await writeFile(join(m.source, "b-grows.bin"), Buffer.alloc(1024 * 1024, 2)); // 1 MiB when the walk looks
    const applier = createApplier({ job: "web", node: "b", roots: [m.target], stateDir: join(base, "grows-state-2") });
    await applier.open();
    let seq = 0;
    let grown = false;
    await scanChanges(m.source, new Map(), {
      now: Date.now(),
      onBatch: async (b) => {
        if (!grown) {
          // the application appends while capture is between the two files: 6 MiB by the time it is read
          await writeFile(join(m.source, "b-grows.bin"), Buffer.concat([Buffer.alloc(1024 * 1024, 2), Buffer.alloc(5 * 1024 * 1024, 3)]));
          grown = true;
        }
        await applier.apply(makeBatch("web", G, ++seq, inMirror(b.ops, 0), b.data));
      },
    });
    expect(seq).toBeGreaterThanOrEqual(3);
    expect((await readFile(join(m.target, "b-grows.bin"))).equals(await readFile(join(m.source, "b-grows.bin")))).toBe(true);
  });

  it("many small files with long names are cut into batches whose header fits a frame, and new files' bytes are read in place", async () => {
    const m = await mirror("many");
    // 2,400 files at paths of ~3,800 bytes: their ops alone (~18 MiB) would overflow one frame
    const deep = join(m.source, ...Array.from({ length: 15 }, (_, i) => `${i}`.padEnd(240, "d")));
    await mkdir(deep, { recursive: true });
    for (let i = 0; i < 2400; i += 400) await Promise.all(Array.from({ length: 400 }, (_, j) => writeFile(join(deep, `${i + j}`.padEnd(100, "f")), `file ${i + j}`)));
    await writeFile(join(m.source, "big"), Buffer.alloc(6 * 1024 * 1024 + 7, 9)); // crosses a batch's data while read into it
    const result = await m.sync();
    expect(result.batches.length).toBeGreaterThanOrEqual(2);
    for (const b of result.batches) expect(encodeBatch(makeBatch("web", G, 1, inMirror(b.ops, 0), b.data)).length).toBeLessThan(BATCH_MAX_BYTES);
    expect(await tree(m.target)).toEqual(await tree(m.source));
  }, 60_000);
});
