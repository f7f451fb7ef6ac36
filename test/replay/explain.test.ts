import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { explainJournals } from "../../tools/replay/explain.ts";
import { loadJournal } from "../../tools/replay/load.ts";
import { runReplay } from "../../tools/replay/main.ts";
import { aCrashesSeenFromB, bringInOnA, connects, created, fenceWait, GENERATION, oneBatch, started, writePair, type Step } from "./pair-journals.ts";

let root: string;
let cases = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "duet-replay-explain-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const fresh = () => join(root, `case-${++cases}`);

type Policy = "manual" | "when-consistent" | "allow-difference" | "unconditional";
/** A pair running job web on a, then a crashes; what b decides is left to the policy. */
const upThenCrash = (policy: Policy, beforeCrash: Step[] = []): Step[] => [
  started("a"),
  created("a", "web", policy, ["/srv/web"]),
  started("b"),
  created("b", "web", policy, ["/srv/web"]),
  ...connects("a"),
  ...connects("b"),
  ...bringInOnA("web"),
  ...oneBatch("web"),
  ...beforeCrash,
  ...aCrashesSeenFromB(),
];
/** A periodic verification was still running on b when a crashed: b's replica is not known to be consistent. */
const verifying: Step = { on: "b", fact: { type: "VerificationStarted", data: { job: "web", node: "b", files: 3, bytes: 4096 } } };

async function explained(dirs: string[]) {
  const loaded = await Promise.all(dirs.map((d) => loadJournal(d)));
  return explainJournals(loaded.map((j) => ({ node: j.node, events: j.records })));
}

