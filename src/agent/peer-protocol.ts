import { z } from "zod";
import type { JoinedBytes } from "../cluster/peer-channel.ts";
import { jobId, nodeId, user } from "../events/ids.ts";
import { firstIssue } from "../events/issue.ts";

/**
 * What two agents say to each other over the peer channel, beside replication. Every message is
 * validated on arrival: the channel authenticates the peer, but a peer running a different
 * build must still get a clear refusal rather than corrupt our state.
 */
export const jobReport = z.strictObject({
  job: jobId,
  phase: z.enum(["out", "bringing-in", "in", "bringing-out", "failed"]),
  /** When the sender brought it in, its data's generation and line, and how it came to run there: if both nodes run a job, both pick the same one to keep (policy chooseKeeper). */
  since: z.number().int().nonnegative(),
  generation: z.string().max(32).nullable().optional(),
  ancestors: z.array(z.string().max(32)).max(16).optional(),
  how: z.string().max(32).optional(),
});

/** The hash of the sender's configuration file: the two nodes should run the same one. */
const configHash = z.string().max(64);
const configVersion = z.number().int().nonnegative();
/** A configuration document as `duet config apply` was given it (the API's bound). */
const configText = z.string().min(1).max(64 * 1024);

export const peerRequest = z.discriminatedUnion("kind", [
  /** State exchange on connect and whenever our jobs change: which jobs run on the sender. */
  z.strictObject({ kind: z.literal("hello"), node: nodeId, boot: z.string(), jobs: z.array(jobReport), configHash: configHash.optional(), configVersion: configVersion.optional() }),
  /** Start the job on the receiver (switchover, failover or an operator's bring-in aimed there). */
  z.strictObject({ kind: z.literal("bring-in"), job: jobId, by: user, cause: z.enum(["operator", "switchover", "failover", "fail-back"]) }),
  /** urgent: a forced move elsewhere: stop at once, without waiting for the queue to drain (its loss is accepted). */
  z.strictObject({ kind: z.literal("bring-out"), job: jobId, by: user, urgent: z.boolean().optional() }),
  /** An operator asked the node that does not run the job: the active node gates and performs it. */
  z.strictObject({ kind: z.literal("switchover"), job: jobId, to: nodeId, by: user }),
  /** Where the receiver sees the job, answered under its job lock (after any start under way there). */
  z.strictObject({ kind: z.literal("job-where"), job: jobId }),
  /** Apply this configuration, as version VERSION: the receiver plans it against its own and applies it, or refuses with the reason. */
  z.strictObject({ kind: z.literal("config-offer"), version: configVersion, text: configText, by: user }),
  /** The receiver's running configuration: a node that was away adopts a newer one. */
  z.strictObject({ kind: z.literal("config-get") }),
]);
export type PeerRequest = z.infer<typeof peerRequest>;
/** The requests about one job, which the job control answers. */
export type JobRequest = Exclude<PeerRequest, { kind: "hello" | "config-offer" | "config-get" }>;

export const peerResponse = z.discriminatedUnion("ok", [
  z.strictObject({ ok: z.literal(true), jobs: z.array(jobReport).optional(), configHash: configHash.optional(), configVersion: configVersion.optional(), config: z.strictObject({ version: configVersion, text: configText }).optional(), where: z.strictObject({ active: nodeId.nullable(), phase: z.string() }).optional() }),
  z.strictObject({ ok: z.literal(false), code: z.string(), message: z.string() }),
]);
export type PeerResponse = z.infer<typeof peerResponse>;

/** Facts about a job on one node that the other node records too, so both journals tell where it runs. */
export const RELAYED_FACTS = [
  // A bring-in starting on the sender: the standby knows where the job is coming up before it is up.
  "BringInRequested",
  "JobBroughtIn",
  "JobBroughtOut",
  "JobStartFailed",
  // The replica's journal must know the state of the link too: a switchover can be asked on either node.
  "VerificationStarted",
  "VerificationCompleted",
  "ResyncStarted",
  "ResyncCompleted",
  "MirrorPathVerificationStarted",
  "MirrorPathVerified",
  "DivergenceDetected",
  "OpRefused",
  // How far behind the replica is: a takeover states what it may lack.
  "QueueReported",
  // Each journal knows both sides' generations: replay and status can say which side is newer.
  "GenerationStarted",
  "LineageCompared",
] as const;
export const relayedFact = z.strictObject({ type: z.enum(RELAYED_FACTS), data: z.unknown() });

export function parsePeerRequest(message: unknown): PeerRequest {
  const parsed = peerRequest.safeParse(message);
  if (!parsed.success) {
    throw new Error(`peer request: ${firstIssue(parsed.error, "message").text}`);
  }
  return parsed.data;
}

const mirrorScope = z.union([z.literal("all"), z.array(z.string().max(4096)).max(10_000).readonly()]);

