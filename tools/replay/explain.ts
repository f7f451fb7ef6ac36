import type { EventData, Hlc, Recorded, RecordedOf } from "../../src/events/catalogue.ts";
import type { Reason } from "../../src/events/ids.ts";
import type { ClusterState } from "../../src/projections/cluster.ts";
import { mirrorColour, type MirrorColour } from "../../src/projections/replication.ts";
import { decide } from "../../src/policy/decide.ts";
import { chooseKeeper, decideYieldStart, startingHere, type RunningSide } from "../../src/policy/both-active.ts";
import { decideSwitchover } from "../../src/policy/switchover.ts";
import { createCursor, createFold, type NodeJournal } from "./fold.ts";
import { behindLine } from "../../src/policy/takeover.ts";

/** States kept by seq so a decision's basis is found without folding again (older ones are refolded). */
export const BASIS_STATES_KEPT = 500;
/** For a journal written before decisions carried their basis: how far back the approximate re-check looks. */
export const LEGACY_LOOKBACK_EVENTS = 20;
/** Records kept to find where the story of a decision starts, and facts shown in its chain. */
export const CHAIN_RECENT_MAX = 500;
export const CHAIN_FACTS_MAX = 100;

const DECISION_TYPES = new Set(["TakeoverDecided", "TakeoverDeclined", "FailoverDecided", "FailoverDeclined", "SelfFenceDecided", "ResumeDecided", "SwitchoverRefused", "RecoveryDecided", "RecoveryDeclined", "BothActiveResolved", "StartAbandoned"]);

export interface Outcome {
  kind: string;
  code: string;
}

/** One side of a job's mirror as that node's own journal shows it at the decision. */
export interface SideData {
  node: string;
  /** false when that node's journal was not given: nothing is claimed about its data. */
  known: boolean;
  colour: MirrorColour | null;
  queue: { batches: number; bytes: number } | null;
  verification: string | null;
  lastCaptured: number | null;
  lastApplied: number | null;
  lastAcked: number | null;
  /** From the lineage projection: the current generation and its ancestors, newest first. */
  generation: string | null;
  ancestors: string[];
}

export interface CausalChain {
  /** Every link as the deciding node saw it; a down link says since when and when it last carried a frame. */
  links: { link: string; kind: string; up: boolean; since: number; lastHeardAt: number | null }[];
  peer: { name: string | null; status: string; since: number | null };
  /** The PeerLost in force at the decision, if the peer was lost. */
  peerLost: { at: number; lastHeardAt: number; deadtimeMs: number } | null;
  /** The last tiebreaker verdict; `sinceLoss` false means it predates the loss and proves nothing. */
  tiebreaker: { verdict: string; method: string; at: number; targets: { target: string; ok: boolean; ms?: number }[]; output?: string; sinceLoss: boolean } | null;
  policy: string | null;
  /** This node's side first, then the other node's. */
  data: SideData[];
  /** The story as lines a person reads, oldest first, ending with the decision. */
  facts: { at: number; node: string; text: string }[];
}

export interface Explanation {
  node: string;
  seq: number;
  at: number;
  /** `at` as an ISO time. */
  time: string;
  hlc: Hlc;
  job: string;
  kind: string;
  code: string;
  reasons: Reason[];
  chain: CausalChain;
  /** Set when the record lies at or after a break in its journal's hash chain: it may have been edited. */
  unverified?: string;
  recheck: {
    matches: boolean;
    replayed: Outcome | null;
    journaled: Outcome;
    /** The seq whose state the policy was re-run on (null on a mismatch). */
    basisSeq: number | null;
    /** true: re-run on the basis the decision journaled; false: searched for (an old journal). */
    exact: boolean;
    note?: string;
  };
}

/** What the deciding node's journal said just before a decision, beyond its folded state. */
interface Witnesses {
  linkDowns: Map<string, RecordedOf<"LinkDown">>;
  peerLost: RecordedOf<"PeerLost"> | null;
  tiebreaker: RecordedOf<"TiebreakerResult"> | null;
}

