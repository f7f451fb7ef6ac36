import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DuetEvent, Recorded } from "../../src/events/catalogue.ts";
import type { Projection } from "../../src/journal/journal.ts";
import type { Clock } from "../../src/world/clock.ts";

// Fixtures shared by the journal tests and child.ts (which must stay light: no fast-check here).

/** Temp dirs made by a test file, removed in afterEach/afterAll even when a test fails. */
export function tempDirs() {
  const made: string[] = [];
  return {
    async make(): Promise<string> {
      const dir = await mkdtemp(join(tmpdir(), "duet-journal-test-"));
      made.push(dir);
      return dir;
    },
    async cleanup(): Promise<void> {
      await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
    },
  };
}

/** A clock the test moves; journal `at` and HLC stamps come from it. */
export function manualClock(start = 1_700_000_000_000): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => now, monotonic: () => now - start, advance: (ms) => void (now += ms) };
}

/** A small projection with Maps keyed by user names, nulls and undefineds, as real folds have. */
export interface Counts {
  total: number;
  byType: Map<string, number>;
  byJob: Map<string, { events: number; lastNode: string | null; firstSeq: number | undefined }>;
  lastAlert: string | null;
  seqs: number[];
}

export const countsProjection: Projection<Counts> = {
  name: "test-counts@1",
  initial: { total: 0, byType: new Map(), byJob: new Map(), lastAlert: null, seqs: [] },
  evolve(state, event: Recorded) {
    const byType = new Map(state.byType).set(event.type, (state.byType.get(event.type) ?? 0) + 1);
    const data = event.data as { job?: string; node?: string };
    let byJob = state.byJob;
    if (data.job !== undefined) {
      const before = state.byJob.get(data.job);
      byJob = new Map(byJob).set(data.job, { events: (before?.events ?? 0) + 1, lastNode: data.node ?? null, firstSeq: before ? before.firstSeq : event.seq % 3 === 0 ? undefined : event.seq });
    }
    return {
      total: state.total + 1,
      byType,
      byJob,
      lastAlert: event.type === "AlertRaised" ? event.data.code : state.lastAlert,
      seqs: state.seqs.length < 50 ? [...state.seqs, event.seq] : state.seqs,
    };
  },
};

export function jobEvent(job: string, node = "a"): DuetEvent {
  return { type: "JobBroughtIn", data: { job, node } };
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** The journal's LevelDB opened directly, to corrupt it as a disk or an intruder would. */
export async function rawEvents(dir: string) {
  const { Level } = await import("level");
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
  await db.open();
  return { db, events: db.sublevel<Buffer, Buffer>("events", { keyEncoding: "buffer", valueEncoding: "buffer" }), checkpoints: db.sublevel<Buffer, Buffer>("checkpoints", { keyEncoding: "buffer", valueEncoding: "buffer" }) };
}
