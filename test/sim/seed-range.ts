import { describe, expect, it } from "vitest";
import { runSeeds, summaryLines } from "../../tools/sim/main.ts";
import { FAULT_KINDS, WITNESS_FAULT_KINDS, type SeedOptions } from "../../tools/sim/run.ts";

/** Seeds FIRST..FIRST+COUNT-1 of the whole-agent simulator as one test (CI runs 500, in files that run side by side). */
export function seedRange(first: number, count: number, options: SeedOptions = {}): void {
  const witness = options.witness ? ` with a witness (unreachable: ${options.witness.unreachable})` : "";
  describe(`the whole-agent simulator, seeds ${first}-${first + count - 1}${witness}`, () => {
    it("no seed breaks an invariant: one node runs the job, the pair settles after the faults, replay re-checks every decision", async () => {
      const kinds = options.witness ? WITNESS_FAULT_KINDS : FAULT_KINDS;
      const summary = await runSeeds(first, count, kinds, undefined, options);
      const lines = summaryLines(summary, kinds, options.witness ?? null);
      console.log(lines.slice(0, 4).join("\n"));
      expect(summary.failed.map((f) => f.seed), lines.join("\n")).toEqual([]);
      expect(summary.seeds).toBe(count);
      for (const kind of kinds) expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(count / 3);
    }, 900_000);
  });
}