/**
 * Every automatic decision in these journals, explained and re-checked. Each node's journal is
 * folded again, as its agent folded it, and src/policy runs on the state just before the decision
 * at the decision's time; the other node's journal, folded to the same hybrid-clock moment, gives
 * its side of the data. Pure over its input.
 */
export function explainJournals(journals: readonly NodeJournal[]): Explanation[] {
  const explanations = journals.flatMap((journal) => explainOne(journal, journals.filter((j) => j !== journal)));
  return explanations.sort((x, y) => x.hlc[0] - y.hlc[0] || x.hlc[1] - y.hlc[1] || x.node.localeCompare(y.node) || x.seq - y.seq);
}

function explainOne(journal: NodeJournal, others: readonly NodeJournal[]): Explanation[] {
  const self = journal.node;
  const fold = createFold(self);
  const cursors = others.map((o) => ({ node: o.node, cursor: createCursor(o) }));
  const states = new Map<number, ClusterState>(); // the state after each of the last records, by seq
  const recent: Recorded[] = [];
  const witnesses: Witnesses = { linkDowns: new Map(), peerLost: null, tiebreaker: null };
  const explanations: Explanation[] = [];
  for (const record of journal.events) {
    if (DECISION_TYPES.has(record.type)) {
      const state = fold.state();
      const peers = cursors.map(({ node, cursor }) => ({ node, ...cursor.advanceTo(record.hlc) }));
      const stateAt = (seq: number) => (seq === record.seq - 1 ? state : (states.get(seq) ?? refold(journal, seq)));
      for (const { job, outcome, reasons } of journaledOutcomes(record)) {
        explanations.push({
          node: self,
          seq: record.seq,
          at: record.at,
          time: new Date(record.at).toISOString(),
          hlc: record.hlc,
          job,
          kind: outcome.kind,
          code: outcome.code,
          reasons,
          chain: causalChain(state, witnesses, recent, record, job, peers),
          recheck: recheck(stateAt, record, job, outcome),
        });
      }
    }
    fold.apply(record);
    states.set(record.seq, fold.state());
    states.delete(record.seq - BASIS_STATES_KEPT);
    witness(witnesses, record, self);
    recent.push(record);
    if (recent.length > CHAIN_RECENT_MAX) recent.shift();
  }
  return explanations;
}

/** The state after `seq`, folded again from the journal's start; null when the journal does not hold it. */
function refold(journal: NodeJournal, seq: number): ClusterState | null {
  const first = journal.events[0]?.seq ?? 1;
  if (seq < first - 1) return null;
  const fold = createFold(journal.node);
  for (const record of journal.events) {
    if (record.seq > seq) break;
    fold.apply(record);
  }
  return fold.state();
}

function journaledOutcomes(record: Recorded): { job: string; outcome: Outcome; reasons: Reason[] }[] {
  switch (record.type) {
    case "TakeoverDecided":
      return [{ job: record.data.job, outcome: { kind: "takeover", code: "takeover" }, reasons: record.data.reasons }];
    case "TakeoverDeclined":
      return [{ job: record.data.job, outcome: { kind: "decline", code: record.data.code }, reasons: record.data.reasons }];
    case "FailoverDecided":
      return [{ job: record.data.job, outcome: { kind: "failover", code: record.data.cause }, reasons: record.data.reasons }];
    case "FailoverDeclined":
      return [{ job: record.data.job, outcome: { kind: "failover-declined", code: record.data.code }, reasons: record.data.reasons }];
    case "SelfFenceDecided":
      return record.data.jobs.map((job) => ({ job, outcome: { kind: "self-fence", code: record.data.code ?? "isolated" }, reasons: record.data.reasons }));
    case "ResumeDecided":
      return [{ job: record.data.job, outcome: { kind: "resume", code: "peer-back" }, reasons: record.data.reasons }];
    case "RecoveryDecided":
      return [{ job: record.data.job, outcome: { kind: "recover", code: record.data.code }, reasons: record.data.reasons }];
    case "BothActiveResolved":
      return [{ job: record.data.job, outcome: { kind: "both-active", code: `${record.data.code}:${record.data.keeper}` }, reasons: record.data.reasons }];
    case "RecoveryDeclined":
      return [{ job: record.data.job, outcome: { kind: "recovery-declined", code: record.data.code }, reasons: record.data.reasons }];
    case "StartAbandoned":
      return [{ job: record.data.job, outcome: { kind: "abandon-start", code: record.data.code }, reasons: record.data.reasons }];
    case "SwitchoverRefused":
      return [{ job: record.data.job, outcome: { kind: "switchover-refused", code: failedNames(record.data.reasons) }, reasons: record.data.reasons }];
    default:
      return [];
  }
}