/**
 * Replication between the job's source (where it runs, or the side an operator selected) and the
 * other node. The source drives: it asks, the replica answers after the work is done and durable.
 */
export const mirrorRequest = z.discriminatedUnion("kind", [
  /** Opens a session: the replica answers with its lineage and how far it applied the source's batches. */
  z.strictObject({ kind: z.literal("mirror-hello"), job: jobId, from: nodeId }),
  /** One page of the replica's manifest (block checksums) of root `index` for `scope`. */
  z.strictObject({ kind: z.literal("mirror-manifest"), job: jobId, index: z.number().int().nonnegative(), scope: mirrorScope, page: z.number().int().nonnegative() }),
  /**
   * One page of the change index this node kept while it was the job's source, of root `index`:
   * the peer becoming the source takes it as what this node holds, instead of reading its tree.
   */
  z.strictObject({ kind: z.literal("mirror-index"), job: jobId, index: z.number().int().nonnegative(), page: z.number().int().nonnegative() }),
  /** The source's next batch will be position + 1 (its queue was superseded by a resync). */
  z.strictObject({ kind: z.literal("mirror-reset"), job: jobId, from: nodeId, position: z.number().int().nonnegative() }),
  z.strictObject({
    kind: z.literal("mirror-batch"),
    job: jobId,
    from: nodeId,
    batch: z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected the encoded batch as bytes"),
    /** One of a verification's batches: the replica is not consistent until mirror-synced, so it is applied unstaged. */
    sync: z.boolean().optional(),
  }),
  /** A resync or verification completed: the replica now holds the source's generation. */
  z.strictObject({ kind: z.literal("mirror-synced"), job: jobId, from: nodeId, generation: z.string(), parent: z.string().nullable() }),
  /** The node's lineage for the job, without opening a session (source selection compares both sides). */
  z.strictObject({ kind: z.literal("mirror-summary"), job: jobId }),
  /** Operator requests that the other node performs (it runs the job, or it is the chosen source). */
  z.strictObject({ kind: z.literal("mirror-verify"), job: jobId, by: user }),
  z.strictObject({ kind: z.literal("mirror-keep"), job: jobId, by: user }),
  z.strictObject({ kind: z.literal("mirror-select"), job: jobId, from: nodeId, by: user, force: z.boolean(), keptSnapshot: z.string().nullable(), losingPaths: z.number().int().nonnegative() }),
]);
export type MirrorRequest = z.infer<typeof mirrorRequest>;
/** What the source sends: a batch's bytes as its encoded parts, which the replica receives as one Uint8Array. */
export type OutgoingMirrorRequest = Exclude<MirrorRequest, { kind: "mirror-batch" }> | (Omit<Extract<MirrorRequest, { kind: "mirror-batch" }>, "batch"> & { batch: JoinedBytes });

export function parseMirrorRequest(message: unknown): MirrorRequest {
  const parsed = mirrorRequest.safeParse(message);
  if (!parsed.success) {
    throw new Error(`mirror request: ${firstIssue(parsed.error, "message").text}`);
  }
  return parsed.data;
}

/** A refusal from the other node: a stable code and the reason in words. */
const refused = z.strictObject({ ok: z.literal(false), code: z.string(), message: z.string() });
const answer = <S extends z.ZodRawShape>(shape: S) => z.discriminatedUnion("ok", [z.strictObject({ ok: z.literal(true), ...shape }), refused]);
const page = answer({ entries: z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected the page as bytes"), more: z.boolean() });
const position = z.number().int().nonnegative();

/** Beside each mirror request, the answer it gets: checked on arrival like the request. */
export const mirrorResponse = {
  "mirror-hello": answer({ summary: z.unknown(), applied: position }),
  "mirror-manifest": page,
  "mirror-index": page,
  "mirror-reset": answer({}),
  "mirror-batch": answer({ applied: position }),
  "mirror-synced": answer({}),
  "mirror-summary": answer({ summary: z.unknown() }),
  "mirror-verify": answer({ seq: position }),
  "mirror-keep": answer({ snapshot: z.string().nullable() }),
  "mirror-select": answer({}),
} satisfies Record<MirrorRequest["kind"], z.ZodType>;
export type MirrorKind = MirrorRequest["kind"];
export type MirrorResponse<K extends MirrorKind = MirrorKind> = z.infer<(typeof mirrorResponse)[K]>;

/** The other node's answer to a KIND request, or an error naming the field that was wrong. */
export function parseMirrorResponse<K extends MirrorKind>(kind: K, message: unknown): MirrorResponse<K> {
  const parsed = mirrorResponse[kind].safeParse(message);
  if (!parsed.success) throw new Error(`${kind} answer: ${firstIssue(parsed.error, "message").text}`);
  return parsed.data as MirrorResponse<K>;
}

export const isMirrorRequest = (body: unknown): boolean => typeof body === "object" && body !== null && String((body as { kind?: unknown }).kind).startsWith("mirror-");
