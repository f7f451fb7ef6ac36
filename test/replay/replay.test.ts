import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { clusterProjection } from "../../src/projections/cluster.ts";
import { decide } from "../../src/policy/decide.ts";
import type { Clock } from "../../src/world/clock.ts";
import { runReplay } from "../../tools/replay/main.ts";

/**
 * Journals written by the real journal, with decisions produced by the real policy on the state the
 * journal folds to — what an agent writes — plus one edited to contradict the policy.
 */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "duet-replay-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.parse("2026-11-24T03:12:00Z");
const job = (policy: string): DuetEvent => ({ type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy, reverseWhenConsistent: false, restartMax: 3, resources: [{ name: "app", kind: "process" }], mirrors: [] } } as DuetEvent);
const started = (node: string): DuetEvent => ({ type: "AgentStarted", data: { node, version: "t", pid: 1, configHash: "h", deadtimeMs: 3000, selfFenceGraceMs: 1000, links: [] } });

/** Writes events one by one at `at` times, and at each "decide" marker appends what decide() says. */
async function writeJournal(name: string, node: string, steps: (DuetEvent | "decide" | { edit: DuetEvent })[]) {
  let now = T0;
  const clock: Clock = { now: () => now, monotonic: () => now - T0 };
  const journal = await openJournal({ dir: join(dir, name), node, clock, projection: clusterProjection(node) });
  for (const s of steps) {
    now += s === "decide" ? 3000 : 100; // past the self-fence wait a ping tiebreaker needs
    if (s === "decide") {
      const [d] = decide(journal.state(), now);
      if (!d) throw new Error("fixture: decide returned nothing");
      const policy = journal.state().jobs.get(d.job)!.policy;
      await journal.append([d.kind === "takeover" ? { type: "TakeoverDecided", data: { job: d.job, by: node, from: "a", policy, reasons: d.reasons } } : { type: "TakeoverDeclined", data: { job: d.job, by: node, from: "a", policy, code: d.code, reasons: d.reasons } }]);
    } else if ("edit" in (s as object)) await journal.append([(s as { edit: DuetEvent }).edit]);
    else await journal.append([s as DuetEvent]);
  }
  await journal.close();
  return join(dir, name);
}

const loss = (node: string, peer: string): DuetEvent[] => [
  { type: "LinkDown", data: { node, peer, link: "lan", kind: "udp", lastHeardAt: T0 + 500 } },
  { type: "LinkDown", data: { node, peer, link: "tcp", kind: "tcp", lastHeardAt: T0 + 510 } },
  { type: "PeerLost", data: { node, peer, lastHeardAt: T0 + 510, deadtimeMs: 3000 } },
];
const before = (node: string, peer: string, policy: string): DuetEvent[] => [
  started(node),
  job(policy),
  { type: "LinkUp", data: { node, peer, link: "lan", kind: "udp" } },
  { type: "LinkUp", data: { node, peer, link: "tcp", kind: "tcp" } },
  { type: "PeerSeen", data: { node, peer } },
  { type: "JobBroughtIn", data: { job: "web", node: "a" } },
];
const confirmed: DuetEvent = { type: "TiebreakerResult", data: { node: "b", peer: "a", method: "ping", verdict: "confirmed", targets: [{ target: "10.0.0.254", ok: true, ms: 1 }] } };

describe("replay", () => {
  it("explains a crash failover: links, loss, tiebreaker and policy, and confirms the decision", async () => {
    const a = await writeJournal("crash-a", "a", before("a", "b", "unconditional"));
    const b = await writeJournal("crash-b", "b", [...before("b", "a", "unconditional"), ...loss("b", "a"), confirmed, "decide", { type: "JobBroughtIn", data: { job: "web", node: "b" } }]);
    const { output, exitCode } = await runReplay([a, b]);
    expect(exitCode).toBe(0);
    expect(output).toMatch(/why: takeover \(takeover\) of job web on b/);
    expect(output).toMatch(/link lan \(udp\) down/);
    expect(output).toMatch(/link tcp \(tcp\) down/);
    expect(output).toMatch(/peer a lost: every link silent for 3000 ms/);
    expect(output).toMatch(/tiebreaker \(ping\): confirmed/);
    expect(output).toMatch(/policy: "unconditional"/);
    expect(output).toMatch(/re-checked: the policy reaches the same decision/);
    expect(output).not.toMatch(/MISMATCH/);
  });

  it("explains a takeover declined under policy manual, and confirms it", async () => {
    const b = await writeJournal("manual-b", "b", [...before("b", "a", "manual"), ...loss("b", "a"), confirmed, "decide"]);
    const { output, exitCode } = await runReplay([b]);
    expect(exitCode).toBe(0);
    expect(output).toMatch(/why: decline \(policy-manual\) of job web on b/);
    expect(output).toMatch(/re-checked/);
  });

  it("flags a journal edited to contradict the policy", async () => {
    // A takeover under policy manual with no tiebreaker: the policy never does that.
    const forged: DuetEvent = { type: "TakeoverDecided", data: { job: "web", by: "b", from: "a", policy: "manual", reasons: [] } };
    const b = await writeJournal("forged-b", "b", [...before("b", "a", "manual"), ...loss("b", "a"), { edit: forged }]);
    const { output, exitCode } = await runReplay([b]);
    expect(exitCode).toBe(1);
    expect(output.split("\n")[0]).toMatch(/^MISMATCH: 1 decision/);
    expect(output).toMatch(/MISMATCH: replaying the policy gives no decision, the journal says takeover takeover/);
  });

  it("--at shows each node's state at a moment; --json is machine-readable", async () => {
    const b = join(dir, "crash-b");
    const middle = await runReplay([b], { at: new Date(T0 + 650).toISOString() });
    expect(middle.output).toMatch(/state at .*\n\s+b: peer a connected; links lan up, tcp up\n\s+job web: in on a/);
    const after = await runReplay([b], { at: String(T0 + 10_000) });
    expect(after.output).toMatch(/b: peer a lost.*\n\s+job web: in on b/);
    const json = JSON.parse((await runReplay([b], { json: true })).output) as { explanations: { recheck: { matches: boolean } }[] };
    expect(json.explanations[0]!.recheck.matches).toBe(true);
    expect((await runReplay([b], { at: "yesterday-ish" })).exitCode).toBe(2);
  });

  it("--html writes one self-contained page with lanes, escaping names", async () => {
    const evil = await writeJournal("evil-b", "b", [started("b"), { type: "AlertRaised", data: { node: "b", code: "x", message: "<script>alert(1)</script>" } }, ...before("b", "a", "manual").slice(1), ...loss("b", "a"), confirmed, "decide"]);
    const file = join(dir, "timeline.html");
    await runReplay([evil], { html: file });
    const html = await readFile(file, "utf8");
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toContain("<script>");
    expect(html).toContain("&lt;script&gt;");
    expect(html).toContain("b · link lan");
    expect(html).toContain("decline (policy-manual)");
  });

  it("a path that is not a journal is a clear error with exit code 2", async () => {
    const { output, exitCode } = await runReplay([join(dir, "nowhere")]);
    expect(exitCode).toBe(2);
    expect(output).toMatch(/no such file or directory/);
  });
});
