import { z } from "zod";
import { generationId, jobId, nodeId, user } from "./ids.ts";

export const snapshotEvents = {
  SnapshotTaken: {
    v: 1,
    data: z.strictObject({ job: jobId, node: nodeId, snapshot: z.string(), generation: generationId, batch: z.number().int().nonnegative(), bytes: z.number().int().nonnegative(), reason: z.enum(["operator", "schedule", "before-source-select"]) }),
  },
  SnapshotPruned: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, snapshot: z.string() }) },
  SnapshotRestored: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, snapshot: z.string(), target: z.enum(["in-place", "elsewhere"]), directory: z.string().optional(), by: user }) },
} as const;
