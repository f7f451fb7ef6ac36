import type { DuetEvent, EventOf } from "../events/catalogue.ts";
import type { Timers } from "../world/clock.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { decisionSincePhase, type JobView } from "../projections/jobs.ts";
import { verdictSinceSilence } from "../projections/membership.ts";
import { decideSwitchover, refusalText } from "../policy/switchover.ts";
import { claimRetryMs } from "../policy/witness.ts";
import type { BringInResult, JobRunner } from "../resources/runner.ts";
import { Refusal } from "../api/ports.ts";
import type { JobRequest, PeerRequest, PeerResponse } from "./peer-protocol.ts";

/** How long a peer gets to start or stop a job it was asked to: the slowest resource timeouts, with margin. */
export const PEER_JOB_REQUEST_TIMEOUT_MS = 120_000;
const PEER_RECONNECT_POLL_MS = 50;
/** A start waits at most this long for a key the peer holds to expire (its lease's TTL: configs keep it short). */
const WITNESS_WAIT_MAX_MS = 60_000;
/** Beyond the TTL etcd stated: its rounding down to a second, and its revoking every 500 ms. */
const WITNESS_WAIT_SLACK_MS = 2000;
/** What job-where answers for a job this node is resuming itself (resumeHere). */
const RESUMING = "resuming";
/** Requests the peer answers the same when asked twice: bring-in finds the job running, bring-out stopped. */
const IDEMPOTENT = new Set<PeerRequest["kind"]>(["bring-in", "bring-out", "job-where"]);

export interface JobHost {
  self: string;
  state(): ClusterState;
  /** The last seq folded into state(). */
  head(): number;
  now(): number;
  timers: Timers;
  record(events: DuetEvent[]): Promise<{ seq: number }[]>;
  runner(job: string): JobRunner | undefined;
  peer: {
    connected(): boolean;
    request(request: PeerRequest, timeoutMs: number): Promise<PeerResponse>;
    relay(event: DuetEvent): void;
  };
  log(message: string, fields?: Record<string, unknown>): void;
  /** The witness (tiebreaker.witness): no start here without the job's holder key; given back after a stop. */
  witness?: {
    claim(job: string, purpose: "takeover" | "start" | "renew"): Promise<EventOf<"WitnessClaimed">>;
    release(job: string): Promise<EventOf<"WitnessReleased"> | null>;
  };
  /** Mirroring: capture starts before the job's resources and stops after them. */
  mirrors?: {
    startSource(job: string): Promise<void>;
    stopSource(job: string, flush: boolean): Promise<void>;
    forceGeneration(job: string): Promise<void>;
  };
}

/**
 * Starting and stopping jobs on this node, and the operator's job operations. Each job has one
 * queue: two operations on one job never overlap, so a bring-out cannot race a switchover.
 */
