import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/**
 * The installed package's root and version, the same whether this file runs from src/ (tests,
 * benches) or from the compiled dist/src/ (the `duet` command): the nearest package.json above.
 */
function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const PACKAGE_ROOT = findRoot(import.meta.dirname);
export const DUET_VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;
