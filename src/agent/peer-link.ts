import { validateEvent, type DuetEvent } from "../events/catalogue.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { relayedFact, type PeerRequest, type PeerResponse } from "./peer-protocol.ts";
import type { Timers } from "../world/clock.ts";
import { chooseKeeper, decideYieldStart, startingHere } from "../policy/both-active.ts";
import type { Decision } from "../policy/decision.ts";
import { lineageView } from "../projections/lineage.ts";
import { decisionSincePhase } from "../projections/jobs.ts";

type JobReport = Extract<PeerRequest, { kind: "hello" }>["jobs"][number];

/**
 * The jobs this node runs, as the peer should hear them: not one it is letting go of (a self-fence
 * decided, its bring-out under way), which the peer would otherwise be asked to give up for it
 * (simulator seed 3227: the fencing node was chosen to keep the job, the other let go, and it ran
 * nowhere). `fencing`: those too, as a hello sent before the fence described them.
 */
export function jobsRunningHere(state: ClusterState, options: { fencing?: boolean } = {}): JobReport[] {
  const reports: JobReport[] = [];
  for (const job of state.jobs.values()) {
    if (job.active !== state.self || job.phase !== "in") continue;
    if (decisionSincePhase(job)?.kind === "self-fence" && !options.fencing) continue;
    const line = lineageView(state.lineage, job.name, state.self);
    reports.push({ job: job.name, phase: "in", since: job.phaseSince, generation: line.current, ancestors: line.ancestors.slice(0, 16), how: job.recovering ? "recover" : (job.startedBy ?? "unknown") });
  }
  return reports;
}

export interface Reconciliation {
  /** Facts about the peer to record here: where it runs jobs we did not know about, or no longer runs them. */
  facts: DuetEvent[];
  /** Jobs both nodes run, and the policy's choice of the node that keeps each (the same on both). */
  bothActive: ReturnType<typeof chooseKeeper>[];
  /** Jobs this node is still starting while the peer runs them: starts to abandon (decideYieldStart). */
  yields: Decision[];
}

/**
 * Compares what the peer says it runs with what this node believes, after a reconnect (relayed
 * facts may have been lost while the link was down). A job both run (a partition without fencing)
 * is left to chooseKeeper, from the two reports alone, so both nodes reach the same answer; a job
 * the peer runs while this node is still starting it is left to decideYieldStart. A job resolved
 * on this connection (RESOLVED) is settled by the resolution and the facts it relays: a report
 * that crossed it (the other hello, made before) yields no fact that would undo it (seed 3855).
 */
export function reconcile(state: ClusterState, peer: string, peerJobs: readonly JobReport[], resolved: ReadonlySet<string> = new Set()): Reconciliation {
  const facts: DuetEvent[] = [];
  const bothActive: Reconciliation["bothActive"] = [];
  const yields: Decision[] = [];
  // A job this node is letting go of counts: the peer may have judged by a hello sent before the
  // fence, and both must resolve alike (seed 2528: the peer chose this node and let go, while this
  // node, fencing, took the peer's claim as a plain fact; the job ran nowhere). The chosen keeper
  // resumes it after its fence (decideResume).
  const mine = new Map(jobsRunningHere(state, { fencing: true }).map((r) => [r.job, r]));
  const peerRuns = new Map(peerJobs.filter((j) => j.phase === "in").map((j) => [j.job, j]));
  for (const job of state.jobs.values()) {
    if (!job.nodes.includes(peer)) continue;
    const theirs = peerRuns.get(job.name);
    const here = mine.get(job.name);
    const yielding = theirs ? decideYieldStart(job.name, startingHere(state, job), { node: peer, ...theirs }) : null;
    if (yielding) yields.push(yielding);
    if (theirs && here) bothActive.push(chooseKeeper(job.name, { node: state.self, ...here }, { node: peer, ...theirs }));
    else if (resolved.has(job.name)) continue;
    // The peer runs it: a view here that says otherwise (another node, or a phase left half-way
    // by a request the peer never heard) is put right.
    else if (theirs && (job.active !== peer || job.phase !== "in")) facts.push({ type: "JobBroughtIn", data: { job: job.name, node: peer } });
    else if (!theirs && job.active === peer) facts.push({ type: "JobBroughtOut", data: { job: job.name, node: peer } });
  }
  return { facts, bothActive, yields };
}

/** A fact the peer relayed: only the relayed kinds, only about the peer itself, and valid. */
export function parseRelayedFact(body: unknown, peer: string): DuetEvent {
  const parsed = relayedFact.safeParse(body);
  if (!parsed.success) throw new Error(`relayed fact: expected {type: ${relayedFact.shape.type.options.join("|")}, data}, got ${JSON.stringify(body)?.slice(0, 200)}`);
  const event = validateEvent(parsed.data.type, parsed.data.data);
  // The node a fact is about: `node`, a resync's source, or where a bring-in starts.
  const data = event.data as { node?: string; from?: string; on?: string };
  const node = data.node ?? data.from ?? data.on;
  if (node !== peer) throw new Error(`relayed fact ${event.type}: names node ${node}, expected the peer ${peer}`);
  return event;
}

/** A failed hello is tried again after 1, 2, 4 and 8 s, then every 10 s while its connection lasts. */
export const HELLO_RETRY_MAX_MS = 10_000;

export interface HelloHost {
  /** Sends this node's hello; the answer is parsed (a bad one throws). */
  ask(): Promise<PeerResponse>;
  apply(jobs: JobReport[], answer: Extract<PeerResponse, { ok: true }>): Promise<void>;
  /** The connection the hello began on is still up. */
  live(): boolean;
  alert(message: string): Promise<void>;
  log(line: string): void;
  timers: Timers;
  peer: string;
}

/**
 * Says hello until the peer answers. The hellos are what find a job running on both nodes, and
 * the peer's own hello may have failed too: a failure (timed out, refused, or an answer that fails
 * its schema) is raised once and tried again while the connection lasts; the next connection says
 * hello anew.
 */
export async function helloUntilAnswered(host: HelloHost, attempt = 0): Promise<void> {
  try {
    const answer = await host.ask();
    if (!answer.ok) throw new Error(`${answer.code}: ${answer.message}`);
    // Taken as "runs nothing", an answer without its jobs would invent their bring-outs.
    if (answer.jobs === undefined) throw new Error("the answer names no jobs");
    await host.apply(answer.jobs, answer);
  } catch (error) {
    const message = `hello to ${host.peer} failed: ${(error as Error).message}`.slice(0, 1000);
    host.log(message);
    if (!host.live()) return;
    if (attempt === 0) await host.alert(message).catch(() => undefined);
    host.timers.after(Math.min(HELLO_RETRY_MAX_MS, 1000 * 2 ** attempt), () => {
      if (host.live()) void helloUntilAnswered(host, attempt + 1);
    });
  }
}
