import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { importJournal, openJournal, verifyExport } from "../../src/journal/journal.ts";
import { eventArb } from "./arbitraries.ts";
import { collect, jobEvent, manualClock, tempDirs } from "./helpers.ts";

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

/** A journal of `count` mixed events and its records, closed. */
async function sourceJournal(count: number) {
  const dir = await dirs.make();
  const journal = await openJournal({ dir, node: "a", clock: manualClock() });
  const events = fc.sample(eventArb, { numRuns: count, seed: count });
  await journal.append(events);
  const records = await collect(journal.read());
  return { dir, journal, records };
}

describe("journal export and import", () => {
  it("exports a range that verifies on its own and imports into a journal that verifies and goes on", async () => {
    const { dir, journal, records } = await sourceJournal(60);
    try {
      const file = join(dir, "range.duetj");
      expect(await journal.exportRange({ from: 11, to: 40 }, file)).toEqual({ from: 11, to: 40, count: 30, file });
      expect(await verifyExport(file)).toEqual({ ok: true, count: 30, head: 40 });

      const target = join(await dirs.make(), "imported");
      expect(await importJournal(file, target, "a")).toMatchObject({ from: 11, to: 40, count: 30 });
      const imported = await openJournal({ dir: target, node: "a", clock: manualClock() });
      try {
        expect(imported.base).toBe(11);
        expect(imported.head()).toBe(40);
        expect(await collect(imported.read())).toEqual(records.slice(10, 40));
        expect(await imported.verify()).toEqual({ ok: true, count: 30, head: 40 });
        const [next] = await imported.append([jobEvent("after-import")]);
        expect(next!.seq).toBe(41);
        expect(await imported.verify()).toEqual({ ok: true, count: 31, head: 41 });
      } finally {
        await imported.close();
      }
    } finally {
      await journal.close();
    }
  });

  it("exports the whole journal by default, and an empty range as an empty export", async () => {
    const { dir, journal } = await sourceJournal(12);
    try {
      const whole = await journal.exportRange({}, join(dir, "whole"));
      expect(whole).toMatchObject({ from: 1, to: 12, count: 12 });
      expect(await verifyExport(whole.file)).toEqual({ ok: true, count: 12, head: 12 });
      const empty = await journal.exportRange({ from: 13 }, join(dir, "empty"));
      expect(empty).toMatchObject({ from: 13, to: 12, count: 0 });
      expect(await verifyExport(empty.file)).toMatchObject({ ok: true, count: 0 });
      const target = join(await dirs.make(), "whole");
      await importJournal(whole.file, target, "a");
      const imported = await openJournal({ dir: target, node: "a", clock: manualClock(), readOnly: true });
      expect(await imported.verify()).toEqual({ ok: true, count: 12, head: 12 });
      await imported.close();
    } finally {
      await journal.close();
    }
  });

  it("catches any changed byte of an export, and names the record when a record was edited", async () => {
    const { dir, journal } = await sourceJournal(20);
    const file = join(dir, "export");
    await journal.exportRange({ from: 5 }, file);
    await journal.close();
    const original = await readFile(file);
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: original.length - 1 }), fc.integer({ min: 1, max: 255 }), async (at, flip) => {
        const tampered = Buffer.from(original);
        tampered.writeUInt8(tampered[at]! ^ flip, at);
        const copy = join(dir, "tampered");
        await writeFile(copy, tampered);
        const report = await verifyExport(copy);
        expect(report.ok).toBe(false);
        expect(report.firstBad).toBeDefined();
      }),
      { numRuns: 60 },
    );
    // Flip a byte inside the last record's data: the report names that record.
    const lastRecordByte = original.length - 32 - 10;
    const tampered = Buffer.from(original);
    tampered.writeUInt8(tampered[lastRecordByte]! ^ 0x01, lastRecordByte);
    await writeFile(join(dir, "tampered"), tampered);
    expect((await verifyExport(join(dir, "tampered"))).firstBad?.seq).toBe(20);
    await expect(importJournal(join(dir, "tampered"), join(await dirs.make(), "x"), "a")).rejects.toThrow(/does not verify: record 20/);
  });

  it("finds a cut-off export and refuses to import into a directory that is not empty", async () => {
    const { dir, journal } = await sourceJournal(10);
    const file = join(dir, "export");
    await journal.exportRange({}, file);
    await journal.close();
    const whole = await readFile(file);
    await writeFile(join(dir, "cut"), whole.subarray(0, whole.length - 60));
    expect(await verifyExport(join(dir, "cut"))).toMatchObject({ ok: false, firstBad: { problem: "missing" } });
    await writeFile(join(dir, "junk"), "hello");
    expect(await verifyExport(join(dir, "junk"))).toMatchObject({ ok: false, firstBad: { seq: 0, problem: "undecodable" } });
    await expect(importJournal(file, dir, "a")).rejects.toThrow(`import into ${dir}: the directory is not empty`);
  });
});
