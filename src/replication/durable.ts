import { open } from "node:fs/promises";

/** Flushes a file or directory to disk: what a rename or a recorded position needs before it counts. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
