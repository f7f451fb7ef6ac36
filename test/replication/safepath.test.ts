import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveInside, UnsafePathError } from "../../src/replication/safepath.ts";
import { execFileSync } from "node:child_process";

let root: string;
let outside: string;
beforeAll(async () => {
  const base = await mkdtemp(join(tmpdir(), "duet-safepath-"));
  root = join(base, "mirror");
  outside = join(base, "outside");
  await mkdir(join(root, "dir"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(root, "file"), "x");
  await symlink(outside, join(root, "escape"));
  await symlink("file", join(root, "link-to-file"));
  execFileSync("mkfifo", [join(root, "fifo")]);
});
afterAll(async () => {
  await rm(join(root, ".."), { recursive: true, force: true });
});

describe("paths inside a mirror root", () => {
  it("resolves ordinary paths, new or existing, and a symlink itself (never followed)", async () => {
    expect(await resolveInside(root, "dir/new/file.txt")).toBe(join(root, "dir/new/file.txt"));
    expect(await resolveInside(root, "file")).toBe(join(root, "file"));
    expect(await resolveInside(root, "escape")).toBe(join(root, "escape"));
    expect(await resolveInside(root, "dir/../file")).toBe(join(root, "file"));
  });

  it.each([
    ["/etc/passwd", /absolute/],
    ["../outside/x", /leaves the mirror root/],
    ["dir/../../outside", /leaves the mirror root/],
    ["a\0b", /NUL byte/],
    ["", /empty/],
    [".", /leaves the mirror root/],
    ["escape/x", /escape is a symlink/],
    ["link-to-file/x", /is a symlink/],
    ["file/x", /file is not a directory/],
    ["fifo", /device, fifo or socket/],
  ])("refuses %j", async (path, reason) => {
    await expect(resolveInside(root, path)).rejects.toThrow(reason);
  });

  it("never resolves outside the root, whatever the input (property)", async () => {
    const segment = fc.constantFrom("a", "b", "..", ".", "escape", "dir", "file", "", "/", "x/../..");
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 6 }), async (segments) => {
        const path = segments.join("/");
        try {
          const resolved = await resolveInside(root, path);
          expect(resolved === root || resolved.startsWith(`${root}/`), `${path} -> ${resolved}`).toBe(true);
          expect(resolved.startsWith(join(root, "escape") + "/"), `${path} went through a symlink`).toBe(false);
        } catch (error) {
          expect(error).toBeInstanceOf(UnsafePathError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
