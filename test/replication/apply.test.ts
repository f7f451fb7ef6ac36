import { execFileSync, fork } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { batchChecksum, blocksChecksum, decodeBatch, encodeBatch, inMirror, makeBatch, type BatchOp } from "../../src/replication/batch.ts";
import { createApplier, RefusedBatchError } from "../../src/replication/apply.ts";
import { tree } from "./trees.ts";

const G = "0000000000000001";
let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "duet-apply-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A write op with its bytes: blocks at offsets, as capture would ship them. */
function write(path: string, size: number, blocks: [number, Buffer][]): { op: BatchOp; data: Buffer } {
  const data = Buffer.concat(blocks.map(([, b]) => b));
  return { op: { op: "write", path, blocks: blocks.map(([at, b]) => [at, b.length]), size, sha256: blocksChecksum(data) }, data };
}
function batchOf(n: number, items: ({ op: BatchOp; data: Buffer } | BatchOp)[]) {
  const ops = items.map((i) => ("op" in i && typeof i.op === "object" ? i.op : (i as BatchOp)));
  const data = Buffer.concat(items.map((i) => ("data" in i && Buffer.isBuffer(i.data) ? i.data : Buffer.alloc(0))));
  return makeBatch("web", G, n, inMirror(ops, 0), data);
}
const script = (n: number) => [
  batchOf(n, [{ op: "mkdir", path: "docs", mode: 0o750 }, write("docs/a.txt", 11, [[0, Buffer.from("hello world")]])]),
  batchOf(n + 1, [write("docs/a.txt", 11, [[6, Buffer.from("there")]]), { op: "symlink", path: "docs/latest", target: "a.txt" }, { op: "chmod", path: "docs/a.txt", mode: 0o600 }]),
  batchOf(n + 2, [{ op: "rename", path: "docs/a.txt", to: "archive/a.txt" }, { op: "truncate", path: "archive/a.txt", size: 5 }, write("big.bin", 1 << 20, [[65536, Buffer.alloc(4096, 7)]])]),
  batchOf(n + 3, [{ op: "remove", path: "docs/latest" }, { op: "mkdir", path: "empty", mode: 0o755 }, { op: "remove", path: "empty" }]),
];

