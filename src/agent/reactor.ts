import type { DuetEvent, EventOf } from "../events/catalogue.ts";
import { peerGoneVerdict } from "../projections/membership.ts";
import { witnessClaimNeeded } from "../policy/takeover.ts";
import { claimRetryMs, claimSince } from "../policy/witness.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { decide, tiebreakerNeeded } from "../policy/decide.ts";
import { stallCheckNeeded } from "../policy/selffence.ts";
import type { Decision } from "../policy/decision.ts";
import { decisionEvents } from "../policy/journal.ts";
import type { JobControl } from "./jobs.ts";

export interface ReactorHost {
  self: string;
  state(): ClusterState;
  /** The last seq folded into state(): read with it, it is the basis a decision journals. */
  head(): number;
  now(): number;
  record(events: DuetEvent[]): Promise<unknown>;
  /** Asks the tiebreaker (or, on a suspicion or a re-check, only the ping) and returns its verdict as a fact (never throws). */
  /** peer-suspected: the whole tiebreaker but the fence command, asked by a standby with a witness. */
  tiebreak(kind: "peer-lost" | "peer-suspected" | "reachability"): Promise<DuetEvent>;
  /** After this agent's loop stalled: asks the peer which jobs it still sees running here (a StallChecked fact, never throws). */
  stallCheck(): Promise<DuetEvent>;
  jobs: JobControl;
  /** With a witness: asks for a job's holder key before a takeover (a WitnessClaimed fact, never throws). */
  claim?(job: string): Promise<EventOf<"WitnessClaimed">>;
  log(message: string, fields?: Record<string, unknown>): void;
}

/** A re-check found what the verdict it re-checks said: the verdict, and who answered on the network. */
function sameAnswer(verdict: DuetEvent, before: ClusterState["membership"]["tiebreaker"]): boolean {
  if (verdict.type !== "TiebreakerResult" || !before || verdict.data.verdict !== before.verdict) return false;
  const answered = (list: readonly { address: string; interface: string; answered: boolean }[] | undefined) => (list ?? []).filter((p) => p.answered).map((p) => `${p.address}@${p.interface}`).sort().join();
  return answered(verdict.data.peerOnNetwork) === answered(before.peerOnNetwork);
}

/**
 * A refused claim that says what the one the policy counts said (same holder, or again no
 * answer): the policy's own reading (claimSince, since the verdict the takeover counts), so a
 * repeat during a suspicion is not journaled either.
 */
function sameClaim(fact: EventOf<"WitnessClaimed">, state: ClusterState, job: string, now: number): boolean {
  const view = state.jobs.get(job);
  const verdict = peerGoneVerdict(state.membership);
  const before = view && verdict ? claimSince(view, verdict.seq, now).claim : null;
  if (fact.data.won || !before || before.won) return false;
  return before.holder === fact.data.holder && (before.error === null) === (fact.data.error === undefined);
}

/**
 * The control loop: fold → decide → journal the decision → execute. It runs after every batch of
 * facts and on a timer (decisions that wait for time, like the self-fence grace). Runs never
 * overlap; a request arriving during a run makes one more run afterwards.
 */
export function createReactor(host: ReactorHost) {
  let running: Promise<void> | null = null;
  let again = false;
  let tiebreaking = false;
  let stallChecking = false;
  let stopped = false;
  let lastRecheckAt = -Infinity;
  const claiming = new Set<string>();
  const nextClaimAt = new Map<string, number>();

  async function step(): Promise<void> {
    const state = host.state();
    if (stallCheckNeeded(state) && !stallChecking) {
      stallChecking = true;
      void host
        .stallCheck()
        .then((answer) => host.record([answer]))
        .catch((error: Error) => host.log(`stall check failed: ${error.message}`))
        .finally(() => {
          stallChecking = false;
          poke();
        });
    }
    const tiebreaker = tiebreakerNeeded(state);
    const recheck = tiebreaker === "recheck" || tiebreaker === "peer-lost-recheck";
    // A re-check comes once a deadtime, and only a changed verdict is a new fact.
    const due = tiebreaker !== null && !(recheck && host.now() - lastRecheckAt < state.membership.settings.deadtimeMs);
    if (due && !tiebreaking) {
      tiebreaking = true;
      if (recheck) lastRecheckAt = host.now();
      const before = state.membership.tiebreaker;
      void host
        .tiebreak(tiebreaker === "recheck" ? "reachability" : tiebreaker === "peer-lost-recheck" ? "peer-lost" : tiebreaker)
        .then((verdict) => (recheck && sameAnswer(verdict, before) ? undefined : host.record([verdict])))
        .catch((error: Error) => host.log(`tiebreaker failed: ${error.message}`))
        .finally(() => {
          tiebreaking = false;
          poke();
        });
    }
    askWitness(state);
    const basis = { basisSeq: host.head(), decidedAt: host.now() };
    const decisions = decide(state, basis.decidedAt);
    if (decisions.length === 0) return;
    // Journaled before anything is done: the journal must say why even if the action then hangs.
    await host.record(decisionEvents(decisions, state, basis));
    for (const d of decisions) execute(d);
  }

  /**
   * The holder keys a takeover waits for, asked one at a time per job. The same answer again (the
   * peer still holds the key) is not journaled; it is asked again once the peer's lease could have
   * run out (holderTtlMs), or a second later when the witness did not answer.
   */
  function askWitness(state: ClusterState): void {
    if (!host.claim) return;
    const now = host.now();
    for (const job of witnessClaimNeeded(state, now)) {
      if (claiming.has(job) || now < (nextClaimAt.get(job) ?? -Infinity)) continue;
      claiming.add(job);
      void host
        .claim(job)
        .then((fact) => {
          nextClaimAt.set(job, host.now() + claimRetryMs(fact.data));
          const latest = host.state();
          return sameClaim(fact, latest, job, host.now()) ? undefined : host.record([fact]);
        })
        .catch((error: Error) => host.log(`witness claim failed: ${error.message}`))
        .finally(() => {
          claiming.delete(job);
          poke();
        });
    }
  }

  function execute(d: Decision): void {
    host.log(`decided ${d.kind} for job ${d.job}: ${d.code}`);
    const done = (error: unknown) => error && host.log(`executing ${d.kind} for job ${d.job} failed: ${(error as Error).message}`);
    if (d.kind === "takeover") void host.jobs.startHere(d.job).then(() => undefined, done);
    if (d.kind === "self-fence") void host.jobs.fenceHere(d.job).then(() => undefined, done);
    if (d.kind === "failover") void host.jobs.moveToPeer(d.job, "policy", "failover").then(() => undefined, done);
    if (d.kind === "resume") void host.jobs.resumeHere(d.job).then(() => undefined, done);
    if (d.kind === "recover") void host.jobs.startHere(d.job).then(() => undefined, done);
    if (d.kind === "recovery-declined") void host.jobs.fenceHere(d.job).then(() => undefined, done);
  }

  function poke(): void {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await step();
        } catch (error) {
          host.log(`control loop: ${(error as Error).message}`);
        }
      } while (again && !stopped);
      running = null;
    })();
  }

  return {
    poke,
    async stop(): Promise<void> {
      stopped = true;
      await running;
    },
  };
}