export function createJobControl(host: JobHost) {
  const queues = new Map<string, Promise<unknown>>();
  const serial = <T>(job: string, work: () => Promise<T>): Promise<T> => {
    const previous = queues.get(job) ?? Promise.resolve();
    const next = previous.then(work, work);
    queues.set(job, next.catch(() => undefined));
    return next;
  };

  function jobOrThrow(name: string): JobView {
    const job = host.state().jobs.get(name);
    if (!job) throw new Refusal("not-found", `job ${name}: no such job (duet status lists the jobs)`);
    return job;
  }
  const otherNode = (job: JobView) => job.nodes.find((n) => n !== host.self) ?? host.self;

  /** Starts under way, each abandoned through its controller (abandonStart). */
  const starting = new Map<string, AbortController>();

  /** Starts the job's resources here and records the outcome for both journals. */
  /** askedByPeer: the peer asked for this start, so it stopped the job: a key it could not give back is waited for. */
  async function startHere(name: string, askedByPeer = false): Promise<boolean> {
    const runner = host.runner(name);
    if (!runner) throw new Refusal("not-found", `job ${name}: not configured on node ${host.self}`);
    // Abandoned while queued behind another operation on the job: it never begins.
    const job = host.state().jobs.get(name);
    if (job && decisionSincePhase(job)?.kind === "abandon-start") {
      host.log(`job ${name}: start abandoned before it began (${job.active ?? "the peer"} runs it)`);
      return false;
    }
    if (!(await witnessAllows(name, askedByPeer))) {
      // What an agent's crash left running here (a recovery) must not outlive the refusal.
      if (job?.recovering) await runner.bringOut({ urgent: true });
      return false;
    }
    const abandon = new AbortController();
    starting.set(name, abandon);
    try {
      // The data is captured from before the application can write: nothing it writes goes unseen.
      const capture = await host.mirrors?.startSource(name).then(
        () => null,
        (error: Error) => error,
      );
      const result: BringInResult = capture ? { ok: false, resource: "mirror", error: `capture could not start: ${capture.message}` } : await runner.bringIn({ signal: abandon.signal });
      if (!result.ok) await host.mirrors?.stopSource(name, false);
      // A start that did not happen gives its key back (the runner stopped what it had started):
      // held by a node that runs nothing, it would let that node take over beside a run elsewhere.
      const released = result.ok ? null : await host.witness?.release(name);
      if (released) await host.record([released]);
      // Abandoned: what it had started is stopped again, and it ran nowhere here.
      const fact: DuetEvent = result.ok
        ? { type: "JobBroughtIn", data: { job: name, node: host.self } }
        : result.abandoned
          ? { type: "JobBroughtOut", data: { job: name, node: host.self } }
          : { type: "JobStartFailed", data: { job: name, node: host.self, resource: result.resource, error: result.error } };
      await host.record([fact]);
      host.peer.relay(fact);
      host.log(result.ok ? `job ${name} brought in here` : result.abandoned ? `job ${name}: start abandoned (${result.error})` : `job ${name} failed to start here: ${result.error}`);
      return result.ok;
    } finally {
      if (starting.get(name) === abandon) starting.delete(name);
    }
  }

  /**
   * With a witness, a start needs the job's holder key (the peer's lease expired, or it gave the
   * key back): without it the start fails here, and the witness's answer is journaled.
   */
  async function witnessAllows(name: string, askedByPeer: boolean): Promise<boolean> {
    if (!host.witness) return true;
    let claim = await host.witness.claim(name, "start");
    await host.record([claim]);
    // The peer asked for this start, so it stopped the job, but it could not give the key back
    // (its path to etcd failed, so it moved the job here): the key is free once its lease has run
    // out, which etcd states in whole seconds and revokes within 500 ms. Asked again until then;
    // a changed answer is journaled. Any other start is refused at once: the peer holding the key
    // may be running the job (sim seed 88: a move's fail-back waited for the key of a peer that
    // had taken the job over, and started beside it once that peer froze).
    const waitMs = claim.data.holderTtlMs;
    if (askedByPeer && !claim.data.won && claim.data.holder !== host.self && waitMs !== undefined && waitMs <= WITNESS_WAIT_MAX_MS) {
      const deadline = host.now() + waitMs + WITNESS_WAIT_SLACK_MS;
      while (!claim.data.won && claim.data.holderTtlMs !== undefined && host.now() < deadline) {
        await new Promise<void>((r) => host.timers.after(claimRetryMs(claim.data), r));
        const again = await host.witness.claim(name, "start");
        if (again.data.won || again.data.holder !== claim.data.holder || again.data.error !== claim.data.error) await host.record([again]);
        claim = again;
      }
    }
    if (claim.data.won) return true;
    const why = claim.data.error ? `the witness did not answer (${claim.data.error})` : `the witness says ${claim.data.holder ?? "another node"} holds it (revision ${claim.data.revision})`;
    const heldBy = claim.data.error === undefined && claim.data.holder !== null && claim.data.holder !== host.self ? { heldBy: claim.data.holder } : {};
    const fact: DuetEvent = { type: "JobStartFailed", data: { job: name, node: host.self, resource: "witness", error: `no start without the job's key: ${why}`, ...heldBy } };
    await host.record([fact]);
    host.peer.relay(fact);
    host.log(`job ${name} not started here: ${why}`);
    return false;
  }

  async function stopHere(name: string, urgent = false): Promise<void> {
    const runner = host.runner(name);
    if (!runner) return;
    const result = await runner.bringOut({ urgent });
    // After the application stopped, its last writes go to the peer (not when fencing: no time, maybe no peer).
    await host.mirrors?.stopSource(name, !urgent).catch((error: Error) => host.log(`job ${name}: mirror stop: ${error.message}`));
    const fact: DuetEvent = { type: "JobBroughtOut", data: { job: name, node: host.self } };
    await host.record([fact]);
    host.peer.relay(fact);
    if (!result.ok) host.log(`job ${name} brought out with stop failures`, { failed: result.failed });
    // The key goes back only once everything stopped: what failed to stop may still serve.
    const released = result.ok ? await host.witness?.release(name) : null;
    if (released) await host.record([released]);
  }

  /**
   * Jobs this node is resuming, under their lock while it asks the peer. A peer resuming the same
   * job asks under its own lock: each would wait for the other's (seed 3453: both fenced, both
   * resumed, each stuck for the request's timeout). The question is answered at once instead, as
   * "resuming", and the node with the lower name goes on.
   */
  const resuming = new Set<string>();

  /**
   * Jobs this node is moving to the peer (queued or under way: under their lock it asks the peer
   * to start them). Both nodes may do so at once (both failed to start it and both retry when a
   * link comes back): each would wait for the other's lock until the request's timeout (sim seeds
   * 6 and 557 with a witness). The node with the higher name refuses the peer's request at once;
   * the lower one's move is refused, it brings the job back in itself, and the higher one's
   * request then finds it running.
   */
  const moving = new Map<string, number>();
  const movingWhile = async <T,>(name: string, work: () => Promise<T>): Promise<T> => {
    moving.set(name, (moving.get(name) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const left = (moving.get(name) ?? 1) - 1;
      if (left === 0) moving.delete(name);
      else moving.set(name, left);
    }
  };

  async function resumeHere(name: string): Promise<boolean> {
    resuming.add(name);
    let answer: PeerResponse;
    try {
      answer = await askPeer({ kind: "job-where", job: name });
    } finally {
      resuming.delete(name);
    }
    const peer = otherNode(jobOrThrow(name));
    if (answer.ok && answer.where?.phase === RESUMING && host.self > peer) {
      host.log(`job ${name}: not resumed here: ${peer} resumes it too, and the lower name goes on`);
      return false;
    }
    if (!answer.ok || !answer.where) {
      const why = answer.ok ? "no answer" : answer.message;
      await host.record([{ type: "AlertRaised", data: { node: host.self, job: name, code: "resume-unconfirmed", message: `${host.self} brought ${name} out when it seemed cut off; ${peer} could not confirm it does not run the job (${why}), so it stays out: duet job bring-in ${name}` } }]);
      return false;
    }
    if (answer.where.active === peer) {
      host.log(`job ${name}: not resumed here: ${peer} runs it (${answer.where.phase})`);
      return false;
    }
    return startHere(name);
  }

  /** What a forced move loses: the write batches the active node captured that the other has not acknowledged. */
  function lossOf(name: string): string {
    const queue = host.state().replication.get(name)?.queue;
    return queue && queue.batches > 0 ? `${queue.batches} write batch(es), ${queue.bytes} bytes, not yet on the other node would be lost` : "no unreplicated writes are known";
  }

  /** --force: the active node is asked to stop the job, and this node starts it on a generation of its own. */
  async function forcedBringIn(name: string, by: string, target: string, active: string): Promise<{ seq: number }> {
    const [alert] = await host.record([{ type: "AlertRaised", data: { node: host.self, job: name, code: "forced-bring-in", message: `${by} forces ${name} in on ${target} while ${active} runs it: ${lossOf(name)}; lineage records a fork` } }]);
    if (target !== host.self) throw new Refusal("bad-request", `force: a forced bring-in is asked on the node it starts on (${target})`);
    void serial(name, async () => {
      const out = await askPeer({ kind: "bring-out", job: name, by, urgent: true });
      if (!out.ok) return reportPeerFailure(name, out);
      await host.mirrors?.forceGeneration(name);
      const requested: DuetEvent = { type: "BringInRequested", data: { job: name, on: target, by } };
      await host.record([requested]);
      host.peer.relay(requested);
      await startHere(name);
    });
    return { seq: alert!.seq };
  }

  /** Why this node is cut off (its peer silent, its last tiebreaker verdict since: isolated), or null. */
  function isolatedHere(): string | null {
    const { membership } = host.state();
    const verdict = verdictSinceSilence(membership);
    return verdict?.verdict === "isolated" ? `${verdict.method} verdict at ${new Date(verdict.at).toISOString()}` : null;
  }

  /**
   * A request to the peer. While a heartbeat link still hears it but the channel is down (its
   * network just failed; it reconnects over another link's addresses), the request waits up to a
   * deadtime for the channel; it is sent again if it never left, or if it may have reached the
   * peer but asking twice does no harm (IDEMPOTENT).
   */
  async function askPeer(request: PeerRequest): Promise<PeerResponse> {
    const deadline = host.now() + host.state().membership.settings.deadtimeMs;
    for (;;) {
      const heard = host.state().membership.peerStatus === "connected";
      if (!host.peer.connected()) {
        if (!heard || host.now() >= deadline) return { ok: false, code: "peer-not-connected", message: heard ? `the peer is heard on a heartbeat link, but the peer channel did not reconnect within ${host.state().membership.settings.deadtimeMs} ms` : "the peer is not connected" };
        await new Promise<void>((r) => host.timers.after(PEER_RECONNECT_POLL_MS, r));
        continue;
      }
      try {
        return await host.peer.request(request, PEER_JOB_REQUEST_TIMEOUT_MS);
      } catch (error) {
        const message = (error as Error).message;
        const lost = /before the frame was sent|is not connected/.test(message) || (IDEMPOTENT.has(request.kind) && /before it answered/.test(message));
        // Not at once: a connection destroyed whose close is not yet handled still counts as
        // connected, and a retry in the same turn would spin until the deadline, starving the
        // loop that handles the close (and renews the heartbeat's lease) — seed 71.
        if (lost && host.now() < deadline) {
          await new Promise<void>((r) => host.timers.after(PEER_RECONNECT_POLL_MS, r));
          continue;
        }
        return { ok: false, code: "peer-request-failed", message };
      }
    }
  }

  /**
   * Moves a job that runs here to the peer. If the peer cannot start it, it comes back here: a
   * planned move must never leave the service down when the old node can still run it.
   */
  async function moveToPeer(name: string, by: string, cause: "switchover" | "failover", failBack = true): Promise<boolean> {
    const peer = otherNode(jobOrThrow(name));
    await stopHere(name);
    // A planned move waits for the last writes to reach the peer (stopHere flushed the mirror); if
    // they did not arrive, the peer would start on older data: the job comes back here instead.
    const unsent = host.state().replication.get(name)?.queue.batches ?? 0;
    if (cause === "switchover" && unsent > 0) {
      const then = failBack ? `bringing it back in on ${host.self}` : `it stays out: ${host.self} is stopping`;
      await host.record([{ type: "AlertRaised", data: { node: host.self, job: name, code: "switchover-failed", message: `${unsent} write batch(es) of ${name} did not reach ${peer} in time; ${then}` } }]);
      if (failBack) await startHere(name);
      return false;
    }
    const answer = await askPeer({ kind: "bring-in", job: name, by, cause });
    if (answer.ok) return true;
    const then = failBack ? `bringing it back in on ${host.self}` : `it stays out: ${host.self} is stopping`;
    await host.record([{ type: "AlertRaised", data: { node: host.self, job: name, code: `${cause}-failed`, message: `node ${peer} could not start job ${name} (${answer.code}: ${answer.message}); ${then}` } }]);
    if (failBack) await startHere(name);
    return false;
  }

  return {
    /** WORK under the job's lock: after any start or stop of it under way, and before the next. */
    exclusive: <T,>(name: string, work: () => Promise<T>) => serial(name, work),
    startHere: (name: string) => serial(name, () => startHere(name)),
    stopHere: (name: string) => serial(name, () => stopHere(name)),
    /** Self-fence: the job's virtual IPs are released before anything else stops. */
    fenceHere: (name: string) => serial(name, () => stopHere(name, true)),
    /** Abandons a start under way here (a decision journaled first); false if none was. */
    abandonStart(name: string, why: string): boolean {
      const start = starting.get(name);
      start?.abort(why);
      return start !== undefined;
    },
    /** A resume after a self-fence (policy): started here only if the peer, asked under its job lock, does not run the job. */
    resumeHere: (name: string) => serial(name, () => resumeHere(name)),
    /** failBack false when this agent is stopping: a job the peer cannot take stays out rather than outliving its agent. */
    moveToPeer: (name: string, by: string, cause: "switchover" | "failover", failBack = true) => movingWhile(name, () => serial(name, () => moveToPeer(name, by, cause, failBack))),

    /** Operator: start the job on `on` (default: its first node). Answers once the request is journaled. */
    async bringIn(name: string, by: string, on?: string, force = false): Promise<{ seq: number }> {
      const job = jobOrThrow(name);
      const target = on ?? job.nodes[0];
      if (!job.nodes.includes(target)) throw new Refusal("bad-request", `on: expected one of the job's nodes (${job.nodes.join(", ")}), got "${target}"`);
      // The job runs on the other node, which is still there: moving it is a switchover (stop the
      // application, drain the queue), gated like one; --force moves it anyway and says what is lost.
      // Running here, it is one whatever the peer's status (sim seed 2872 with a witness: asked
      // here to start it on a peer still counted lost, this node asked the peer to start it beside
      // its own run).
      const peerThere = job.active === host.self || host.state().membership.peerStatus !== "lost";
      const runsElsewhere = job.active !== null && job.active !== target && job.phase === "in" && peerThere;
      if (runsElsewhere && !force) {
        try {
          return await this.switchover(name, by, target);
        } catch (error) {
          if (!(error instanceof Refusal) || error.code !== "switchover-refused") throw error;
          throw new Refusal("switchover-refused", `${name} runs on ${job.active}: a bring-in on ${target} is a switchover, and ${error.message.replace(/^switchover of \S+ to \S+ /, "it was ")}; pass force to bring it in anyway (${lossOf(name)})`, error.details);
        }
      }
      if (runsElsewhere) return forcedBringIn(name, by, target, job.active!);
      const cutOff = isolatedHere();
      if (target === host.self && cutOff)
        throw new Refusal("isolated", `${host.self} cannot hear ${otherNode(job)} and reaches none of its ping targets (${cutOff}): it may be the node cut off, while ${otherNode(job)} runs ${name}; bring it in there, or restore this node's network first`);
      // An operator's takeover: the job's node is lost (policy manual raised an alert and waits for this).
      const takeover = target === host.self && job.active !== null && job.active !== host.self && host.state().membership.peerStatus === "lost";
      if (job.phase !== "out" && job.phase !== "failed" && !takeover) throw new Refusal("job-not-out", `job ${name} is ${job.phase}${job.active ? ` on ${job.active}` : ""}; bring it out first`);
      if (takeover)
        await host.record([{ type: "AlertRaised", data: { node: host.self, job: name, code: "operator-takeover", message: `${by} brings ${name} in on ${host.self} while ${job.active}, where it ran, is lost: the operator vouches that ${job.active} no longer runs it` } }]);
      if (target !== host.self && !host.peer.connected()) throw new Refusal("peer-not-connected", `job ${name}: node ${target} is not connected; bring the job in on ${host.self} or wait for the peer`);
      const request: DuetEvent = { type: "BringInRequested", data: { job: name, on: target, by } };
      const [recorded] = await host.record([request]);
      if (target === host.self) host.peer.relay(request);
      if (target === host.self) void serial(name, () => startHere(name));
      else void askPeer({ kind: "bring-in", job: name, by, cause: "operator" }).then((answer) => reportPeerFailure(name, answer));
      return { seq: recorded!.seq };
    },

    async bringOut(name: string, by: string): Promise<{ seq: number }> {
      const job = jobOrThrow(name);
      if (job.phase === "out") throw new Refusal("job-not-in", `job ${name} is already brought out`);
      // Only the node that runs it can stop it: asked here while that node is out of reach, the
      // request would stop nothing and leave this node's view of the job stuck (seed 77).
      if (job.active !== null && job.active !== host.self && job.phase === "in" && !host.peer.connected())
        throw new Refusal("peer-not-connected", `job ${name} runs on ${job.active}, which is not connected to ${host.self}: bring it out on ${job.active}, or wait for the peer`);
      const [recorded] = await host.record([{ type: "BringOutRequested", data: { job: name, by } }]);
      // A failed or half-started job may have leftovers on either node: clean here, and ask the peer too.
      void serial(name, () => stopHere(name));
      if (job.active !== host.self && host.peer.connected()) void askPeer({ kind: "bring-out", job: name, by }).then((answer) => reportPeerFailure(name, answer));
      return { seq: recorded!.seq };
    },

    async switchover(name: string, by: string, to?: string): Promise<{ seq: number }> {
      const job = jobOrThrow(name);
      const target = to ?? (job.active ? job.nodes.find((n) => n !== job.active) : undefined) ?? otherNode(job);
      const [requested] = await host.record([{ type: "SwitchoverRequested", data: { job: name, to: target, by } }]);
      const basis = { basisSeq: host.head(), decidedAt: host.now() };
      const gate = decideSwitchover(host.state(), name, target, basis.decidedAt);
      if (!gate.allowed) {
        await host.record([{ type: "SwitchoverRefused", data: { job: name, to: target, by, reasons: gate.reasons, ...basis } }]);
        throw new Refusal("switchover-refused", `switchover of ${name} to ${target} refused: ${refusalText(gate.reasons)}`, gate.reasons);
      }
      if (job.active === host.self) void movingWhile(name, () => serial(name, () => moveToPeer(name, by, "switchover")));
      else void askPeer({ kind: "switchover", job: name, to: target, by }).then((answer) => reportPeerFailure(name, answer));
      return { seq: requested!.seq };
    },

    async deleteJob(name: string, by: string): Promise<{ seq: number }> {
      const job = jobOrThrow(name);
      if (job.phase !== "out") throw new Refusal("job-not-out", `job ${name} is ${job.phase}; bring it out before deleting it`);
      const [recorded] = await host.record([{ type: "JobDeleted", data: { job: name, by } }]);
      return { seq: recorded!.seq };
    },

    /** What the peer asks of this node. Answers after the work is done, so the asker knows the outcome. */
    async onPeerRequest(request: JobRequest): Promise<PeerResponse> {
      const job = host.state().jobs.get(request.job);
      if (!job || !job.nodes.includes(host.self)) return { ok: false, code: "not-found", message: `job ${request.job} is not configured on ${host.self}` };
      switch (request.kind) {
        case "bring-in": {
          if (job.active === host.self && job.phase === "in") return { ok: true };
          if (moving.has(request.job) && host.self > otherNode(job)) return { ok: false, code: "crossing", message: `${host.self} is moving ${request.job} to ${otherNode(job)} at the same time: ${otherNode(job)} keeps it` };
          const requested: DuetEvent = { type: "BringInRequested", data: { job: request.job, on: host.self, by: request.by } };
          await host.record([requested]);
          host.peer.relay(requested);
          // Asked twice (the asker's connection dropped before the answer): the second finds it running.
          const ok = await serial(request.job, async () => {
            const now = host.state().jobs.get(request.job);
            return now?.active === host.self && now.phase === "in" ? true : startHere(request.job, true);
          });
          return ok ? { ok: true } : { ok: false, code: "start-failed", message: host.state().jobs.get(request.job)?.lastError?.error ?? "start failed" };
        }
        case "bring-out":
          await serial(request.job, () => stopHere(request.job, request.urgent === true));
          return { ok: true };
        case "job-where":
          if (resuming.has(request.job)) return { ok: true, where: { active: null, phase: RESUMING } };
          return serial(request.job, async () => {
            const now = host.state().jobs.get(request.job)!;
            return { ok: true, where: { active: now.active, phase: now.phase } };
          });
        case "switchover":
          try {
            await this.switchover(request.job, request.by, request.to);
            return { ok: true };
          } catch (error) {
            const e = error as Refusal;
            return { ok: false, code: e.code ?? "error", message: e.message };
          }
      }
    },

    /** Waits for every queued job operation (used when the agent stops). */
    async drain(): Promise<void> {
      await Promise.all([...queues.values()]);
    },
  };

  async function reportPeerFailure(name: string, answer: PeerResponse): Promise<void> {
    if (answer.ok) return;
    await host.record([{ type: "AlertRaised", data: { node: host.self, job: name, code: answer.code, message: answer.message } }]);
  }
}

export type JobControl = ReturnType<typeof createJobControl>;
