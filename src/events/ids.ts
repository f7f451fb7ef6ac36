import { z } from "zod";

// Names chosen by operators (nodes, jobs, resources, paths) are values, never object keys:
// msgpackr cannot round-trip a key named "__proto__", and a key is no place for user input.
export const nodeId = z.string().min(1).max(64);
export const jobId = z.string().min(1).max(64);
export const resourceName = z.string().min(1).max(64);
export const linkId = z.string().min(1).max(64);
export const generationId = z.string().regex(/^[0-9a-f]{16}$/, "a generation id is 16 hex digits");
export const user = z.string().min(1).max(64);
export const millis = z.number().int().nonnegative();

/** A reason tree: every input a decision used, by name, with its value. */
export type Reason = { name: string; value?: unknown; ok?: boolean; because?: Reason[] };
export const reason: z.ZodType<Reason> = z.lazy(() =>
  z.strictObject({
    name: z.string(),
    value: z.unknown().optional(),
    ok: z.boolean().optional(),
    because: z.array(reason).optional(),
  }),
);
