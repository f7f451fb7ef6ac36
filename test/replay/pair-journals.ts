import { join } from "node:path";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import type { DecisionBasis } from "../../src/events/ids.ts";
import { openJournal, type Journal } from "../../src/journal/journal.ts";
import { clusterProjection, type ClusterState } from "../../src/projections/cluster.ts";
import { decide } from "../../src/policy/decide.ts";
import { decisionEvents } from "../../src/policy/journal.ts";
import { decideSwitchover } from "../../src/policy/switchover.ts";
import type { Clock } from "../../src/world/clock.ts";
import { createHlc, type HybridClock } from "../../src/world/hlc.ts";

/**
 * Writes two nodes' REAL journals (openJournal, LevelDB in a temp dir) from a script, the way the
 * agents would: facts as effectors report them, and at each `decide` step whatever src/policy's
 * decide() returns on that node's folded state, journaled in the reactor's shape. Every node's
 * clock may be skewed from true time; a `hears` step merges the peer's hybrid clock as a frame would.
 */
export type NodeName = "a" | "b";
export type Step =
  /** A fact; a function gets the node's own clock reading, for facts that name earlier times. */
  | { on: NodeName; fact: DuetEvent | ((now: number) => DuetEvent) }
  /**
   * What decide() returns, journaled as the reactor does; `lateFacts` go in between the decision
   * and its record (facts that arrived while it was being journaled); `legacy` drops its basis, as
   * a journal written before decisions named one.
   */
  | { on: NodeName; decide: true; lateFacts?: DuetEvent[]; legacy?: boolean }
  | { on: NodeName; switchover: { job: string; to: string; by: string } }
  /** An edit: appended as is, whatever the policy would say (a function is given the basis the node would name). */
  | { on: NodeName; forge: DuetEvent | ((basis: DecisionBasis) => DuetEvent) }
  | { on: NodeName; hears: NodeName }
  | { wait: number };

export const T0 = Date.parse("2026-11-24T03:12:00Z");
/** True time between two steps. */
export const STEP_MS = 100;

export interface WrittenPair {
  dirs: Record<NodeName, string>;
  /** True time at the end of the script. */
  end: number;
}

export async function writePair(root: string, script: Step[], skewMs: Partial<Record<NodeName, number>> = {}): Promise<WrittenPair> {
  let now = T0;
  const dirs = { a: join(root, "a"), b: join(root, "b") };
  const open = async (node: NodeName) => {
    const clock: Clock = { now: () => now + (skewMs[node] ?? 0), monotonic: () => now - T0 };
    const hlc = createHlc(clock);
    const journal = await openJournal({ dir: dirs[node], node, clock, hlc, projection: clusterProjection(node) });
    return { journal, hlc };
  };
  const nodes: Record<NodeName, { journal: Journal<ClusterState>; hlc: HybridClock }> = { a: await open("a"), b: await open("b") };
  try {
    for (const step of script) {
      if ("wait" in step) {
        now += step.wait;
        continue;
      }
      now += STEP_MS;
      const { journal, hlc } = nodes[step.on];
      const local = now + (skewMs[step.on] ?? 0);
      if ("fact" in step) await journal.append([typeof step.fact === "function" ? step.fact(local) : step.fact]);
      else if ("forge" in step) await journal.append([typeof step.forge === "function" ? step.forge({ basisSeq: journal.head(), decidedAt: local }) : step.forge]);
      else if ("hears" in step) hlc.receive(nodes[step.hears].hlc.peek());
      else if ("switchover" in step) await switchover(journal, step.switchover, local);
      else {
        const decided = decisionsOf(journal, local);
        if (step.lateFacts) await journal.append(step.lateFacts);
        await journal.append(step.legacy ? decided.map(withoutBasis) : decided);
      }
    }
  } finally {
    await nodes.a.journal.close();
    await nodes.b.journal.close();
  }
  return { dirs, end: now };
}

/** The events src/agent/reactor.ts journals for what decide() returns; a step that decides nothing is a broken fixture. */
function decisionsOf(journal: Journal<ClusterState>, now: number): DuetEvent[] {
  const state = journal.state();
  const decisions = decide(state, now);
  if (decisions.length === 0) throw new Error(`fixture: decide() on ${state.self} at ${new Date(now).toISOString()} decided nothing`);
  return decisionEvents(decisions, state, { basisSeq: journal.head(), decidedAt: now });
}

function withoutBasis(event: DuetEvent): DuetEvent {
  const { basisSeq: _seq, decidedAt: _at, ...data } = event.data as Record<string, unknown>;
  return { ...event, data } as DuetEvent;
}

/** As src/agent/jobs.ts: the request is journaled, then the gate runs on the state that includes it. */
async function switchover(journal: Journal<ClusterState>, request: { job: string; to: string; by: string }, now: number) {
  await journal.append([{ type: "SwitchoverRequested", data: request }]);
  const basis = { basisSeq: journal.head(), decidedAt: now };
  const gate = decideSwitchover(journal.state(), request.job, request.to, now);
  if (gate.allowed) throw new Error(`fixture: the switchover of ${request.job} to ${request.to} was allowed; the script expected a refusal`);
  await journal.append([{ type: "SwitchoverRefused", data: { ...request, reasons: gate.reasons, ...basis } }]);
}

