import { createHash, hash } from "node:crypto";
import { Packr } from "msgpackr";
import { z } from "zod";
import { batchOp } from "../events/replication.ts";
import { firstIssue } from "../events/issue.ts";

export type BatchOp = z.infer<typeof batchOp>;

/** One write batch on the wire and in staging: ops in order, the written blocks' bytes after them. */
export interface Batch {
  job: string;
  generation: string;
  batch: number;
  ops: BatchOp[];
  /** The bytes of every write op's blocks, in op and block order. */
  data: Buffer;
  sha256: string;
  /** Format 2 (an older agent's): its write checksums are legacy blocksChecksum. */
  legacy?: true;
}

/** A batch on the wire travels in one peer-channel frame (16 MiB): capture keeps its data to SCAN_BATCH_DATA_MAX (4 MiB), leaving room for the ops. */
export const BATCH_MAX_BYTES = 15 * 1024 * 1024;
const BATCH_FORMAT = 3;
const packr = new Packr({ useRecords: false, moreTypes: false });

export class BatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BatchError";
  }
}

/** The unit of the write checksums: capture's change index uses the same blocks. */
export const CHECKSUM_BLOCK_BYTES = 64 * 1024;
/** The unit a change is found and shipped in: a 4 KiB write ships about 4 KiB. */
export const PIECE_BYTES = 4096;
/** A piece's checksum: the first 128 bits of its sha256. */
export const PIECE_SUM_BYTES = 16;

/**
 * The batch checksum covers the ops, whose write checksums cover every byte of data (and the
 * applier refuses bytes that belong to no write): the data is hashed once on each side, not twice.
 */
export function batchChecksum(ops: BatchOp[], data: Buffer): string {
  return createHash("sha256").update(packr.pack(ops)).update(String(data.length)).digest("hex");
}

/** The checksums of each 4 KiB piece of `bytes` (the last may be short), PIECE_SUM_BYTES each. */
export function pieceSums(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(bytes.length / PIECE_BYTES) * PIECE_SUM_BYTES);
  // As a latin1 string, not a Buffer: a Buffer per 4 KiB piece is garbage the collector must trace.
  for (let at = 0, i = 0; at < bytes.length; at += PIECE_BYTES, i += PIECE_SUM_BYTES) out.write(hash("sha256", bytes.subarray(at, at + PIECE_BYTES), "binary"), i, PIECE_SUM_BYTES, "latin1");
  return out;
}

/** A 64 KiB block's checksum (hex) from its pieces' checksums: one pass over the bytes gives both. */
export const blockSumOfPieces = (sums: Buffer): string => hash("sha256", sums, "hex");

/**
 * A write op's checksum: over the checksums of its bytes in 64 KiB blocks. Capture has those block
 * checksums already (its change index), so it only hashes them; the applier hashes the bytes once.
 * `legacy`: format 2 batches summed each block's bytes directly.
 */
export function blocksChecksum(bytes: Buffer, legacy = false): string {
  const sums: string[] = [];
  for (let at = 0; at < bytes.length; at += CHECKSUM_BLOCK_BYTES) {
    const block = bytes.subarray(at, at + CHECKSUM_BLOCK_BYTES);
    sums.push(legacy ? hash("sha256", block, "hex") : blockSumOfPieces(pieceSums(block)));
  }
  return checksumOfBlockSums(sums);
}

/** The same checksum from the 64 KiB blocks' own sha256 (hex), in order. */
export function checksumOfBlockSums(sums: readonly string[]): string {
  return createHash("sha256").update(sums.join("")).digest("hex");
}

/** The same ops with paths under mirror `index` ("0/docs/a.txt"): how capture names a job's several mirrors. */
export function inMirror(ops: BatchOp[], index: number): BatchOp[] {
  return ops.map((op) => (op.op === "rename" ? { ...op, path: `${index}/${op.path}`, to: `${index}/${op.to}` } : { ...op, path: `${index}/${op.path}` }));
}

export function makeBatch(job: string, generation: string, batch: number, ops: BatchOp[], data: Buffer): Batch {
  return { job, generation, batch, ops, data, sha256: batchChecksum(ops, data) };
}

/**
 * The encoded form: a magic byte, the length of a msgpack header, the header (format, job,
 * generation, number, ops, checksum), then the data as it is, decoded as a view: msgpack would
 * copy it through a buffer four times its size.
 */
