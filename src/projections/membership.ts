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
  peerStatus: "unknown" | "connected" | "lost";
  /** When the peer status last changed (the `at` of PeerLost / PeerSeen). */
  peerSince: number | null;
  /** The seq of that change: a tiebreaker verdict counts only if recorded after it. */
  peerSinceSeq: number;
  tiebreaker: { verdict: TiebreakerVerdict; method: string; at: number; seq: number } | null;
  framesRejected: Map<string, number>;
  alerts: { at: number; code: string; message: string; job?: string }[];
  settings: { deadtimeMs: number; selfFenceGraceMs: number };
}

/** Alerts kept in the state: enough for status and the console; the journal keeps them all. */
export const ALERTS_KEPT = 32;
const defaultSettings = { deadtimeMs: 3000, selfFenceGraceMs: 1000 };

export function initialMembership(self: string): MembershipState {
  return {
    self,
    peer: null,
    links: new Map(),
    peerStatus: "unknown",
    peerSince: null,
    peerSinceSeq: 0,
    tiebreaker: null,
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
      return { ...state, links: new Map(event.data.links.map((l) => [l.link, { link: l.link, kind: l.kind, up: false, since: event.at }])), peerStatus: "unknown", peerSince: event.at, peerSinceSeq: event.seq, settings: { deadtimeMs: event.data.deadtimeMs, selfFenceGraceMs: event.data.selfFenceGraceMs } };
    case "JobCreated": {
      const peer = event.data.nodes.find((n) => n !== state.self);
      return peer !== undefined && state.peer === null && event.data.nodes.includes(state.self) ? { ...state, peer } : state;
    }
    case "LinkUp":
    case "LinkDown": {
      if (event.data.node !== state.self) return state;
      const links = new Map(state.links);
      links.set(event.data.link, { link: event.data.link, kind: event.data.kind, up: event.type === "LinkUp", since: event.at });
      return { ...state, links, peer: state.peer ?? event.data.peer };
    }
    case "PeerLost":
      if (event.data.node !== state.self) return state;
      return { ...state, peerStatus: "lost", peerSince: event.at, peerSinceSeq: event.seq, peer: state.peer ?? event.data.peer };
    case "PeerSeen":
      if (event.data.node !== state.self) return state;
      return { ...state, peerStatus: "connected", peerSince: event.at, peerSinceSeq: event.seq, peer: state.peer ?? event.data.peer };
    case "TiebreakerResult":
      if (event.data.node !== state.self) return state;
      return { ...state, tiebreaker: { verdict: event.data.verdict, method: event.data.method, at: event.at, seq: event.seq } };
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

/** The tiebreaker verdict recorded after the peer was lost, if any: an older one proves nothing. */
export function verdictSinceLoss(state: MembershipState) {
  if (state.peerStatus !== "lost" || !state.tiebreaker) return null;
  return state.tiebreaker.seq > state.peerSinceSeq ? state.tiebreaker : null;
}
