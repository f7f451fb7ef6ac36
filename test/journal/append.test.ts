import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { EventSchemaError, type DuetEvent } from "../../src/events/catalogue.ts";
import { APPEND_BATCH_MAX_EVENTS, openJournal, type Journal, type JournalOptions } from "../../src/journal/journal.ts";
import { createHlc } from "../../src/world/hlc.ts";
import { collect, countsProjection, jobEvent, manualClock, tempDirs } from "./helpers.ts";

const dirs = tempDirs();
const open: Journal<unknown>[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((j) => j.close()));
  await dirs.cleanup();
});

async function journalIn<S = undefined>(dir: string, extra: Partial<JournalOptions<S>> = {}) {
  const journal = await openJournal<S>({ dir, node: "a", clock: manualClock(), ...extra });
  open.push(journal as Journal<unknown>);
  return journal;
}

/** Runs child.ts in a separate node process and returns what it printed. */
function runChild(mode: string, dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "child.ts"), mode, dir], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.on("error", reject);
    child.on("exit", () => resolve(out.trim()));
  });
}

describe("journal append", () => {
  it("numbers events from 1, stamps them, and reads them back in order", async () => {
    const clock = manualClock();
    const journal = await journalIn(await dirs.make(), { clock });
    expect(journal.head()).toBe(0);
    const first = await journal.append([jobEvent("web"), jobEvent("db")]);
    clock.advance(5);
    const second = await journal.append([jobEvent("__proto__")]);
    expect([...first, ...second].map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(first[0]).toMatchObject({ at: clock.now() - 5, hlc: [clock.now() - 5, 0], node: "a" });
    expect(first[1]!.hlc).toEqual([clock.now() - 5, 1]);
    expect(second[0]!.hlc).toEqual([clock.now(), 0]);
    expect(journal.head()).toBe(3);
    expect(await collect(journal.read())).toEqual([...first, ...second]);
    expect((await collect(journal.read(2, 2))).map((r) => r.seq)).toEqual([2]);
    expect(await collect(journal.read(4))).toEqual([]);
  });

  it("refuses the whole call when one event is malformed, and writes nothing", async () => {
    const journal = await journalIn(await dirs.make());
    const bad = { type: "LinkDown", data: { node: "a", peer: "b", link: "udp0", kind: "smoke", lastHeardAt: 1 } } as unknown as DuetEvent;
    await expect(journal.append([jobEvent("web"), bad])).rejects.toThrow(EventSchemaError);
    await expect(journal.append([{ type: "Teleported", data: {} } as unknown as DuetEvent])).rejects.toThrow(/unknown event type/);
    expect(journal.head()).toBe(0);
    expect(await collect(journal.read())).toEqual([]);
    expect((await journal.append([jobEvent("web")]))[0]!.seq).toBe(1);
  });

  it("refuses a call of more events than one batch holds", async () => {
    const journal = await journalIn(await dirs.make());
    const many = Array.from({ length: APPEND_BATCH_MAX_EVENTS + 1 }, () => jobEvent("w"));
    await expect(journal.append(many)).rejects.toThrow(/at most 10000/);
  });

  it("refuses an oversized event alone, while the calls committed with it are written", async () => {
    const journal = await journalIn(await dirs.make());
    const huge: DuetEvent = { type: "AlertRaised", data: { node: "a", code: "x", message: "m".repeat(70_000) } };
    const results = await Promise.allSettled([journal.append([jobEvent("one")]), journal.append([huge]), journal.append([jobEvent("two")])]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.message).toMatch(/encodes to \d+ bytes; a record holds at most/);
    expect((await collect(journal.read())).map((r) => (r.data as { job: string }).job)).toEqual(["one", "two"]);
    expect((await journal.verify()).ok).toBe(true);
  });

  it("group-commits concurrent calls: contiguous seqs in call order, fewer batches than calls", async () => {
    const journal = await journalIn(await dirs.make());
    await journal.append([jobEvent("warm-up")]);
    const before = journal.stats().batchesWritten;
    const calls = Array.from({ length: 200 }, (_, i) => journal.append(Array.from({ length: 1 + (i % 3) }, (_, k) => jobEvent(`c${i}-${k}`))));
    // A few more calls arrive while the first group is being written.
    const late = await new Promise<Promise<unknown>[]>((resolve) => setImmediate(() => resolve([journal.append([jobEvent("late-0")]), journal.append([jobEvent("late-1")])])));
    const results = await Promise.all(calls);
    await Promise.all(late);
    const seqs = results.flat().map((r) => r.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 2));
    expect(results.flat().map((r) => (r.data as { job: string }).job)).toEqual(
      Array.from({ length: 200 }, (_, i) => Array.from({ length: 1 + (i % 3) }, (_, k) => `c${i}-${k}`)).flat(),
    );
    const batches = journal.stats().batchesWritten - before;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThan(202 / 10);
    expect((await collect(journal.read())).map((r) => r.seq)).toEqual(Array.from({ length: journal.head() }, (_, i) => i + 1));
  });

  it("keeps the projection current on every append", async () => {
    const journal = await journalIn(await dirs.make(), { projection: countsProjection });
    await journal.append([jobEvent("__proto__"), jobEvent("web")]);
    await journal.append([jobEvent("__proto__", "b")]);
    const state = journal.state();
    expect(state.total).toBe(3);
    expect(state.byJob.get("__proto__")).toMatchObject({ events: 2, lastNode: "b" });
    expect(state.byType.get("JobBroughtIn")).toBe(3);
  });

  it("resumes seq, hash chain and hybrid clock after reopening, even when the wall clock went back", async () => {
    const dir = await dirs.make();
    const clock = manualClock(2_000_000_000_000);
    const first = await journalIn(dir, { clock });
    const written = await first.append([jobEvent("w"), jobEvent("w")]);
    await first.close();
    const behind = manualClock(1_000_000_000_000);
    const hlc = createHlc(behind);
    const again = await journalIn(dir, { clock: behind, hlc });
    const [next] = await again.append([jobEvent("w")]);
    expect(next!.seq).toBe(3);
    expect(next!.hlc[0]).toBe(written[1]!.hlc[0]);
    expect(next!.hlc[1]).toBeGreaterThan(written[1]!.hlc[1]);
    expect(await again.verify()).toEqual({ ok: true, count: 3, head: 3 });
  });

  it("tells a second process that the journal is in use", async () => {
    const dir = await dirs.make();
    await journalIn(dir);
    expect(await runChild("open", dir)).toBe(`journal ${dir} is in use by another process`);
  });

  it("opens read-only for replay, refusing appends, and names a missing directory", async () => {
    const dir = await dirs.make();
    const writer = await journalIn(dir);
    await writer.append([jobEvent("w")]);
    await expect(openJournal({ dir, node: "a", clock: manualClock(), readOnly: true })).rejects.toThrow(`journal ${dir} is in use by another process`);
    await writer.close();
    const reader = await journalIn(dir, { readOnly: true, node: "someone-else" });
    expect(reader.head()).toBe(1);
    await expect(reader.append([jobEvent("w")])).rejects.toThrow(/read-only/);
    await expect(openJournal({ dir: join(dir, "nope"), node: "a", clock: manualClock(), readOnly: true })).rejects.toThrow(`journal ${join(dir, "nope")} does not exist`);
  });

  it("refuses to be written by another node, and refuses appends after close", async () => {
    const dir = await dirs.make();
    const journal = await journalIn(dir);
    await journal.close();
    await expect(openJournal({ dir, node: "b", clock: manualClock() })).rejects.toThrow(`journal ${dir} belongs to node "a", not "b"`);
    await expect(journal.append([jobEvent("w")])).rejects.toThrow(/is closed/);
  });
});
