import { describe, expect, it } from "vitest";
import { runSeeds, summaryLines } from "../../tools/sim/main.ts";
import { FAULT_KINDS } from "../../tools/sim/run.ts";

/** Seeds 1 to 250 of the whole-agent simulator (CI runs 500, in two files that run side by side). */
describe("the whole-agent simulator, seeds 1-250", () => {
  it("no seed breaks an invariant: one node runs the job, the pair settles after the faults, replay re-checks every decision", async () => {
    const summary = await runSeeds(1, 250, FAULT_KINDS);
    const lines = summaryLines(summary, FAULT_KINDS);
    console.log(lines.slice(0, 4).join("\n"));
    expect(summary.failed.map((f) => f.seed), lines.join("\n")).toEqual([]);
    expect(summary.seeds).toBe(250);
    for (const kind of FAULT_KINDS) expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(100);
  }, 900_000);
});
