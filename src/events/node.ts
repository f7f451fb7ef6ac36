import { z } from "zod";
import { decisionBasis, linkId, millis, nodeId, reason, jobId } from "./ids.ts";

/** Membership and links: facts about agents, heartbeat links, the peer and tiebreakers. */
export const nodeEvents = {
  // The timings policy depends on travel with the start, so a replay decides with the same inputs.
  // v2 adds the configured links, so a link that never reports counts as down rather than unknown.
  // v3 adds what decides how soon a peer cut off from everything has released its jobs (suspicion,
  // ping timeout, heartbeat interval), so the standby's wait is computed, not a fixed margin.
  AgentStarted: {
    v: 3,
    data: z.strictObject({
      node: nodeId,
      version: z.string(),
      pid: z.number().int(),
      configHash: z.string(),
      heartbeatIntervalMs: millis,
      suspectMs: millis,
      deadtimeMs: millis,
      pingTimeoutMs: millis,
      selfFenceGraceMs: millis,
      links: z.array(z.strictObject({ link: linkId, kind: z.enum(["udp", "tcp"]) })).max(64),
    }),
  },
  AgentStopping: { v: 1, data: z.strictObject({ node: nodeId, signal: z.string(), jobsAction: z.enum(["switch-over", "bring-out", "none"]) }) },
  /** One heartbeat path (a UDP link or the TCP peer channel) started carrying frames from the peer. */
  LinkUp: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId, link: linkId, kind: z.enum(["udp", "tcp"]) }) },
  LinkDown: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId, link: linkId, kind: z.enum(["udp", "tcp"]), lastHeardAt: millis }) },
  /** Every link has been silent for the suspicion time (less than the deadtime): an active node checks it is not the one cut off. */
  PeerSuspected: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId, lastHeardAt: millis, suspectMs: millis }) },
  /** Every link has been silent for the deadtime: the peer is lost (not proven dead). */
  PeerLost: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId, lastHeardAt: millis, deadtimeMs: millis }) },
  PeerSeen: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId }) },
  /** What the peer said it runs in the hello exchange after a (re)connect (the jobs in phase in there). */
  /** configHash: the hash of the peer's configuration file, as its hello said (absent from older agents). */
  PeerJobsReported: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId, jobs: z.array(jobId).max(1000), configHash: z.string().max(64).optional(), configVersion: z.number().int().nonnegative().optional() }) },
  /**
   * The peer's heartbeat frames say it holds these jobs, while a job among them awaits recovery
   * here (the peer channel may be down: a one-way cut carries frames, not a hello).
   */
  PeerClaimsHeard: { v: 1, data: z.strictObject({ node: nodeId, peer: nodeId, jobs: z.array(jobId).max(1000) }) },
  /**
   * This agent's own loop was held up longer than the suspicion time (GC, a blocked loop, a paused
   * VM, SIGSTOP), measured on the monotonic clock: the peer may have taken its jobs over meanwhile.
   */
  LoopStalled: { v: 1, data: z.strictObject({ node: nodeId, stalledMs: millis, sinceAt: millis }) },
  /**
   * After a stall, what the peer said of each job running here: `confirmedJobs` are those it still
   * sees active here and does not run; `answered` false when it did not answer in time.
   */
  StallChecked: { v: 1, data: z.strictObject({ node: nodeId, answered: z.boolean(), confirmedJobs: z.array(jobId).max(1000), detail: z.string().max(1024).optional() }) },
  TiebreakerResult: {
    v: 1,
    data: z.strictObject({
      node: nodeId,
      peer: nodeId,
      method: z.enum(["ping", "fence", "witness"]),
      // reachability: asked on a suspicion by a node running jobs, ping only; it never confirms a loss.
      purpose: z.enum(["peer-lost", "reachability"]).optional(),
      // confirmed: the peer is gone and this node is connected; isolated: this node reaches nothing;
      // peer-alive: the witness or fence says the peer still runs; failed: the tiebreaker itself broke.
      verdict: z.enum(["confirmed", "isolated", "peer-alive", "failed"]),
      targets: z.array(z.strictObject({ target: z.string(), ok: z.boolean(), ms: millis.optional() })),
      exitCode: z.number().int().optional(),
      output: z.string().max(4096).optional(),
      // Before a takeover: ARP from the interface a VIP would use, for the peer's addresses and the
      // VIP itself. An answer means the peer is alive there (its agent silent, or a partition that
      // lets ARP through): taking over would put the job on two hosts.
      peerOnNetwork: z.array(z.strictObject({ interface: z.string(), address: z.string(), answered: z.boolean() })).max(64).optional(),
    }),
  },
  /**
   * This node's lease on the witness (etcd), journaled when its state changes. granting: the agent
   * started with a witness configured; held: granted or renewed; renew-failing: a renewal failed,
   * the lease lasts in etcd's eyes at least until validUntil (the last renewal's send time plus
   * its TTL); expired: etcd no longer has it, or validUntil passed. `unreachable`: the configured
   * rule for the active once it cannot renew (policy decideWitnessFence).
   */
  WitnessLease: {
    v: 1,
    data: z.strictObject({
      node: nodeId,
      state: z.enum(["granting", "held", "renew-failing", "expired"]),
      leaseId: z.string().regex(/^\d{1,20}$/).optional(),
      ttlMs: millis.optional(),
      validUntil: millis.optional(),
      revision: z.number().int().nonnegative().optional(),
      unreachable: z.enum(["self-fence", "keep-running"]),
      error: z.string().max(1024).optional(),
    }),
  },
  /**
   * A job's holder key on the witness asked for by this node: before any start here (start), when
   * the takeover policy waits for it (takeover), or under a new lease for a job running here
   * (renew). won: the key is this node's, on its lease, at `revision`; otherwise `holder` has it
   * for holderTtlMs more at most, or `error` says why the witness did not answer.
   */
  WitnessClaimed: {
    v: 1,
    data: z.strictObject({
      node: nodeId,
      job: jobId,
      purpose: z.enum(["takeover", "start", "renew"]),
      won: z.boolean(),
      holder: nodeId.nullable(),
      revision: z.number().int().nonnegative(),
      holderTtlMs: millis.optional(),
      error: z.string().max(1024).optional(),
    }),
  },
  /** This node gave a job's holder key back after the job stopped here, so the peer can take it at once. */
  WitnessReleased: { v: 1, data: z.strictObject({ node: nodeId, job: jobId, revision: z.number().int().nonnegative() }) },
  /** Frames that failed authentication or replayed an old sequence; journaled at a bounded rate. */
  FramesRejected: {
    v: 1,
    data: z.strictObject({ node: nodeId, link: linkId, count: z.number().int().positive(), reason: z.enum(["bad-mac", "replayed", "malformed", "oversized", "unknown-peer", "unconfirmed"]), sinceAt: millis }),
  },
  /** The node cannot confirm it is connected while it has lost the peer: it brings its jobs out. */
  /** code: isolated (cut off from peer and ping targets) or stalled (this agent's loop stalled); absent in older journals: isolated. */
  SelfFenceDecided: { v: 1, data: z.strictObject({ node: nodeId, jobs: z.array(jobId), graceMs: millis, reasons: z.array(reason), code: z.enum(["isolated", "stalled", "witness-lease-lost", "witness-held-by-peer"]).optional(), ...decisionBasis }) },
  AlertRaised: { v: 1, data: z.strictObject({ node: nodeId, job: jobId.optional(), code: z.string(), message: z.string() }) },
} as const;
