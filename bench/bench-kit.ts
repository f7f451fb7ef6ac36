// What every bench does the same way: check what it needs before it starts, say what it is
// doing during long phases, and end with a non-zero exit when a target it printed was missed.
import { statfsSync } from "node:fs";
import { findProgram } from "../src/world/programs.ts";

/** Stops the bench before any work when a program it runs is missing, naming the package. */
export function needPrograms(bench: string, needs: { program: string; package: string }[]): void {
  const missing = needs.filter((n) => findProgram(n.program) === null);
  if (missing.length === 0) return;
  console.error(`${bench} needs ${missing.map((n) => n.program).join(", ")}: apt-get install -y ${missing.map((n) => n.package).join(" ")}`);
  process.exit(2);
}

export function needRoot(bench: string, why: string): void {
  if (process.getuid?.() === 0) return;
  console.error(`${bench} needs root (${why}): sudo npm run ${bench}`);
  process.exit(2);
}

/** Stops the bench when the directory's file system has less than `bytes` free. */
export function needFreeDisk(bench: string, dir: string, bytes: number): void {
  const stats = statfsSync(dir);
  const free = stats.bavail * stats.bsize;
  if (free >= bytes) return;
  console.error(`${bench} needs ${(bytes / 2 ** 30).toFixed(1)} GiB free in ${dir}, has ${(free / 2 ** 30).toFixed(1)} GiB (a smaller run: BENCH_TREE_MIB=256)`);
  process.exit(2);
}

/** A line every `everyMs` while a long phase runs, from `status()`; stop() ends it. */
export function progress(label: string, status: () => string | Promise<string>, everyMs = 5000): { stop(): void } {
  const started = Date.now();
  const timer = setInterval(() => {
    void Promise.resolve(status())
      .then((text) => console.log(`  … ${label}: ${text} (${((Date.now() - started) / 1000).toFixed(0)} s)`))
      .catch(() => undefined);
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** Targets checked as the bench prints them; `exit()` ends the process non-zero if one was missed. */
export function createTargets(bench: string) {
  const missed: string[] = [];
  return {
    /** Returns the mark to print beside the figure. */
    check(name: string, met: boolean): string {
      if (!met) missed.push(name);
      return met ? "✓" : "✗ MISSED";
    },
    exit(): never {
      if (missed.length > 0) console.log(`\n${bench}: ${missed.length} target(s) missed: ${missed.join("; ")}`);
      else console.log(`\n${bench}: every target met`);
      process.exit(missed.length > 0 ? 1 : 0);
    },
  };
}

