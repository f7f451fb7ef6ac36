import { watch, type FSWatcher } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Directories watched per tree; beyond this (or the kernel's inotify limit) only the periodic rescan sees changes. */
export const WATCHED_DIRECTORIES_MAX = 100_000;

export interface TreeWatchEvent {
  /** Relative to the root, "/"-separated. */
  path: string;
  /** Created, removed or renamed (its subtree may have changed with it), rather than written. */
  structural: boolean;
}

/**
 * A recursive watcher made of one inotify watch per directory (node:fs watch), reporting each
 * change as it happens. @parcel/watcher coalesces for 50-500 ms, which alone would exceed the
 * 100 ms capture-to-acknowledgement target, and Node 20's recursive fs.watch puts a watch on
 * every file. A new directory is watched as soon as it is reported, and reported as structural,
 * so the scan walks it for anything written before the watch was in place. A lost watch or an
 * overflow calls `onLost`: the caller rescans everything.
 */
export async function watchTree(root: string, onChange: (events: TreeWatchEvent[]) => void, onLost: (reason: string) => void): Promise<{ close(): void; directories(): number }> {
  const watchers = new Map<string, FSWatcher>();
  let closed = false;
  let full = false;

  const add = (dir: string): boolean => {
    if (closed || watchers.has(dir)) return true;
    if (watchers.size >= WATCHED_DIRECTORIES_MAX) {
      if (!full) onLost(`more than ${WATCHED_DIRECTORIES_MAX} directories under ${root}: changes below the limit are found by the periodic rescan`);
      full = true;
      return false;
    }
    let watcher: FSWatcher;
    try {
      watcher = watch(join(root, dir), { persistent: false }, (type, name) => {
        if (name === null || name === undefined) return onLost(`the watch on ${join(root, dir)} reported a change without a name (overflow)`);
        const path = dir ? `${dir}/${name}` : String(name);
        onChange([{ path, structural: type === "rename" }]);
        if (type === "rename") void follow(path);
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return true; // gone already: its parent reports that
      onLost(`cannot watch ${join(root, dir)}: ${(error as Error).message}`);
      return false;
    }
    watcher.on("error", (error) => {
      watchers.delete(dir);
      watcher.close();
      // A removed directory ends its watch; anything else is a lost watch.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") onLost(`the watch on ${join(root, dir)} failed: ${error.message}`);
    });
    watchers.set(dir, watcher);
    return true;
  };

  /** A path was created, removed or moved: watch it if it is a new directory, drop watches under it if it went. */
  async function follow(path: string): Promise<void> {
    const info = await lstat(join(root, path)).catch(() => null);
    if (info?.isDirectory()) {
      await addTree(path);
      // Anything written in it before its watches were in place is found by the scan this asks for.
      onChange([{ path, structural: true }]);
    } else for (const dir of [...watchers.keys()]) if (dir === path || dir.startsWith(`${path}/`)) {
      watchers.get(dir)!.close();
      watchers.delete(dir);
    }
  }

  async function addTree(dir: string): Promise<void> {
    if (!add(dir)) return;
    const entries = await readdir(join(root, dir), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory()) await addTree(dir ? `${dir}/${entry.name}` : entry.name);
  }

  await addTree("");
  return {
    close() {
      closed = true;
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
    directories: () => watchers.size,
  };
}
