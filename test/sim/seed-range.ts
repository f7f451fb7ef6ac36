import { describe, expect, it } from "vitest";
import { runSeeds, summaryLines } from "../../tools/sim/main.ts";
import { FAULT_KINDS } from "../../tools/sim/run.ts";

/** Seeds FIRST..FIRST+COUNT-1 of the whole-agent simulator as one test (CI runs 500, in files that run side by side). */
export function seedRange(first: number, count: number): void {
  describe(`the whole-agent simulator, seeds ${first}-${first + count - 1}`, () => {
    it("no seed breaks an invariant: one node runs the job, the pair settles after the faults, replay re-checks every decision", async () => {
      const summary = await runSeeds(first, count, FAULT_KINDS);
      const lines = summaryLines(summary, FAULT_KINDS);
      console.log(lines.slice(0, 4).join("\n"));
      expect(summary.failed.map((f) => f.seed), lines.join("\n")).toEqual([]);
      expect(summary.seeds).toBe(count);
      for (const kind of FAULT_KINDS) expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(count / 3);
    }, 900_000);
  });
}
