import { chainHash, decodeEnvelope, sameHash, validatedRecorded } from "./envelope.ts";
import type { HeadMark } from "./store.ts";

export type Problem = "missing" | "edited" | "reordered" | "undecodable" | "schema";

export interface VerifyReport {
  ok: boolean;
  /** Records walked (present in the range checked). */
  count: number;
  /** The last seq the journal (or export) says it holds. */
  head: number;
  firstBad?: { seq: number; problem: Problem; message: string };
}

/**
 * Walks records in storage order and names the first one that is wrong. Each record is decoded,
 * schema-checked, and its `prev` compared with the hash of the record before it.
 *
 * A broken link between k-1 and k means either k-1's bytes changed (its successor no longer
 * matches) or k's `prev` field changed (then k's own hash changed too, so the link k -> k+1, or
 * the head mark, breaks as well). The walker waits one record to tell the two apart, so a single
 * edit is reported at the record that was edited.
 */
export function createChainWalker(options: { base: number; basePrev: Uint8Array; last: number }) {
  let expected = options.base;
  let prevHash: Uint8Array = options.basePrev;
  let count = 0;
  let suspect: number | undefined; // link into this seq is broken; is it this record or the one before?
  let firstBad: VerifyReport["firstBad"];

  function bad(seq: number, problem: Problem, message: string) {
    firstBad ??= { seq, problem, message };
  }

  function resolveSuspect(nextLinkBroken: boolean) {
    if (suspect === undefined) return;
    const seq = nextLinkBroken ? suspect : suspect - 1;
    bad(seq, "edited", `record ${seq} does not match the hash its successor holds`);
    suspect = undefined;
  }

  function feed(seq: number, bytes: Uint8Array): void {
    count++;
    if (firstBad) return;
    if (seq !== expected) {
      resolveSuspect(true);
      if (seq > expected) bad(expected, "missing", `record ${expected} is missing (next present is ${seq})`);
      else bad(seq, "reordered", `record ${seq} appears after ${expected - 1}`);
      return;
    }
    let envelope;
    try {
      envelope = decodeEnvelope(bytes);
    } catch (err) {
      resolveSuspect(true);
      return bad(seq, "undecodable", `record ${seq}: ${(err as Error).message}`);
    }
    if (envelope.seq !== seq) {
      resolveSuspect(true);
      const inRange = envelope.seq >= options.base && envelope.seq <= options.last;
      return bad(seq, inRange ? "reordered" : "edited", `record stored at ${seq} says it is record ${envelope.seq}`);
    }
    try {
      validatedRecorded(envelope);
    } catch (err) {
      resolveSuspect(true);
      return bad(seq, "schema", `record ${seq}: ${(err as Error).message}`);
    }
    const linked = sameHash(envelope.prev, prevHash);
    resolveSuspect(!linked);
    if (firstBad) return;
    if (!linked) suspect = seq;
    prevHash = chainHash(bytes);
    expected = seq + 1;
  }

  /** `mark` is where the journal says it ends; undefined means nothing says so. */
  function finish(mark: HeadMark | undefined): VerifyReport {
    const last = expected - 1;
    if (!firstBad && mark) {
      resolveSuspect(mark.seq === last && !sameHash(mark.hash, prevHash));
      if (mark.seq > last) bad(last + 1, "missing", `record ${last + 1} is missing (the journal ends at ${mark.seq})`);
      else if (mark.seq < last) bad(mark.seq + 1, "edited", `record ${mark.seq + 1} lies beyond the journal's recorded end ${mark.seq}`);
      else if (!sameHash(mark.hash, prevHash)) bad(last, "edited", `record ${last} does not match the hash recorded for the journal's end`);
    }
    resolveSuspect(true);
    const head = mark?.seq ?? last;
    return firstBad ? { ok: false, count, head, firstBad } : { ok: true, count, head };
  }

  return { feed, finish };
}
