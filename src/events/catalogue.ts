import type { z } from "zod";
import { adminEvents } from "./admin.ts";
import { jobEvents } from "./job.ts";
import { nodeEvents } from "./node.ts";
import { replicationEvents } from "./replication.ts";
import { snapshotEvents } from "./snapshot.ts";
import { firstIssue } from "./issue.ts";

/**
 * The one catalogue of duet's events. Each type names its current schema version `v` and
 * the schema of its data; the TypeScript type of every event is inferred from that schema.
 *
 * Versioning: a record is stored with the `v` it was written with and is never rewritten.
 * When a type's data changes shape, its `v` goes up and an upcaster from the old version is
 * added to `upcasters` below; reading an old record runs the chain v -> v+1 -> ... -> current,
 * then validates against the current schema. So folds, policy and replay only ever see the
 * current shape, and an old journal stays readable and verifiable forever.
 */
export const catalogue = {
  ...nodeEvents,
  ...jobEvents,
  ...replicationEvents,
  ...snapshotEvents,
  ...adminEvents,
} as const;

type Catalogue = typeof catalogue;
export type EventType = keyof Catalogue;
export type EventData<T extends EventType> = z.infer<Catalogue[T]["data"]>;

/** An event as code builds it: a type and its data. */
export type DuetEvent = { [T in EventType]: { type: T; data: EventData<T> } }[EventType];
export type EventOf<T extends EventType> = Extract<DuetEvent, { type: T }>;

/**
 * A hybrid logical clock stamp: wall-clock ms plus a counter ordering events within one ms and
 * across nodes whose clocks disagree. A tuple keeps journal records small.
 */
export type Hlc = readonly [wall: number, logical: number];

export function compareHlc(a: Hlc, b: Hlc): number {
  return a[0] - b[0] || a[1] - b[1];
}

/** An event as the journal recorded it: where it stands (seq), when, and on which node. */
export type Recorded = DuetEvent & { seq: number; at: number; hlc: Hlc; node: string };
export type RecordedOf<T extends EventType> = Extract<Recorded, { type: T }>;

/**
 * Upcasters, by type, from a stored version to the next: a record written by an older agent is
 * read as the current version (records on disk are never rewritten; the hash chain covers them).
 */
type Upcaster = (data: unknown) => unknown;
export const upcasters: Partial<Record<EventType, Record<number, Upcaster>>> = {
  // v1 was never written by an agent; read as a first version with no recorded plan.
  ConfigChanged: { 1: (data) => ({ ...(data as object), version: 1, previousHash: null, changes: [] }) },
  AgentStarted: {
    // v1 did not list the configured links: none known, as before.
    1: (data) => ({ ...(data as object), links: [] }),
    // v2 had no early suspicion (it came with the deadtime), a 1 s ping and a 500 ms heartbeat.
    2: (data) => {
      const d = data as { deadtimeMs: number };
      return { ...d, heartbeatIntervalMs: 500, suspectMs: d.deadtimeMs, pingTimeoutMs: 1000 };
    },
  },
};

export function isEventType(type: unknown): type is EventType {
  return typeof type === "string" && Object.hasOwn(catalogue, type);
}

export function currentVersion(type: EventType): number {
  return catalogue[type].v;
}

export class EventSchemaError extends Error {
  constructor(
    readonly type: string,
    readonly detail: string,
  ) {
    super(`event ${type}: ${detail}`);
  }
}

/** Checks an event against its schema; throws an EventSchemaError naming the bad field. */
export function validateEvent(type: string, data: unknown): DuetEvent {
  if (!isEventType(type)) throw new EventSchemaError(type, "unknown event type");
  const parsed = catalogue[type].data.safeParse(data);
  if (!parsed.success) {
    throw new EventSchemaError(type, firstIssue(parsed.error, "data").text);
  }
  return { type, data: parsed.data } as DuetEvent;
}

/** Brings a stored record's data up to the current version of its type, then validates it. */
export function upcast(type: string, v: number, data: unknown): DuetEvent {
  if (!isEventType(type)) throw new EventSchemaError(type, "unknown event type");
  const current = currentVersion(type);
  if (!Number.isInteger(v) || v < 1 || v > current)
    throw new EventSchemaError(type, `version ${v} is not known (this build reads 1..${current})`);
  let upgraded = data;
  for (let from = v; from < current; from++) {
    const step = upcasters[type]?.[from];
    if (!step) throw new EventSchemaError(type, `no upcaster from version ${from}`);
    upgraded = step(upgraded);
  }
  return validateEvent(type, upgraded);
}
