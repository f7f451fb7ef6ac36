import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { DuetEvent, Recorded } from "../../src/events/catalogue.ts";
import { CHECKPOINTS_KEPT } from "../../src/journal/checkpoints.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { eventArb } from "./arbitraries.ts";
import { collect, countsProjection, jobEvent, manualClock, rawEvents, tempDirs, type Counts } from "./helpers.ts";

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

async function foldOf(journal: { read(): AsyncIterable<Recorded> }): Promise<Counts> {
  return (await collect(journal.read())).reduce(countsProjection.evolve, countsProjection.initial);
}

async function appendAll(dir: string, events: DuetEvent[], checkpointEvery: number) {
  const journal = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection, checkpointEvery });
  try {
    if (events.length > 0) await journal.append(events);
    return journal.state();
  } finally {
    await journal.close();
  }
}

describe("journal projection and checkpoints", () => {
  it("folds the same journal to equal states every time, and equal to the state kept on append", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(eventArb, { minLength: 1, maxLength: 6 }), { maxLength: 8 }), async (calls) => {
        const dir = await dirs.make();
        const journal = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection });
        try {
          await Promise.all(calls.map((events) => journal.append(events)));
          const once = (await collect(journal.read())).reduce(countsProjection.evolve, countsProjection.initial);
          const twice = (await collect(journal.read())).reduce(countsProjection.evolve, countsProjection.initial);
          expect(twice).toStrictEqual(once);
          expect(journal.state()).toStrictEqual(once);
        } finally {
          await journal.close();
        }
      }),
      { numRuns: 25 },
    );
  });

  it("rebuilds from a checkpoint at any point plus the rest to exactly the full fold", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 40 }).chain((events) => fc.record({ events: fc.constant(events), cut: fc.integer({ min: 1, max: events.length }) })),
        async ({ events, cut }) => {
          const dir = await dirs.make();
          await appendAll(dir, events.slice(0, cut), 1); // checkpoint at `cut`
          await appendAll(dir, events.slice(cut), 1_000_000); // the rest, no checkpoint
          const journal = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection, readOnly: true });
          try {
            expect(journal.stats()).toMatchObject({ rebuiltFromCheckpoint: cut, foldedOnOpen: events.length - cut });
            expect(journal.state()).toStrictEqual(await foldOf(journal));
          } finally {
            await journal.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("writes a checkpoint every N events and keeps only the newest few", async () => {
    const dir = await dirs.make();
    const journal = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection, checkpointEvery: 10 });
    for (let i = 0; i < 100; i += 5) await journal.append(Array.from({ length: 5 }, (_, k) => jobEvent(`j${i + k}`)));
    expect(journal.stats().checkpointsWritten).toBe(10);
    await journal.close();
    const raw = await rawEvents(dir);
    const keys = await raw.checkpoints.keys().all();
    await raw.db.close();
    expect(keys.length).toBe(CHECKPOINTS_KEPT);
    const reopened = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection });
    expect(reopened.stats()).toMatchObject({ rebuiltFromCheckpoint: 100, foldedOnOpen: 0 });
    await reopened.close();
  });

  it("ignores a checkpoint that does not decode, with a warning, and falls back to an older one or a full replay", async () => {
    const dir = await dirs.make();
    await appendAll(dir, Array.from({ length: 30 }, (_, i) => jobEvent(i % 2 ? "__proto__" : `j${i}`)), 1); // one checkpoint, at 30
    await appendAll(dir, Array.from({ length: 7 }, (_, i) => jobEvent(`late${i}`)), 1_000_000);
    const raw = await rawEvents(dir);
    const [key] = await raw.checkpoints.keys().all();
    await raw.checkpoints.put(key!, Buffer.from([0xd4, 0x7f, 0x00, 0x01]));
    await raw.db.close();

    const warnings: string[] = [];
    const journal = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection, warn: (m) => warnings.push(m) });
    try {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/checkpoint of test-counts@1 at seq 30 ignored/);
      expect(journal.stats()).toMatchObject({ rebuiltFromCheckpoint: null, foldedOnOpen: 37 });
      expect(journal.state()).toStrictEqual(await foldOf(journal));
    } finally {
      await journal.close();
    }
  });

  it("uses the newest good checkpoint when a newer one is damaged", async () => {
    const dir = await dirs.make();
    await appendAll(dir, Array.from({ length: 10 }, (_, i) => jobEvent(`a${i}`)), 1);
    await appendAll(dir, Array.from({ length: 10 }, (_, i) => jobEvent(`b${i}`)), 1);
    const raw = await rawEvents(dir);
    const keys = await raw.checkpoints.keys({ reverse: true }).all();
    expect(keys).toHaveLength(2);
    await raw.checkpoints.put(keys[0]!, Buffer.from("not a checkpoint"));
    await raw.db.close();
    const warnings: string[] = [];
    const journal = await openJournal({ dir, node: "a", clock: manualClock(), projection: countsProjection, readOnly: true, warn: (m) => warnings.push(m) });
    try {
      expect(warnings.join()).toMatch(/at seq 20 ignored/);
      expect(journal.stats()).toMatchObject({ rebuiltFromCheckpoint: 10, foldedOnOpen: 10 });
      expect(journal.state()).toStrictEqual(await foldOf(journal));
    } finally {
      await journal.close();
    }
  });
});
