import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openJournal } from "../../src/journal/journal.ts";
import { systemClock } from "../../src/world/clock.ts";
import { collect, countsProjection, tempDirs } from "./helpers.ts";

const KILLS = 50;
/** Longest a child appends (after its first acknowledged append) before it is killed. */
const RUN_MS_MAX = 60;
const CHILD_DEADLINE_MS = 15_000;

const dirs = tempDirs();
const children = new Set<ChildProcessWithoutNullStreams>();
afterEach(async () => {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
  await dirs.cleanup();
});

/** A child appending to the journal, loaded and waiting for go(); acked holds every append it reported resolved. */
function startChild(dir: string) {
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "child.ts"), "append", dir]);
  children.add(child);
  const acked = new Map<number, string>();
  const waiters: Array<{ test: () => boolean; resolve: () => void }> = [];
  let pending = "";
  let loaded = false;
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  child.stdout.on("data", (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (line === "loaded") loaded = true;
      if (!line.startsWith("ok ")) continue;
      for (const item of line.slice(3).split(" ")) {
        const colon = item.indexOf(":");
        acked.set(Number(item.slice(0, colon)), item.slice(colon + 1));
      }
    }
    for (const w of waiters.splice(0)) (w.test() ? w.resolve() : waiters.push(w));
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const until = (test: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => reject(new Error(`child never ${what}; stderr: ${stderr}`)), CHILD_DEADLINE_MS);
      waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
      void exited.then(() => reject(new Error(`child exited before it ${what}; stderr: ${stderr}`)));
    });
  return {
    acked,
    async run(ms: number) {
      await until(() => loaded, "loaded");
      child.stdin.write("go\n");
      await until(() => acked.size > 0, "acknowledged an append");
      await new Promise((resolve) => setTimeout(resolve, ms));
      await this.kill();
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
      children.delete(child);
    },
  };
}

describe("journal crash safety", () => {
  it(`is a clean, verifiable prefix holding every acknowledged append after ${KILLS} SIGKILLs mid-append`, async () => {
    const dir = await dirs.make();
    const seed = Date.now() % 100_000;
    let random = seed;
    const nextRandom = () => (random = (random * 48271) % 2147483647) / 2147483647;
    const acked = new Map<number, string>();
    let next = startChild(dir);
    for (let kill = 0; kill < KILLS; kill++) {
      const current = next;
      next = startChild(dir); // loads while the current one runs
      await current.run(Math.floor(nextRandom() * RUN_MS_MAX));
      for (const [seq, job] of current.acked) acked.set(seq, job);

      const journal = await openJournal({ dir, node: "a", clock: systemClock, projection: countsProjection, checkpointEvery: 300 });
      try {
        const report = await journal.verify();
        const context = `kill ${kill} (seed ${seed})`;
        expect(report, context).toMatchObject({ ok: true, head: journal.head() });
        const newest = Math.max(...current.acked.keys());
        expect(journal.head(), context).toBeGreaterThanOrEqual(newest);
        const stored = await collect(journal.read(Math.min(...current.acked.keys()), newest));
        for (const record of stored) {
          const job = current.acked.get(record.seq);
          if (job !== undefined) expect((record.data as { job: string }).job, `${context}: record ${record.seq}`).toBe(job);
        }
        expect(journal.state().total, context).toBe(journal.head());
      } finally {
        await journal.close();
      }
    }
    await next.kill();

    // The state rebuilt from checkpoints equals a fold of the whole journal.
    const journal = await openJournal({ dir, node: "a", clock: systemClock, projection: countsProjection, readOnly: true });
    try {
      let folded = countsProjection.initial;
      for await (const record of journal.read()) folded = countsProjection.evolve(folded, record);
      expect(journal.state()).toStrictEqual(folded);
      expect(acked.size).toBeGreaterThanOrEqual(KILLS);
      for (const [seq] of acked) expect(seq).toBeLessThanOrEqual(journal.head());
    } finally {
      await journal.close();
    }
  }, 150_000);
});
