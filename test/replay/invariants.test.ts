import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkInvariants } from "../../tools/replay/invariants.ts";
import { loadJournal } from "../../tools/replay/load.ts";
import { runReplay } from "../../tools/replay/main.ts";
import { aCrashesSeenFromB, bringInOnA, connects, created, fenceWait, started, writePair, type NodeName, type Step } from "./pair-journals.ts";

let root: string;
let cases = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "duet-replay-invariants-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = () => join(root, `case-${++cases}`);

const upAndRunning: Step[] = [
  started("a"),
  created("a", "web", "unconditional"),
  started("b"),
  created("b", "web", "unconditional"),
  ...connects("a"),
  ...connects("b"),
  ...bringInOnA("web"),
];
/** b takes web over after a deadtime of silence and a confirmed tiebreaker, as the policy decides. */
const bTakesOver: Step[] = [
  ...aCrashesSeenFromB(),
  fenceWait,
  { on: "b", decide: true },
  { on: "b", fact: { type: "ResourceStarted", data: { job: "web", node: "b", resource: "app" } } },
  { on: "b", fact: { type: "JobBroughtIn", data: { job: "web", node: "b" } } },
];
const aLosesB: Step[] = [
  { on: "a", fact: (now) => ({ type: "PeerLost", data: { node: "a", peer: "b", lastHeardAt: now - 3000, deadtimeMs: 3000 } }) },
  { on: "a", fact: { type: "TiebreakerResult", data: { node: "a", peer: "b", method: "ping", verdict: "confirmed", purpose: "reachability", targets: [{ target: "192.0.2.254", ok: true, ms: 2 }] } } },
];
const out = (node: NodeName): Step => ({ on: node, fact: { type: "JobBroughtOut", data: { job: "web", node } } });
/** The heal: b hears a again (its journal goes on past a's bring-out). */
const bSeesA: Step = { on: "b", fact: { type: "PeerSeen", data: { node: "b", peer: "a" } } };

async function violationsOf(dirs: string[]) {
  const loaded = await Promise.all(dirs.map((d) => loadJournal(d)));
  return checkInvariants(loaded.map((j) => ({ node: j.node, events: j.records })));
}

describe("replay checks what no single decision shows", () => {
  it("a split where the active never fenced itself: the overlap is a problem with its length, the takeover's fence never came, exit 1", async () => {
    const { dirs } = await writePair(fresh(), [...upAndRunning, ...bTakesOver, ...aLosesB, { wait: 2000 }, out("a"), bSeesA]);
    const violations = await violationsOf([dirs.a, dirs.b]);
    expect(violations.map((v) => v.kind).sort()).toEqual(["fence-not-journaled", "ran-on-both"]);
    const overlap = violations.find((v) => v.kind === "ran-on-both")!;
    if (overlap.kind !== "ran-on-both") throw new Error("narrowing");
    // From b's JobBroughtIn to a's JobBroughtOut: the two steps, the 2 s wait and the bring-out between them.
    expect(overlap).toMatchObject({ job: "web", nodes: ["a", "b"], ms: 2300, certain: true, uncertaintyMs: 0 });
    expect(overlap.ends).toMatchObject({ from: { node: "b", type: "JobBroughtIn" }, to: { node: "a", type: "JobBroughtOut" } });
    const fence = violations.find((v) => v.kind === "fence-not-journaled")!;
    expect(fence).toMatchObject({ job: "web", node: "b", other: "a" });

    const html = join(root, "split.html");
    const { output, exitCode } = await runReplay([dirs.a, dirs.b], { html });
    expect(exitCode, output).toBe(1);
    expect(output).toMatch(/PROBLEM: job web ran on both a and b for 2300 ms \(.* by the hybrid clock, clocks seen up to 0 ms apart\): b brought it in while a still ran it/);
    expect(output).toMatch(/PROBLEM: b's takeover of web \(seq \d+\) counted on a having fenced itself, but a's journal shows the job still running after it with no self-fence/);
    expect(output).not.toMatch(/MISMATCH/); // every decision still follows from its own journal
    expect(await readFile(html, "utf8")).toContain("PROBLEM: job web ran on both a and b for 2300 ms");
    const json = JSON.parse((await runReplay([dirs.a, dirs.b], { json: true })).output) as { violations: unknown[] };
    expect(json.violations).toHaveLength(2);
  });

  it("an active that let go before the takeover: nothing to report, exit 0", async () => {
    // An operator's bring-out stands in for the fence here: a's run ends before b's takeover.
    const letsGo: Step[] = [{ on: "a", fact: { type: "BringOutRequested", data: { job: "web", by: "admin" } } }, out("a")];
    const { dirs } = await writePair(fresh(), [...upAndRunning, ...letsGo, ...bTakesOver, bSeesA]);
    expect(await violationsOf([dirs.a, dirs.b])).toEqual([]);
    const { exitCode, output } = await runReplay([dirs.a, dirs.b]);
    expect(exitCode, output).toBe(0);
    expect(output).not.toMatch(/PROBLEM|WARNING/);
  });

  it("an agent restart ends what its journal vouches for; a job brought in again after it opens a new run", async () => {
    // a crashes (its journal just stops), b takes over, a restarts cut off and recovers the job.
    const { dirs } = await writePair(fresh(), [...upAndRunning, ...bTakesOver, started("a"), { on: "a", fact: { type: "JobBroughtIn", data: { job: "web", node: "a" } } }, { wait: 1000 }, out("b"), { on: "a", fact: { type: "PeerSeen", data: { node: "a", peer: "b" } } }]);
    const [overlap, ...rest] = await violationsOf([dirs.a, dirs.b]);
    expect(rest).toEqual([]);
    // The crashed run ended before b's takeover; the recovered one overlaps b's until b let go.
    expect(overlap).toMatchObject({ kind: "ran-on-both", nodes: ["b", "a"], ms: 1100, ends: { from: { node: "a", type: "JobBroughtIn" }, to: { node: "b", type: "JobBroughtOut" } } });
  });

  it("an overlap no longer than the clocks were seen apart is a warning, not a failure", async () => {
    // b's clock runs 900 ms ahead; a merges it from b's frames (hears), so the skew is on record.
    const script: Step[] = [...upAndRunning, { on: "a", hears: "b" }, ...bTakesOver, { on: "a", hears: "b" }, out("a"), bSeesA];
    const { dirs } = await writePair(fresh(), script, { b: 900 });
    const violations = await violationsOf([dirs.a, dirs.b]);
    const overlap = violations.find((v) => v.kind === "ran-on-both");
    expect(overlap).toMatchObject({ certain: false });
    if (overlap?.kind !== "ran-on-both") throw new Error("narrowing");
    expect(overlap.ms).toBeLessThanOrEqual(overlap.uncertaintyMs);
    const { output } = await runReplay([dirs.a, dirs.b]);
    expect(output).toMatch(/WARNING: job web ran on both .* the overlap is within the clocks' uncertainty/);
  });
});
