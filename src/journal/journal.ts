/**
 * duet's journal: the append-only log every fact and decision goes through (DESIGN "The journal").
 *
 * - Records live in LevelDB (`events` sublevel, 8-byte big-endian seq keys), each a msgpack
 *   envelope whose `prev` is the truncated sha256 of the previous record's stored bytes
 *   (envelope.ts), so a gap, an edit or a reorder is found (verify, chain.ts).
 * - append validates every event against the catalogue, then group-commits: calls arriving while a
 *   write is in flight share the next LevelDB batch, written with sync before any call resolves
 *   (group-commit.ts). The head mark (seq and hash of the last record) goes in the same batch.
 * - Reading trusts what append validated: the hot path checks each envelope's shape, seq and type
 *   cheaply and upcasts older versions (which validates); verify() runs the full schema and chain.
 *   Opening checks the chain of the records it folds after the newest checkpoint.
 * - Checkpoints of the projection state every N events keep start-up O(recent) (checkpoints.ts).
 */
import { Subject, type Observable } from "rxjs";
import { currentVersion, validateEvent } from "../events/catalogue.ts";
import type { DuetEvent, Recorded } from "../events/catalogue.ts";
import { nodeId } from "../events/ids.ts";
import type { Clock } from "../world/clock.ts";
import { createHlc, type HybridClock } from "../world/hlc.ts";
import { createChainWalker, type VerifyReport } from "./chain.ts";
import { checkProjectionName, loadCheckpoint, writeCheckpoint } from "./checkpoints.ts";
import { chainHash, decodeEnvelope, encodeEnvelope, keySeq, RECORD_MAX_BYTES, sameHash, seqKey } from "./envelope.ts";
import { exportRange as writeExport, type ExportResult } from "./export.ts";
import { createGroupCommit } from "./group-commit.ts";
import { decodeRecord, JournalRecordError, rawChunks, readChunks, READ_CHUNK_RECORDS } from "./read.ts";
import { decodeHead, decodeIdentity, encodeHead, encodeIdentity, HEAD_KEY, IDENTITY_KEY, newIdentity, openStore, type JournalIdentity, type OpenDatabase, type Op, type Store } from "./store.ts";
import { tailFrom } from "./tail.ts";

export type { VerifyReport } from "./chain.ts";
export { importJournal, verifyExport } from "./export.ts";
export { JournalRecordError } from "./read.ts";

/** A pure fold of the journal. Rename it (e.g. "jobs@2") when evolve or the state shape changes: checkpoints are found by name. */
export interface Projection<S> {
  name: string;
  initial: S;
  evolve(state: S, event: Recorded): S;
}

export const CHECKPOINT_EVERY_DEFAULT = 10_000;
/** Events in one append call, and in one LevelDB batch (a call is never split across batches). */
export const APPEND_BATCH_MAX_EVENTS = 10_000;
/** Append calls waiting behind the one being written; more are refused. */
export const APPEND_QUEUE_MAX_CALLS = 100_000;

export interface JournalOptions<S> {
  dir: string;
  /** The node writing this journal; a journal refuses to be written by another node. */
  node: string;
  clock: Clock;
  hlc?: HybridClock;
  projection?: Projection<S>;
  checkpointEvery?: number;
  /** No appends and no checkpoints: for replay or gatherinfo of a stopped node's journal. */
  readOnly?: boolean;
  /** Where non-fatal problems go (a checkpoint ignored, a failed checkpoint write). */
  warn?: (message: string) => void;
  /** The database to keep it in (absent: LevelDB in `dir`). */
  database?: OpenDatabase;
}

export interface JournalStats {
  appendCalls: number;
  eventsWritten: number;
  /** LevelDB batches written by append (each one fsync). */
  batchesWritten: number;
  checkpointsWritten: number;
  queuedCalls: number;
  /** Tail subscriptions open now. */
  tails: number;
  /** Seq of the checkpoint the state was rebuilt from on open (null: none), and records folded after it. */
  rebuiltFromCheckpoint: number | null;
  foldedOnOpen: number;
}

