import { execFile } from "node:child_process";
import { open } from "node:fs/promises";
import { promisify } from "node:util";

/** Flushes a file or directory to disk: what a rename or a recorded position needs before it counts. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Flushes the whole file system holding `path` (syncfs(2), through coreutils' `sync -f`: Node has
 * no binding): one call makes a sync's thousands of written files durable, where fsyncing each
 * would cost a journal commit apiece.
 */
export async function syncFileSystem(path: string): Promise<void> {
  await promisify(execFile)("sync", ["-f", path]);
}
