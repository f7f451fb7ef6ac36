import { z } from "zod";
import { jobId, nodeId, user } from "../events/ids.ts";

/**
 * What two agents say to each other over the peer channel, beside replication. Every message is
 * validated on arrival: the channel authenticates the peer, but a peer running a different
 * build must still get a clear refusal rather than corrupt our state.
 */
export const jobReport = z.strictObject({
  job: jobId,
  phase: z.enum(["out", "bringing-in", "in", "bringing-out", "failed"]),
  /** When the sender brought it in: if both nodes run a job, both pick the same one to keep. */
  since: z.number().int().nonnegative(),
});

export const peerRequest = z.discriminatedUnion("kind", [
  /** State exchange on connect and whenever our jobs change: which jobs run on the sender. */
  z.strictObject({ kind: z.literal("hello"), node: nodeId, boot: z.string(), jobs: z.array(jobReport) }),
  /** Start the job on the receiver (switchover, failover or an operator's bring-in aimed there). */
  z.strictObject({ kind: z.literal("bring-in"), job: jobId, by: user, cause: z.enum(["operator", "switchover", "failover", "fail-back"]) }),
  z.strictObject({ kind: z.literal("bring-out"), job: jobId, by: user }),
  /** An operator asked the node that does not run the job: the active node gates and performs it. */
  z.strictObject({ kind: z.literal("switchover"), job: jobId, to: nodeId, by: user }),
]);
export type PeerRequest = z.infer<typeof peerRequest>;

export const peerResponse = z.discriminatedUnion("ok", [
  z.strictObject({ ok: z.literal(true), jobs: z.array(jobReport).optional() }),
  z.strictObject({ ok: z.literal(false), code: z.string(), message: z.string() }),
]);
export type PeerResponse = z.infer<typeof peerResponse>;

/** Facts about a job on one node that the other node records too, so both journals tell where it runs. */
export const RELAYED_FACTS = ["JobBroughtIn", "JobBroughtOut", "JobStartFailed"] as const;
export const relayedFact = z.strictObject({ type: z.enum(RELAYED_FACTS), data: z.unknown() });

export function parsePeerRequest(message: unknown): PeerRequest {
  const parsed = peerRequest.safeParse(message);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`peer request: ${issue?.path.join(".") || "message"}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}
