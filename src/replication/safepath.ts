import { lstat } from "node:fs/promises";
import { isAbsolute, join, normalize, sep } from "node:path";

/** Deepest relative path a batch may name: bounds the lstat walk and refuses absurd input. */
export const PATH_DEPTH_MAX = 256;
export const PATH_BYTES_MAX = 4096;

export class UnsafePathError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`path ${JSON.stringify(path)}: ${reason}`);
    this.name = "UnsafePathError";
  }
}

/**
 * Where a mirror-relative path lives under `root`, or an UnsafePathError: absolute paths, `..`
 * escapes, NUL bytes, and any existing parent that is a symlink (which could lead outside) are
 * refused. The final component is not followed: a symlink op replaces the link itself, never
 * what it points to. Special files on the way (devices, sockets, fifos) are refused too.
 */
export async function resolveInside(root: string, relative: string, realDirs?: Set<string>): Promise<string> {
  if (relative.length === 0) throw new UnsafePathError(relative, "empty");
  if (Buffer.byteLength(relative) > PATH_BYTES_MAX) throw new UnsafePathError(relative.slice(0, 80), `longer than ${PATH_BYTES_MAX} bytes`);
  if (relative.includes("\0")) throw new UnsafePathError(relative, "contains a NUL byte");
  if (isAbsolute(relative)) throw new UnsafePathError(relative, "absolute; expected a path relative to the mirror root");
  const parts = normalize(relative).split(sep);
  if (parts.some((p) => p === "..") || parts[0] === "" || parts[0] === ".") throw new UnsafePathError(relative, "leaves the mirror root");
  if (parts.length > PATH_DEPTH_MAX) throw new UnsafePathError(relative, `deeper than ${PATH_DEPTH_MAX} directories`);
  let current = root;
  for (const [i, part] of parts.entries()) {
    current = join(current, part);
    const last = i === parts.length - 1;
    if (!last && realDirs?.has(current)) continue;
    const info = await lstat(current).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return null;
      throw error;
    });
    if (info === null) break; // the rest does not exist yet: nothing on the way can redirect it
    if (!last && info.isSymbolicLink()) throw new UnsafePathError(relative, `${parts.slice(0, i + 1).join("/")} is a symlink; a parent must be a real directory`);
    if (!last && !info.isDirectory()) throw new UnsafePathError(relative, `${parts.slice(0, i + 1).join("/")} is not a directory`);
    if (!last) realDirs?.add(current);
    if (last && (info.isBlockDevice() || info.isCharacterDevice() || info.isFIFO() || info.isSocket())) throw new UnsafePathError(relative, "is a device, fifo or socket; only files, directories and symlinks are mirrored");
  }
  return join(root, ...parts);
}

/**
 * Splits "INDEX/relative" into the mirror root and the checked path inside it (see resolveInside);
 * an index the job does not have, or a path naming the mirror root itself, is refused. `realDirs`:
 * directories already found real in this batch, not looked at again (only while nothing moves or
 * removes entries).
 */
export async function resolveMirrorPath(roots: readonly string[], path: string, realDirs?: Set<string>): Promise<{ root: string; relative: string; absolute: string }> {
  const slash = path.indexOf("/");
  const index = slash < 0 ? "" : path.slice(0, slash);
  const relative = slash < 0 ? "" : path.slice(slash + 1);
  if (!/^\d{1,4}$/.test(index) || Number(index) >= roots.length) throw new UnsafePathError(path, `expected INDEX/path with INDEX a mirror of this job (0 to ${roots.length - 1})`);
  const root = roots[Number(index)]!;
  return { root, relative, absolute: await resolveInside(root, relative, realDirs) };
}