function failedNames(reasons: readonly Reason[]): string {
  return reasons.filter((r) => r.ok === false).map((r) => r.name).join(",");
}

/** What the policy decides for `job` on a replayed state, in the journal's own terms. */
function replayedOutcome(state: ClusterState, record: Recorded, job: string, now: number): Outcome | null {
  if (record.type === "SwitchoverRefused") {
    const gate = decideSwitchover(state, job, record.data.to, now);
    return gate.allowed ? { kind: "switchover-allowed", code: "allowed" } : { kind: "switchover-refused", code: failedNames(gate.reasons) };
  }
  if (record.type === "BothActiveResolved") {
    // Its inputs are both nodes' reports, journaled with it: chooseKeeper runs on them again.
    const sides = record.data.reasons.find((r) => r.name === "sides")?.value as RunningSide[] | undefined;
    if (!sides || sides.length !== 2) return null;
    const again = chooseKeeper(job, sides[0]!, sides[1]!);
    return { kind: "both-active", code: `${again.code}:${again.keeper}` };
  }
  if (record.type === "StartAbandoned") {
    // Its input from the peer (the report) is journaled with it; this node's side is the state.
    const theirs = record.data.reasons.find((r) => r.name === "peer-report")?.value as RunningSide | undefined;
    const view = state.jobs.get(job);
    const again = theirs && view ? decideYieldStart(job, startingHere(state, view), theirs) : null;
    return again ? { kind: again.kind, code: again.code } : null;
  }
  const d = decide(state, now).find((x) => x.job === job);
  return d ? { kind: d.kind, code: d.code } : null;
}

/**
 * Re-runs the policy on the state the decision names (its basisSeq) at the time it was given (its
 * decidedAt): the same inputs, so the same outcome, or the journal does not follow from itself.
 * A journal written before decisions carried their basis is searched instead, and says so.
 */
function recheck(stateAt: (seq: number) => ClusterState | null, record: Recorded, job: string, journaled: Outcome): Explanation["recheck"] {
  const { basisSeq, decidedAt } = record.data as { basisSeq?: number; decidedAt?: number };
  if (basisSeq === undefined || decidedAt === undefined) return legacyRecheck(stateAt, record, job, journaled);
  const state = basisSeq < record.seq ? stateAt(basisSeq) : null;
  if (state === null) {
    const why = basisSeq < record.seq ? "lies before this journal's first record" : "is not before the decision itself";
    return { matches: false, replayed: null, journaled, basisSeq: null, exact: true, note: `its basis, seq ${basisSeq}, ${why}` };
  }
  const replayed = replayedOutcome(state, record, job, decidedAt);
  const lag = record.seq - 1 - basisSeq;
  const note = lag > 0 ? `${lag} fact(s) were appended between the decision and its record` : undefined;
  const matches = same(replayed, journaled);
  return { matches, replayed, journaled, basisSeq: matches ? basisSeq : null, exact: true, ...(note ? { note } : {}) };
}

