import { createHash, type Hash } from "node:crypto";
import { open, readdir, rename, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { Packr } from "msgpackr";
import { createChainWalker, type VerifyReport } from "./chain.ts";
import { chainHash, HASH_BYTES, keySeq, RECORD_MAX_BYTES, seqKey } from "./envelope.ts";
import { encodeHead, encodeIdentity, HEAD_KEY, IDENTITY_KEY, JOURNAL_FORMAT, openStore, type JournalIdentity, type Store } from "./store.ts";

/**
 * An export file holds one journal range and what is needed to verify it alone:
 *
 *   "DUETJRNL" | u32 header length | header (msgpack) | count x (u32 length | stored record bytes) | sha256
 *
 * The header names the range and carries `prev` (the hash the first record must hold) and `last`
 * (the hash of the last record): the chain then names an edited, missing or moved record by seq.
 * The closing sha256 covers every byte before it, so a change the chain cannot see (the header's
 * node or time) is found too. Records are copied byte for byte, so an import hashes exactly as
 * the source journal did.
 */
export interface ExportHeader {
  format: number;
  node: string;
  from: number;
  to: number;
  count: number;
  prev: Uint8Array;
  last: Uint8Array;
  exportedAt: number;
}

export interface ExportResult {
  from: number;
  to: number;
  count: number;
  file: string;
}

const MAGIC = Buffer.from("DUETJRNL");
const CHECKSUM_BYTES = 32;
export const EXPORT_FORMAT = 1;
const HEADER_MAX_BYTES = 4096;
/** Bytes gathered before each write to the export file, and read from it at a time. */
const FILE_CHUNK_BYTES = 1 << 20;
/** Records per LevelDB batch on import: bounded memory, few fsyncs. */
const IMPORT_BATCH_RECORDS = 5000;

const headerPackr = new Packr({ useRecords: false });

export async function exportRange(
  store: Store,
  identity: JournalIdentity,
  head: number,
  range: { from?: number; to?: number },
  file: string,
  exportedAt: number,
): Promise<ExportResult> {
  const from = Math.max(range.from ?? identity.base, identity.base);
  const to = Math.max(Math.min(range.to ?? head, head), from - 1);
  const count = to - from + 1;
  const prev = from === identity.base ? identity.basePrev : chainHash(await recordBytes(store, from - 1));
  const last = count > 0 ? chainHash(await recordBytes(store, to)) : prev;
  const header: ExportHeader = { format: EXPORT_FORMAT, node: identity.node, from, to, count, prev, last, exportedAt };

  const partial = `${file}.partial`;
  const handle = await open(partial, "w");
  const checksum = createHash("sha256");
  const write = async (chunks: Buffer[]) => {
    const bytes = Buffer.concat(chunks);
    checksum.update(bytes);
    await handle.write(bytes);
  };
  try {
    const headerBytes = headerPackr.pack(header);
    let pending: Buffer[] = [MAGIC, u32(headerBytes.length), headerBytes];
    let pendingBytes = 0;
    if (count > 0) {
      let expected = from;
      for await (const [key, value] of store.events.iterator({ gte: seqKey(from), lte: seqKey(to) })) {
        if (keySeq(key) !== expected) throw new Error(`export: journal ${store.dir} has no record ${expected}; run verify`);
        expected++;
        pending.push(u32(value.length), value);
        pendingBytes += 4 + value.length;
        if (pendingBytes >= FILE_CHUNK_BYTES) {
          await write(pending);
          pending = [];
          pendingBytes = 0;
        }
      }
      if (expected !== to + 1) throw new Error(`export: journal ${store.dir} has no record ${expected}; run verify`);
    }
    await write(pending);
    await handle.write(checksum.digest());
    await handle.sync();
    await handle.close();
    await rename(partial, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
  return { from, to, count, file };
}

async function recordBytes(store: Store, seq: number): Promise<Buffer> {
  const bytes = await store.events.get(seqKey(seq));
  if (bytes === undefined) throw new Error(`export: journal ${store.dir} has no record ${seq}; run verify`);
  return bytes;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** A problem with the file's framing or header, reported (not thrown) by verifyExport. */
class ExportFileError extends Error {}

/** Reads exactly n bytes at the cursor, or fewer at the end of the file; `checksum` sees every byte read until it is taken. */
function fileReader(handle: FileHandle, checksum?: Hash) {
  let hashing = checksum;
  let position = 0;
  let buffer = Buffer.alloc(0);
  let eof = false;
  async function read(n: number): Promise<Buffer> {
    while (buffer.length < n && !eof) {
      const chunk = Buffer.allocUnsafe(FILE_CHUNK_BYTES);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      position += bytesRead;
      if (bytesRead === 0) eof = true;
      buffer = buffer.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([buffer, chunk.subarray(0, bytesRead)]);
    }
    const out = buffer.subarray(0, n);
    buffer = buffer.subarray(out.length);
    hashing?.update(out);
    return out;
  }
  return {
    read,
    /** The checksum of every byte read so far; later reads are not hashed. */
    digest(): Buffer {
      const digest = hashing!.digest();
      hashing = undefined;
      return digest;
    },
  };
}

async function readHeader(read: (n: number) => Promise<Buffer>, file: string): Promise<ExportHeader> {
  const start = await read(MAGIC.length + 4);
  if (start.length < MAGIC.length + 4 || !start.subarray(0, MAGIC.length).equals(MAGIC)) throw new ExportFileError(`${file} is not a duet journal export`);
  const length = start.readUInt32BE(MAGIC.length);
  if (length > HEADER_MAX_BYTES) throw new ExportFileError(`${file}: header of ${length} bytes (at most ${HEADER_MAX_BYTES})`);
  const bytes = await read(length);
  let h: Partial<ExportHeader> | undefined;
  try {
    h = headerPackr.unpack(bytes) as Partial<ExportHeader>;
  } catch {
    throw new ExportFileError(`${file}: header does not decode`);
  }
  const isHash = (x: unknown) => x instanceof Uint8Array && x.length === HASH_BYTES;
  if (typeof h !== "object" || h === null || h.format !== EXPORT_FORMAT || typeof h.node !== "string" || !Number.isSafeInteger(h.from) || h.from! < 1 ||
    !Number.isSafeInteger(h.to) || h.count !== h.to! - h.from! + 1 || h.count! < 0 || !isHash(h.prev) || !isHash(h.last))
    throw new ExportFileError(`${file}: header is not a valid export header`);
  return h as ExportHeader;
}

/** The `count` records' stored bytes, in file order; a frame that is cut or oversized ends the walk. */
async function* records(read: (n: number) => Promise<Buffer>, file: string, count: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < count; i++) {
    const length = await read(4);
    if (length.length < 4) throw new ExportFileError(`${file}: ends after ${i} of ${count} records`);
    const n = length.readUInt32BE(0);
    if (n > RECORD_MAX_BYTES) throw new ExportFileError(`${file}: a record of ${n} bytes (at most ${RECORD_MAX_BYTES})`);
    const bytes = await read(n);
    if (bytes.length < n) throw new ExportFileError(`${file}: the last record is cut off`);
    yield bytes;
  }
}

/** Verifies an export on its own: header, framing, every record's schema and the hash chain. */
export async function verifyExport(file: string): Promise<VerifyReport> {
  const handle = await open(file, "r");
  try {
    const reader = fileReader(handle, createHash("sha256"));
    const read = reader.read;
    let header: ExportHeader;
    try {
      header = await readHeader(read, file);
    } catch (err) {
      if (!(err instanceof ExportFileError)) throw err;
      return { ok: false, count: 0, head: 0, firstBad: { seq: 0, problem: "undecodable", message: err.message } };
    }
    const walker = createChainWalker({ base: header.from, basePrev: header.prev, last: header.to });
    let seq = header.from;
    try {
      for await (const bytes of records(read, file, header.count)) walker.feed(seq++, bytes);
    } catch (err) {
      if (!(err instanceof ExportFileError)) throw err;
      const report = walker.finish(undefined);
      return report.firstBad ? report : { ...report, ok: false, head: header.to, firstBad: { seq, problem: "missing", message: err.message } };
    }
    const report = walker.finish({ seq: header.to, hash: header.last });
    if (!report.ok) return report;
    const expected = reader.digest();
    const stored = await read(CHECKSUM_BYTES);
    const extra = await read(1);
    if (stored.length < CHECKSUM_BYTES || extra.length > 0 || !stored.equals(expected))
      return { ...report, ok: false, firstBad: { seq: 0, problem: "edited", message: `${file}: the file's checksum does not match (header or framing changed, or bytes cut or added)` } };
    return report;
  } finally {
    await handle.close();
  }
}

export interface ImportResult {
  dir: string;
  node: string;
  from: number;
  to: number;
  count: number;
}

/** Makes a journal in an empty `dir` from an export that verifies; it starts at the export's first seq. */
export async function importJournal(file: string, dir: string, node: string): Promise<ImportResult> {
  const report = await verifyExport(file);
  if (!report.ok)
    throw new Error(`import ${file}: the export does not verify: record ${report.firstBad!.seq} ${report.firstBad!.problem}: ${report.firstBad!.message}`);
  const existing = await readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? [] : Promise.reject(err)));
  if (existing.length > 0) throw new Error(`import into ${dir}: the directory is not empty`);

  const handle = await open(file, "r");
  const store = await openStore(dir, false);
  try {
    const { read } = fileReader(handle);
    const header = await readHeader(read, file);
    const identity: JournalIdentity = { format: JOURNAL_FORMAT, node, base: header.from, basePrev: header.prev };
    await store.db.batch(
      [
        { type: "put", sublevel: store.meta, key: IDENTITY_KEY, value: encodeIdentity(identity) },
        { type: "put", sublevel: store.meta, key: HEAD_KEY, value: encodeHead({ seq: header.from - 1, hash: header.prev }) },
      ],
      { sync: true },
    );
    let seq = header.from;
    let batch = store.db.batch();
    for await (const bytes of records(read, file, header.count)) {
      batch.put(seqKey(seq), bytes, { sublevel: store.events });
      if (batch.length >= IMPORT_BATCH_RECORDS) {
        batch.put(HEAD_KEY, encodeHead({ seq, hash: chainHash(bytes) }), { sublevel: store.meta });
        await batch.write({ sync: true });
        batch = store.db.batch();
      }
      seq++;
    }
    batch.put(HEAD_KEY, encodeHead({ seq: header.to, hash: header.last }), { sublevel: store.meta });
    await batch.write({ sync: true });
    return { dir, node, from: header.from, to: header.to, count: header.count };
  } finally {
    await store.db.close();
    await handle.close();
  }
}
