import { Observable, type Subject, type Subscription } from "rxjs";
import type { Recorded } from "../events/catalogue.ts";

export interface TailSource {
  /** Last durable seq; advanced in the same synchronous step that emits on `live`. */
  head(): number;
  /** Records already stored, in chunks. */
  history(from: number, to: number): AsyncIterable<Recorded[]>;
  /** Every record once it is durable, in seq order. */
  live: Subject<Recorded>;
  isClosed(): boolean;
  /** Told when a tail starts and ends, so the journal can count them (no leaks). */
  track(delta: 1 | -1): void;
}

/**
 * History from `from`, then live records, each seq exactly once. The hand-over needs no buffer:
 * history is read in chunks until the reader has caught up with head(); the check "caught up"
 * and the live subscription happen in one synchronous step, and head() only moves in the step
 * that emits on `live`, so no record can fall between the two.
 */
export function tailFrom(source: TailSource, from: number): Observable<Recorded> {
  return new Observable<Recorded>((subscriber) => {
    let next = from;
    let stopped = false;
    let live: Subscription | undefined;
    source.track(1);

    const deliver = (record: Recorded): void => {
      if (record.seq < next) return;
      if (record.seq !== next) {
        subscriber.error(new Error(`journal tail: expected record ${next}, got ${record.seq}`));
        return;
      }
      next++;
      subscriber.next(record);
    };

    const catchUp = async (): Promise<void> => {
      while (!stopped) {
        const head = source.head();
        if (next > head) {
          live = source.live.subscribe({ next: deliver, error: (err) => subscriber.error(err), complete: () => subscriber.complete() });
          return;
        }
        for await (const chunk of source.history(next, head)) {
          for (const record of chunk) {
            if (stopped) return;
            deliver(record);
          }
        }
      }
    };
    catchUp().catch((err: unknown) => {
      if (stopped) return;
      if (source.isClosed()) subscriber.complete();
      else subscriber.error(err);
    });

    return () => {
      stopped = true;
      live?.unsubscribe();
      source.track(-1);
    };
  });
}