function legacyRecheck(stateAt: (seq: number) => ClusterState | null, record: Recorded, job: string, journaled: Outcome): Explanation["recheck"] {
  const approximate = "approximate: this record predates decisions that name their basis (basisSeq, decidedAt)";
  const first = record.seq - 1;
  let replayed: Outcome | null = null;
  for (let seq = first; seq >= Math.max(0, first - LEGACY_LOOKBACK_EVENTS); seq--) {
    const state = stateAt(seq);
    if (state === null) break;
    const outcome = replayedOutcome(state, record, job, record.at);
    if (seq === first) replayed = outcome;
    if (!same(outcome, journaled)) continue;
    const note = seq === first ? approximate : `${approximate}; reached on the state at seq ${seq}, ${first - seq} fact(s) before the record`;
    return { matches: true, replayed: outcome, journaled, basisSeq: seq, exact: false, note };
  }
  return { matches: false, replayed, journaled, basisSeq: null, exact: false, note: approximate };
}

function same(a: Outcome | null, b: Outcome): boolean {
  return a !== null && a.kind === b.kind && a.code === b.code;
}

/** Keeps the facts behind a decision that the folded state does not hold (targets, last frame times). */
function witness(w: Witnesses, r: Recorded, self: string): void {
  const about = (r.data as { node?: unknown }).node;
  if (about !== self) return;
  if (r.type === "LinkDown") w.linkDowns.set(r.data.link, r);
  else if (r.type === "LinkUp") w.linkDowns.delete(r.data.link);
  else if (r.type === "PeerLost") w.peerLost = r;
  else if (r.type === "TiebreakerResult") w.tiebreaker = r;
  else if (r.type === "PeerSeen") w.peerLost = null;
  else if (r.type === "AgentStarted") {
    w.linkDowns.clear();
    w.peerLost = null;
  }
}

function causalChain(state: ClusterState, w: Witnesses, recent: readonly Recorded[], decision: Recorded, job: string, peers: { node: string; state: ClusterState; last: Recorded | null }[]): CausalChain {
  const m = state.membership;
  const view = state.jobs.get(job);
  const otherNode = view?.nodes.find((n) => n !== state.self) ?? m.peer;
  const other = peers.find((p) => p.node === otherNode);
  const lost = m.peerStatus === "lost" ? w.peerLost : null;
  const tb = w.tiebreaker;
  return {
    links: [...m.links.values()].map((l) => ({ link: l.link, kind: l.kind, up: l.up, since: l.since, lastHeardAt: l.up ? null : (w.linkDowns.get(l.link)?.data.lastHeardAt ?? null) })),
    peer: { name: m.peer, status: m.peerStatus, since: m.peerSince },
    peerLost: lost ? { at: lost.at, lastHeardAt: lost.data.lastHeardAt, deadtimeMs: lost.data.deadtimeMs } : null,
    tiebreaker: tb
      ? { verdict: tb.data.verdict, method: tb.data.method, at: tb.at, targets: tb.data.targets, ...(tb.data.output === undefined ? {} : { output: tb.data.output }), sinceLoss: m.peerStatus === "lost" && tb.seq > m.peerSinceSeq }
      : null,
    policy: view?.policy ?? null,
    data: [sideData(state, job, state.self), otherNode ? (other ? sideData(other.state, job, otherNode) : unknownSide(otherNode)) : null].filter((s): s is SideData => s !== null),
    facts: storyFacts(recent, decision, job, view?.policy, other),
  };
}

function sideData(state: ClusterState, job: string, node: string): SideData {
  const view = state.jobs.get(job);
  const replica = state.replication.get(job);
  const lineage = state.lineage.get(job)?.get(node);
  return {
    node,
    known: true,
    colour: view ? mirrorColour(replica, view.mirrors.length > 0, state.membership.peerStatus === "connected") : null,
    queue: replica ? replica.queue : null,
    verification: replica ? replica.verification.state : null,
    lastCaptured: replica?.lastCaptured ?? null,
    lastApplied: replica?.lastApplied ?? null,
    lastAcked: replica?.lastAcked ?? null,
    generation: lineage?.current ?? null,
    ancestors: lineage?.ancestors ?? [],
  };
}

