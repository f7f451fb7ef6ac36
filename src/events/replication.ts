import { z } from "zod";
import { generationId, jobId, millis, nodeId, reason, user } from "./ids.ts";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** One file-system change in a write batch, as metadata: the bytes live in staging, not here. */
export const batchOp = z.discriminatedUnion("op", [
  z.strictObject({ op: z.literal("write"), path: z.string(), blocks: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])), size: z.number().int().nonnegative(), sha256: sha256Hex }),
  z.strictObject({ op: z.literal("truncate"), path: z.string(), size: z.number().int().nonnegative() }),
  z.strictObject({ op: z.literal("mkdir"), path: z.string(), mode: z.number().int() }),
  z.strictObject({ op: z.literal("remove"), path: z.string() }),
  z.strictObject({ op: z.literal("rename"), path: z.string(), to: z.string() }),
  z.strictObject({ op: z.literal("symlink"), path: z.string(), target: z.string() }),
  z.strictObject({ op: z.literal("chmod"), path: z.string(), mode: z.number().int() }),
]);

/** Replication and lineage of one job's mirrored data. */
export const replicationEvents = {
  BatchCaptured: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, batch: z.number().int().positive(), generation: generationId, ops: z.array(batchOp), bytes: z.number().int().nonnegative(), sha256: sha256Hex }),
  },
  BatchApplied: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, batch: z.number().int().positive(), generation: generationId }) },
  BatchAcked: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, by: nodeId, batch: z.number().int().positive() }) },
  /** A batch op that would leave the mirror root or failed its checksum; nothing was written. */
  OpRefused: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, batch: z.number().int().nonnegative(), path: z.string(), reason: z.string() }) },
  /**
   * The source's queue: what the replica lacks. Relayed, so the replica knows how far behind it
   * was when it has to take over; oldestUnackedMs is the age, on the source, of the oldest write
   * not yet acknowledged (absent in records of older agents).
   */
  QueueReported: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, batches: z.number().int().nonnegative(), bytes: z.number().int().nonnegative(), oldestUnackedMs: z.number().int().nonnegative().nullable().optional() }),
  },
  /** An operator asked for a block-by-block comparison of both sides (`duet job verify`). */
  VerificationRequested: { v: 1, data: z.strictObject({ job: jobId, by: user }) },
  VerificationStarted: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, files: z.number().int().nonnegative(), bytes: z.number().int().nonnegative() }) },
  VerificationProgress: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, doneBytes: z.number().int().nonnegative(), totalBytes: z.number().int().nonnegative(), differingBlocks: z.number().int().nonnegative() }) },
  VerificationCompleted: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, differingBlocks: z.number().int().nonnegative(), shippedBytes: z.number().int().nonnegative() }) },
  /**
   * The source made the replica's copy of a path added to the running job equal to its own (its
   * batches acknowledged): the path streams like the others from now on. Relayed.
   */
  /** The source begins to make the replica's copy of an added path equal to its own: why it may. */
  MirrorPathVerificationStarted: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, path: z.string().max(4096), reasons: z.array(reason) }) },
  MirrorPathVerified: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, path: z.string().max(4096), differingBlocks: z.number().int().nonnegative(), shippedBytes: z.number().int().nonnegative() }),
  },
  GenerationStarted: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, generation: generationId, parent: generationId.nullable(), reason: z.enum(["initial", "wrote-without-peer", "source-selected", "restored", "forced-bring-in"]) }),
  },
  /** A node's own record of the paths it wrote in its current generation (bounded; overflow means "all"). */
  PathsWritten: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, generation: generationId, paths: z.array(z.string()), overflow: z.boolean() }) },
  /**
   * At the start of a mirror session the source compared both sides' full lineage: which is newer
   * (`newer`: a node, "equal", "diverged" or "unknown"), with the generations compared. Relayed, so
   * both journals hold the same answer and `duet status` says the same on both nodes.
   */
  LineageCompared: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, peer: nodeId, generation: generationId.nullable(), peerGeneration: generationId.nullable(), newer: z.string().max(64) }),
  },
  /** Reconnect found both sides wrote since their common ancestor: the link is gray. */
  DivergenceDetected: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, local: generationId, peer: generationId, commonAncestor: generationId.nullable() }),
  },
  SourceSelected: {
    v: 1,
    data: z.strictObject({ job: jobId, from: nodeId, by: user, force: z.boolean(), keptSnapshot: z.string().nullable(), losingPaths: z.number().int().nonnegative() }),
  },
  ResyncStarted: {
    v: 1,
    data: z.strictObject({
      job: jobId,
      from: nodeId,
      to: nodeId,
      paths: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
      /** Batches sent from the queue instead of comparing files: the writes captured while the replica was away. */
      queued: z.number().int().nonnegative().optional(),
    }),
  },
  ResyncCompleted: { v: 1, data: z.strictObject({ job: jobId, from: nodeId, to: nodeId, shippedBytes: z.number().int().nonnegative(), ms: millis }) },
} as const;
