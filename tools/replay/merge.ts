import { compareHlc, type Recorded } from "../../src/events/catalogue.ts";
import type { LoadedJournal } from "./load.ts";

/** A record of the merged timeline: which journal it came from, and whether it is a relayed copy. */
export interface TimelineEntry {
  journal: string;
  record: Recorded;
  /** A fact about the other node, copied into this journal by the peer channel. */
  relayed: boolean;
}

function aboutNode(record: Recorded): string | undefined {
  const node = (record.data as { node?: unknown }).node;
  return typeof node === "string" ? node : undefined;
}

/**
 * Merges one or two nodes' journals into one timeline ordered by hybrid logical clock (then
 * node name, then seq, so the order is total and the same every time). When both journals are
 * present, a fact one node relayed into the other's journal is shown once, from its origin.
 */
export function mergeJournals(journals: LoadedJournal[]): TimelineEntry[] {
  const present = new Set(journals.map((j) => j.node));
  const entries: TimelineEntry[] = [];
  for (const journal of journals) {
    for (const record of journal.records) {
      const about = aboutNode(record);
      const relayed = about !== undefined && about !== record.node && isRelayedType(record.type);
      if (relayed && present.has(about) && journals.length > 1) continue;
      entries.push({ journal: journal.node, record, relayed });
    }
  }
  return entries.sort((x, y) => compareHlc(x.record.hlc, y.record.hlc) || x.journal.localeCompare(y.journal) || x.record.seq - y.record.seq);
}

/** Facts the agent relays to its peer (see src/agent): the job's place in the pair. */
export const relayedTypes = new Set(["JobBroughtIn", "JobBroughtOut", "JobStartFailed"]);
function isRelayedType(type: string) {
  return relayedTypes.has(type);
}
