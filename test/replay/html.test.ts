import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runReplay } from "../../tools/replay/main.ts";
import { aCrashesSeenFromB, bringInOnA, connects, created, started, writePair, type WrittenPair } from "./pair-journals.ts";

/** Job names are user input: one that is markup, one that would drive a terminal. */
const MARKUP = '<script>alert("x")</script>';
const TERMINAL = "db\u001b[2J";

let root: string;
let pair: WrittenPair;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "duet-replay-html-"));
  pair = await writePair(join(root, "pair"), [
    started("a"),
    created("a", MARKUP, "manual"),
    created("a", TERMINAL, "manual"),
    started("b"),
    created("b", MARKUP, "manual"),
    created("b", TERMINAL, "manual"),
    ...connects("a"),
    ...connects("b"),
    ...bringInOnA(MARKUP),
    ...bringInOnA(TERMINAL),
    ...aCrashesSeenFromB(),
    { on: "b", decide: true },
  ]);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("--html", () => {
  it("writes one self-contained page: lanes per node for links, peer and jobs, decision markers with their reasons, every name escaped", async () => {
    const file = join(root, "timeline.html");
    const { exitCode, output } = await runReplay([pair.dirs.a, pair.dirs.b], { html: file });
    expect(exitCode, output).toBe(0);
    const html = await readFile(file, "utf8");
    expect(html).toMatch(/^<!doctype html>/);
    // Nothing fetched and nothing run: no URL, no script, no external reference.
    expect(html).not.toMatch(/https?:|\/\/[a-z]/i);
    expect(html).not.toMatch(/<script|<link|<img|\ssrc=|\shref=|<iframe/i);
    expect(html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    // Lanes: each node's links, its peer and each job's phase and active node.
    for (const lane of ["a · link lan", "a · link tcp", "b · link lan", "b · link tcp", "b · peer a", "a · peer b", `b · job &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;`, "b · decisions"]) expect(html).toContain(lane);
    expect(html).toMatch(/<rect [^>]*fill="#c8322f"/); // b's links went down
    expect(html).toContain("in on a");
    // Decisions: a marker whose tooltip holds the explanation, and an open-able explanation below.
    expect(html).toMatch(/<title>why: decline \(policy-manual\) of job &lt;script&gt;[^<]*\n[^<]*links on b:/);
    expect(html).toMatch(/<details><summary class="ok">decline \(policy-manual\) of job &lt;script&gt;/);
    expect(html).toContain("✓ tiebreaker-confirmed");
  });

  it("the text output shows a control character in a name as an escape, never raw", async () => {
    const { output } = await runReplay([pair.dirs.b]);
    expect(output).not.toContain("\u001b");
    expect(output).toContain("why: decline (policy-manual) of job db\\x1b[2J on b");
  });

  it("a page that cannot be written is a clear error with exit code 2", async () => {
    const { output, exitCode } = await runReplay([pair.dirs.b], { html: join(root, "no-such-dir", "t.html") });
    expect(exitCode).toBe(2);
    expect(output).toMatch(/^replay: --html .*no-such-dir\/t\.html: ENOENT/);
  });
});
