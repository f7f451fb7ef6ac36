import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { seqKey } from "../../src/journal/envelope.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { eventArb } from "./arbitraries.ts";
import { jobEvent, manualClock, rawEvents, tempDirs } from "./helpers.ts";

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const quiet = () => undefined;

/** A journal of `count` events, closed, in a fresh dir. */
async function journalOf(count: number): Promise<string> {
  const dir = await dirs.make();
  const journal = await openJournal({ dir, node: "a", clock: manualClock() });
  for (let i = 0; i < count; i += 7) await journal.append(Array.from({ length: Math.min(7, count - i) }, (_, k) => jobEvent(`job-${i + k}`)));
  await journal.close();
  return dir;
}

async function verifyAfter(dir: string, corrupt: (raw: Awaited<ReturnType<typeof rawEvents>>) => Promise<void>) {
  const raw = await rawEvents(dir);
  try {
    await corrupt(raw);
  } finally {
    await raw.db.close();
  }
  const journal = await openJournal({ dir, node: "a", clock: manualClock(), readOnly: true, warn: quiet });
  try {
    return await journal.verify();
  } finally {
    await journal.close();
  }
}

const cases = fc.integer({ min: 1, max: 24 }).chain((count) => fc.record({ count: fc.constant(count), k: fc.integer({ min: 1, max: count }) }));

describe("journal verify", () => {
  it("passes an intact journal of any events", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(eventArb, { maxLength: 20 }), async (events) => {
        const dir = await dirs.make();
        const journal = await openJournal({ dir, node: "a", clock: manualClock() });
        try {
          if (events.length > 0) await journal.append(events);
          expect(await journal.verify()).toEqual({ ok: true, count: events.length, head: events.length });
        } finally {
          await journal.close();
        }
      }),
      { numRuns: 20 },
    );
  });

  it("finds any single mutated byte at the record that holds it", async () => {
    await fc.assert(
      fc.asyncProperty(cases, fc.nat(), fc.integer({ min: 1, max: 255 }), async ({ count, k }, at, flip) => {
        const dir = await journalOf(count);
        const report = await verifyAfter(dir, async ({ events }) => {
          const bytes = Buffer.from((await events.get(seqKey(k)))!);
          bytes.writeUInt8(bytes[at % bytes.length]! ^ flip, at % bytes.length);
          await events.put(seqKey(k), bytes);
        });
        expect(report.ok).toBe(false);
        expect(report.firstBad?.seq).toBe(k);
        expect(["edited", "undecodable", "schema", "reordered"]).toContain(report.firstBad?.problem);
      }),
      { numRuns: 40 },
    );
  });

  it("reports a dropped record as missing at its seq", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ count, k }) => {
        const dir = await journalOf(count);
        const report = await verifyAfter(dir, ({ events }) => events.del(seqKey(k)));
        expect(report).toMatchObject({ ok: false, head: count, firstBad: { seq: k, problem: "missing" } });
      }),
      { numRuns: 20 },
    );
  });

  it("reports two swapped records as reordered at the first of them", async () => {
    const pairs = fc.integer({ min: 2, max: 24 }).chain((count) =>
      fc.tuple(fc.integer({ min: 1, max: count }), fc.integer({ min: 1, max: count })).filter(([a, b]) => a !== b).map(([a, b]) => ({ count, a: Math.min(a, b), b: Math.max(a, b) })),
    );
    await fc.assert(
      fc.asyncProperty(pairs, async ({ count, a, b }) => {
        const dir = await journalOf(count);
        const report = await verifyAfter(dir, async ({ events }) => {
          const [first, second] = [await events.get(seqKey(a)), await events.get(seqKey(b))];
          await events.batch([{ type: "put", key: seqKey(a), value: second! }, { type: "put", key: seqKey(b), value: first! }]);
        });
        expect(report).toMatchObject({ ok: false, firstBad: { seq: a, problem: "reordered" } });
      }),
      { numRuns: 20 },
    );
  });

  it("finds an edit that keeps the record well-formed, naming the edited record", async () => {
    const dir = await journalOf(10);
    const journal = await openJournal({ dir, node: "a", clock: manualClock() });
    const original = (await journal.read(4, 4)[Symbol.asyncIterator]().next()).value!;
    await journal.close();
    const { encodeEnvelope, decodeEnvelope } = await import("../../src/journal/envelope.ts");
    const report = await verifyAfter(dir, async ({ events }) => {
      const envelope = decodeEnvelope((await events.get(seqKey(4)))!);
      await events.put(seqKey(4), encodeEnvelope({ ...envelope, data: { job: "forged", node: "a" } }));
    });
    expect(original.seq).toBe(4);
    expect(report).toMatchObject({ ok: false, count: 10, head: 10, firstBad: { seq: 4, problem: "edited" } });
  });

  it("refuses to open a damaged journal for writing, and names the seq on read", async () => {
    const dir = await journalOf(5);
    await verifyAfter(dir, ({ events }) => events.put(seqKey(3), Buffer.from("garbage")));
    await verifyAfter(dir, ({ events }) => events.del(seqKey(5)));
    await expect(openJournal({ dir, node: "a", clock: manualClock() })).rejects.toThrow(/records end at 4 but its head mark says 5/);
    const reader = await openJournal({ dir, node: "a", clock: manualClock(), readOnly: true, warn: quiet });
    try {
      const seen: number[] = [];
      await expect(async () => {
        for await (const record of reader.read()) seen.push(record.seq);
      }).rejects.toThrow(/record 3: not msgpack|record 3: not an envelope/);
      expect(seen).toEqual([1, 2]);
    } finally {
      await reader.close();
    }
  });
});
