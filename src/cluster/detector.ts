import type { DuetEvent } from "../events/catalogue.ts";

export interface DetectorLink {
  id: string;
  kind: "udp" | "tcp";
}

/**
 * The failure detector, pure: time is an argument. It turns "heard a frame on link L at T" and the
 * passing of time into transitions only (LinkUp, LinkDown, PeerSuspected, PeerLost, PeerSeen).
 * The peer is suspected when every link has been silent for suspectMs (an active node then checks
 * it is not the one cut off, well before the standby may take over) and lost after the deadtime,
 * including a peer never heard since start. A suspectMs at or above the deadtime means no suspicion.
 */
export function createDetector(options: { self: string; peer: string; links: DetectorLink[]; suspectMs: number; deadtimeMs: number; startedAt: number }) {
  const { self, peer, suspectMs, deadtimeMs } = options;
  const links = new Map(options.links.map((l) => [l.id, { ...l, up: false, lastHeardAt: null as number | null }]));
  let peerState: "unknown" | "seen" | "suspected" | "lost" = "unknown";
  let lastHeardAt: number | null = null;

  return {
    heard(linkId: string, at: number): DuetEvent[] {
      const link = links.get(linkId);
      if (!link) return [];
      link.lastHeardAt = at;
      lastHeardAt = at;
      const events: DuetEvent[] = [];
      if (!link.up) {
        link.up = true;
        events.push({ type: "LinkUp", data: { node: self, peer, link: link.id, kind: link.kind } });
      }
      if (peerState !== "seen") {
        peerState = "seen";
        events.push({ type: "PeerSeen", data: { node: self, peer } });
      }
      return events;
    },
    tick(now: number): DuetEvent[] {
      const events: DuetEvent[] = [];
      for (const link of links.values()) {
        if (link.up && link.lastHeardAt !== null && now - link.lastHeardAt >= deadtimeMs) {
          link.up = false;
          events.push({ type: "LinkDown", data: { node: self, peer, link: link.id, kind: link.kind, lastHeardAt: link.lastHeardAt } });
        }
      }
      const silentSince = lastHeardAt ?? options.startedAt;
      if ((peerState === "seen" || peerState === "unknown") && suspectMs < deadtimeMs && now - silentSince >= suspectMs) {
        peerState = "suspected";
        events.push({ type: "PeerSuspected", data: { node: self, peer, lastHeardAt: lastHeardAt ?? 0, suspectMs } });
      }
      if (peerState !== "lost" && [...links.values()].every((l) => !l.up) && now - silentSince >= deadtimeMs) {
        peerState = "lost";
        events.push({ type: "PeerLost", data: { node: self, peer, lastHeardAt: lastHeardAt ?? 0, deadtimeMs } });
      }
      return events;
    },
    state() {
      return { peer: peerState, lastHeardAt, links: [...links.values()].map((l) => ({ id: l.id, kind: l.kind, up: l.up, lastHeardAt: l.lastHeardAt })) };
    },
  };
}
export type Detector = ReturnType<typeof createDetector>;
