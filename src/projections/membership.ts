import type { Recorded } from "../events/catalogue.ts";

/** Heartbeat paths and the peer, as this node has seen them. */
export interface LinkView {
  link: string;
  kind: "udp" | "tcp";
  up: boolean;
  since: number;
}

export type TiebreakerVerdict = "confirmed" | "isolated" | "peer-alive" | "failed";

export interface MembershipState {
  self: string;
  peer: string | null;
  links: Map<string, LinkView>;
  peerStatus: "unknown" | "connected" | "suspected" | "lost";
  /** When the peer status last changed (the `at` of PeerSuspected / PeerLost / PeerSeen). */
  peerSince: number | null;
  /** The seq of that change: a takeover counts a tiebreaker verdict only if recorded after the loss. */
  peerSinceSeq: number;
  /** The seq at which the current silence was first noticed (suspected, or lost without suspicion): a self-fence counts verdicts after it. */
  silenceSeq: number;
  /** When the silent peer was last heard (from PeerSuspected / PeerLost; 0 if never since start). */
  peerLastHeardAt: number;
  /** `why`: a failed tiebreaker's own account (ping not installed, fence exited 3), for the decline. */
  /** `peerOnNetwork`: the ARP answers asked beside a peer-lost tiebreaker (absent: none asked). */
  tiebreaker: { verdict: TiebreakerVerdict; method: string; purpose: "peer-lost" | "reachability"; at: number; seq: number; why?: string; peerOnNetwork?: { interface: string; address: string; answered: boolean }[] } | null;
  /** The seq of the last LinkUp: a path to the peer came back (a failed failover is worth trying again). */
  linkUpSeq: number;
  /** The seq of this agent's AgentStarted, and the jobs the peer said it runs in the last hello since. */
  startedSeq: number;
  /** When this agent started (its AgentStarted). */
  startedAt: number;
  peerReport: { seq: number; jobs: string[]; configHash?: string; configVersion?: number } | null;
  /** What the peer's frames said it holds, journaled since this agent started (PeerClaimsHeard). */
  peerClaims: { seq: number; jobs: string[] } | null;
  /** The hash of this node's configuration file, from its AgentStarted. */
  configHash: string | null;
  /** The last configuration this node journaled as in force (ConfigChanged); null before any. */
  config: { version: number; hash: string } | null;
  /** The last stall of this agent's loop, and what the peer said after it (null: not asked yet). */
  stall: { at: number; seq: number; stalledMs: number; check: { answered: boolean; confirmedJobs: string[]; seq: number } | null } | null;
  /** This node's lease on the witness, from its last WitnessLease; null: no witness configured. */
  witness: WitnessView | null;
  framesRejected: Map<string, number>;
  alerts: { at: number; code: string; message: string; job?: string }[];
  settings: MembershipSettings;
}

export interface WitnessView {
  state: "granting" | "held" | "renew-failing" | "expired";
  leaseId: string | null;
  ttlMs: number;
  /** Until when etcd keeps the lease at least (the last renewal's send time plus its TTL); 0: never held. */
  validUntil: number;
  unreachable: "self-fence" | "keep-running";
  at: number;
  seq: number;
}

/** The timings in force, from this node's AgentStarted (both nodes run one cluster config). */
export interface MembershipSettings {
  heartbeatIntervalMs: number;
  suspectMs: number;
  deadtimeMs: number;
  pingTimeoutMs: number;
  selfFenceGraceMs: number;
}

/** Alerts kept in the state: enough for status and the console; the journal keeps them all. */
export const ALERTS_KEPT = 32;
const defaultSettings: MembershipSettings = { heartbeatIntervalMs: 500, suspectMs: 1000, deadtimeMs: 3000, pingTimeoutMs: 500, selfFenceGraceMs: 0 };

export function initialMembership(self: string): MembershipState {
  return {
    self,
    peer: null,
    links: new Map(),
    peerStatus: "unknown",
    peerSince: null,
    peerSinceSeq: 0,
    silenceSeq: 0,
    peerLastHeardAt: 0,
    tiebreaker: null,
    startedSeq: 0,
    startedAt: 0,
    linkUpSeq: 0,
    peerReport: null,
    peerClaims: null,
    configHash: null,
    config: null,
    stall: null,
    witness: null,
    framesRejected: new Map(),
    alerts: [],
    settings: defaultSettings,
  };
}