export interface Journal<S> {
  readonly node: string;
  readonly dir: string;
  /** First seq this journal holds: 1, or the start of an imported range. */
  readonly base: number;
  /** Last seq, 0 when empty (base - 1 for an empty imported journal). */
  head(): number;
  /** The projection folded up to head(), kept current on every append. */
  state(): S;
  /** Validates every event (one bad event refuses the whole call), then writes them durably, in one batch. */
  append(events: DuetEvent[]): Promise<Recorded[]>;
  /** Records from..to inclusive (clamped to what the journal holds), decoded and upcast. */
  read(from?: number, to?: number): AsyncIterable<Recorded>;
  /** Like read, in chunks: the fast path for folds. */
  readChunks(from?: number, to?: number): AsyncIterable<Recorded[]>;
  /** History from `from`, then live records: every seq exactly once, in order. */
  tail(from: number): Observable<Recorded>;
  /** Walks the whole chain; reports the first bad record, never throws on corruption. */
  verify(): Promise<VerifyReport>;
  exportRange(range: { from?: number; to?: number }, file: string): Promise<ExportResult>;
  stats(): JournalStats;
  /** Resolves once every append made so far has been written or refused (a simulator's step waits for it). */
  settled(): Promise<void>;
  /** An append is queued or being written now. */
  writing(): boolean;
  /** Waits for queued appends, completes tails, closes LevelDB. */
  close(): Promise<void>;
}

function checkOptions<S>(options: JournalOptions<S>): void {
  if (typeof options.dir !== "string" || options.dir.length === 0) throw new Error(`journal: dir: expected a directory path, got ${JSON.stringify(options.dir)}`);
  if (!nodeId.safeParse(options.node).success) throw new Error(`journal ${options.dir}: node: expected a name of 1..64 characters, got ${JSON.stringify(options.node)}`);
  const every = options.checkpointEvery;
  if (every !== undefined && (!Number.isSafeInteger(every) || every < 1))
    throw new Error(`journal ${options.dir}: checkpointEvery: expected a positive integer, got ${String(every)}`);
  if (options.projection) checkProjectionName(options.projection.name);
}

export async function openJournal<S = undefined>(options: JournalOptions<S>): Promise<Journal<S>> {
  checkOptions(options);
  const readOnly = options.readOnly ?? false;
  const store = await openStore(options.dir, readOnly, options.database);
  try {
    return await startJournal(store, options, readOnly);
  } catch (err) {
    await store.db.close();
    throw err;
  }
}

async function loadIdentity(store: Store, node: string, readOnly: boolean): Promise<JournalIdentity> {
  const bytes = await store.meta.get(IDENTITY_KEY);
  if (bytes !== undefined) {
    const identity = decodeIdentity(store.dir, bytes);
    if (!readOnly && identity.node !== node) throw new Error(`journal ${store.dir} belongs to node "${identity.node}", not "${node}"`);
    return identity;
  }
  const [first] = await store.events.keys({ limit: 1 }).all();
  if (first !== undefined) throw new Error(`journal ${store.dir} has records but no identity (meta "journal"); not a duet journal?`);
  const identity = newIdentity(node);
  if (!readOnly) await store.db.batch([{ type: "put", sublevel: store.meta, key: IDENTITY_KEY, value: encodeIdentity(identity) }], { sync: true });
  return identity;
}

