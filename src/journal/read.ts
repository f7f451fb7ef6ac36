import type { Recorded } from "../events/catalogue.ts";
import { decodeRecorded, seqKey } from "./envelope.ts";
import type { Store } from "./store.ts";

/** Records fetched from LevelDB per step: large enough to amortise the native call, small in memory. */
export const READ_CHUNK_RECORDS = 1000;

/** A stored record that cannot be read back; `seq` names it. */
export class JournalRecordError extends Error {
  constructor(
    readonly dir: string,
    readonly seq: number,
    detail: string,
  ) {
    super(`journal ${dir}: record ${seq}: ${detail} (run verify for the full picture)`);
  }
}

/**
 * Stored bytes of records from..to (inclusive) in chunks, with the seq of each chunk's first
 * record. Values only: the seq inside each envelope is checked against its position instead,
 * which also finds a missing or moved record.
 */
export async function* rawChunks(store: Store, from: number, to: number): AsyncGenerator<{ first: number; values: Buffer[] }> {
  if (from > to) return;
  const iterator = store.events.iterator({ gte: seqKey(from), lte: seqKey(to), keys: false });
  let next = from;
  try {
    while (next <= to) {
      const entries = await iterator.nextv(READ_CHUNK_RECORDS);
      if (entries.length === 0) throw new JournalRecordError(store.dir, next, "missing (the journal ends before it)");
      const values = entries.map(([, value]) => value as Buffer);
      yield { first: next, values };
      next += values.length;
    }
  } finally {
    await iterator.close();
  }
}

/** `prev`, when given, is the hash the record must carry: the chain is checked too. */
export function decodeRecord(dir: string, seq: number, bytes: Buffer, prev?: Uint8Array): Recorded {
  try {
    return decodeRecorded(bytes, seq, prev);
  } catch (err) {
    throw new JournalRecordError(dir, seq, (err as Error).message);
  }
}

/** Decoded records from..to in chunks (the cheap read path, see decodeRecorded); a bad record ends it with its error, after the good ones before it. */
export async function* readChunks(store: Store, from: number, to: number): AsyncGenerator<Recorded[]> {
  for await (const { first, values } of rawChunks(store, from, to)) {
    const records: Recorded[] = [];
    for (let i = 0; i < values.length; i++) {
      try {
        records.push(decodeRecord(store.dir, first + i, values[i]!));
      } catch (err) {
        if (records.length > 0) yield records;
        throw err;
      }
    }
    yield records;
  }
}
