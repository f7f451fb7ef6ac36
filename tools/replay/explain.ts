import type { Recorded } from "../../src/events/catalogue.ts";
import type { Reason } from "../../src/events/ids.ts";
import { evolveCluster, initialCluster, type ClusterState } from "../../src/projections/cluster.ts";
import { decide } from "../../src/policy/decide.ts";
import { decideSwitchover } from "../../src/policy/switchover.ts";
import type { LoadedJournal } from "./load.ts";

/** How far back a recheck looks when facts were appended between deciding and journaling. */
export const RECHECK_LOOKBACK_EVENTS = 20;
const DECISION_TYPES = new Set(["TakeoverDecided", "TakeoverDeclined", "FailoverDecided", "SelfFenceDecided", "SwitchoverRefused"]);

export interface Outcome {
  kind: string;
  code: string;
}

export interface Explanation {
  node: string;
  seq: number;
  at: number;
  job: string;
  journaled: Outcome;
  reasons: Reason[];
  /** The facts that led here, oldest first, as lines a person reads. */
  chain: { at: number; node: string; text: string }[];
  recheck: { matches: boolean; replayed: Outcome | null; basisSeq: number | null; note?: string };
}

function journaledOutcomes(record: Recorded): { job: string; outcome: Outcome; reasons: Reason[] }[] {
  switch (record.type) {
    case "TakeoverDecided":
      return [{ job: record.data.job, outcome: { kind: "takeover", code: "takeover" }, reasons: record.data.reasons }];
    case "TakeoverDeclined":
      return [{ job: record.data.job, outcome: { kind: "decline", code: record.data.code }, reasons: record.data.reasons }];
    case "FailoverDecided":
      return [{ job: record.data.job, outcome: { kind: "failover", code: record.data.cause }, reasons: record.data.reasons }];
    case "SelfFenceDecided":
      return record.data.jobs.map((job) => ({ job, outcome: { kind: "self-fence", code: "isolated" }, reasons: record.data.reasons }));
    case "SwitchoverRefused":
      return [{ job: record.data.job, outcome: { kind: "switchover-refused", code: failedNames(record.data.reasons) }, reasons: record.data.reasons }];
    default:
      return [];
  }
}

function failedNames(reasons: Reason[]): string {
  return reasons.filter((r) => r.ok === false).map((r) => r.name).join(",");
}

/** What the policy decides for `job` on a replayed state, in the journal's own terms. */
function replayedOutcome(state: ClusterState, record: Recorded, job: string): Outcome | null {
  if (record.type === "SwitchoverRefused") {
    const gate = decideSwitchover(state, job, record.data.to, record.at);
    return gate.allowed ? { kind: "switchover-allowed", code: "" } : { kind: "switchover-refused", code: failedNames(gate.reasons) };
  }
  const d = decide(state, record.at).find((x) => x.job === job);
  return d ? { kind: d.kind, code: d.code } : null;
}

/**
 * Every automatic decision in one node's journal, explained and re-checked: the journal is folded
 * again and src/policy's decide runs on the state just before the decision, at its time. Facts
 * appended between the agent's decide and its append are allowed for: the check also tries the
 * few states before, and says so. A journal edited to contradict the policy finds no match.
 */
export function explainJournal(journal: LoadedJournal, other?: LoadedJournal): Explanation[] {
  const explanations: Explanation[] = [];
  let state = initialCluster(journal.node);
  const history: ClusterState[] = []; // states before each of the last few records
  const recent: Recorded[] = [];
  for (const record of journal.records) {
    if (DECISION_TYPES.has(record.type)) {
      for (const { job, outcome, reasons } of journaledOutcomes(record)) {
        let replayed = replayedOutcome(state, record, job);
        let basisSeq: number | null = record.seq - 1;
        let note: string | undefined;
        if (!same(replayed, outcome)) {
          for (let back = history.length - 1; back >= 0; back--) {
            const earlier = replayedOutcome(history[back]!, record, job);
            if (same(earlier, outcome)) {
              basisSeq = record.seq - 1 - (history.length - back);
              note = `reached on the state at seq ${basisSeq}; ${record.seq - 1 - basisSeq} fact(s) were appended while it was being journaled`;
              replayed = earlier;
              break;
            }
          }
        }
        const matches = same(replayed, outcome);
        explanations.push({
          node: journal.node,
          seq: record.seq,
          at: record.at,
          job,
          journaled: outcome,
          reasons,
          chain: causalChain(recent, record, job, other),
          recheck: { matches, replayed, basisSeq: matches ? basisSeq : null, ...(note ? { note } : {}) },
        });
      }
    }
    history.push(state);
    if (history.length > RECHECK_LOOKBACK_EVENTS) history.shift();
    state = evolveCluster(state, record);
    recent.push(record);
    if (recent.length > 500) recent.shift();
  }
  return explanations;
}

function same(a: Outcome | null, b: Outcome): boolean {
  return a !== null && a.kind === b.kind && a.code === b.code;
}