function unknownSide(node: string): SideData {
  return { node, known: false, colour: null, queue: null, verification: null, lastCaptured: null, lastApplied: null, lastAcked: null, generation: null, ancestors: [] };
}

/** The facts since the episode began (peer last seen, agent start, or the job last brought in), then the decision. */
function storyFacts(recent: readonly Recorded[], decision: Recorded, job: string, policy: string | undefined, other: { node: string; last: Recorded | null } | undefined): CausalChain["facts"] {
  let start = 0;
  for (let i = recent.length - 1; i >= 0; i--) {
    const r = recent[i]!;
    if (r.type === "PeerSeen" || r.type === "AgentStarted" || (r.type === "JobBroughtIn" && r.data.job === job)) {
      start = i;
      break;
    }
  }
  const facts: CausalChain["facts"] = [];
  for (const r of recent.slice(start)) {
    const about = (r.data as { job?: unknown }).job;
    const text = about === undefined || about === job ? describe(r) : null;
    if (text) facts.push({ at: r.at, node: r.node, text });
  }
  const shown = facts.slice(-CHAIN_FACTS_MAX);
  if (other?.last) {
    const last = other.last;
    shown.push({ at: last.at, node: other.node, text: `the last record in ${other.node}'s own journal before this decision: ${last.type}${last.type === "AgentStopping" ? " (a clean stop)" : ""}` });
  }
  const named = (decision.data as { policy?: unknown }).policy;
  if (typeof named === "string" && policy !== undefined && named !== policy)
    shown.push({ at: decision.at, node: decision.node, text: `the decision names policy ${named}, but the job's definition in this journal says ${policy}` });
  shown.push({ at: decision.at, node: decision.node, text: `decision: ${describe(decision) ?? decision.type}` });
  return shown.sort((a, b) => a.at - b.at);
}

