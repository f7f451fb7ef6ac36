import fc from "fast-check";
import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { validateEvent, type DuetEvent, type Recorded } from "../../src/events/catalogue.ts";
import { reason } from "../../src/events/ids.ts";
import {
  evolveLineage,
  initialLineage,
  LINEAGE_ANCESTORS_MAX,
  lineageSummary,
  lineageView,
  parseLineageSummary,
  PATHS_TRACKED_MAX,
  type LineageState,
  type LineageSummary,
} from "../../src/projections/lineage.ts";
import { compareLineage, decideSourceSelection, mayReverseAutomatically, resyncPaths, type LineageVerdict, type Paths } from "../../src/policy/lineage.ts";

const gen = (n: number) => n.toString(16).padStart(16, "0");
const sha = "0".repeat(64);
type Op = { op: "truncate"; path: string; size: 0 } | { op: "remove"; path: string } | { op: "rename"; path: string; to: string };

/** One node's own journal of job "web", folded as the agent folds it. */
function node(name: string) {
  const events: Recorded[] = [];
  let state: LineageState = initialLineage;
  let batch = 0;
  const push = (event: DuetEvent) => {
    const checked = validateEvent(event.type, event.data);
    const recorded = { ...checked, seq: events.length + 1, at: events.length, hlc: [events.length, 0], node: name } as Recorded;
    events.push(recorded);
    state = evolveLineage(state, recorded);
  };
  return {
    name,
    events,
    push,
    started: (generation: string, parent: string | null, reason: "initial" | "wrote-without-peer" | "source-selected" | "restored") =>
      push({ type: "GenerationStarted", data: { job: "web", node: name, generation, parent, reason } }),
    /** Captures one batch in the node's current generation; returns its number. */
    captured: (ops: Op[] | string) => {
      batch += 1;
      const generation = lineageView(state, "web", name).current!;
      const list = typeof ops === "string" ? [{ op: "truncate" as const, path: ops, size: 0 as const }] : ops;
      push({ type: "BatchCaptured", data: { job: "web", node: name, batch, generation, ops: list, bytes: 0, sha256: sha } });
      return batch;
    },
    applied: (generation: string, b: number) => push({ type: "BatchApplied", data: { job: "web", node: name, batch: b, generation } }),
    acked: (b: number, by: string) => push({ type: "BatchAcked", data: { job: "web", node: name, by, batch: b } }),
    /** A resync completed: the source's queue went over with it, which it records as acknowledged (as the agent does). */
    resynced: (from: string, to: string) => {
      const settled = lineageView(state, "web", from).lastCaptured;
      if (settled !== null) push({ type: "BatchAcked", data: { job: "web", node: from, by: to, batch: settled } });
      push({ type: "ResyncCompleted", data: { job: "web", from, to, shippedBytes: 0, ms: 0 } });
    },
    current: () => lineageView(state, "web", name).current,
    state: () => state,
    summary: (): LineageSummary => lineageSummary(lineageView(state, "web", name)),
  };
}
type Node = ReturnType<typeof node>;

/** a and b start the job together in generation 1. */
function pair() {
  const a = node("a");
  const b = node("b");
  a.started(gen(1), null, "initial");
  b.started(gen(1), null, "initial");
  return { a, b };
}

/** `from` replicates one captured batch to `to`: applied there, acknowledged back. */
function replicate(from: Node, to: Node, batch: number) {
  to.applied(from.current()!, batch);
  from.acked(batch, to.name);
}

