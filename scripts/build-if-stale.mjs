// Compiles src/ and tools/ into dist/ when any source is newer than the last build: tests and
// benches spawn bin/duet.js, which runs dist/, and must never run yesterday's agent.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const BUILD_INFO = join(ROOT, "dist/.tsbuildinfo");

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export function buildIfStale() {
  const built = existsSync(BUILD_INFO) ? statSync(BUILD_INFO).mtimeMs : 0;
  const newest = Math.max(newestSource(join(ROOT, "src")), newestSource(join(ROOT, "tools")), statSync(join(ROOT, "tsconfig.build.json")).mtimeMs);
  if (newest <= built) return;
  execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.build.json")], { stdio: "inherit" });
}

if (process.argv[1] === import.meta.filename) buildIfStale();
