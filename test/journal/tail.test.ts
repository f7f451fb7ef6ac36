import type { Subscription } from "rxjs";
import { afterEach, describe, expect, it } from "vitest";
import type { Recorded } from "../../src/events/catalogue.ts";
import { openJournal, type Journal } from "../../src/journal/journal.ts";
import { jobEvent, manualClock, tempDirs } from "./helpers.ts";

const dirs = tempDirs();
const subscriptions: Subscription[] = [];
afterEach(async () => {
  for (const s of subscriptions.splice(0)) s.unsubscribe();
  await dirs.cleanup();
});

/** Follows journal.tail(from), recording seqs; `reached(seq)` resolves once that seq arrived. */
function follow(journal: Journal<unknown>, from: number) {
  const seqs: number[] = [];
  const waiting = new Map<number, () => void>();
  let failure: unknown;
  const subscription = journal.tail(from).subscribe({
    next: (record: Recorded) => {
      seqs.push(record.seq);
      waiting.get(record.seq)?.();
    },
    error: (err) => (failure = err),
  });
  subscriptions.push(subscription);
  return {
    from,
    seqs,
    subscription,
    failure: () => failure,
    reached: (seq: number) => (seqs.includes(seq) ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(seq, resolve))),
  };
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

describe("journal tail", () => {
  it("hands over from history to live with every seq exactly once, in order, while appends race the switch", async () => {
    for (let scenario = 0; scenario < 4; scenario++) {
      const journal = (await openJournal({ dir: await dirs.make(), node: "a", clock: manualClock() })) as Journal<unknown>;
      try {
        for (let i = 0; i < 3; i++) await journal.append(Array.from({ length: 100 }, (_, k) => jobEvent(`h${i}-${k}`)));
        const tails = [follow(journal, 1), follow(journal, journal.head() - 5), follow(journal, journal.head() + 1), follow(journal, journal.head() + 40)];
        // A tail started from inside another tail's callback, in the middle of a live emission.
        let nested = false;
        const first = tails[0]!;
        subscriptions.push(
          journal.tail(310).subscribe(() => {
            if (!nested) tails.push(follow(journal, 1 + scenario));
            nested = true;
          }),
        );
        const writers = Array.from({ length: 4 }, async (_, w) => {
          for (let round = 0; round < 30; round++) {
            const size = 1 + ((round * 7 + w * 3 + scenario) % 17);
            await journal.append(Array.from({ length: size }, (_, k) => jobEvent(`w${w}-${round}-${k}`)));
            // New tails join at moments when history is still being read and appends are in flight.
            if (round % 6 === w) tails.push(follow(journal, Math.max(1, journal.head() - round * 9)));
          }
        });
        await Promise.all(writers);
        const head = journal.head();
        await Promise.all(tails.map((t) => t.reached(head)));
        for (const t of tails) {
          expect(t.failure()).toBeUndefined();
          expect(t.seqs, `tail from ${t.from}`).toEqual(range(t.from, head));
        }
        expect(first.seqs).toHaveLength(head);
      } finally {
        await journal.close();
      }
    }
  });

  it("lets go of tails that unsubscribe, in history or live, so nothing leaks", async () => {
    const journal = (await openJournal({ dir: await dirs.make(), node: "a", clock: manualClock() })) as Journal<unknown>;
    try {
      await journal.append(Array.from({ length: 2500 }, (_, i) => jobEvent(`j${i}`)));
      const early = Array.from({ length: 20 }, () => follow(journal, 1));
      for (const t of early) t.subscription.unsubscribe(); // still reading history
      const live = Array.from({ length: 20 }, () => follow(journal, journal.head() + 1));
      await journal.append([jobEvent("one")]);
      await Promise.all(live.map((t) => t.reached(2501)));
      for (const t of live) t.subscription.unsubscribe();
      expect(journal.stats().tails).toBe(0);
      await journal.append([jobEvent("two")]);
      for (const t of live) expect(t.seqs).toEqual([2501]);
      for (const t of early) expect(t.seqs.length).toBeLessThan(2500);
    } finally {
      await journal.close();
    }
  });

  it("completes tails when the journal closes", async () => {
    const journal = (await openJournal({ dir: await dirs.make(), node: "a", clock: manualClock() })) as Journal<unknown>;
    await journal.append([jobEvent("a")]);
    const completed = new Promise<void>((resolve) => subscriptions.push(journal.tail(1).subscribe({ complete: resolve })));
    await journal.close();
    await completed;
    expect(journal.stats().tails).toBe(0);
  });
});
