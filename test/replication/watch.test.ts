import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { watchTree, type TreeWatchEvent } from "../../src/replication/watch.ts";

let root: string;
let close: (() => void) | null = null;
afterEach(async () => {
  close?.();
  close = null;
  await rm(root, { recursive: true, force: true });
});

/** Waits until every path in `wanted` has been reported (bounded). */
async function reported(events: TreeWatchEvent[], wanted: string[]): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!wanted.every((p) => events.some((e) => e.path === p))) {
    if (Date.now() > deadline) throw new Error(`not reported: ${wanted.filter((p) => !events.some((e) => e.path === p)).join(", ")}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("watching a mirrored tree", () => {
  it("reports writes, creates in directories made a moment ago, renames and removals, each with its kind", async () => {
    root = await mkdtemp(join(tmpdir(), "duet-watch-"));
    await mkdir(join(root, "old/deeper"), { recursive: true });
    const events: TreeWatchEvent[] = [];
    const lost: string[] = [];
    const watched = await watchTree(root, (e) => events.push(...e), (reason) => lost.push(reason));
    close = watched.close;
    expect(watched.directories()).toBe(3);

    await writeFile(join(root, "old/deeper/a.txt"), "1");
    await mkdir(join(root, "new"));
    await writeFile(join(root, "new/b.txt"), "2"); // at once: the scan of "new" finds it if the watch came late
    await reported(events, ["old/deeper/a.txt", "new"]);
    expect(events.find((e) => e.path === "new")?.structural).toBe(true);

    await writeFile(join(root, "new/c.txt"), "3"); // by now "new" is watched itself
    await reported(events, ["new/c.txt"]);
    await writeFile(join(root, "new/c.txt"), "33");
    await reported(events, ["new/c.txt"]);
    expect(events.filter((e) => e.path === "new/c.txt").some((e) => !e.structural)).toBe(true);

    await rename(join(root, "old"), join(root, "moved"));
    await reported(events, ["old", "moved"]);
    // once its watches are in place, a new directory is reported again (a scan then finds what came before)
    const deadline = Date.now() + 5000;
    while (events.filter((e) => e.path === "moved").length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await writeFile(join(root, "moved/deeper/d.txt"), "4");
    await reported(events, ["moved/deeper/d.txt"]);
    await rm(join(root, "moved"), { recursive: true });
    await reported(events, ["moved"]);
    expect(lost).toEqual([]);
  });
});
