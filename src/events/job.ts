import { z } from "zod";
import { decisionBasis, jobId, nodeId, reason, resourceName, user } from "./ids.ts";

export const takeoverPolicy = z.enum(["manual", "when-consistent", "allow-difference", "unconditional"]);
const count = z.number().int().nonnegative();
/**
 * What a replica may lack when it takes over (policy replicaBehind): the lost node's last queue
 * report, the age of its oldest unacknowledged write (null: none waited) and of the report itself,
 * both at the decision (reports come at most a second apart while the job writes).
 */
const replicaBehind = z.strictObject({ batches: count, bytes: count, oldestUnackedMs: count.nullable(), reportedMsAgo: count });
export type ReplicaBehind = z.infer<typeof replicaBehind>;
export const resourceKind = z.enum(["vip", "process", "ocf", "script", "nic", "ping"]);

/** Job lifecycle: requests say who asked; facts say what happened where; decisions carry reasons. */
export const jobEvents = {
  JobCreated: {
    v: 1,
    data: z.strictObject({
      job: jobId,
      nodes: z.tuple([nodeId, nodeId]),
      policy: takeoverPolicy,
      reverseWhenConsistent: z.boolean(),
      /** Monitor failures restarted in place within the window before the job fails over. */
      restartMax: z.number().int().nonnegative(),
      resources: z.array(z.strictObject({ name: resourceName, kind: resourceKind })),
      mirrors: z.array(z.string()),
      /** The oldest unacknowledged write a switchover may find (absent: SWITCHOVER_LAG_MAX_MS). */
      switchoverLagMaxMs: z.number().int().positive().optional(),
    }),
  },
  JobDeleted: { v: 1, data: z.strictObject({ job: jobId, by: user }) },
  BringInRequested: { v: 1, data: z.strictObject({ job: jobId, on: nodeId, by: user }) },
  BringOutRequested: { v: 1, data: z.strictObject({ job: jobId, by: user }) },
  SwitchoverRequested: { v: 1, data: z.strictObject({ job: jobId, to: nodeId, by: user }) },
  SwitchoverRefused: { v: 1, data: z.strictObject({ job: jobId, to: nodeId, by: user, reasons: z.array(reason), ...decisionBasis }) },
  ResourceStarted: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName }) },
  ResourceStartFailed: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName, error: z.string(), exitCode: z.number().int().optional() }) },
  ResourceStopped: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName }) },
  ResourceStopFailed: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName, error: z.string() }) },
  MonitorFailed: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName, error: z.string(), failures: z.number().int().positive() }) },
  MonitorRecovered: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName }) },
  ResourceRestarted: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName, attempt: z.number().int().positive() }) },
  JobBroughtIn: { v: 1, data: z.strictObject({ job: jobId, node: nodeId }) },
  JobBroughtOut: { v: 1, data: z.strictObject({ job: jobId, node: nodeId }) },
  /** The node could not start the job; the job goes back where it was, and this says why. */
  /** heldBy: the start was refused by the witness because this node holds the job's key (it runs the job, or may). */
  JobStartFailed: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, resource: resourceName, error: z.string(), heldBy: nodeId.optional() }) },
  /** The active node gives the job up because of a local fault (monitor threshold, NIC down). */
  FailoverDecided: {
    v: 1,
    data: z.strictObject({ job: jobId, from: nodeId, to: nodeId, cause: z.enum(["monitor-threshold", "nic-down", "start-failed", "witness-lost"]), reasons: z.array(reason), ...decisionBasis }),
  },
  /** The active node keeps a job despite a local fault: moving it would stop the service (the peer is not connected). */
  FailoverDeclined: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, code: z.string(), reasons: z.array(reason), ...decisionBasis }) },
  /** The standby takes a job whose active node is lost; journaled before anything is done. */
  /** behind: for a mirrored job, what the replica may lack (the lost node's last queue report, aged to the decision). */
  TakeoverDecided: { v: 1, data: z.strictObject({ job: jobId, by: nodeId, from: nodeId, policy: takeoverPolicy, reasons: z.array(reason), behind: replicaBehind.nullable().optional(), ...decisionBasis }) },
  TakeoverDeclined: { v: 1, data: z.strictObject({ job: jobId, by: nodeId, from: nodeId, policy: takeoverPolicy, code: z.string(), reasons: z.array(reason), behind: replicaBehind.nullable().optional(), ...decisionBasis }) },
  /**
   * A node that brought a job out because it seemed cut off brings it back in: its peer is back,
   * never took the job, and the job runs nowhere. Journaled before the peer is asked to confirm.
   */
  ResumeDecided: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, reasons: z.array(reason), ...decisionBasis }) },
  /**
   * After this node's agent restarted, a job its journal says ran here: started again (the peer
   * said it does not run it, or the peer is lost and the tiebreaker and the public network confirm
   * it), or declined and brought out here (the peer may have taken it over meanwhile).
   */
  RecoveryDecided: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, code: z.string(), reasons: z.array(reason), ...decisionBasis }) },
  /**
   * A job found running on both nodes: which keeps it (policy chooseKeeper), journaled alike on
   * both before the other brings it out and the keeper announces its addresses again.
   */
  BothActiveResolved: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, keeper: nodeId, other: nodeId, code: z.string(), reasons: z.array(reason), ...decisionBasis }) },
  RecoveryDeclined: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, code: z.string(), reasons: z.array(reason), ...decisionBasis }) },
  /**
   * A start here given up (policy decideYieldStart): the peer came back running the job while this
   * node was still starting it (a takeover's address refused while the peer held it).
   */
  StartAbandoned: { v: 1, data: z.strictObject({ job: jobId, node: nodeId, code: z.string(), reasons: z.array(reason), ...decisionBasis }) },
} as const;