export function evolveMembership(state: MembershipState, event: Recorded): MembershipState {
  switch (event.type) {
    case "AgentStarted":
      if (event.data.node !== state.self) return state;
      // A restart forgets link state: every configured link is down until it proves itself again.
      const { heartbeatIntervalMs, suspectMs, deadtimeMs, pingTimeoutMs, selfFenceGraceMs } = event.data;
      const links = new Map(event.data.links.map((l) => [l.link, { link: l.link, kind: l.kind, up: false, since: event.at }]));
      return { ...state, links, stall: null, witness: null, startedSeq: event.seq, startedAt: event.at, peerReport: null, peerClaims: null, configHash: event.data.configHash, peerStatus: "unknown", peerSince: event.at, peerSinceSeq: event.seq, silenceSeq: event.seq, settings: { heartbeatIntervalMs, suspectMs, deadtimeMs, pingTimeoutMs, selfFenceGraceMs } };
    case "JobCreated": {
      const peer = event.data.nodes.find((n) => n !== state.self);
      return peer !== undefined && state.peer === null && event.data.nodes.includes(state.self) ? { ...state, peer } : state;
    }
    case "LinkUp":
    case "LinkDown": {
      if (event.data.node !== state.self) return state;
      const links = new Map(state.links);
      links.set(event.data.link, { link: event.data.link, kind: event.data.kind, up: event.type === "LinkUp", since: event.at });
      return { ...state, links, peer: state.peer ?? event.data.peer, linkUpSeq: event.type === "LinkUp" ? event.seq : state.linkUpSeq };
    }
    case "PeerSuspected":
      if (event.data.node !== state.self) return state;
      return { ...state, peerStatus: "suspected", peerSince: event.at, peerSinceSeq: event.seq, silenceSeq: event.seq, peerLastHeardAt: event.data.lastHeardAt, peer: state.peer ?? event.data.peer };
    case "PeerLost": {
      if (event.data.node !== state.self) return state;
      const silenceSeq = state.peerStatus === "suspected" ? state.silenceSeq : event.seq;
      return { ...state, peerStatus: "lost", peerSince: event.at, peerSinceSeq: event.seq, silenceSeq, peerLastHeardAt: event.data.lastHeardAt, peer: state.peer ?? event.data.peer };
    }
    case "PeerSeen":
      if (event.data.node !== state.self) return state;
      return { ...state, peerStatus: "connected", peerSince: event.at, peerSinceSeq: event.seq, peer: state.peer ?? event.data.peer };
    case "TiebreakerResult":
      if (event.data.node !== state.self) return state;
      return { ...state, tiebreaker: { verdict: event.data.verdict, method: event.data.method, purpose: event.data.purpose ?? "peer-lost", at: event.at, seq: event.seq, ...(event.data.verdict === "failed" && event.data.output ? { why: event.data.output } : {}), ...(event.data.peerOnNetwork ? { peerOnNetwork: event.data.peerOnNetwork } : {}) } };
    case "WitnessLease": {
      if (event.data.node !== state.self) return state;
      const d = event.data;
      const before = d.state === "granting" ? null : state.witness;
      const witness: WitnessView = { state: d.state, leaseId: d.leaseId ?? before?.leaseId ?? null, ttlMs: d.ttlMs ?? before?.ttlMs ?? 0, validUntil: d.validUntil ?? before?.validUntil ?? 0, unreachable: d.unreachable, at: event.at, seq: event.seq };
      return { ...state, witness };
    }
    case "PeerClaimsHeard":
      if (event.data.node !== state.self) return state;
      return { ...state, peerClaims: { seq: event.seq, jobs: event.data.jobs } };
    case "PeerJobsReported":
      if (event.data.node !== state.self) return state;
      return { ...state, peerReport: { seq: event.seq, jobs: event.data.jobs, ...(event.data.configHash === undefined ? {} : { configHash: event.data.configHash }), ...(event.data.configVersion === undefined ? {} : { configVersion: event.data.configVersion }) } };
    case "ConfigChanged":
      if (event.data.node !== state.self) return state;
      return { ...state, configHash: event.data.configHash, config: { version: event.data.version, hash: event.data.configHash } };
    case "LoopStalled":
      if (event.data.node !== state.self) return state;
      return { ...state, stall: { at: event.at, seq: event.seq, stalledMs: event.data.stalledMs, check: null } };
    case "StallChecked":
      if (event.data.node !== state.self || !state.stall) return state;
      return { ...state, stall: { ...state.stall, check: { answered: event.data.answered, confirmedJobs: event.data.confirmedJobs, seq: event.seq } } };
    case "FramesRejected": {
      if (event.data.node !== state.self) return state;
      const framesRejected = new Map(state.framesRejected);
      framesRejected.set(event.data.reason, (framesRejected.get(event.data.reason) ?? 0) + event.data.count);
      return { ...state, framesRejected };
    }
    case "AlertRaised": {
      const alert = { at: event.at, code: event.data.code, message: event.data.message, ...(event.data.job === undefined ? {} : { job: event.data.job }) };
      return { ...state, alerts: [...state.alerts, alert].slice(-ALERTS_KEPT) };
    }
    default:
      return state;
  }
}