describe("lineage: which host has the newer data", () => {
  it("equal generations with nothing in flight are in sync, with nothing to resume", () => {
    const { a, b } = pair();
    replicate(a, b, a.captured("x"));
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "in-sync", sender: null, resumeFrom: null });
  });

  it("batches in flight when the link broke, nobody wrote alone: in sync, the active resends after its acknowledged batch", () => {
    const { a, b } = pair();
    replicate(a, b, a.captured("x"));
    replicate(a, b, a.captured("y"));
    a.captured("z"); // the link breaks before b applies it
    const verdict = compareLineage(b.summary(), a.summary());
    expect(verdict).toMatchObject({ kind: "in-sync", sender: "a", resumeFrom: 2 });
    expect(mayReverseAutomatically(b.summary(), a.summary())).toMatchObject({ ok: false });
  });

  it("host crash, takeover, return with an empty queue: the survivor is the source and only what it wrote since is resynced", () => {
    const { a, b } = pair();
    replicate(a, b, a.captured("x"));
    // a crashes; b takes over and writes without its peer: a new generation
    b.started(gen(2), gen(1), "wrote-without-peer");
    b.captured("y");
    b.captured([{ op: "rename", path: "y", to: "z" }]);
    const verdict = compareLineage(b.summary(), a.summary());
    expect(verdict).toMatchObject({ kind: "source", from: "b", to: "a", commonAncestor: gen(1), paths: ["y", "z"] });
    expect(compareLineage(a.summary(), b.summary())).toEqual({ ...verdict, reasons: expect.any(Array) });
    expect(mayReverseAutomatically(b.summary(), a.summary())).toMatchObject({ ok: true });
    expect(decideSourceSelection(a.summary(), b.summary(), "b", false)).toMatchObject({ allowed: true, code: "source-selected", losing: { node: "a", paths: [] } });
  });

  it("an active that lost its standby and kept writing also resyncs the batches that were in flight", () => {
    const { a, b } = pair();
    replicate(a, b, a.captured("x"));
    a.captured("w"); // in flight when the link broke
    a.started(gen(2), gen(1), "wrote-without-peer");
    a.captured("y");
    // x was acknowledged before w went out: b holds it, so only w (in flight) and y need a resync
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "source", from: "a", to: "b", paths: ["w", "y"] });
  });

  it("a returning node whose last batches never arrived has writes the survivor lacks: diverged, not reversed automatically", () => {
    const { a, b } = pair();
    replicate(a, b, a.captured("x"));
    a.captured("lost-in-flight");
    b.started(gen(2), gen(1), "wrote-without-peer");
    b.captured("y");
    const verdict = compareLineage(b.summary(), a.summary());
    expect(verdict).toMatchObject({ kind: "diverged", commonAncestor: gen(1), localOnly: ["y"], peerOnly: ["lost-in-flight"] });
    expect(mayReverseAutomatically(b.summary(), a.summary())).toMatchObject({ ok: false });
    expect(decideSourceSelection(b.summary(), a.summary(), "b", false)).toMatchObject({ allowed: true, code: "divergence-resolved", losing: { node: "a", paths: ["lost-in-flight"] } });
  });

  it("both sides wrote after parting: diverged, with the common ancestor and each side's paths", () => {
    const { a, b } = pair();
    a.started(gen(2), gen(1), "wrote-without-peer");
    a.captured("p");
    b.started(gen(3), gen(1), "wrote-without-peer");
    b.captured("q");
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "diverged", commonAncestor: gen(1), localOnly: ["p"], peerOnly: ["q"] });
    expect(mayReverseAutomatically(a.summary(), b.summary())).toMatchObject({ ok: false });
    expect(decideSourceSelection(a.summary(), b.summary(), "b", false)).toMatchObject({ allowed: true, code: "divergence-resolved", losing: { node: "a", paths: ["p"] } });
  });

  it("choosing the older side as source needs force, and says which writes are lost", () => {
    const { a, b } = pair();
    b.started(gen(2), gen(1), "wrote-without-peer");
    b.captured("newer");
    expect(decideSourceSelection(a.summary(), b.summary(), "a", false)).toMatchObject({ allowed: false, code: "source-is-older-needs-force", losing: { node: "b", paths: ["newer"] } });
    expect(decideSourceSelection(a.summary(), b.summary(), "a", true)).toMatchObject({ allowed: true, code: "forced-older-source", losing: { node: "b", paths: ["newer"] } });
    expect(decideSourceSelection(a.summary(), b.summary(), "c", true)).toMatchObject({ allowed: false, code: "source-not-in-pair" });
  });

  it("choosing the side without the in-flight queue in sync needs force too: the queue would be lost", () => {
    const { a, b } = pair();
    a.captured("queued");
    expect(decideSourceSelection(a.summary(), b.summary(), "b", false)).toMatchObject({ allowed: false, losing: { node: "a", paths: ["queued"] } });
    expect(decideSourceSelection(a.summary(), b.summary(), "a", false)).toMatchObject({ allowed: true, code: "source-selected", losing: { node: "b", paths: [] } });
  });

  it("more paths than are tracked means the whole tree is resynced", () => {
    const { a, b } = pair();
    a.started(gen(2), gen(1), "wrote-without-peer");
    a.push({ type: "PathsWritten", data: { job: "web", node: "a", generation: gen(2), paths: Array.from({ length: PATHS_TRACKED_MAX + 1 }, (_, i) => `f${i}`), overflow: false } });
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "source", from: "a", paths: "all" });
    expect(a.summary().written).toEqual([[gen(2), [], true]]);
  });

  it("a writer that reports overflow itself also means the whole tree", () => {
    const { a, b } = pair();
    b.started(gen(2), gen(1), "wrote-without-peer");
    b.push({ type: "PathsWritten", data: { job: "web", node: "b", generation: gen(2), paths: ["one"], overflow: true } });
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "source", from: "b", paths: "all" });
  });

  it("a node restored from a snapshot starts a generation in which every path may differ", () => {
    const { a, b } = pair();
    a.captured("unacked");
    a.started(gen(2), gen(1), "restored");
    expect(a.summary().queueEmpty).toBe(true);
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "source", from: "a", to: "b", paths: "all" });
  });

  it("a new standby with no lineage yet receives the whole tree", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    a.captured("x");
    expect(compareLineage(b.summary(), a.summary())).toMatchObject({ kind: "source", from: "a", to: "b", paths: "all", commonAncestor: null });
  });

  it("a new standby that applied batches before any full resync still receives the whole tree", () => {
    const a = node("a");
    const b = node("b");
    a.started(gen(1), null, "initial");
    replicate(a, b, a.captured("x"));
    expect(b.summary()).toMatchObject({ current: null, lastApplied: { generation: gen(1), batch: 1 } });
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "source", from: "a", paths: "all" });
  });

  it("a standby applying the active's batches follows its generation", () => {
    const { a, b } = pair();
    a.started(gen(2), gen(1), "wrote-without-peer");
    replicate(a, b, a.captured("x"));
    expect(b.summary()).toMatchObject({ current: gen(2), ancestors: [gen(1)], lastApplied: { generation: gen(2), batch: 1 } });
    expect(compareLineage(a.summary(), b.summary()).kind).toBe("in-sync");
  });

  it("after a resync the target takes the source's generation and neither side has a queue left", () => {
    const { a, b } = pair();
    a.captured("x"); // never delivered
    b.started(gen(2), gen(1), "wrote-without-peer");
    b.captured("y");
    expect(compareLineage(a.summary(), b.summary()).kind).toBe("diverged");
    // the operator selects b; the resync overwrites a
    a.started(gen(2), gen(1), "source-selected");
    expect(a.summary().queueEmpty, "a's overwritten batches are never resent").toBe(true);
    a.resynced("b", "a");
    b.resynced("b", "a");
    expect(a.summary()).toMatchObject({ current: gen(2), ancestors: [gen(1)], queueEmpty: true, lastAcked: 1 });
    expect(b.summary().queueEmpty).toBe(true);
    expect(compareLineage(a.summary(), b.summary())).toMatchObject({ kind: "in-sync", sender: null });
  });

  it("says it cannot tell when neither side has lineage, the summaries do not belong together, or the lines were cut", () => {
    expect(compareLineage(node("a").summary(), node("b").summary())).toMatchObject({ kind: "unknown", reason: "neither side has lineage for this job" });
    const { a } = pair();
    expect(compareLineage(a.summary(), a.summary())).toMatchObject({ kind: "unknown", reason: "both summaries are of node a" });
    expect(compareLineage(a.summary(), { ...a.summary(), node: "b", job: "db" })).toMatchObject({ kind: "unknown", reason: "summaries of different jobs: web and db" });
    expect(decideSourceSelection(a.summary(), { ...a.summary(), node: "b", job: "db" }, "a", true)).toMatchObject({ allowed: false, code: "summaries-do-not-match" });

    // b wrote alone through more generations than are kept: a's generation falls off b's line
    const b = node("b");
    b.started(gen(1), null, "initial");
    for (let g = 2; g <= LINEAGE_ANCESTORS_MAX + 3; g++) b.started(gen(g), gen(g - 1), "wrote-without-peer");
    expect(b.summary().ancestors).toHaveLength(LINEAGE_ANCESTORS_MAX);
    expect(b.summary().ancestors[0]).toBe(gen(LINEAGE_ANCESTORS_MAX + 2));
    const verdict = compareLineage(a.summary(), b.summary());
    expect(verdict.kind).toBe("unknown");
    expect(decideSourceSelection(a.summary(), b.summary(), "b", false)).toMatchObject({ allowed: true, code: "unknown-lineage-resolved", losing: { node: "a", paths: "all" } });
  });

  it("keeps written paths only for generations on the node's line", () => {
    const { a } = pair();
    for (let g = 2; g <= LINEAGE_ANCESTORS_MAX + 10; g++) {
      a.started(gen(g), gen(g - 1), "wrote-without-peer");
      a.captured(`f${g}`);
    }
    const summary = a.summary();
    expect(summary.written).toHaveLength(LINEAGE_ANCESTORS_MAX + 1);
    expect(summary.written.map(([g]) => g)).toEqual([summary.current, ...summary.ancestors].reverse());
  });

  it("a summary from the network is validated, names what is wrong, and round-trips", () => {
    const { a } = pair();
    a.captured("__proto__");
    const summary = a.summary();
    expect(parseLineageSummary(JSON.parse(JSON.stringify(summary)))).toEqual(summary);
    expect(() => parseLineageSummary({ ...summary, current: "zz" })).toThrow(/lineage summary: current: a generation id is 16 hex digits/);
    expect(() => parseLineageSummary({ ...summary, written: [[gen(9), [], false]] })).toThrow(/lineage summary: written\.0\.0: generation 0000000000000009 is not on this node's line/);
    expect(() => parseLineageSummary({ ...summary, ancestors: Array.from({ length: LINEAGE_ANCESTORS_MAX + 1 }, (_, i) => gen(i + 2)) })).toThrow(/lineage summary: ancestors:/);
    expect(() => parseLineageSummary({ ...summary, extra: 1 })).toThrow(/lineage summary: \(top\):/);
    expect(() => parseLineageSummary("hello")).toThrow(/lineage summary: \(top\):/);
  });
});

