import { Packr } from "msgpackr";
import { chainHash, sameHash, seqKey, keySeq, HASH_BYTES } from "./envelope.ts";
import type { Store } from "./store.ts";

/** Older checkpoints are a fallback when the newest does not decode; more is only disk. */
export const CHECKPOINTS_KEPT = 3;
export const PROJECTION_NAME_MAX = 128;

/**
 * msgpackr records (its default) keep plain objects and Maps apart: objects come back as objects
 * and msgpack maps as Maps, so Map keys like "__proto__" survive; moreTypes adds Set and friends.
 * Record structures are written inline in each value, so no shared state is needed to decode.
 */
const statePackr = new Packr({ moreTypes: true });

export interface Checkpoint<S> {
  seq: number;
  /** chainHash of the record at seq: the link the next record must carry. */
  recordHash: Uint8Array;
  state: S;
}

/** Keys are `name \0 seq(8 bytes)`, so one projection's checkpoints sort together by seq. */
function checkpointKey(name: string, seq: number): Buffer {
  return Buffer.concat([Buffer.from(name, "utf8"), Buffer.of(0), seqKey(seq)]);
}

function nameRange(name: string) {
  const prefix = Buffer.from(name, "utf8");
  return { gte: Buffer.concat([prefix, Buffer.of(0)]), lt: Buffer.concat([prefix, Buffer.of(1)]) };
}

export function checkProjectionName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > PROJECTION_NAME_MAX || name.includes("\0"))
    throw new Error(`projection name: expected 1..${PROJECTION_NAME_MAX} characters without NUL, got ${JSON.stringify(name)}`);
  return name;
}

/** The value holds the hash of the record at `seq`, so a checkpoint from another history is refused. */
export function encodeCheckpoint(name: string, seq: number, recordHash: Uint8Array, state: unknown): Buffer {
  return statePackr.pack({ name, seq, recordHash, state });
}

export async function writeCheckpoint(store: Store, name: string, seq: number, recordHash: Uint8Array, state: unknown): Promise<void> {
  // Not synced: a checkpoint lost in a crash only means replaying from an older one.
  await store.checkpoints.put(checkpointKey(name, seq), encodeCheckpoint(name, seq, recordHash, state));
  const keys = await store.checkpoints.keys({ ...nameRange(name), reverse: true }).all();
  const stale = keys.slice(CHECKPOINTS_KEPT);
  if (stale.length > 0) await store.checkpoints.batch(stale.map((key) => ({ type: "del" as const, key })));
}

/**
 * The newest checkpoint of this projection that decodes and belongs to this journal's history
 * (up to `head`); anything else is skipped with a warning, falling back to older ones or none.
 */
export async function loadCheckpoint<S>(store: Store, name: string, head: number, warn: (message: string) => void): Promise<Checkpoint<S> | undefined> {
  const entries = await store.checkpoints.iterator({ ...nameRange(name), reverse: true }).all();
  for (const [key, value] of entries) {
    const seq = keySeq(key.subarray(key.length - 8));
    const found = await inspectCheckpoint<S>(store, name, seq, head, value);
    if (typeof found !== "string") return found;
    warn(`journal ${store.dir}: checkpoint of ${name} at seq ${seq} ignored: ${found}`);
  }
  return undefined;
}

/** The checkpoint, or why it cannot be used. */
async function inspectCheckpoint<S>(store: Store, name: string, seq: number, head: number, value: Buffer): Promise<Checkpoint<S> | string> {
  let decoded: unknown;
  try {
    decoded = statePackr.unpack(value);
  } catch (err) {
    return `does not decode (${(err as Error).message.slice(0, 120)})`;
  }
  const c = decoded as { name?: unknown; seq?: unknown; recordHash?: unknown; state?: unknown } | null;
  if (typeof c !== "object" || c === null || !("state" in c)) return "not a checkpoint";
  if (c.name !== name || c.seq !== seq) return `says it is ${String(c.name)} at ${String(c.seq)}`;
  if (seq > head) return `is past the journal's head ${head}`;
  if (!(c.recordHash instanceof Uint8Array) || c.recordHash.length !== HASH_BYTES) return "has no record hash";
  const record = await store.events.get(seqKey(seq));
  if (record === undefined) return `record ${seq} is not in the journal`;
  if (!sameHash(chainHash(record), c.recordHash)) return `record ${seq} differs from the one it was folded from`;
  return { seq, recordHash: c.recordHash, state: c.state as S };
}
