import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";

/**
 * Every entry under `dir`, sorted, with its kind, mode, size and content hash (or link target):
 * what "the replica equals the source" means in these tests. A missing directory is empty;
 * devices and fifos are listed without being opened.
 */
export async function tree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
    const path = join(dir, name);
    const info = await lstat(path);
    const mode = (info.mode & 0o7777).toString(8);
    if (info.isSymbolicLink()) out.push(`${prefix}${name} -> ${await readlink(path)}`);
    else if (info.isDirectory()) out.push(`${prefix}${name}/ ${mode}`, ...(await tree(path, `${prefix}${name}/`)));
    else if (!info.isFile()) out.push(`${prefix}${name} (special)`);
    else out.push(`${prefix}${name} ${mode} ${info.size} ${createHash("sha256").update(await readFile(path)).digest("hex").slice(0, 16)}`);
  }
  return out;
}