/**
 * A brute-force model of a pair: the active writes (batches replicate now, later, or never), the link
 * breaks, the standby takes over, both may write alone, the link comes back. The truth is every
 * file version each side holds and every version it ever saw; lineage's verdict at each reconnect is
 * checked against it and then carried out (resume the queue, or resync the paths it names).
 */
type Action =
  | { do: "write"; path: number; op: "write" | "remove" | "rename"; by: "active" | "other"; overflow: boolean }
  | { do: "deliver"; all: boolean }
  | { do: "disconnect" }
  | { do: "takeover" }
  | { do: "reconnect"; choose: "a" | "b" };
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ do: fc.constant("write" as const), path: fc.integer({ min: 0, max: 4 }), op: fc.constantFrom("write" as const, "write" as const, "remove" as const, "rename" as const), by: fc.constantFrom("active" as const, "other" as const), overflow: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) }),
  fc.record({ do: fc.constant("deliver" as const), all: fc.boolean() }),
  fc.record({ do: fc.constant("disconnect" as const) }),
  fc.record({ do: fc.constant("takeover" as const) }),
  fc.record({ do: fc.constant("reconnect" as const), choose: fc.constantFrom("a" as const, "b" as const) }),
);

/** A file's state on one side: the version that last touched it, and whether it exists. */
type FileState = { version: number; present: boolean };
type ModelNode = Node & { files: Map<string, FileState>; seen: Set<number>; queue: { batch: number; generation: string; changes: [string, FileState][] }[]; wroteAlone: boolean };

