import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DuetEvent, Recorded } from "../../src/events/catalogue.ts";
import { evolveLineage, initialLineage, parseLineageSummary, summarize, type LineageState } from "../../src/projections/lineage.ts";
import { compareLineage, decideSourceSelection, mayReverseAutomatically } from "../../src/policy/lineage.ts";

const gen = (n: number) => n.toString(16).padStart(16, "0");
const sha = "0".repeat(64);

/** One node's journal of its own lineage facts, folded like the agent folds it. */
function node(name: string) {
  const events: Recorded[] = [];
  let batch = 0;
  const push = (event: DuetEvent) => events.push({ ...event, seq: events.length + 1, at: events.length, hlc: [events.length, 0], node: name } as Recorded);
  return {
    name,
    events,
    started: (generation: string, parent: string | null, reason: "initial" | "wrote-without-peer" | "source-selected") => push({ type: "GenerationStarted", data: { job: "web", node: name, generation, parent, reason } }),
    captured: (generation: string, path: string) => {
      batch += 1;
      push({ type: "BatchCaptured", data: { job: "web", node: name, batch, generation, ops: [{ op: "truncate", path, size: 0 }], bytes: 0, sha256: sha } });
      return batch;
    },
    applied: (generation: string, b: number) => push({ type: "BatchApplied", data: { job: "web", node: name, batch: b, generation } }),
    acked: (b: number, by: string) => push({ type: "BatchAcked", data: { job: "web", node: name, by, batch: b } }),
    summary: () => {
      const state = events.reduce<LineageState>((s, e) => evolveLineage(s, e), initialLineage);
      return summarize(state.get("web")?.get(name), "web", name);
    },
  };
}

describe("lineage: which host has the newer data", () => {
  it("equal generations are in sync", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    b.started(gen(1), null, "initial");
    expect(compareLineage(a.summary(), b.summary()).kind).toBe("in-sync");
  });

  it("after a crash and takeover, the survivor is the source and only what it wrote since is resynced", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    b.started(gen(1), null, "initial");
    const b1 = a.captured(gen(1), "x");
    b.applied(gen(1), b1);
    a.acked(b1, "b");
    // a crashes; b takes over and writes without its peer: a new generation
    b.started(gen(2), gen(1), "wrote-without-peer");
    b.captured(gen(2), "y");
    const verdict = compareLineage(b.summary(), a.summary());
    expect(verdict).toMatchObject({ kind: "source", from: "b", to: "a", commonAncestor: gen(1) });
    // x was written in the common generation: it may have been in flight, so it is checked too
    expect(verdict.kind === "source" && verdict.paths).toEqual(["x", "y"]);
    expect(mayReverseAutomatically(b.summary(), a.summary()).ok).toBe(true);
  });

  it("a returning node with unacknowledged batches is not reversed automatically", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    b.started(gen(1), null, "initial");
    a.captured(gen(1), "x"); // never acknowledged
    b.started(gen(2), gen(1), "wrote-without-peer");
    expect(mayReverseAutomatically(b.summary(), a.summary())).toMatchObject({ ok: false });
  });

  it("both sides wrote after parting: diverged, and choosing the older side needs force", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    b.started(gen(1), null, "initial");
    a.started(gen(2), gen(1), "wrote-without-peer");
    b.started(gen(3), gen(1), "wrote-without-peer");
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "diverged", commonAncestor: gen(1) });
    expect(decideSourceSelection(a.summary(), b.summary(), "b", false)).toMatchObject({ allowed: true, code: "divergence-resolved", losing: { node: "a" } });
    const c = node("c");
    c.started(gen(1), null, "initial");
    expect(decideSourceSelection(b.summary(), c.summary(), "c", false)).toMatchObject({ allowed: false, code: "source-is-older-needs-force", losing: { node: "b", paths: [] } });
  });

  it("too many written paths means the whole tree is resynced", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    b.started(gen(1), null, "initial");
    a.started(gen(2), gen(1), "wrote-without-peer");
    a.events.push({ type: "PathsWritten", data: { job: "web", node: "a", generation: gen(2), paths: [], overflow: true }, seq: 99, at: 99, hlc: [99, 0], node: "a" } as Recorded);
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "source", paths: "all" });
  });

  it("a summary from the network is validated and round-trips", () => {
    const a = node("a");
    a.started(gen(1), null, "initial");
    a.captured(gen(1), "__proto__");
    const summary = a.summary();
    expect(parseLineageSummary(JSON.parse(JSON.stringify(summary)))).toEqual(summary);
    expect(() => parseLineageSummary({ ...summary, current: "zz" })).toThrow(/lineage summary: current:/);
  });
});