async function startJournal<S>(store: Store, options: JournalOptions<S>, readOnly: boolean): Promise<Journal<S>> {
  const { dir, node, clock, projection } = options;
  const warn = options.warn ?? ((message: string) => process.emitWarning(message, "DuetJournalWarning"));
  const checkpointEvery = options.checkpointEvery ?? CHECKPOINT_EVERY_DEFAULT;
  const identity = await loadIdentity(store, node, readOnly);

  // Where the journal ends: the last record, cross-checked with the head mark written beside it.
  let head = identity.base - 1;
  let lastHash: Uint8Array = identity.basePrev;
  const [last] = await store.events.iterator({ reverse: true, limit: 1 }).all();
  let resumed = options.hlc;
  if (last !== undefined) {
    head = keySeq(last[0]);
    lastHash = chainHash(last[1]);
    try {
      const stamp = decodeEnvelope(last[1]).hlc;
      if (resumed) resumed.receive(stamp);
      else resumed = createHlc(clock, stamp);
    } catch (err) {
      const problem = new JournalRecordError(dir, head, `does not decode (${(err as Error).message})`);
      if (!readOnly) throw problem;
      warn(problem.message);
    }
  }
  const markBytes = await store.meta.get(HEAD_KEY);
  const mark = markBytes === undefined ? undefined : decodeHead(markBytes);
  const markAgrees = mark ? mark.seq === head && sameHash(mark.hash, lastHash) : markBytes === undefined && head < identity.base;
  if (!markAgrees) {
    const message = `journal ${dir}: its records end at ${head} but its head mark says ${mark ? mark.seq : "nothing"}; run verify`;
    if (!readOnly) throw new Error(message);
    warn(message);
  }
  const hlc = resumed ?? createHlc(clock);

  // State: newest usable checkpoint, then the records after it, checking their chain on the way.
  let state = undefined as S;
  let checkpointSeq = identity.base - 1;
  let rebuiltFromCheckpoint: number | null = null;
  if (projection) {
    const checkpoint = await loadCheckpoint<S>(store, projection.name, head, warn);
    state = checkpoint?.state ?? projection.initial;
    checkpointSeq = checkpoint?.seq ?? identity.base - 1;
    rebuiltFromCheckpoint = checkpoint?.seq ?? null;
    let prev: Uint8Array = checkpoint ? checkpoint.recordHash : identity.basePrev;
    for await (const { first, values } of rawChunks(store, checkpointSeq + 1, head)) {
      for (let i = 0; i < values.length; i++) {
        const bytes = values[i]!;
        state = projection.evolve(state, decodeRecord(dir, first + i, bytes, prev));
        prev = chainHash(bytes);
      }
    }
  }

  const live = new Subject<Recorded>();
  const stats = { appendCalls: 0, eventsWritten: 0, batchesWritten: 0, checkpointsWritten: 0, tails: 0, rebuiltFromCheckpoint, foldedOnOpen: projection ? head - checkpointSeq : 0 };
  let failure: Error | undefined;
  let closing: Promise<void> | undefined;

  /** Encodes, chains and writes the calls as one synced batch; then folds, publishes, checkpoints. */
  async function writeCalls(calls: DuetEvent[][]): Promise<Array<Recorded[] | Error>> {
    if (failure) throw failure;
    let seq = head;
    let prev = lastHash;
    const ops: Op[] = [];
    const results: Array<Recorded[] | Error> = [];
    const written: Recorded[] = [];
    for (const events of calls) {
      const start = { seq, prev, ops: ops.length };
      const recorded: Recorded[] = [];
      let refusal: Error | undefined;
      for (const event of events) {
        seq++;
        const stamp = hlc.tick();
        const at = clock.now();
        const bytes = encodeEnvelope({ seq, hlc: stamp, at, node, type: event.type, v: currentVersion(event.type), data: event.data, prev });
        if (bytes.length > RECORD_MAX_BYTES) {
          refusal = new RangeError(`journal ${dir}: append: a ${event.type} event encodes to ${bytes.length} bytes; a record holds at most ${RECORD_MAX_BYTES}`);
          break;
        }
        ops.push({ type: "put", sublevel: store.events, key: seqKey(seq), value: bytes });
        prev = chainHash(bytes);
        recorded.push({ type: event.type, data: event.data, seq, at, hlc: stamp, node } as Recorded);
      }
      if (refusal) {
        // Only this call is refused; the others in the group still go in this batch.
        ({ seq, prev } = start);
        ops.length = start.ops;
        results.push(refusal);
        continue;
      }
      results.push(recorded);
      for (const record of recorded) written.push(record);
    }
    if (written.length === 0) return results;
    ops.push({ type: "put", sublevel: store.meta, key: HEAD_KEY, value: encodeHead({ seq, hash: prev }) });
    try {
      await store.db.batch(ops, { sync: true });
    } catch (err) {
      // After a failed fsync nothing says what reached the disk: stop appending (reopen to go on).
      failure = new Error(`journal ${dir} takes no more appends after a failed write: ${(err as Error).message}; reopen it`, { cause: err });
      throw failure;
    }
    head = seq;
    lastHash = prev;
    stats.batchesWritten++;
    stats.eventsWritten += written.length;
    if (projection) {
      try {
        for (const record of written) state = projection.evolve(state, record);
      } catch (err) {
        // The records are durable (their callers are told so), but the state is no longer the fold.
        failure = new Error(`journal ${dir}: projection ${projection.name} failed on records written up to ${head}: ${(err as Error).message}`, { cause: err });
      }
    }
    for (const record of written) live.next(record);
    if (projection && !failure && head - checkpointSeq >= checkpointEvery) await checkpoint();
    return results;
  }

  async function checkpoint(): Promise<void> {
    try {
      await writeCheckpoint(store, projection!.name, head, lastHash, state);
      checkpointSeq = head;
      stats.checkpointsWritten++;
    } catch (err) {
      warn(`journal ${dir}: checkpoint at ${head} not written: ${(err as Error).message}`);
    }
  }

  const commit = createGroupCommit<DuetEvent, Recorded>({
    name: `journal ${dir}: append`,
    maxBatchItems: APPEND_BATCH_MAX_EVENTS,
    maxQueuedCalls: APPEND_QUEUE_MAX_CALLS,
    write: writeCalls,
  });

  function range(from: number | undefined, to: number | undefined): [number, number] {
    for (const [name, value] of [["from", from], ["to", to]] as const)
      if (value !== undefined && !Number.isSafeInteger(value)) throw new RangeError(`journal ${dir}: read: ${name}: expected an integer seq, got ${String(value)}`);
    return [Math.max(from ?? identity.base, identity.base), Math.min(to ?? head, head)];
  }

  async function* chunks(from?: number, to?: number): AsyncGenerator<Recorded[]> {
    const [first, last] = range(from, to);
    yield* readChunks(store, first, last);
  }

  async function* read(from?: number, to?: number): AsyncGenerator<Recorded> {
    for await (const chunk of chunks(from, to)) yield* chunk;
  }

  async function verify(): Promise<VerifyReport> {
    const snapshot = store.db.snapshot();
    try {
      const markBytes = await store.meta.get(HEAD_KEY, { snapshot });
      const mark = markBytes === undefined ? undefined : decodeHead(markBytes);
      const walker = createChainWalker({ base: identity.base, basePrev: identity.basePrev, last: mark?.seq ?? head });
      const iterator = store.events.iterator({ snapshot });
      let lastSeq = identity.base - 1;
      try {
        for (;;) {
          const entries = await iterator.nextv(READ_CHUNK_RECORDS);
          if (entries.length === 0) break;
          for (const [key, value] of entries) {
            lastSeq = key.length === 8 ? keySeq(key) : lastSeq + 1;
            walker.feed(lastSeq, value);
          }
        }
      } finally {
        await iterator.close();
      }
      const report = walker.finish(mark);
      if (report.ok && mark === undefined && report.count > 0)
        return { ...report, ok: false, firstBad: { seq: lastSeq, problem: markBytes ? "undecodable" : "missing", message: `journal ${dir}: the head mark is ${markBytes ? "unreadable" : "missing"}` } };
      return report;
    } finally {
      await snapshot.close();
    }
  }

  const journal: Journal<S> = {
    node,
    dir,
    base: identity.base,
    head: () => head,
    state() {
      if (failure && projection) throw failure;
      return state;
    },
    async append(events) {
      if (closing) throw new Error(`journal ${dir} is closed`);
      if (readOnly) throw new Error(`journal ${dir} is open read-only`);
      if (failure) throw failure;
      if (!Array.isArray(events)) throw new TypeError(`journal ${dir}: append: expected an array of events`);
      if (events.length === 0) return [];
      if (events.length > APPEND_BATCH_MAX_EVENTS) throw new RangeError(`journal ${dir}: append: ${events.length} events in one call; at most ${APPEND_BATCH_MAX_EVENTS}`);
      const valid = events.map((event) => validateEvent((event as { type?: unknown })?.type as string, (event as { data?: unknown })?.data));
      stats.appendCalls++;
      return commit.submit(valid);
    },
    read,
    readChunks: chunks,
    tail: (from) =>
      tailFrom(
        {
          head: () => head,
          history: (first, last) => readChunks(store, first, last),
          live,
          isClosed: () => closing !== undefined,
          track: (delta) => (stats.tails += delta),
        },
        Math.max(from, identity.base),
      ),
    verify,
    exportRange: (range, file) => writeExport(store, identity, head, range, file, clock.now()),
    stats: () => ({ ...stats, queuedCalls: commit.queued() }),
    settled: () => commit.idle(),
    writing: () => commit.busy(),
    close() {
      closing ??= (async () => {
        await commit.idle();
        live.complete();
        await store.db.close();
      })();
      return closing;
    },
  };
  return journal;
}