describe("explaining a decision from the journals alone", () => {
  it("host crash under policy unconditional: the standby's takeover names both links, the loss, the tiebreaker, the policy and both sides' data, and re-checks", async () => {
    const { dirs } = await writePair(fresh(), [
      ...upThenCrash("unconditional"),
      fenceWait,
      { on: "b", decide: true },
      { on: "b", fact: { type: "ResourceStarted", data: { job: "web", node: "b", resource: "app" } } },
      { on: "b", fact: { type: "JobBroughtIn", data: { job: "web", node: "b" } } },
    ]);
    const [e, ...others] = await explained([dirs.a, dirs.b]);
    expect(others).toEqual([]);
    expect(e).toMatchObject({ node: "b", job: "web", kind: "takeover", code: "takeover", time: new Date(e!.at).toISOString() });
    const chain = e!.chain;
    expect(chain.links).toEqual([
      { link: "lan", kind: "udp", up: false, since: expect.any(Number), lastHeardAt: expect.any(Number) },
      { link: "tcp", kind: "tcp", up: false, since: expect.any(Number), lastHeardAt: expect.any(Number) },
    ]);
    expect(chain.links[0]!.since).toBeLessThan(chain.peerLost!.at);
    expect(chain.peer).toEqual({ name: "a", status: "lost", since: chain.peerLost!.at });
    expect(chain.peerLost).toMatchObject({ deadtimeMs: 3000 });
    expect(chain.tiebreaker).toMatchObject({ verdict: "confirmed", method: "ping", sinceLoss: true, targets: [{ target: "192.0.2.254", ok: true }] });
    expect(chain.policy).toBe("unconditional");
    // b applied batch 1 and lost its peer (red); a, in its own journal, had captured and seen batch 1 acknowledged.
    expect(chain.data).toEqual([
      expect.objectContaining({ node: "b", known: true, colour: "red", lastApplied: 1, generation: GENERATION }),
      expect.objectContaining({ node: "a", known: true, lastCaptured: 1, lastAcked: 1, queue: { batches: 0, bytes: 0 }, generation: GENERATION }),
    ]);
    expect(e!.recheck).toEqual({ matches: true, replayed: { kind: "takeover", code: "takeover" }, journaled: { kind: "takeover", code: "takeover" }, basisSeq: e!.seq - 1, exact: true });

    const { output, exitCode } = await runReplay([dirs.a, dirs.b]);
    expect(exitCode, output).toBe(0);
    expect(output).not.toMatch(/MISMATCH/);
    const why = output.slice(output.indexOf("why: takeover (takeover) of job web on b"));
    expect(why).toMatch(/lan \(udp\) down since \S+, last frame/);
    expect(why).toMatch(/tcp \(tcp\) down since \S+, last frame/);
    expect(why).toMatch(/peer a lost at \S+: every link silent for 3000 ms/);
    expect(why).toMatch(/tiebreaker \(ping\): confirmed at \S+, after the loss; targets 192\.0\.2\.254 answered in 2 ms/);
    expect(why).toMatch(/policy: "unconditional"/);
    expect(why).toMatch(/b: data link red; .*applied 1.*generation 0123456789abcdef/);
    expect(why).toMatch(/the last record in a's own journal before this decision: BatchAcked\n/);
    expect(why).toMatch(/re-checked: the policy reaches the same decision on the state at seq \d+, at the time it was made/);
  });

  it("a decision journaled after facts that would undo it re-checks exactly on the state it names; an old journal's search could not reach it", async () => {
    // The peer came back while the takeover was being journaled: on the latest state the policy
    // decides nothing, and 25 more facts put the decision's real basis beyond the old search.
    const peerBack: DuetEvent[] = [{ type: "PeerSeen", data: { node: "b", peer: "a" } }, ...Array.from({ length: 25 }, (_, i): DuetEvent => ({ type: "AlertRaised", data: { node: "b", code: "note", message: `fact ${i}` } }))];
    const script = [...upThenCrash("unconditional"), fenceWait];
    const exact = await writePair(fresh(), [...script, { on: "b", decide: true, lateFacts: peerBack }]);
    const [e] = (await explained([exact.dirs.b])).filter((x) => x.kind === "takeover");
    expect(e!.recheck).toEqual({ matches: true, replayed: { kind: "takeover", code: "takeover" }, journaled: { kind: "takeover", code: "takeover" }, basisSeq: e!.seq - 27, exact: true, note: "26 fact(s) were appended between the decision and its record" });

    const legacy = await writePair(fresh(), [...script, { on: "b", decide: true, lateFacts: peerBack, legacy: true }]);
    const [old] = (await explained([legacy.dirs.b])).filter((x) => x.kind === "takeover");
    expect(old!.recheck).toMatchObject({ matches: false, replayed: null, basisSeq: null, exact: false, note: expect.stringMatching(/^approximate: this record predates decisions that name their basis/) });
  });

  it("an old journal whose decisions name no basis still replays: the re-check matches and says it is approximate", async () => {
    const { dirs } = await writePair(fresh(), [...upThenCrash("unconditional"), fenceWait, { on: "b", decide: true, legacy: true }]);
    const [e] = await explained([dirs.b]);
    expect(e!.recheck).toEqual({ matches: true, replayed: { kind: "takeover", code: "takeover" }, journaled: { kind: "takeover", code: "takeover" }, basisSeq: e!.seq - 1, exact: false, note: "approximate: this record predates decisions that name their basis (basisSeq, decidedAt)" });
    const { output, exitCode } = await runReplay([dirs.b]);
    expect(exitCode, output).toBe(0);
    expect(output).toMatch(/re-checked: the policy reaches the same decision on the state at seq \d+ \(approximate: /);
  });

  it.each([
    { policy: "manual" as const, verdict: "confirmed" as const, code: "policy-manual", beforeCrash: [] },
    { policy: "when-consistent" as const, verdict: "confirmed" as const, code: "replica-not-consistent", beforeCrash: [verifying] },
    { policy: "unconditional" as const, verdict: "isolated" as const, code: "i-am-isolated", beforeCrash: [] },
  ])("host crash under policy $policy with a $verdict tiebreaker: the standby declines ($code) and the decline re-checks", async ({ policy, verdict, code, beforeCrash }) => {
    const script = upThenCrash(policy, beforeCrash);
    const tiebreaker = script.at(-1)!;
    if (!("fact" in tiebreaker) || typeof tiebreaker.fact === "function" || tiebreaker.fact.type !== "TiebreakerResult") throw new Error("fixture: the crash ends with the tiebreaker");
    script[script.length - 1] = { on: "b", fact: { ...tiebreaker.fact, data: { ...tiebreaker.fact.data, verdict } } };
    const { dirs } = await writePair(fresh(), [...script, { on: "b", decide: true }]);
    const [e] = await explained([dirs.b]);
    expect(e).toMatchObject({ node: "b", job: "web", kind: "decline", code, recheck: { matches: true, replayed: { kind: "decline", code } } });
    expect(e!.chain.data[1]).toEqual(expect.objectContaining({ node: "a", known: false }));
    const { output, exitCode } = await runReplay([dirs.b]);
    expect(exitCode, output).toBe(0);
    expect(output).toContain(`why: decline (${code}) of job web on b`);
    expect(output).toMatch(/a: not known \(its journal was not given\)/);
  });

  it("a refused switchover re-checks against the switchover gate", async () => {
    const { dirs } = await writePair(fresh(), [
      started("a"),
      created("a", "web", "manual", ["/srv/web"]),
      started("b"),
      created("b", "web", "manual", ["/srv/web"]),
      ...connects("a"),
      ...connects("b"),
      ...bringInOnA("web"),
      ...oneBatch("web"),
      { on: "a", switchover: { job: "web", to: "b", by: "admin" } },
    ]);
    const [e] = await explained([dirs.a, dirs.b]);
    expect(e).toMatchObject({ node: "a", kind: "switchover-refused", code: "data-link-green,verification-done", recheck: { matches: true } });
    const { output, exitCode } = await runReplay([dirs.a, dirs.b]);
    expect(exitCode, output).toBe(0);
    expect(output).toContain("admin asked to switch web over to b");
    expect(output).toContain("✗ verification-done");
  });
});

describe("a journal edited to contradict the policy", () => {
  it("a takeover under policy manual with no tiebreaker asked: MISMATCH first and in place, exit code 1", async () => {
    const script = upThenCrash("manual").slice(0, -1); // no tiebreaker was ever asked
    const { dirs } = await writePair(fresh(), [...script, { on: "b", forge: (basis) => ({ type: "TakeoverDecided", data: { job: "web", by: "b", from: "a", policy: "manual", reasons: [], ...basis } }) }]);
    const [e] = await explained([dirs.a, dirs.b]);
    expect(e!.recheck).toEqual({ matches: false, replayed: null, journaled: { kind: "takeover", code: "takeover" }, basisSeq: null, exact: true });
    expect(e!.chain.tiebreaker).toBeNull();

    const { output, exitCode } = await runReplay([dirs.a, dirs.b]);
    expect(exitCode).toBe(1);
    const lines = output.split("\n");
    expect(lines[0]).toBe("MISMATCH: 1 decision(s) do not follow from the journal they are in:");
    expect(lines[1]).toMatch(/^ {2}takeover \(takeover\) of job web on b at \S+ \(seq \d+\)$/);
    expect(output).toMatch(/\[b\] MISMATCH b takes web over from a \(policy manual\)/);
    expect(output).toMatch(/why: takeover \(takeover\) of job web on b.*\n {2}MISMATCH: replaying the policy gives no decision, the journal says takeover \(takeover\)/);
    expect(output).toMatch(/tiebreaker: none asked/);
  });

  it("a decision whose basis is moved to a state before the tiebreaker answered: MISMATCH, though the policy would take over on the state before the record", async () => {
    const script = [...upThenCrash("unconditional"), fenceWait];
    const forged: Step = { on: "b", forge: ({ basisSeq, decidedAt }) => ({ type: "TakeoverDecided", data: { job: "web", by: "b", from: "a", policy: "unconditional", reasons: [], basisSeq: basisSeq - 3, decidedAt } }) };
    const { dirs } = await writePair(fresh(), [...script, forged]);
    const [e] = await explained([dirs.b]);
    expect(e!.recheck).toMatchObject({ matches: false, replayed: null, basisSeq: null, exact: true });
    const ahead: Step = { on: "b", forge: ({ decidedAt }) => ({ type: "TakeoverDecided", data: { job: "web", by: "b", from: "a", policy: "unconditional", reasons: [], basisSeq: 10_000, decidedAt } }) };
    const future = await writePair(fresh(), [...script, ahead]);
    const [f] = await explained([future.dirs.b]);
    expect(f!.recheck).toMatchObject({ matches: false, exact: true, note: "its basis, seq 10000, is not before the decision itself" });
  });

  it("a decline journaled where the policy takes over: the replayed takeover is shown beside it", async () => {
    const forged: Step = { on: "b", forge: { type: "TakeoverDeclined", data: { job: "web", by: "b", from: "a", policy: "manual", code: "policy-manual", reasons: [] } } };
    const { dirs } = await writePair(fresh(), [...upThenCrash("unconditional"), fenceWait, forged]);
    const { output, exitCode } = await runReplay([dirs.b]);
    expect(exitCode).toBe(1);
    expect(output).toMatch(/MISMATCH: replaying the policy gives takeover \(takeover\), the journal says decline \(policy-manual\)/);
    expect(output).toMatch(/the decision names policy manual, but the job's definition in this journal says unconditional/);
  });
});

describe("a journal whose hash chain is broken", () => {
  it("replay exits 1 and marks every record from the break on UNVERIFIED; duet journal verify names the seq", async () => {
    const { dirs } = await writePair(fresh(), [...upThenCrash("unconditional"), fenceWait, { on: "b", decide: true }, { on: "b", fact: { type: "JobBroughtIn", data: { job: "web", node: "b" } } }]);
    const { rawEvents } = await import("../journal/helpers.ts");
    const { decodeEnvelope, encodeEnvelope, seqKey } = await import("../../src/journal/envelope.ts");
    // Someone edits the takeover's reasons after the fact, leaving the record well-formed.
    const raw = await rawEvents(dirs.b);
    let edited = 0;
    try {
      for await (const [key, value] of raw.events.iterator()) {
        const envelope = decodeEnvelope(value);
        if (envelope.type !== "TakeoverDecided") continue;
        edited = envelope.seq;
        await raw.events.put(seqKey(envelope.seq), encodeEnvelope({ ...envelope, data: { ...(envelope.data as object), reasons: [] } }));
        void key;
      }
    } finally {
      await raw.db.close();
    }
    expect(edited).toBeGreaterThan(0);
    const { output, exitCode } = await runReplay([dirs.a, dirs.b]);
    expect(exitCode).toBe(1);
    expect(output).toMatch(/CHAIN BROKEN/);
    expect(output).toMatch(/\[b\] UNVERIFIED b takes web over from a/);
    expect(output).toMatch(new RegExp(`UNVERIFIED \\(at or after the break in b's hash chain at seq ${edited}`));
    expect(output).not.toMatch(/why: takeover \(takeover\) of job web on b[^]*re-checked: the policy reaches the same decision/);
    const json = JSON.parse((await runReplay([dirs.b], { json: true })).output) as { explanations: { unverified?: string }[] };
    expect(json.explanations[0]!.unverified).toMatch(/hash chain/);
    const { verifyJournalDir } = await import("../../src/cli/maintenance.ts");
    expect(await verifyJournalDir(dirs.b, { config: "/nonexistent" })).toMatchObject({ ok: false, firstBad: { seq: edited, problem: "edited" } });
  });
});