describe("applying write batches on the standby", () => {
  it("a scripted sequence builds the expected tree; a batch applied twice changes nothing", async () => {
    const root = join(base, "seq");
    await mkdir(root);
    const events: DuetEvent[] = [];
    const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir: join(base, "seq-state"), report: (e) => void events.push(...e) });
    await applier.open();
    const batches = script(1);
    for (const b of batches) expect((await applier.apply(encodeBatch(b))).applied).toBe(true);
    const expected = await tree(root);
    expect(expected).toEqual([`archive/ 755`, expect.stringMatching(/^archive\/a.txt 600 5 /), expect.stringMatching(/^big.bin 644 /), `docs/ 750`]);
    expect((await readFile(join(root, "big.bin"))).length).toBe(1 << 20);
    expect(await applier.apply(encodeBatch(batches[1]!))).toEqual({ applied: false });
    expect(await tree(root)).toEqual(expected);
    expect(events.map((e) => e.type)).toEqual(["BatchApplied", "BatchApplied", "BatchApplied", "BatchApplied"]);
  });

  it("a sync's batches are applied unstaged and recorded only when flushed; a realtime batch after them flushes first", async () => {
    const root = join(base, "sync");
    await mkdir(root);
    const stateDir = join(base, "sync-state");
    const events: DuetEvent[] = [];
    const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir, report: (e) => void events.push(...e) });
    await applier.open();
    await applier.reset(10);
    const [first, second, third] = script(11);
    for (const b of [first!, second!]) expect((await applier.apply(encodeBatch(b), { durable: false })).applied).toBe(true);
    expect(await readdir(join(stateDir, "staged"))).toEqual([]); // nothing staged
    expect(applier.lastApplied()).toBe(12);
    expect((await readFile(join(stateDir, "applied"), "utf8")).trim()).toBe("10"); // not yet durable: a restart syncs again
    expect((await applier.apply(encodeBatch(third!))).applied).toBe(true); // realtime: the sync's bytes are flushed and recorded first
    expect((await readFile(join(stateDir, "applied"), "utf8")).trim()).toBe("13");
    expect(events.map((e) => (e.data as { batch: number }).batch)).toEqual([11, 12, 13]);
    // the order is still enforced for unstaged batches
    await expect(applier.apply(encodeBatch(script(15)[0]!), { durable: false })).rejects.toThrow(/14 is missing/);
  });

  it("a batch in the format an older agent queued or staged (one msgpack array) still decodes", async () => {
    // Format 2 summed each 64 KiB block's bytes for a write's checksum.
    const data = Buffer.from("older");
    const ops: BatchOp[] = [{ op: "write", path: "0/old.txt", blocks: [[0, 5]], size: 5, sha256: blocksChecksum(data, true) }];
    const legacy = new Packr({ useRecords: false, moreTypes: false }).pack([2, "web", G, 1, ops, data, batchChecksum(ops, data)]);
    expect(decodeBatch(legacy)).toMatchObject({ batch: 1, ops, legacy: true });
    const root = join(base, "legacy");
    await mkdir(root);
    const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir: join(base, "legacy-state") });
    await applier.open();
    expect(await applier.apply(legacy)).toEqual({ applied: true });
    expect(await readFile(join(root, "old.txt"), "utf8")).toBe("older");
    expect(() => decodeBatch(Buffer.from([0xd7, 0, 0, 0, 99]))).toThrow(/not a duet write batch/);
  });

  it("refuses a batch that escapes the root, and writes nothing of it", async () => {
    const root = join(base, "escape");
    await mkdir(join(base, "escape-outside"), { recursive: true });
    await mkdir(root);
    const events: DuetEvent[] = [];
    const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir: join(base, "escape-state"), report: (e) => void events.push(...e) });
    await applier.open();
    const bad = [
      batchOf(1, [write("ok.txt", 2, [[0, Buffer.from("ok")]]), write("../escape-outside/pwned", 1, [[0, Buffer.from("x")]])]),
      batchOf(1, [{ op: "symlink", path: "link", target: "../../etc" }]),
      batchOf(1, [{ op: "rename", path: "ok.txt", to: "/tmp/x" }]),
      batchOf(1, [{ op: "symlink", path: "abs", target: "/etc/passwd" }]),
      // Paths must name one of the job's mirrors by index.
      makeBatch("web", G, 1, [{ op: "mkdir", path: "unprefixed", mode: 0o755 }], Buffer.alloc(0)),
      makeBatch("web", G, 1, [{ op: "mkdir", path: "7/no-such-mirror", mode: 0o755 }], Buffer.alloc(0)),
      makeBatch("web", G, 1, [{ op: "mkdir", path: "0/../escape-outside/x", mode: 0o755 }], Buffer.alloc(0)),
      makeBatch("web", G, 1, [{ op: "mkdir", path: "0", mode: 0o755 }], Buffer.alloc(0)),
    ];
    for (const b of bad) await expect(applier.apply(b)).rejects.toBeInstanceOf(RefusedBatchError);
    expect(await readdir(root)).toEqual([]);
    expect(await readdir(join(base, "escape-outside"))).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(bad.map(() => "OpRefused"));
    expect(applier.lastApplied()).toBe(0);
  });

  it("refuses corrupted bytes, a gap in the sequence, and blocks that do not match their checksum", async () => {
    const root = join(base, "corrupt");
    await mkdir(root);
    const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir: join(base, "corrupt-state") });
    await applier.open();
    const bytes = encodeBatch(script(1)[0]!);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 80] = flipped[flipped.length - 80]! ^ 1;
    await expect(applier.apply(flipped)).rejects.toThrow(/checksum mismatch|undecodable|wrong types/);
    await expect(applier.apply(script(2)[0]!)).rejects.toThrow(/batch 2 arrived after 0: .* 1 is missing/);
    const lying = write("0/x", 3, [[0, Buffer.from("abc")]]);
    const forged = makeBatch("web", G, 1, [{ ...(lying.op as Extract<BatchOp, { op: "write" }>), sha256: "0".repeat(64) }], lying.data);
    await expect(applier.apply(forged)).rejects.toThrow(/do not match their checksum/);
    expect(await readdir(root)).toEqual([]);
  });

  it("a crash at any moment of applying is repaired by opening again: the replica ends at a batch boundary", async () => {
    // A large write in the middle makes applying last long enough to be interrupted at many points.
    const large = Array.from({ length: 64 }, (_, i) => [i * 65536 * 2, Buffer.alloc(65536, i)] as [number, Buffer]);
    const encoded = [...script(1), batchOf(5, [write("large.bin", 64 * 65536 * 2, large), { op: "rename", path: "large.bin", to: "archive/large.bin" }])].map((b) => encodeBatch(b));
    const batches: string[] = [];
    for (const [i, bytes] of encoded.entries()) {
      batches.push(join(base, `batch-${i}.bin`));
      await writeFile(batches[i]!, bytes);
    }
    const reference = join(base, "reference");
    await mkdir(reference);
    const ref = createApplier({ job: "web", node: "b", roots: [reference], stateDir: join(base, "reference-state") });
    await ref.open();
    for (const b of batches) await ref.apply(decodeBatch(await readFile(b)));
    const expected = await tree(reference);
    const child = join(base, "apply-child.mts");
    await writeFile(child, `
      import { readFile } from "node:fs/promises";
      import { createApplier } from ${JSON.stringify(join(import.meta.dirname, "../../src/replication/apply.ts"))};
      const [root, state, ...batches] = process.argv.slice(2);
      const a = createApplier({ job: "web", node: "b", roots: [root], stateDir: state });
      await a.open();
      process.send?.("ready");
      for (const b of batches) await a.apply(await readFile(b));
      process.send?.("done");
    `);
    for (let crash = 0; crash < 15; crash++) {
      const root = join(base, `crash-${crash}`);
      const state = join(base, `crash-${crash}-state`);
      await mkdir(root);
      const proc = fork(child, [root, state, ...batches], { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "ignore", "ipc"] });
      const exited = new Promise((r) => proc.once("exit", r));
      await new Promise((r) => proc.once("message", r));
      await new Promise((r) => setTimeout(r, crash * 6)); // a different moment of applying each time
      proc.kill("SIGKILL");
      await exited;
      const again = createApplier({ job: "web", node: "b", roots: [root], stateDir: state });
      await again.open();
      for (const b of batches) await again.apply(await readFile(b));
      expect(await tree(root), `crash ${crash}`).toEqual(expected);
    }
  }, 60_000);

  it("hostile batches write nothing, inside or outside the root: parents that are symlinks out, fifos, NUL bytes, long paths, stray bytes, garbage", async () => {
    const root = join(base, "hostile");
    const outside = join(base, "hostile-outside");
    await mkdir(root);
    await mkdir(outside);
    await symlink(outside, join(root, "escape")); // placed on the replica by someone else
    execFileSync("mkfifo", [join(root, "pipe")]);
    const before = await tree(root);
    const events: DuetEvent[] = [];
    const applier = createApplier({ job: "web", node: "b", roots: [root], stateDir: join(base, "hostile-state"), report: (e) => void events.push(...e) });
    await applier.open();
    const raw = (ops: BatchOp[], data = Buffer.alloc(0)) => makeBatch("web", G, 1, ops, data);
    const refused = [
      raw([write("0/escape/pwned", 1, [[0, Buffer.from("x")]]).op], Buffer.from("x")),
      raw([{ op: "mkdir", path: "0/escape/dir", mode: 0o755 }]),
      raw([{ op: "truncate", path: "0/pipe", size: 0 }]),
      raw([{ op: "mkdir", path: "0/nul\u0000byte", mode: 0o755 }]),
      raw([{ op: "mkdir", path: `0/${"x/".repeat(300)}deep`, mode: 0o755 }]),
      raw([{ op: "mkdir", path: "0/ok", mode: 0o755 }], Buffer.from("stray bytes that belong to no write")),
    ];
    for (const b of refused) await expect(applier.apply(b)).rejects.toBeInstanceOf(RefusedBatchError);
    const undecodable = [Buffer.from("not a batch at all"), encodeBatch(batchOf(1, [write("a", 5, [[0, Buffer.from("hello")]])])).subarray(0, 40)];
    for (const bytes of undecodable) await expect(applier.apply(bytes)).rejects.toThrow(/undecodable|not a duet write batch|wrong types/);
    expect(await tree(root)).toEqual(before);
    expect(await readdir(outside)).toEqual([]);
    expect(events.filter((e) => e.type === "OpRefused")).toHaveLength(refused.length + undecodable.length);
    expect(applier.lastApplied()).toBe(0);
  });
});