const content = (n: ModelNode) => new Map([...n.files].filter(([, f]) => f.present).map(([p, f]) => [p, f.version]));
/** Paths whose content differs between the two sides. */
function differing(x: ModelNode, y: ModelNode): string[] {
  const cx = content(x);
  const cy = content(y);
  return [...new Set([...cx.keys(), ...cy.keys()])].filter((p) => cx.get(p) !== cy.get(p)).sort();
}
/** Paths where `x` holds a version (a write or a removal) that `y` never saw: writes `y` lacks. */
const holdsWhatOtherLacks = (x: ModelNode, y: ModelNode) => [...x.files].filter(([, f]) => !y.seen.has(f.version)).map(([p]) => p);

function covers(paths: Paths, needed: string[]): boolean {
  return paths === "all" || needed.every((p) => paths.includes(p));
}

/** A verdict without its reasons, optionally as seen from the other side. */
function plain(verdict: LineageVerdict, swapSides = false): unknown {
  const { reasons: _, ...rest } = verdict;
  return swapSides && rest.kind === "diverged" ? { ...rest, localOnly: rest.peerOnly, peerOnly: rest.localOnly } : rest;
}

/** `b` may start as a standby with no lineage and no data yet; `a` starts with the job's initial data: a file no action touches. */
function simulate(actions: Action[], standbyHasLineage = true) {
  const extend = (n: Node, initial: boolean): ModelNode =>
    Object.assign(n, { files: new Map<string, FileState>(initial ? [["init", { version: 0, present: true }]] : []), seen: new Set<number>(initial ? [0] : []), queue: [], wroteAlone: false });
  const a = extend(node("a"), true);
  const b = extend(node("b"), standbyHasLineage);
  a.started(gen(1), null, "initial");
  if (standbyHasLineage) b.started(gen(1), null, "initial");
  let nextGen = 2;
  let version = 0;
  let connected = true;
  let active = a;
  const other = (n: ModelNode) => (n === a ? b : a);

  const deliver = (from: ModelNode, count: number) => {
    const to = other(from);
    for (const q of from.queue.splice(0, count)) {
      for (const [p, f] of q.changes) {
        to.files.set(p, f);
        to.seen.add(f.version);
      }
      to.applied(q.generation, q.batch);
      from.acked(q.batch, to.name);
    }
  };
  /** `overflow`: the writer lost count of its paths (more than it tracks) and says so. */
  const write = (n: ModelNode, path: number, op: "write" | "remove" | "rename", overflow: boolean) => {
    if (!connected && !n.wroteAlone) {
      n.started(gen(nextGen++), n.current(), "wrote-without-peer");
      n.wroteAlone = true;
    }
    const change = (p: string, present: boolean): [string, FileState] => [p, { version: ++version, present }];
    const p = `p${path}`;
    const to = `p${(path + 1) % 5}`;
    const changes = op === "write" ? [change(p, true)] : op === "remove" ? [change(p, false)] : [change(p, false), change(to, true)];
    for (const [cp, f] of changes) {
      n.files.set(cp, f);
      n.seen.add(f.version);
    }
    const ops: Op[] = op === "write" ? [{ op: "truncate", path: p, size: 0 }] : op === "remove" ? [{ op: "remove", path: p }] : [{ op: "rename", path: p, to }];
    const batch = n.captured(ops);
    n.queue.push({ batch, generation: n.current()!, changes });
    if (overflow) n.push({ type: "PathsWritten", data: { job: "web", node: n.name, generation: n.current()!, paths: [], overflow: true } });
  };
  /** Copies `paths` from source to target as a resync would, then journals what the agent journals. */
  const resync = (source: ModelNode, paths: Paths) => {
    const target = other(source);
    const all = new Set([...a.files.keys(), ...b.files.keys()]);
    for (const p of paths === "all" ? all : paths) {
      const f = source.files.get(p);
      if (f === undefined) target.files.delete(p);
      else {
        target.files.set(p, f);
        target.seen.add(f.version);
      }
    }
    expect(differing(a, b), "the resync left a path that differs").toEqual([]);
    target.started(source.current()!, source.summary().ancestors[0] ?? null, "source-selected");
    a.resynced(source.name, target.name);
    b.resynced(source.name, target.name);
    a.queue = [];
    b.queue = [];
  };

  for (const action of actions) {
    switch (action.do) {
      case "write":
        if (action.by === "active") write(active, action.path, action.op, action.overflow);
        else if (!connected) write(other(active), action.path, action.op, action.overflow); // split brain: both write
        break;
      case "deliver":
        if (connected) deliver(active, action.all ? active.queue.length : 1);
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
        a.wroteAlone = false;
        b.wroteAlone = false;
        const [sa, sb] = [a.summary(), b.summary()];
        const verdict = compareLineage(sa, sb);
        expect(plain(compareLineage(sb, sa), true), "the two sides reach different verdicts").toEqual(plain(verdict));
        // The verdict's reasons are journaled with the decision that uses them.
        z.array(reason).parse(verdict.reasons);
        const aNew = holdsWhatOtherLacks(a, b);
        const bNew = holdsWhatOtherLacks(b, a);
        expect(verdict.kind === "diverged", `diverged exactly when both hold writes the other lacks (a: ${aNew}, b: ${bNew}, verdict ${verdict.kind})`).toBe(aNew.length > 0 && bNew.length > 0);
        switch (verdict.kind) {
          case "unknown":
            throw new Error(`lineage could not tell: ${verdict.reason}`);
          case "in-sync": {
            const sender = verdict.sender === null ? null : verdict.sender === "a" ? a : b;
            expect(sender === null ? [] : holdsWhatOtherLacks(other(sender), sender), "in sync although the receiver holds writes the sender lacks").toEqual([]);
            if (sender) {
              expect(verdict.resumeFrom, "resumes from the acknowledged position").toBe(sender.queue[0]!.batch - 1);
              deliver(sender, sender.queue.length);
            }
            expect(differing(a, b), "in sync, yet the data differs after resuming").toEqual([]);
            break;
          }
          case "source": {
            const source = verdict.from === "a" ? a : b;
            const target = other(source);
            expect(holdsWhatOtherLacks(target, source), "the source lacks writes the target holds: they would be lost").toEqual([]);
            expect(covers(verdict.paths, differing(a, b)), `resync paths ${verdict.paths} miss some of ${differing(a, b)}`).toBe(true);
            expect(mayReverseAutomatically(source.summary(), target.summary()).ok, "no automatic reverse although the returning node lacks nothing").toBe(true);
            const chooseOlder = decideSourceSelection(source.summary(), target.summary(), target.name, false);
            if (holdsWhatOtherLacks(source, target).length > 0) expect(chooseOlder.allowed, "choosing the older side without force").toBe(false);
            expect(resyncPaths(verdict)).toEqual(verdict.paths);
            resync(source, verdict.paths);
            active = source;
            break;
          }
          case "diverged": {
            const source = action.choose === "a" ? a : b;
            const target = other(source);
            const selection = decideSourceSelection(sa, sb, source.name, false);
            expect(selection).toMatchObject({ allowed: true, code: "divergence-resolved", losing: { node: target.name } });
            expect(covers(selection.losing.paths, holdsWhatOtherLacks(target, source)), "the answer hides writes that are lost").toBe(true);
            expect(mayReverseAutomatically(a.summary(), b.summary()).ok || mayReverseAutomatically(b.summary(), a.summary()).ok).toBe(false);
            const paths = resyncPaths(verdict);
            expect(covers(paths, differing(a, b)), `resync paths ${paths} miss some of ${differing(a, b)}`).toBe(true);
            resync(source, paths);
            active = source;
            break;
          }
        }
        break;
      }
    }
  }
  return { a, b };
}