const clock = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** One line per fact a person needs to follow a failover; null for facts that only add noise. */
export function describe(r: Recorded): string | null {
  switch (r.type) {
    case "AgentStarted":
      return `agent ${r.data.node} started (heartbeat ${r.data.heartbeatIntervalMs} ms, suspicion ${r.data.suspectMs} ms, deadtime ${r.data.deadtimeMs} ms, ping timeout ${r.data.pingTimeoutMs} ms, self-fence grace ${r.data.selfFenceGraceMs} ms)`;
    case "AgentStopping":
      return `agent ${r.data.node} stopping on ${r.data.signal}; its jobs: ${r.data.jobsAction}`;
    case "LinkUp":
      return `link ${r.data.link} (${r.data.kind}) up`;
    case "LinkDown":
      return `link ${r.data.link} (${r.data.kind}) down, last frame at ${clock(r.data.lastHeardAt)}`;
    case "PeerLost":
      return `peer ${r.data.peer} lost: every link silent for ${r.data.deadtimeMs} ms (last frame ${r.data.lastHeardAt ? clock(r.data.lastHeardAt) : "never"})`;
    case "PeerSuspected":
      return `peer ${r.data.peer} suspected: every link silent for ${r.data.suspectMs} ms (last frame ${r.data.lastHeardAt ? clock(r.data.lastHeardAt) : "never"}); a node running jobs checks its own reachability`;
    case "PeerSeen":
      return `peer ${r.data.peer} seen`;
    case "PeerClaimsHeard":
      return `${r.data.peer}'s frames say it holds ${r.data.jobs.join(", ")}`;
    case "TiebreakerResult":
      return `${r.data.purpose === "reachability" ? "reachability check" : "tiebreaker"} (${r.data.method}): ${r.data.verdict}${r.data.targets.length ? `; targets ${r.data.targets.map((t) => `${t.target} ${t.ok ? "answered" : "silent"}`).join(", ")}` : ""}${r.data.output ? `; ${r.data.output.trim().slice(0, 120)}` : ""}`;
    case "BringInRequested":
      return `${r.data.by} asked to bring ${r.data.job} in on ${r.data.on}`;
    case "BringOutRequested":
      return `${r.data.by} asked to bring ${r.data.job} out`;
    case "SwitchoverRequested":
      return `${r.data.by} asked to switch ${r.data.job} over to ${r.data.to}`;
    case "SwitchoverRefused":
      return `switchover of ${r.data.job} to ${r.data.to} refused: ${failedNames(r.data.reasons)}`;
    case "ResourceStarted":
      return `${r.data.resource} of ${r.data.job} started on ${r.data.node}`;
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
      return `${r.data.by} takes ${r.data.job} over from ${r.data.from} (policy ${r.data.policy})${r.data.behind === undefined ? "" : `; ${behindLine(r.data.behind)}`}`;
    case "TakeoverDeclined":
      return `${r.data.by} does not take ${r.data.job} over from ${r.data.from}: ${r.data.code} (policy ${r.data.policy})`;
    case "FailoverDecided":
      return `${r.data.from} moves ${r.data.job} to ${r.data.to}: ${r.data.cause}`;
    case "FailoverDeclined":
      return `${r.data.node} keeps ${r.data.job} despite its fault: ${r.data.code}`;
    case "SelfFenceDecided":
      return selfFenceLine(r.data);
    case "LoopStalled":
      return `${r.data.node}'s own loop stalled for ${r.data.stalledMs} ms (the peer may have taken its jobs over meanwhile)`;
    case "StallChecked":
      return `${r.data.node} asked its peer after the stall: ${r.data.answered ? `confirmed ${r.data.confirmedJobs.join(", ") || "no job"}` : "no answer in time"}${r.data.detail ? ` (${r.data.detail})` : ""}`;
    case "BothActiveResolved":
      return `job ${r.data.job} ran on both nodes: ${r.data.keeper} keeps it (${r.data.code}), ${r.data.other} brings it out`;
    case "RecoveryDecided":
      return `${r.data.node} restarts ${r.data.job}, which ran there when its agent last stopped: ${r.data.code}`;
    case "StartAbandoned":
      return `${r.data.node} abandons its start of ${r.data.job}: its peer came back running it (${r.data.code}); what had started here is stopped`;
    case "RecoveryDeclined":
      return `${r.data.node} does not restart ${r.data.job} after its agent's restart: ${r.data.code}; brought out there`;
    case "ResumeDecided":
      return `${r.data.node} brings ${r.data.job} back in: its peer is back and never took the job over (asked to confirm first)`;
    case "ConfigChanged": {
      const how = r.data.by === "file" ? "its file was found changed at the agent's start" : r.data.by === "peer" ? "adopted from its peer" : `applied by ${r.data.by}`;
      const shown = r.data.changes.slice(0, 6).join("; ") + (r.data.changes.length > 6 ? `; and ${r.data.changes.length - 6} more` : "");
      return `${r.data.node} runs configuration version ${r.data.version} (hash ${r.data.configHash}): ${how}${shown ? `: ${shown}` : ""}`;
    }
    case "AlertRaised":
      return `ALERT ${r.data.code}: ${r.data.message}`;
    case "DivergenceDetected":
      return `mirror of ${r.data.job} gray on ${r.data.node}: its generation ${r.data.local}, the peer's ${r.data.peer}${r.data.commonAncestor ? `, last shared ${r.data.commonAncestor}` : ""}; an operator must choose the source`;
    case "VerificationStarted":
      return `verification of ${r.data.job} started from ${r.data.node}`;
    case "ResyncStarted":
      return r.data.queued !== undefined
        ? `resync of ${r.data.job} from ${r.data.from} to ${r.data.to} started: the ${r.data.queued} batch(es), ${r.data.bytes} bytes, ${r.data.from} captured while ${r.data.to} was away are sent from its queue; no file is compared`
        : `resync of ${r.data.job} from ${r.data.from} to ${r.data.to} started (${r.data.paths === 0 ? "all paths" : `${r.data.paths} path(s) lineage names`})`;
    case "OpRefused":
      return `${r.data.node} refused batch ${r.data.batch} of ${r.data.job}: ${r.data.path}: ${r.data.reason}`;
    case "SnapshotTaken":
      return `${r.data.node} kept snapshot ${r.data.snapshot} of ${r.data.job} (${r.data.reason}, generation ${r.data.generation})`;
    case "SnapshotRestored":
      return `${r.data.by} restored snapshot ${r.data.snapshot} of ${r.data.job} on ${r.data.node} ${r.data.target === "in-place" ? "in place" : `into ${r.data.directory}`}`;
    case "VerificationCompleted":
      return `verification of ${r.data.job} done on ${r.data.node}: ${r.data.differingBlocks} block(s) differed`;
    case "GenerationStarted":
      return `${r.data.node} starts generation ${r.data.generation} of ${r.data.job} (${r.data.reason})`;
    case "ResyncCompleted":
      return `resync of ${r.data.job} from ${r.data.from} to ${r.data.to} done: ${r.data.shippedBytes} bytes in ${r.data.ms} ms`;
    case "SourceSelected":
      return `${r.data.by} chose ${r.data.from} as the source of ${r.data.job}${r.data.force ? " (forced)" : ""}; the other side's ${r.data.losingPaths > 0 ? `${r.data.losingPaths} divergent path(s)` : "data"} ${r.data.keptSnapshot ? `kept in snapshot ${r.data.keptSnapshot}` : "not kept"}`;
    case "WitnessLease":
      return witnessLeaseLine(r.data);
    case "WitnessClaimed":
      return r.data.won
        ? `${r.data.node} holds ${r.data.job}'s key on the witness (revision ${r.data.revision}, for a ${r.data.purpose})`
        : `${r.data.node} asked for ${r.data.job}'s key on the witness (for a ${r.data.purpose}): ${r.data.error ? `no answer (${r.data.error})` : `${r.data.holder} holds it${r.data.holderTtlMs === undefined ? "" : ` for ${r.data.holderTtlMs} ms more at most`}`}`;
    case "WitnessReleased":
      return `${r.data.node} gave ${r.data.job}'s key on the witness back (revision ${r.data.revision})`;
    default:
      return null;
  }
}

