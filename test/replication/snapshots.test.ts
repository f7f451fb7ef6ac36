import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { createApplier } from "../../src/replication/apply.ts";
import { blocksChecksum, inMirror, makeBatch, type BatchOp } from "../../src/replication/batch.ts";
import { createSnapshots, SnapshotError } from "../../src/replication/snapshot.ts";
import { tree } from "./trees.ts";

const G = "00000000000000aa";
let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "duet-snapshots-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const write = (path: string, size: number, at: number, bytes: Buffer): { op: BatchOp; data: Buffer } => ({ op: { op: "write", path, blocks: [[at, bytes.length]], size, sha256: blocksChecksum(bytes) }, data: bytes });
const batch = (n: number, items: ({ op: BatchOp; data: Buffer } | BatchOp)[]) =>
  makeBatch("web", G, n, inMirror(items.map((i) => ("data" in i ? i.op : i)), 0), Buffer.concat(items.map((i) => ("data" in i ? i.data : Buffer.alloc(0)))));

async function replica(name: string, keep?: number) {
  const root = join(base, name, "data");
  await mkdir(root, { recursive: true });
  const events: DuetEvent[] = [];
  const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir: join(base, name, "state") });
  await applier.open();
  const snapshots = createSnapshots({ job: "web", node: "b", roots: [root], dir: `${root}.duet-snapshots`, keep, report: (e) => void events.push(...e) });
  return { root, applier, snapshots, events };
}

describe("snapshots of a replica", () => {
  it("a snapshot never changes when later batches write in place, truncate, chmod, rename over and remove its files", async () => {
    const r = await replica("unchanged");
    await r.applier.apply(batch(1, [{ op: "mkdir", path: "docs", mode: 0o755 }, write("docs/a.txt", 11, 0, Buffer.from("hello world")), write("b.bin", 8, 0, Buffer.from("12345678")), { op: "chmod", path: "b.bin", mode: 0o640 }]));
    await symlink("docs/a.txt", join(r.root, "link"));
    const before = await tree(r.root);
    const snap = await r.snapshots.take("operator", { generation: G, batch: 1 });
    const inSnapshot = join(r.snapshots.dir, snap.name, "0");
    expect(await tree(inSnapshot)).toEqual(before);
    // taking it copied no data: the files are the replica's own inodes
    expect((await lstat(join(inSnapshot, "b.bin"))).ino).toBe((await lstat(join(r.root, "b.bin"))).ino);
    expect(snap).toMatchObject({ files: 2, bytes: 19, generation: G, batch: 1, reason: "operator" });

    await r.applier.apply(batch(2, [write("docs/a.txt", 11, 0, Buffer.from("HELLO")), { op: "truncate", path: "b.bin", size: 2 }, { op: "chmod", path: "docs/a.txt", mode: 0o600 }]));
    await r.applier.apply(batch(3, [write("new.txt", 3, 0, Buffer.from("new")), { op: "rename", path: "new.txt", to: "b.bin" }, { op: "remove", path: "docs" }]));
    expect(await tree(r.root)).not.toEqual(before);
    expect(await tree(inSnapshot)).toEqual(before);
    expect(r.events.map((e) => e.type)).toEqual(["SnapshotTaken"]);
  });

  it("keeps at most the configured number, pruning the oldest and journaling it", async () => {
    const r = await replica("prune", 3);
    await r.applier.apply(batch(1, [write("x", 1, 0, Buffer.from("x"))]));
    const taken = [];
    for (let i = 0; i < 5; i++) taken.push((await r.snapshots.take("schedule", { generation: G, batch: 1 })).name);
    expect(new Set(taken).size).toBe(5); // unique names even within one millisecond
    expect((await r.snapshots.list()).map((s) => s.name)).toEqual(taken.slice(2));
    expect(r.events.filter((e) => e.type === "SnapshotPruned").map((e) => (e.data as { snapshot: string }).snapshot)).toEqual(taken.slice(0, 2));
  });

  it("restores in place and to another directory as copies: the snapshot stays as it was", async () => {
    const r = await replica("restore");
    await r.applier.apply(batch(1, [{ op: "mkdir", path: "d", mode: 0o750 }, write("d/f", 4, 0, Buffer.from("v1v1")), { op: "symlink", path: "l", target: "d/f" }]));
    const snap = await r.snapshots.take("operator", { generation: G, batch: 1 });
    const expected = await tree(r.root);
    await r.applier.apply(batch(2, [write("d/f", 4, 0, Buffer.from("v2v2")), write("extra", 1, 0, Buffer.from("e")), { op: "remove", path: "l" }]));

    const elsewhere = join(base, "restore-elsewhere");
    await r.snapshots.restore(snap.name, { to: elsewhere, by: "alice" });
    expect(await tree(join(elsewhere, "0"))).toEqual(expected);

    await r.snapshots.restore(snap.name, { by: "alice" });
    expect(await tree(r.root)).toEqual(expected);
    await writeFile(join(r.root, "d/f"), "changed after the restore");
    expect(await tree(join(r.snapshots.dir, snap.name, "0"))).toEqual(expected);
    expect(r.events.filter((e) => e.type === "SnapshotRestored").map((e) => e.data)).toEqual([
      { job: "web", node: "b", snapshot: snap.name, target: "elsewhere", directory: elsewhere, by: "alice" },
      { job: "web", node: "b", snapshot: snap.name, target: "in-place", by: "alice" },
    ]);
  });

  it("refuses an unknown snapshot and a restore into a directory that holds something", async () => {
    const r = await replica("refuse");
    await r.applier.apply(batch(1, [write("x", 1, 0, Buffer.from("x"))]));
    const snap = await r.snapshots.take("operator", { generation: G, batch: 1 });
    await expect(r.snapshots.restore("2020-01-01T00-00-00.000Z", { by: "alice" })).rejects.toThrow(/snapshot "2020-01-01T00-00-00.000Z" of web not found on b/);
    const busy = join(base, "refuse-busy");
    await mkdir(busy);
    await writeFile(join(busy, "keep-me"), "x");
    await expect(r.snapshots.restore(snap.name, { to: busy, by: "alice" })).rejects.toBeInstanceOf(SnapshotError);
    expect(await readFile(join(busy, "keep-me"), "utf8")).toBe("x");
  });
});