const BATCH_MAGIC = 0xd7;
/** msgpack's fixarray of 7: how format 2 began. */
const LEGACY_ARRAY = 0x97;
const PREFIX_BYTES = 5;

/** An encoded batch as parts whose concatenation is its bytes: the head, then the data uncopied. */
export type EncodedBatch = readonly Buffer[];
export const encodedLength = (parts: EncodedBatch): number => parts.reduce((sum, part) => sum + part.length, 0);

/**
 * The encoded batch as [magic, header length and header; data]: the data is not copied, the
 * queue keeps and the channel sends the two parts as they are. `verify` false only for a batch
 * this process just built with makeBatch (its checksum is right by construction).
 */
export function encodeBatchParts(b: Batch, verify = true): [Buffer, Buffer] {
  if (verify && batchChecksum(b.ops, b.data) !== b.sha256) throw new BatchError(`batch ${b.batch}: checksum does not match its contents (built wrong)`);
  const header = packr.pack([BATCH_FORMAT, b.job, b.generation, b.batch, b.ops, b.sha256]);
  const length = PREFIX_BYTES + header.length + b.data.length;
  if (length > BATCH_MAX_BYTES) throw new BatchError(`batch ${b.batch}: ${length} bytes, more than ${BATCH_MAX_BYTES}`);
  const head = Buffer.allocUnsafe(PREFIX_BYTES + header.length);
  head[0] = BATCH_MAGIC;
  head.writeUInt32BE(header.length, 1);
  header.copy(head, PREFIX_BYTES);
  return [head, b.data];
}

/** The encoded batch as one buffer. */
export function encodeBatch(b: Batch, verify = true): Buffer {
  return Buffer.concat(encodeBatchParts(b, verify));
}

/** Decodes and checks a batch; anything wrong is a BatchError naming what, never a partial batch. The data is a view of `bytes`. */
export function decodeBatch(bytes: Buffer): Batch {
  if (bytes.length > BATCH_MAX_BYTES) throw new BatchError(`batch of ${bytes.length} bytes, more than ${BATCH_MAX_BYTES}`);
  const unpack = (part: Buffer) => {
    try {
      return packr.unpack(part) as unknown;
    } catch (error) {
      throw new BatchError(`undecodable batch: ${(error as Error).message}`);
    }
  };
  let fields: unknown[];
  let data: unknown;
  if (bytes[0] === LEGACY_ARRAY) {
    // Format 2, one msgpack array with the data inside: still queued or staged by an older agent.
    const legacy = unpack(bytes);
    if (!Array.isArray(legacy) || legacy.length !== 7 || legacy[0] !== 2) throw new BatchError(`not a duet write batch (format ${BATCH_FORMAT})`);
    data = legacy[5];
    fields = [BATCH_FORMAT, ...legacy.slice(1, 5), legacy[6]];
  } else {
    const headerLength = bytes.length >= PREFIX_BYTES && bytes[0] === BATCH_MAGIC ? bytes.readUInt32BE(1) : -1;
    if (headerLength < 0 || PREFIX_BYTES + headerLength > bytes.length) throw new BatchError(`not a duet write batch (format ${BATCH_FORMAT})`);
    const header = unpack(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength));
    if (!Array.isArray(header) || header.length !== 6 || header[0] !== BATCH_FORMAT) throw new BatchError(`not a duet write batch (format ${BATCH_FORMAT})`);
    fields = header;
    data = bytes.subarray(PREFIX_BYTES + headerLength);
  }
  const [, job, generation, batch, ops, sha256] = fields as [number, string, string, number, BatchOp[], string];
  if (typeof job !== "string" || typeof generation !== "string" || !Number.isSafeInteger(batch) || !Array.isArray(ops) || !Buffer.isBuffer(data) || typeof sha256 !== "string")
    throw new BatchError("batch fields have the wrong types");
  const checked = z.array(batchOp).safeParse(ops);
  if (!checked.success) throw new BatchError(`batch ${batch}: ${firstIssue(checked.error, "", "ops").text}`);
  // The data's own integrity is checked write by write when the batch is applied.
  if (batchChecksum(ops, data) !== sha256) throw new BatchError(`batch ${batch}: checksum mismatch (corrupted in transit or on disk)`);
  return { job, generation, batch, ops, data, sha256, ...(bytes[0] === LEGACY_ARRAY ? { legacy: true as const } : {}) };
}