/** The facts on this node since the peer was last seen (or the job last changed), and the peer's last word. */
function causalChain(recent: Recorded[], decision: Recorded, job: string, other?: LoadedJournal): Explanation["chain"] {
  const chain: Explanation["chain"] = [];
  const relevant = (r: Recorded) => {
    const d = r.data as { job?: string };
    return d.job === undefined || d.job === job;
  };
  let start = 0;
  for (let i = recent.length - 1; i >= 0; i--) {
    const r = recent[i]!;
    if (r.type === "PeerSeen" || r.type === "AgentStarted" || (r.type === "JobBroughtIn" && (r.data as { job: string }).job === job)) {
      start = i;
      break;
    }
  }
  for (const r of recent.slice(start)) {
    if (!relevant(r)) continue;
    const text = describe(r);
    if (text) chain.push({ at: r.at, node: r.node, text });
  }
  if (other) {
    const last = [...other.records].reverse().find((r) => r.at <= decision.at);
    if (last) chain.push({ at: last.at, node: other.node, text: `the last record in ${other.node}'s own journal before this decision: ${last.type}${last.type === "AgentStopping" ? " (a clean stop)" : ""}` });
  }
  chain.push({ at: decision.at, node: decision.node, text: `decision: ${describe(decision) ?? decision.type}` });
  return chain.sort((a, b) => a.at - b.at);
}

const time = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** One line per fact a person needs to follow a failover; null for facts that only add noise. */
export function describe(r: Recorded): string | null {
  switch (r.type) {
    case "AgentStarted":
      return `agent ${r.data.node} started (deadtime ${r.data.deadtimeMs} ms, self-fence grace ${r.data.selfFenceGraceMs} ms)`;
    case "AgentStopping":
      return `agent ${r.data.node} stopping on ${r.data.signal}; its jobs: ${r.data.jobsAction}`;
    case "LinkUp":
      return `link ${r.data.link} (${r.data.kind}) up`;
    case "LinkDown":
      return `link ${r.data.link} (${r.data.kind}) down, last frame at ${time(r.data.lastHeardAt)}`;
    case "PeerLost":
      return `peer ${r.data.peer} lost: every link silent for ${r.data.deadtimeMs} ms (last frame ${r.data.lastHeardAt ? time(r.data.lastHeardAt) : "never"})`;
    case "PeerSeen":
      return `peer ${r.data.peer} seen`;
    case "TiebreakerResult":
      return `tiebreaker (${r.data.method}): ${r.data.verdict}${r.data.targets.length ? `; targets ${r.data.targets.map((t) => `${t.target} ${t.ok ? "answered" : "silent"}`).join(", ")}` : ""}${r.data.output ? `; ${r.data.output.trim().slice(0, 120)}` : ""}`;
    case "BringInRequested":
      return `${r.data.by} asked to bring ${r.data.job} in on ${r.data.on}`;
    case "BringOutRequested":
      return `${r.data.by} asked to bring ${r.data.job} out`;
    case "SwitchoverRequested":
      return `${r.data.by} asked to switch ${r.data.job} over to ${r.data.to}`;
    case "SwitchoverRefused":
      return `switchover of ${r.data.job} to ${r.data.to} refused: ${failedNames(r.data.reasons)}`;
    case "MonitorFailed":
      return `${r.data.resource} monitor failed on ${r.data.node} (${r.data.failures} in window): ${r.data.error}`;
    case "ResourceRestarted":
      return `${r.data.resource} restarted on ${r.data.node} (attempt ${r.data.attempt})`;
    case "ResourceStartFailed":
      return `${r.data.resource} failed to start on ${r.data.node}: ${r.data.error}`;
    case "JobBroughtIn":
      return `job ${r.data.job} running on ${r.data.node}`;
    case "JobBroughtOut":
      return `job ${r.data.job} stopped on ${r.data.node}`;
    case "JobStartFailed":
      return `job ${r.data.job} failed to start on ${r.data.node}: ${r.data.error}`;
    case "TakeoverDecided":
      return `${r.data.by} takes ${r.data.job} over from ${r.data.from} (policy ${r.data.policy})`;
    case "TakeoverDeclined":
      return `${r.data.by} does not take ${r.data.job} over from ${r.data.from}: ${r.data.code} (policy ${r.data.policy})`;
    case "FailoverDecided":
      return `${r.data.from} moves ${r.data.job} to ${r.data.to}: ${r.data.cause}`;
    case "SelfFenceDecided":
      return `${r.data.node} is isolated and brings out ${r.data.jobs.join(", ")} after ${r.data.graceMs} ms grace`;
    case "AlertRaised":
      return `ALERT ${r.data.code}: ${r.data.message}`;
    case "DivergenceDetected":
      return `data of ${r.data.job} diverged: ${r.data.local} here, ${r.data.peer} on the peer`;
    case "SourceSelected":
      return `${r.data.by} chose ${r.data.from} as the source of ${r.data.job}${r.data.force ? " (forced)" : ""}`;
    default:
      return null;
  }
}

export function renderExplanation(e: Explanation): string[] {
  const verdict = e.recheck.matches ? `re-checked: the policy reaches the same decision${e.recheck.note ? ` (${e.recheck.note})` : ""}` : `MISMATCH: replaying the policy gives ${e.recheck.replayed ? `${e.recheck.replayed.kind} ${e.recheck.replayed.code}` : "no decision"}, the journal says ${e.journaled.kind} ${e.journaled.code}`;
  return [
    `why: ${e.journaled.kind} (${e.journaled.code}) of job ${e.job} on ${e.node} at ${time(e.at)} (seq ${e.seq})`,
    ...e.chain.map((c) => `  ${time(c.at)} [${c.node}] ${c.text}`),
    "  reasons:",
    ...renderReasons(e.reasons, "    "),
    `  ${verdict}`,
  ];
}

function renderReasons(reasons: Explanation["reasons"], indent: string): string[] {
  return reasons.flatMap((r) => [
    `${indent}${r.ok === undefined ? "·" : r.ok ? "✓" : "✗"} ${r.name}${r.value === undefined ? "" : `: ${JSON.stringify(r.value)}`}`,
    ...renderReasons(r.because ?? [], `${indent}  `),
  ]);
}