/**
 * A brute-force model: two nodes, writes, replication that may lag, partitions, takeovers and
 * split brain. The truth is kept as actual file versions; lineage must never pick a source that
 * lacks what the other side wrote alone, never call diverged sides in sync, and its resync paths
 * must cover every path that differs.
 */
type Action = ["write", number, boolean] | ["write-other", number] | ["flush"] | ["disconnect"] | ["takeover"] | ["reconnect"];
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.tuple(fc.constant("write" as const), fc.integer({ min: 0, max: 3 }), fc.boolean()),
  fc.tuple(fc.constant("write-other" as const), fc.integer({ min: 0, max: 3 })),
  fc.tuple(fc.constant("flush" as const)),
  fc.tuple(fc.constant("disconnect" as const)),
  fc.tuple(fc.constant("takeover" as const)),
  fc.tuple(fc.constant("reconnect" as const)),
);

function simulate(actions: Action[]) {
  let nextGen = 1;
  let version = 0;
  const nodes = ["a", "b"].map((name) => ({ ...node(name), files: new Map<string, number>(), current: gen(1), wroteAlone: false, queue: [] as { batch: number; path: string; version: number; generation: string }[] }));
  const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
  a.started(gen(1), null, "initial");
  b.started(gen(1), null, "initial");
  let connected = true;
  let active = a;
  const other = (n: typeof a) => (n === a ? b : a);
  const deliver = (from: typeof a) => {
    const to = other(from);
    for (const q of from.queue) {
      to.files.set(q.path, q.version);
      to.current = q.generation;
      to.applied(q.generation, q.batch);
      from.acked(q.batch, to.name);
    }
    from.queue = [];
  };
  const writeOn = (n: typeof a, path: number, replicate: boolean) => {
    if (!connected && !n.wroteAlone) {
      const g = gen(++nextGen);
      n.started(g, n.current, "wrote-without-peer");
      n.current = g;
      n.wroteAlone = true;
    }
    version += 1;
    n.files.set(`p${path}`, version);
    const batch = n.captured(n.current, `p${path}`);
    n.queue.push({ batch, path: `p${path}`, version, generation: n.current });
    if (connected && replicate) deliver(n);
  };
  for (const action of actions) {
    switch (action[0]) {
      case "write":
        writeOn(active, action[1], action[2]);
        break;
      case "write-other":
        if (!connected) writeOn(other(active), action[1], false); // split brain: both write
        break;
      case "flush":
        if (connected) deliver(active);
        break;
      case "disconnect":
        connected = false;
        break;
      case "takeover":
        if (!connected) active = other(active);
        break;
      case "reconnect": {
        if (connected) break;
        connected = true;
        const verdict = compareLineage(a.summary(), b.summary());
        if (verdict.kind === "in-sync") {
          expect(a.wroteAlone || b.wroteAlone, "in sync although a side wrote alone").toBe(false);
          deliver(a);
          deliver(b);
        } else {
          expect(verdict.kind === "diverged", `diverged exactly when both wrote alone (${verdict.kind})`).toBe(a.wroteAlone && b.wroteAlone);
          const source = verdict.kind === "source" ? (verdict.from === "a" ? a : b) : active;
          const target = other(source);
          if (verdict.kind === "source") expect(target.wroteAlone, "the source lacks what the other side wrote alone").toBe(false);
          const paths = verdict.kind === "source" ? verdict.paths : "all";
          const all = new Set([...a.files.keys(), ...b.files.keys()]);
          for (const p of paths === "all" ? all : paths) {
            const v = source.files.get(p);
            if (v === undefined) target.files.delete(p);
            else target.files.set(p, v);
          }
          expect([...target.files].sort(), "the resync left a differing path").toEqual([...source.files].sort());
          target.started(source.current, source.summary().ancestors[0] ?? null, "source-selected");
          target.current = source.current;
          source.queue = [];
          target.queue = [];
          active = source;
        }
        a.wroteAlone = false;
        b.wroteAlone = false;
        break;
      }
    }
  }
}

describe("lineage against a brute-force model", () => {
  it("never loses what a side wrote alone, never calls different data in sync, resyncs every differing path", () => {
    fc.assert(fc.property(fc.array(actionArb, { maxLength: 40 }), (actions) => simulate(actions)), { numRuns: 500 });
  });

  it("folding the same events twice gives the same lineage", () => {
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 30 }), (actions) => {
        const a = node("a");
        a.started(gen(1), null, "initial");
        for (const [i, act] of actions.entries()) if (act[0] === "write") a.captured(gen(1), `p${i}`);
        expect(a.summary()).toEqual(a.summary());
      }),
    );
  });
});
