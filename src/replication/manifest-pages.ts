import type { ChangeIndex, Entry } from "./scan.ts";

/**
 * A manifest on the wire: pages of [path, entry, from] items, each page sent in one peer-channel
 * frame. A file too large for one page (block checksums alone are 1 KiB per MiB: a 16 GiB file
 * would overflow a frame) is split: its first item carries the entry with its first blocks, the
 * next ones more of its blocks, `from` saying where they start.
 */
export type ManifestItem = [path: string, entry: Entry, from: number];

/** Bytes an item takes in a page, about (block checksums travel as 64 hex characters). */
const BLOCK_COST = 66;
const costOf = (path: string, entry: Entry) => path.length + 32 + (entry.kind === "file" ? entry.blocks.length * BLOCK_COST + (entry.pieces?.length ?? 0) : 0);

/** Splits a manifest into pages of about `pageBytes`, a file's blocks over several when they do not fit one. */
export function paginateManifest(manifest: ChangeIndex, pageBytes: number): ManifestItem[][] {
  const pages: ManifestItem[][] = [[]];
  let size = 0;
  const add = (item: ManifestItem, cost: number) => {
    if (size + cost > pageBytes && pages.at(-1)!.length > 0) {
      pages.push([]);
      size = 0;
    }
    pages.at(-1)!.push(item);
    size += cost;
  };
  const perPage = Math.max(1, Math.floor(pageBytes / BLOCK_COST) - 1);
  for (const [path, entry] of manifest) {
    // Piece checksums exist only up to FINE_FILE_MAX (5 MiB with the blocks): such an entry fits a frame whole.
    if (entry.kind !== "file" || entry.pieces !== undefined || costOf(path, entry) <= pageBytes) {
      add([path, entry, 0], costOf(path, entry));
      continue;
    }
    for (let from = 0; from < entry.blocks.length; from += perPage) {
      const part: Entry = { ...entry, blocks: entry.blocks.slice(from, from + perPage) };
      add([path, part, from], costOf(path, part));
    }
  }
  return pages;
}

/** Adds a page's items to `manifest`, joining a split file's blocks; an item out of order is an error naming it. */
export function joinManifestPage(manifest: ChangeIndex, items: readonly ManifestItem[]): void {
  for (const [path, entry, from] of items) {
    // An older agent's items are [path, entry]: whole entries.
    if (!from) {
      manifest.set(path, entry);
      continue;
    }
    const first = manifest.get(path);
    if (first?.kind !== "file" || entry.kind !== "file" || first.blocks.length !== from)
      throw new Error(`manifest: blocks of ${path} from ${from} arrived after ${first?.kind === "file" ? `${first.blocks.length} blocks` : "no entry of that file"}`);
    for (const sum of entry.blocks) first.blocks.push(sum);
  }
}
