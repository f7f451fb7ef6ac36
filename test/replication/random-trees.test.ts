import { chmod, lstat, mkdir, mkdtemp, open, rename, rm, symlink, truncate, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApplier } from "../../src/replication/apply.ts";
import { inMirror, makeBatch } from "../../src/replication/batch.ts";
import { scanChanges, type ChangeIndex } from "../../src/replication/scan.ts";
import { captureRig } from "./capture-rig.ts";
import { tree } from "./trees.ts";

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "duet-random-trees-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

// Names that are sometimes files and sometimes directories (d, d/e), so kinds change under one path.
const names = ["a", "b", "d", "d/a", "d/e", "d/e/f", "e"] as const;
const name = fc.constantFrom(...names);
const op = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), path: name, at: fc.nat(200_000), size: fc.nat(140_000), seed: fc.nat(255) }),
  fc.record({ kind: fc.constant("append" as const), path: name, size: fc.nat(70_000), seed: fc.nat(255) }),
  fc.record({ kind: fc.constant("truncate" as const), path: name, size: fc.nat(150_000) }),
  fc.record({ kind: fc.constant("rename" as const), path: name, to: name }),
  fc.record({ kind: fc.constant("mkdir" as const), path: name }),
  fc.record({ kind: fc.constant("remove" as const), path: name }),
  fc.record({ kind: fc.constant("chmod" as const), path: name, mode: fc.constantFrom(0o644, 0o600, 0o755, 0o640) }),
  fc.record({ kind: fc.constant("symlink" as const), path: name, target: fc.constantFrom("a", "d", "d/e", "missing") }),
  fc.record({ kind: fc.constant("delete-open" as const), path: name, size: fc.nat(10_000) }),
  fc.record({ kind: fc.constant("sync" as const) }),
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

/** Applies one operation to the source tree; operations that make no sense there (ENOENT, ENOTDIR, ...) are skipped. */
async function perform(root: string, o: Op): Promise<void> {
  if (o.kind === "sync") return;
  const path = join(root, o.path);
  const parent = async () => mkdir(join(path, ".."), { recursive: true });
  try {
    switch (o.kind) {
      case "write": {
        await parent();
        const handle = await open(path, "a+").catch(() => open(path, "w"));
        await handle.write(Buffer.alloc(o.size, o.seed), 0, o.size, o.at);
        await handle.close();
        break;
      }
      case "append":
        await parent();
        await writeFile(path, Buffer.alloc(o.size, o.seed), { flag: "a" });
        break;
      case "truncate":
        await truncate(path, o.size);
        break;
      case "rename":
        await mkdir(join(root, o.to, ".."), { recursive: true });
        await rename(path, join(root, o.to)); // over an existing file or empty directory, too
        break;
      case "mkdir":
        await mkdir(path, { recursive: true });
        break;
      case "remove":
        await rm(path, { recursive: true });
        break;
      case "chmod":
        if ((await lstat(path)).isSymbolicLink()) return;
        await chmod(path, (await lstat(path)).isDirectory() ? 0o755 : o.mode);
        break;
      case "symlink":
        await parent();
        await symlink(o.target, path);
        break;
      case "delete-open": {
        // written, unlinked while still open, written again through the handle, then closed
        await parent();
        const handle = await open(path, "w");
        await handle.write(Buffer.alloc(o.size, 7));
        await unlink(path);
        await handle.write(Buffer.alloc(o.size, 8));
        await handle.close();
        break;
      }
    }
  } catch {
    // not applicable in this tree state
  }
}

describe("a mirrored tree under random operations", () => {
  it("after every sync the replica equals the source: contents, sizes, modes, symlinks, empty directories", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        run += 1;
        const source = join(base, `src-${run}`);
        const replica = join(base, `dst-${run}`);
        await mkdir(source);
        await mkdir(replica);
        const applier = createApplier({ job: "web", node: "b", roots: [replica], stateDir: join(base, `state-${run}`) });
        await applier.open();
        let index: ChangeIndex = new Map();
        let seq = 0;
        const sync = async () => {
          const result = await scanChanges(source, index, { now: Date.now() });
          for (const b of result.batches) await applier.apply(makeBatch("web", "0000000000000001", ++seq, inMirror(b.ops, 0), b.data));
          index = result.index;
          expect(await tree(replica)).toEqual(await tree(source));
        };
        for (const o of ops) {
          await perform(source, o);
          if (o.kind === "sync") await sync();
        }
        await sync();
        await rm(join(base, `src-${run}`), { recursive: true, force: true });
        await rm(join(base, `dst-${run}`), { recursive: true, force: true });
      }),
      {
        numRuns: 100,
        // Found by a run: a directory moved over a removed symlink, with a link inside it (the
        // replica once refused the batch: "e is a symlink; a parent must be a real directory").
        examples: [
          [
            [
              { kind: "symlink", path: "e", target: "a" },
              { kind: "sync" },
              { kind: "symlink", path: "d/a", target: "a" },
              { kind: "remove", path: "e" },
              { kind: "rename", path: "d", to: "e" },
              { kind: "symlink", path: "a", target: "a" },
            ],
          ],
        ],
      },
    );
  }, 120_000);

  it("with capture watching and scanning while the operations happen, the replica equals the source once it settles", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        run += 1;
        const dir = join(base, `live-${run}`);
        const { root: source, capture, errors, drain, replica } = await captureRig(dir);
        await capture.open();
        await capture.start();
        try {
          // "sync" here only applies what capture queued so far: it keeps scanning on its own meanwhile.
          for (const o of ops) {
            await perform(source, o);
            if (o.kind === "sync") await drain();
          }
          await capture.flush();
          await drain();
          expect(await tree(replica)).toEqual(await tree(source));
          expect(errors).toEqual([]);
        } finally {
          await capture.stop();
          await rm(dir, { recursive: true, force: true });
        }
      }),
      {
        numRuns: 25,
        // Found by CI: a link removed between the walk's lstat and readlink (capture once failed
        // with "ENOENT: readlink"). The race is not certain to recur; the example keeps it tried.
        examples: [
          [
            [
              { kind: "remove", path: "a" },
              { kind: "symlink", path: "b", target: "a" },
              { kind: "rename", path: "d/e/f", to: "d/e/f" },
              { kind: "remove", path: "b" },
              { kind: "chmod", path: "e", mode: 0o644 },
              { kind: "write", path: "e", at: 26354, size: 6, seed: 66 },
              { kind: "remove", path: "e" },
              { kind: "append", path: "e", size: 49280, seed: 252 },
            ],
          ],
          // Found by a loaded run: a file that became a directory between the scan's lstat and its
          // read (capture failed with "EISDIR: illegal operation on a directory, read").
          [
            [
              { kind: "mkdir", path: "a" },
              { kind: "write", path: "d", at: 51971, size: 5, seed: 252 },
              { kind: "delete-open", path: "b", size: 180 },
              { kind: "delete-open", path: "d", size: 7861 },
              { kind: "sync" },
              { kind: "append", path: "d/e/f", size: 44090, seed: 252 },
              { kind: "chmod", path: "e", mode: 0o644 },
              { kind: "mkdir", path: "e" },
              { kind: "mkdir", path: "d/a" },
              { kind: "remove", path: "d/e" },
              { kind: "append", path: "d/a", size: 16, seed: 252 },
              { kind: "write", path: "a", at: 8, size: 7463, seed: 211 },
            ],
          ],
        ],
      },
    );
  }, 120_000);
});