// Facts, as the effectors report them.
type Policy = "manual" | "when-consistent" | "allow-difference" | "unconditional";
const LINKS = [
  { link: "lan", kind: "udp" as const },
  { link: "tcp", kind: "tcp" as const },
];
export const GENERATION = "0123456789abcdef";
const SHA = "ab".repeat(32);

export const started = (node: NodeName): Step => ({ on: node, fact: { type: "AgentStarted", data: { node, version: "t", pid: 100, configHash: "h", heartbeatIntervalMs: 500, suspectMs: 1000, deadtimeMs: 3000, pingTimeoutMs: 500, selfFenceGraceMs: 1000, links: LINKS } } });
export const created = (node: NodeName, job: string, policy: Policy, mirrors: string[] = []): Step => ({
  on: node,
  fact: { type: "JobCreated", data: { job, nodes: ["a", "b"], policy, reverseWhenConsistent: false, restartMax: 3, resources: [{ name: "app", kind: "process" }], mirrors } },
});
const peerOf = (node: NodeName): NodeName => (node === "a" ? "b" : "a");

/** Both links come up and the peer is seen, on `node`, after hearing the peer's frames. */
export const connects = (node: NodeName): Step[] => [
  { on: node, hears: peerOf(node) },
  ...LINKS.map((l): Step => ({ on: node, fact: { type: "LinkUp", data: { node, peer: peerOf(node), ...l } } })),
  { on: node, fact: { type: "PeerSeen", data: { node, peer: peerOf(node) } } },
];

/** An operator brings `job` in on a; b learns it from a's relayed fact. */
export const bringInOnA = (job: string): Step[] => [
  { on: "a", fact: { type: "BringInRequested", data: { job, on: "a", by: "admin" } } },
  { on: "a", fact: { type: "ResourceStarted", data: { job, node: "a", resource: "app" } } },
  { on: "a", fact: { type: "JobBroughtIn", data: { job, node: "a" } } },
  { on: "b", hears: "a" },
  { on: "b", fact: { type: "JobBroughtIn", data: { job, node: "a" } } },
];

/** b joins a's line of data by a full resync, then one write batch is captured on a, applied on b and acknowledged. */
export const oneBatch = (job: string): Step[] => [
  { on: "a", fact: { type: "GenerationStarted", data: { job, node: "a", generation: GENERATION, parent: null, reason: "initial" } } },
  { on: "b", hears: "a" },
  { on: "b", fact: { type: "ResyncStarted", data: { job, from: "a", to: "b", paths: 3, bytes: 4096 } } },
  { on: "b", fact: { type: "ResyncCompleted", data: { job, from: "a", to: "b", shippedBytes: 4096, ms: 40 } } },
  { on: "b", fact: { type: "GenerationStarted", data: { job, node: "b", generation: GENERATION, parent: null, reason: "initial" } } },
  { on: "a", fact: { type: "BatchCaptured", data: { job, node: "a", batch: 1, generation: GENERATION, ops: [{ op: "write", path: "index.html", blocks: [[0, 1]], size: 512, sha256: SHA }], bytes: 512, sha256: SHA } } },
  { on: "b", hears: "a" },
  { on: "b", fact: { type: "BatchApplied", data: { job, node: "b", batch: 1, generation: GENERATION } } },
  { on: "a", hears: "b" },
  { on: "a", fact: { type: "BatchAcked", data: { job, node: "a", by: "b", batch: 1 } } },
];

/** a crashes now: b's links go silent, the deadtime passes, b's ping tiebreaker answers `verdict`. */
export const aCrashesSeenFromB = (verdict: "confirmed" | "isolated" = "confirmed"): Step[] => [
  { wait: 1000 },
  { on: "b", fact: (now) => ({ type: "LinkDown", data: { node: "b", peer: "a", link: "lan", kind: "udp", lastHeardAt: now - 1100 } }) },
  { on: "b", fact: (now) => ({ type: "LinkDown", data: { node: "b", peer: "a", link: "tcp", kind: "tcp", lastHeardAt: now - 1200 } }) },
  { wait: 1700 },
  { on: "b", fact: (now) => ({ type: "PeerLost", data: { node: "b", peer: "a", lastHeardAt: now - 3000, deadtimeMs: 3000 } }) },
  { on: "b", fact: { type: "TiebreakerResult", data: { node: "b", peer: "a", method: "ping", verdict, targets: [{ target: "192.0.2.254", ok: verdict === "confirmed", ms: 2 }] } } },
];

/** The self-fence grace (1000 ms) and the takeover margin (1000 ms) a ping tiebreaker waits for. */
export const fenceWait: Step = { wait: 2100 };