describe("lineage against a brute-force model", () => {
  it("never loses data, never calls different data in sync, diverges exactly when both sides hold writes the other lacks, resyncs every differing path", () => {
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 60, size: "medium" }), fc.boolean(), (actions, standbyHasLineage) => {
        simulate(actions, standbyHasLineage);
      }),
      { numRuns: 600 },
    );
  });

  it("folds the same journal to the same lineage twice, and from a checkpoint plus the rest", () => {
    const packr = new Packr({ moreTypes: true });
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 40, size: "medium" }), fc.boolean(), fc.nat(), (actions, standbyHasLineage, cut) => {
        const fold = (events: Recorded[], from: LineageState = initialLineage) => events.reduce(evolveLineage, from);
        for (const { events } of Object.values(simulate(actions, standbyHasLineage))) {
          expect(fold(events)).toEqual(fold(events));
          const at = cut % (events.length + 1);
          const checkpoint = packr.unpack(packr.pack(fold(events.slice(0, at)))) as LineageState;
          expect(fold(events.slice(at), checkpoint)).toEqual(fold(events));
        }
      }),
      { numRuns: 200 },
    );
  });

  it("every summary round-trips through the network validation", () => {
    const packr = new Packr();
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 40, size: "medium" }), fc.boolean(), (actions, standbyHasLineage) => {
        for (const n of Object.values(simulate(actions, standbyHasLineage))) {
          const summary = n.summary();
          expect(parseLineageSummary(JSON.parse(JSON.stringify(summary)))).toEqual(summary);
          expect(parseLineageSummary(packr.unpack(packr.pack(summary)))).toEqual(summary);
        }
      }),
      { numRuns: 200 },
    );
  });
});