/** normal: every link up; partial: some; fault: none (or none known yet). */
export function linksState(state: MembershipState): "normal" | "partial" | "fault" {
  const links = [...state.links.values()];
  const up = links.filter((l) => l.up).length;
  if (links.length > 0 && up === links.length) return "normal";
  return up > 0 ? "partial" : "fault";
}

/** The whole tiebreaker's verdict recorded after the peer was lost, if any: an older one, or a mere reachability check, proves nothing. */
export function verdictSinceLoss(state: MembershipState) {
  if (state.peerStatus !== "lost" || !state.tiebreaker || state.tiebreaker.purpose !== "peer-lost") return null;
  return state.tiebreaker.seq > state.peerSinceSeq ? state.tiebreaker : null;
}

/**
 * The whole tiebreaker's verdict (ping and ARP: purpose peer-lost) since the peer went silent:
 * with a witness the standby asks it on a suspicion already, and a takeover counts it.
 */
export function peerGoneVerdict(state: MembershipState) {
  const verdict = verdictSinceSilence(state);
  return verdict?.purpose === "peer-lost" ? verdict : null;
}

/** The verdict recorded since the peer went silent (suspected or lost), if any. */
export function verdictSinceSilence(state: MembershipState) {
  if ((state.peerStatus !== "suspected" && state.peerStatus !== "lost") || !state.tiebreaker) return null;
  return state.tiebreaker.seq > state.silenceSeq ? state.tiebreaker : null;
}

/** Slack for scheduling, journaling and `ip addr del` between a self-fence's decision and the VIP being gone. */
export const SELF_FENCE_MARGIN_MS = 500;

/**
 * What a node cut off from everything needs after it starts to suspect its peer, until its jobs are
 * certainly released: its ping gives up, it waits its grace, then releases virtual IPs first; one
 * heartbeat interval covers the skew between when each side last heard the other.
 */
export function selfFenceSlackMs(settings: Pick<MembershipSettings, "pingTimeoutMs" | "selfFenceGraceMs" | "heartbeatIntervalMs">): number {
  return settings.pingTimeoutMs + settings.selfFenceGraceMs + settings.heartbeatIntervalMs + SELF_FENCE_MARGIN_MS;
}

/**
 * How long after its last frame from the peer a node cut off from everything has given up its
 * ping: its suspicion, then the ping's timeout. Its self-fence grace runs from there at the latest.
 */
export function pingGivenUpAfterMs(settings: Pick<MembershipSettings, "suspectMs" | "deadtimeMs" | "pingTimeoutMs">): number {
  return Math.min(settings.suspectMs, settings.deadtimeMs) + settings.pingTimeoutMs;
}

/**
 * How long after its last frame reached us a peer that is cut off from everything has certainly
 * released its jobs, if its agent runs: its suspicion, then selfFenceSlackMs. A standby confirmed
 * only by ping takes over no sooner (1500 + 500 + 0 + 500 + 500 = 3000 ms with the config defaults:
 * the deadtime itself).
 */
export function peerReleasedAfterMs(settings: MembershipSettings): number {
  return Math.min(settings.suspectMs, settings.deadtimeMs) + selfFenceSlackMs(settings);
}

/** The warning while the two nodes run different configuration files (policies, timings may differ). */
export function configDiffers(self: string, mine: ConfigId, peer: string, theirs: ConfigId): string {
  const id = (c: ConfigId) => `${c.version === undefined ? "" : `version ${c.version}, `}hash ${c.hash}`;
  const advice =
    mine.version !== undefined && theirs.version !== undefined && mine.version !== theirs.version
      ? `${mine.version < theirs.version ? self : peer} adopts the newer one when it can be applied online; otherwise run \`duet config apply\` with the right file`
      : "run `duet config apply` with the right file on either node: both then run it";
  return `${self} and ${peer} run different configurations (${id(mine)} here, ${id(theirs)} on ${peer}): their policies and timings may differ; ${advice}`;
}

export type ConfigId = { hash: string; version?: number };
