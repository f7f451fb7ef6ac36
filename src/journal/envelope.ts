import { hash } from "node:crypto";
import { Packr } from "msgpackr";
import { catalogue, upcast } from "../events/catalogue.ts";
import type { Hlc, Recorded } from "../events/catalogue.ts";

/**
 * One journal record as stored. On disk it is a msgpack array
 * `[format, seq, hlc, at, node, type, v, data, prev]`: positional, so records stay small and
 * decode fast, and plain msgpack (no msgpackr records), so any msgpack reader can open a journal.
 */
export interface Envelope {
  seq: number;
  hlc: Hlc;
  at: number;
  node: string;
  type: string;
  v: number;
  data: unknown;
  /** chainHash of the previous record's stored bytes; GENESIS_PREV for the first record. */
  prev: Uint8Array;
}

/** Bumped if the stored array layout ever changes; every record carries it. */
export const ENVELOPE_FORMAT = 1;

/**
 * sha256 truncated to 16 bytes: the chain detects corruption and after-the-fact edits, for which
 * 128 bits (2^128 second preimage, 2^64 collision work) is ample, and it saves 16 of ~120 bytes
 * per record on disk and in every export.
 */
export const HASH_BYTES = 16;
export const GENESIS_PREV: Uint8Array = new Uint8Array(HASH_BYTES);

/** Events are small facts (DESIGN: bytes live elsewhere); a bigger record is a bug upstream. */
export const RECORD_MAX_BYTES = 64 * 1024;

// Objects as plain msgpack maps (event data never holds Maps: catalogue schemas are JSON-shaped).
const packr = new Packr({ useRecords: false, variableMapSize: true });

export function chainHash(bytes: Uint8Array): Buffer {
  // One-shot crypto.hash: no Hash object per record (about 40% cheaper on 120-byte records).
  return hash("sha256", bytes, "buffer").subarray(0, HASH_BYTES);
}

export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

export function encodeEnvelope(e: Envelope): Buffer {
  return packr.pack([ENVELOPE_FORMAT, e.seq, e.hlc, e.at, e.node, e.type, e.v, e.data, e.prev]);
}

/** Why a stored record could not be taken: the bytes or the array layout are wrong. */
export class EnvelopeError extends Error {}

/** The stored array after a cheap shape check (no schema validation of `data`). */
type EnvelopeArray = [format: number, seq: number, hlc: Hlc, at: number, node: string, type: string, v: number, data: object, prev: Uint8Array];

function unpackEnvelope(bytes: Uint8Array): EnvelopeArray {
  let a: unknown;
  try {
    a = packr.unpack(bytes);
  } catch (err) {
    throw new EnvelopeError(`not msgpack (${(err as Error).message.slice(0, 120)})`);
  }
  if (!Array.isArray(a) || a.length !== 9) throw new EnvelopeError("not an envelope array of 9 fields");
  // Indexed reads, not destructuring: this runs once per record on every replay.
  if (a[0] !== ENVELOPE_FORMAT) throw new EnvelopeError(`envelope format ${String(a[0])} is not known (this build reads ${ENVELOPE_FORMAT})`);
  const seq: unknown = a[1], hlc: unknown = a[2], data: unknown = a[7], prev: unknown = a[8];
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) throw new EnvelopeError(`seq: expected a positive integer, got ${String(seq)}`);
  if (!Array.isArray(hlc) || hlc.length !== 2 || typeof hlc[0] !== "number" || typeof hlc[1] !== "number")
    throw new EnvelopeError("hlc: expected [wall, logical]");
  if (typeof a[3] !== "number") throw new EnvelopeError("at: expected a number");
  if (typeof a[4] !== "string") throw new EnvelopeError("node: expected a string");
  if (typeof a[5] !== "string") throw new EnvelopeError("type: expected a string");
  if (!Number.isInteger(a[6])) throw new EnvelopeError("v: expected an integer");
  if (typeof data !== "object" || data === null) throw new EnvelopeError("data: expected an object");
  if (!(prev instanceof Uint8Array) || prev.length !== HASH_BYTES) throw new EnvelopeError(`prev: expected ${HASH_BYTES} bytes`);
  return a as EnvelopeArray;
}

/** Decodes a stored record and checks its shape; throws EnvelopeError saying what is wrong. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  const a = unpackEnvelope(bytes);
  return { seq: a[1], hlc: a[2], at: a[3], node: a[4], type: a[5], v: a[6], data: a[7], prev: a[8] };
}

/** Current version by type, for the one lookup per record on the hot read path. */
const currentVersions = new Map<string, number>(Object.entries(catalogue).map(([type, spec]) => [type, spec.v]));

/**
 * The event a record holds, at the current version: the hot read path. Records already at the
 * current version were validated when appended and are covered by the hash chain, so only the
 * type is checked here; older versions are upcast, which validates. verify() validates all.
 * `expectSeq` and `expectPrev` (when given) are checked against the envelope.
 */
export function decodeRecorded(bytes: Uint8Array, expectSeq: number, expectPrev?: Uint8Array): Recorded {
  const a = unpackEnvelope(bytes);
  if (a[1] !== expectSeq) throw new EnvelopeError(`found record ${a[1]} in its place (missing or reordered)`);
  if (expectPrev && !sameHash(a[8], expectPrev)) throw new EnvelopeError(`does not follow record ${expectSeq - 1} (hash chain broken)`);
  if (currentVersions.get(a[5]) !== a[6]) {
    const event = upcast(a[5], a[6], a[7]);
    return { type: event.type, data: event.data, seq: a[1], at: a[3], hlc: a[2], node: a[4] } as Recorded;
  }
  return { type: a[5], data: a[7], seq: a[1], at: a[3], hlc: a[2], node: a[4] } as Recorded;
}

/** The event an envelope holds, validated against its schema (upcast first when older). */
export function validatedRecorded(e: Envelope): Recorded {
  const event = upcast(e.type, e.v, e.data);
  return { type: event.type, data: event.data, seq: e.seq, at: e.at, hlc: e.hlc, node: e.node } as Recorded;
}

/** Keys of the `events` sublevel: 8-byte big-endian seq, so LevelDB's order is seq order. */
export function seqKey(seq: number): Buffer {
  const key = Buffer.allocUnsafe(8);
  key.writeUInt32BE(Math.floor(seq / 2 ** 32), 0);
  key.writeUInt32BE(seq >>> 0, 4);
  return key;
}

export function keySeq(key: Uint8Array): number {
  if (key.length !== 8) throw new EnvelopeError(`event key of ${key.length} bytes (expected 8)`);
  const view = Buffer.from(key.buffer, key.byteOffset, 8);
  return view.readUInt32BE(0) * 2 ** 32 + view.readUInt32BE(4);
}
