// A second process for the journal tests.
//   open DIR      try to open the journal for writing; print "opened" or the error message
//   append DIR    load, print "loaded", wait for a line on stdin, then open the journal, print "ready HEAD" and
//                 append until killed (mixed batch sizes, some calls concurrent), printing
//                 "ok SEQ:JOB SEQ:JOB..." after each append resolves
// The compiled journal (the suite's global setup builds dist/ from these sources): transforming the
// sources through tsx in each of the crash test's 50 children cost twice the CPU, which under load
// ran the test past its budget.
const compiled = (path: string) => new URL(`../../dist/src/${path}`, import.meta.url).href;
const { openJournal } = (await import(compiled("journal/journal.js"))) as typeof import("../../src/journal/journal.ts");
const { systemClock } = (await import(compiled("world/clock.js"))) as typeof import("../../src/world/clock.ts");
import { countsProjection, jobEvent } from "./helpers.ts";

const [mode, dir] = process.argv.slice(2);
if (!dir) throw new Error("usage: child.ts open|append DIR");

if (mode === "open") {
  try {
    const journal = await openJournal({ dir, node: "a", clock: systemClock });
    console.log("opened");
    await journal.close();
  } catch (err) {
    console.log((err as Error).message);
  }
} else if (mode === "append") {
  // Loading takes most of a child's start-up; the crash test starts the next child early and lets it go later.
  process.stdin.on("end", () => process.exit(0));
  console.log("loaded");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  const journal = await openJournal({ dir, node: "a", clock: systemClock, projection: countsProjection, checkpointEvery: 300 });
  console.log(`ready ${journal.head()}`);
  // Bounded: the parent kills this process long before the loop ends.
  for (let round = 0; round < 1_000_000; round++) {
    const calls = 1 + (round % 4);
    await Promise.all(
      Array.from({ length: calls }, async (_, c) => {
        const size = 1 + ((round * 7 + c) % 40);
        const recorded = await journal.append(Array.from({ length: size }, (_, i) => jobEvent(`j${round}-${c}-${i}`)));
        // stdout to a pipe is synchronous on Linux: once printed, the parent has it.
        process.stdout.write(`ok ${recorded.map((r) => `${r.seq}:${(r.data as { job: string }).job}`).join(" ")}\n`);
      }),
    );
  }
}
