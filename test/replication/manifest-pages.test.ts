import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { PEER_FRAME_MAX_BYTES } from "../../src/cluster/peer-channel.ts";
import { MANIFEST_PAGE_BYTES } from "../../src/agent/mirrors.ts";
import { joinManifestPage, paginateManifest, type ManifestItem } from "../../src/replication/manifest-pages.ts";
import type { ChangeIndex } from "../../src/replication/scan.ts";

const packr = new Packr({ useRecords: false, moreTypes: false });
const sum = (i: number) => i.toString(16).padStart(64, "0");

describe("manifest pages", () => {
  it("a 20 GiB file's block checksums are split over pages that each fit a frame, and join back whole and in order", () => {
    const blocks = Array.from({ length: (20 * 1024 * 1024 * 1024) / 65536 }, (_, i) => sum(i));
    const manifest: ChangeIndex = new Map([
      ["dir", { kind: "dir", mode: 0o755 }],
      ["dir/small", { kind: "file", mode: 0o644, size: 10, mtimeNs: "replica", ino: -1, blocks: [sum(7)], pieces: Buffer.alloc(16, 1) }],
      ["dir/disk.img", { kind: "file", mode: 0o600, size: 20 * 1024 ** 3, mtimeNs: "replica", ino: -1, blocks }],
      ["z-link", { kind: "link", target: "dir/small" }],
    ]);
    const pages = paginateManifest(manifest, MANIFEST_PAGE_BYTES);
    expect(pages.length).toBeGreaterThan(4);
    for (const page of pages) expect(packr.pack(page).length).toBeLessThan(PEER_FRAME_MAX_BYTES / 2);
    const joined: ChangeIndex = new Map();
    for (const page of pages) joinManifestPage(joined, packr.unpack(packr.pack(page)) as ManifestItem[]);
    expect(joined).toEqual(manifest);
  });

  it("blocks that arrive out of order, or for a file never announced, are refused by name; an older agent's [path, entry] items are whole entries", () => {
    const entry = { kind: "file" as const, mode: 0o644, size: 1, mtimeNs: "replica", ino: -1, blocks: [sum(1)] };
    expect(() => joinManifestPage(new Map(), [["big", entry, 5]])).toThrow(/blocks of big from 5 arrived after no entry of that file/);
    expect(() => joinManifestPage(new Map([["big", { ...entry, blocks: [sum(0)] }]]), [["big", entry, 3]])).toThrow(/from 3 arrived after 1 blocks/);
    const old: ChangeIndex = new Map();
    joinManifestPage(old, [["a", entry] as unknown as ManifestItem]);
    expect(old.get("a")).toEqual(entry);
  });
});
