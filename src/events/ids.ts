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
/**
 * What a decision was made on: the last seq folded into the state the policy read, and the `now`
 * it was given. Replay folds to basisSeq and runs the policy at decidedAt, so its re-check is
 * exact. Optional: journals written before these fields replay with an approximate re-check.
 */
export const decisionBasis = { basisSeq: z.number().int().nonnegative().optional(), decidedAt: z.number().nonnegative().optional() };
export type DecisionBasis = { basisSeq: number; decidedAt: number };

/**
 * Values a reason may carry: JSON-like data that the journal's codec round-trips exactly. msgpackr
 * turns -0 into 0 and renames a "__proto__" key, so both are refused rather than silently changed.
 */
function roundTrips(value: unknown): boolean {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value) && !Object.is(value, -0);
  if (Array.isArray(value)) return value.every(roundTrips);
  if (typeof value === "object") return Object.entries(value).every(([k, v]) => k !== "__proto__" && roundTrips(v)) && !Object.hasOwn(value, "__proto__");
  return false;
}
const reasonValue = z.unknown().refine(roundTrips, "expected JSON-like data (no -0, NaN, undefined or \"__proto__\" keys)");

/** A reason tree: every input a decision used, by name, with its value. */
export type Reason = { name: string; value?: unknown; ok?: boolean; because?: Reason[] };
export const reason: z.ZodType<Reason> = z.lazy(() =>
  z.strictObject({
    name: z.string(),
    value: reasonValue.optional(),
    ok: z.boolean().optional(),
    because: z.array(reason).optional(),
  }),
);