function selfFenceLine(d: EventData<"SelfFenceDecided">): string {
  const jobs = d.jobs.join(", ");
  switch (d.code) {
    case "stalled":
      return `${d.node}'s own loop stalled and its peer did not confirm ${jobs} still ran there: brought out at once`;
    case "witness-lease-lost":
      return `${d.node} could not renew its lease on the witness and brings out ${jobs} before the lease can expire`;
    case "witness-held-by-peer":
      return `${d.node} found ${jobs}'s holder key on the witness held by its peer and brings it out`;
    default:
      return `${d.node} is isolated and brings out ${jobs} after ${d.graceMs} ms grace`;
  }
}

function witnessLeaseLine(d: EventData<"WitnessLease">): string {
  const until = d.validUntil === undefined ? "" : `, valid until ${new Date(d.validUntil).toISOString()}`;
  switch (d.state) {
    case "granting":
      return `${d.node} asks the witness for a lease (when it cannot renew: ${d.unreachable})`;
    case "held":
      return `${d.node} holds lease ${d.leaseId} on the witness (${d.ttlMs} ms)`;
    case "renew-failing":
      return `${d.node} could not renew its lease on the witness${until}${d.error ? `: ${d.error}` : ""}`;
    case "expired":
      return `${d.node}'s lease on the witness is gone${d.error ? `: ${d.error}` : ""}`;
  }
}
