/**
 * The data buffers of full batches, used again once their batch has left the queue: a sync
 * otherwise allocates a fresh 4 MiB for every 4 MiB it ships, and each of those ages into the
 * old generation before it dies, so only full collections (a quarter of the agent's CPU in
 * bench:replication) free them.
 *
 * Only the queue gives a buffer back, and only when nothing can read the batch any more: it was
 * written to disk, or acknowledged (the peer received every byte, so the socket is done with it).
 * A second send of an acknowledged batch (a session restarted while it was in flight) may still
 * wait in a socket when its buffer is reused: the replica drops it unread, as a duplicate.
 */
const BUFFER_BYTES = 4 * 1024 * 1024;
/** Free buffers kept: what a sync's queue and window cycle through, not more. */
const FREE_MAX = 8;

const free: ArrayBuffer[] = [];
const lent = new WeakSet<ArrayBuffer>();

export const BATCH_BUFFER_BYTES = BUFFER_BYTES;

/** A buffer of BATCH_BUFFER_BYTES (its content is whatever a previous batch left). */
export function takeBatchBuffer(): Buffer {
  const memory = free.pop() ?? new ArrayBuffer(BUFFER_BYTES);
  lent.add(memory);
  return Buffer.from(memory);
}

/** Gives back the buffer under `view` if it came from takeBatchBuffer; anything else is left to the collector. */
export function returnBatchBuffer(view: Uint8Array): void {
  const memory = view.buffer;
  if (!(memory instanceof ArrayBuffer) || !lent.has(memory)) return;
  lent.delete(memory);
  if (free.length < FREE_MAX) free.push(memory);
}
