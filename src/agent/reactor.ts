import type { DuetEvent } from "../events/catalogue.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { decide, tiebreakerNeeded } from "../policy/decide.ts";
import { stallCheckNeeded } from "../policy/selffence.ts";
import type { Decision } from "../policy/decision.ts";
import { behindLine } from "../policy/takeover.ts";
import type { JobControl } from "./jobs.ts";

export interface ReactorHost {
  self: string;
  state(): ClusterState;
  now(): number;
  record(events: DuetEvent[]): Promise<unknown>;
  /** Asks the tiebreaker (or, on a suspicion, only the ping) and returns its verdict as a fact (never throws). */
  tiebreak(kind: "peer-lost" | "reachability"): Promise<DuetEvent>;
  /** After this agent's loop stalled: asks the peer which jobs it still sees running here (a StallChecked fact, never throws). */
  stallCheck(): Promise<DuetEvent>;
  jobs: JobControl;
  log(message: string, fields?: Record<string, unknown>): void;
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
    if (tiebreaker && !tiebreaking) {
      tiebreaking = true;
      void host
        .tiebreak(tiebreaker)
        .then((verdict) => host.record([verdict]))
        .catch((error: Error) => host.log(`tiebreaker failed: ${error.message}`))
        .finally(() => {
          tiebreaking = false;
          poke();
        });
    }
    const decisions = decide(state, host.now());
    if (decisions.length === 0) return;
    const selfFence = decisions.filter((d) => d.kind === "self-fence");
    const others = decisions.filter((d) => d.kind !== "self-fence");
    const peer = state.membership.peer ?? "unknown";
    // Journaled before anything is done: the journal must say why even if the action then hangs.
    const events: DuetEvent[] = others.map((d) => decisionEvent(d, host.self, peer, state));
    for (const code of ["stalled", "isolated"] as const) {
      const fenced = selfFence.filter((d) => d.code === code);
      if (fenced.length > 0) events.push({ type: "SelfFenceDecided", data: { node: host.self, jobs: fenced.map((d) => d.job), graceMs: code === "stalled" ? 0 : state.membership.settings.selfFenceGraceMs, reasons: fenced[0]!.reasons, code } });
    }
    for (const d of decisions.filter((d) => d.kind === "decline" || d.kind === "recovery-declined"))
      events.push({ type: "AlertRaised", data: { node: host.self, job: d.job, code: d.code, message: declineMessage(d, host.self, peer) } });
    await host.record(events);
    for (const d of decisions) execute(d);
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

function decisionEvent(d: Decision, self: string, peer: string, state: ClusterState): DuetEvent {
  const job = state.jobs.get(d.job)!;
  switch (d.kind) {
    case "takeover":
      return { type: "TakeoverDecided", data: { job: d.job, by: self, from: peer, policy: job.policy, reasons: d.reasons, ...(d.behind === undefined ? {} : { behind: d.behind }) } };
    case "failover":
      return { type: "FailoverDecided", data: { job: d.job, from: self, to: d.to ?? peer, cause: d.code === "nic-down" ? "nic-down" : d.code === "start-failed" ? "start-failed" : "monitor-threshold", reasons: d.reasons } };
    case "resume":
      return { type: "ResumeDecided", data: { job: d.job, node: self, reasons: d.reasons } };
    case "recover":
      return { type: "RecoveryDecided", data: { job: d.job, node: self, code: d.code, reasons: d.reasons } };
    case "recovery-declined":
      return { type: "RecoveryDeclined", data: { job: d.job, node: self, code: d.code, reasons: d.reasons } };
    default:
      return { type: "TakeoverDeclined", data: { job: d.job, by: self, from: peer, policy: job.policy, code: d.code, reasons: d.reasons, ...(d.behind === undefined ? {} : { behind: d.behind }) } };
  }
}

function declineMessage(d: Decision, self: string, peer: string): string {
  if (d.kind === "recovery-declined") return `job ${d.job} ran on ${self} when its agent last stopped; ${peer} is lost but may have taken it over (${d.code}), so it stays out here; it resumes once ${peer} is back and runs it nowhere, or: duet job bring-in ${d.job} --on ${self}`;
  if (d.code === "failover-peer-not-connected") return `job ${d.job} has a fault on ${self} but ${peer} is not connected: it stays here`;
  const why = (d.reasons.find((r) => r.name === "tiebreaker-confirmed")?.value as { why?: string } | undefined)?.why;
  if (d.code === "peer-alive-on-public-network") {
    const seen = d.reasons.find((r) => r.name === "peer-silent-on-public-network")?.value as { answered?: string[] } | undefined;
    return `node ${peer} is silent on every link but answers on the public network (${seen?.answered?.join(", ") ?? "ARP"}): its agent may be hung or the link between the nodes cut, and it may still run job ${d.job}; not taken over. If ${peer} is really down: duet job bring-in ${d.job} --on ${self}`;
  }
  if (d.code === "tiebreaker-failed") return `node ${peer} is lost and job ${d.job} was not taken over: the tiebreaker could not run (${why ?? "no output"}); to take it over: duet job bring-in ${d.job} --on ${self}`;
  const lag = d.behind === undefined ? "" : ` (${behindLine(d.behind)})`;
  return `node ${peer} is lost and job ${d.job} was not taken over (${d.code}); to take it over: duet job bring-in ${d.job} --on ${self}${lag}`;
}
