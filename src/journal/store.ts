import { mkdir } from "node:fs/promises";
import type { BatchOperation, ClassicLevel } from "classic-level";
import { Level } from "level";
import { Packr } from "msgpackr";
import { GENESIS_PREV, HASH_BYTES } from "./envelope.ts";

/**
 * The LevelDB layout of one journal: `events` (8-byte seq -> envelope bytes), `meta` (what the
 * journal is and where its head is) and `checkpoints` (projection states). Keys and values are
 * raw bytes; the journal does its own encoding so it can hash exactly what is stored.
 */
// `level` is classic-level on Node; its own typings omit classic-level's `sync` write option.
export type Db = ClassicLevel<Buffer, Buffer>;
export type Op = BatchOperation<Db, Buffer, Buffer>;

export interface Store {
  readonly dir: string;
  readonly db: Db;
  readonly events: ReturnType<typeof sublevelOf>;
  readonly meta: ReturnType<typeof sublevelOf>;
  readonly checkpoints: ReturnType<typeof sublevelOf>;
}

/** What a journal is: written once when it is created or imported. */
export interface JournalIdentity {
  format: number;
  node: string;
  /** First seq this journal holds (1, or the start of an imported range). */
  base: number;
  /** The prev hash the record at `base` must carry. */
  basePrev: Uint8Array;
}

/** Where the journal ends, written in the same batch as the records: catches a cut or edited tail. */
export interface HeadMark {
  seq: number;
  hash: Uint8Array;
}

export const JOURNAL_FORMAT = 1;
export const IDENTITY_KEY = Buffer.from("journal");
export const HEAD_KEY = Buffer.from("head");

const metaPackr = new Packr({ useRecords: false });

function sublevelOf(db: Db, name: string) {
  return db.sublevel<Buffer, Buffer>(name, { keyEncoding: "buffer", valueEncoding: "buffer" });
}

/** classic-level reports a held LOCK file as LEVEL_LOCKED inside LEVEL_DATABASE_NOT_OPEN. */
function openError(dir: string, err: unknown, readOnly: boolean): Error {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === "LEVEL_LOCKED") {
    const hint = readOnly ? " (LevelDB lets one process open a directory at a time: stop the writer or export a range to read it)" : "";
    return new Error(`journal ${dir} is in use by another process${hint}`, { cause: err });
  }
  if (readOnly && /does not exist/.test(cause?.message ?? "")) return new Error(`journal ${dir} does not exist`, { cause: err });
  return new Error(`journal ${dir} could not be opened: ${cause?.message ?? (err as Error).message}`, { cause: err });
}

/** The database under a journal, by its directory: LevelDB there in production; the simulator keeps its own in memory. */
export type OpenDatabase = (dir: string) => Db;

export async function openStore(dir: string, readOnly: boolean, database?: OpenDatabase): Promise<Store> {
  if (!readOnly && !database) await mkdir(dir, { recursive: true });
  const db = database ? database(dir) : (new Level<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer", createIfMissing: !readOnly }) as unknown as Db);
  try {
    await db.open();
  } catch (err) {
    throw openError(dir, err, readOnly);
  }
  return { dir, db, events: sublevelOf(db, "events"), meta: sublevelOf(db, "meta"), checkpoints: sublevelOf(db, "checkpoints") };
}

export function encodeIdentity(identity: JournalIdentity): Buffer {
  return metaPackr.pack([identity.format, identity.node, identity.base, identity.basePrev]);
}

export function encodeHead(head: HeadMark): Buffer {
  return metaPackr.pack([head.seq, head.hash]);
}

export function decodeIdentity(dir: string, bytes: Buffer): JournalIdentity {
  const a = safeUnpack(bytes);
  if (!Array.isArray(a) || a.length !== 4) throw new Error(`journal ${dir}: meta "journal" is not readable`);
  const [format, node, base, basePrev] = a as unknown[];
  if (format !== JOURNAL_FORMAT) throw new Error(`journal ${dir}: format ${String(format)} is not known (this build reads ${JOURNAL_FORMAT})`);
  if (typeof node !== "string" || !Number.isSafeInteger(base) || (base as number) < 1 || !isHash(basePrev))
    throw new Error(`journal ${dir}: meta "journal" is not readable`);
  return { format, node, base: base as number, basePrev };
}

/** undefined when the mark is unreadable: verify reports that, open falls back to the records. */
export function decodeHead(bytes: Buffer): HeadMark | undefined {
  const a = safeUnpack(bytes);
  if (!Array.isArray(a) || a.length !== 2 || !Number.isSafeInteger(a[0]) || !isHash(a[1])) return undefined;
  return { seq: a[0] as number, hash: a[1] };
}

function isHash(x: unknown): x is Uint8Array {
  return x instanceof Uint8Array && x.length === HASH_BYTES;
}

function safeUnpack(bytes: Buffer): unknown {
  try {
    return metaPackr.unpack(bytes);
  } catch {
    return undefined;
  }
}

export function newIdentity(node: string): JournalIdentity {
  return { format: JOURNAL_FORMAT, node, base: 1, basePrev: GENESIS_PREV };
}
