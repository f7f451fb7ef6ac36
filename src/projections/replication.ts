import type { Recorded } from "../events/catalogue.ts";

export type Verification =
  | { state: "none" }
  | { state: "running"; doneBytes: number; totalBytes: number; differingBlocks: number; since: number }
  | { state: "done"; at: number; differingBlocks: number };

/** One job's mirror, as this node knows it. Colour is derived (see mirrorColour), never stored. */
export interface ReplicationView {
  job: string;
  lastCaptured: number;
  lastApplied: number;
  lastAcked: number;
  queue: { batches: number; bytes: number };
  verification: Verification;
  resync: { from: string; to: string; paths: number; bytes: number; since: number } | null;
  /** A refused op: the link is red until a verification, resync or source selection starts afresh. */
  refused: { at: number; batch: number; path: string; reason: string } | null;
  diverged: { at: number; local: string; peer: string } | null;
  sourceSelected: { at: number; from: string; by: string } | null;
  shippedBytes: number;
  /** Bytes of every batch this node captured: its rate is the replication throughput. */
  capturedBytes: number;
  /** The last full lineage comparison of a mirror session (both journals hold it). */
  lineageCompared: { at: number; node: string; peer: string; generation: string | null; peerGeneration: string | null; newer: string } | null;
  /** Batches the peer acknowledged, counted (lastAcked restarts with a new queue). */
  ackedBatches: number;
  /**
   * When unacknowledged batches were captured, sampled at most every UNACKED_SAMPLE_MS: the first
   * is when the oldest batch still unacknowledged was captured, or a little before (replication
   * lag, and what a takeover may miss). Bounded by the lag: ten entries per second of it.
   */
  unacked: { batch: number; at: number }[];
  /**
   * Bytes the peer acknowledged, summed per UNACKED_SAMPLE_MS from the first ack in each, over the
   * last ACK_RATE_WINDOW_MS: the rate the queue drains at (a switchover's estimate).
   */
  acked: { at: number; bytes: number }[];
  /** The other node's queue as it last relayed it (this node is its replica): what a takeover may lack. */
  peerQueue: PeerQueue | null;
  /** The job's mirrored paths, as its last definition (JobCreated) gave them. */
  mirrors: string[];
  /**
   * Paths a later definition added to a job that was mirrored already, not yet verified against
   * the peer (MirrorPathVerified): the source holds them back until the replica's copy is made
   * equal, and a switchover waits for it.
   */
  addedPaths: AddedPath[];
  /** Where the job last came in and has not gone out since (JobBroughtIn, JobBroughtOut). */
  runningOn: string | null;
}

export interface AddedPath {
  path: string;
  /** The seq of the definition that added it. */
  seq: number;
  /** Nodes that ran the job when the path was added or brought it in since: writers of their copy. */
  ranOn: string[];
}

/** `at` is when this node recorded the report, on its own clock. */
export interface PeerQueue {
  node: string;
  batches: number;
  bytes: number;
  oldestUnackedMs: number | null;
  at: number;
}

export const UNACKED_SAMPLE_MS = 100;
export const ACK_RATE_WINDOW_MS = 10_000;

/** Since when the oldest write not yet acknowledged by the peer waits; null when none waits. */
export function oldestUnackedAt(view: ReplicationView | undefined): number | null {
  return view && view.queue.batches > 0 ? (view.unacked[0]?.at ?? null) : null;
}

export type ReplicationState = Map<string, ReplicationView>;
export const initialReplication: ReplicationState = new Map();

function fresh(job: string): ReplicationView {
  return { job, lastCaptured: 0, lastApplied: 0, lastAcked: 0, queue: { batches: 0, bytes: 0 }, verification: { state: "none" }, resync: null, refused: null, diverged: null, sourceSelected: null, shippedBytes: 0, capturedBytes: 0, ackedBatches: 0, unacked: [], acked: [], lineageCompared: null, peerQueue: null, mirrors: [], addedPaths: [], runningOn: null };
}

export function evolveReplication(state: ReplicationState, event: Recorded, self: string): ReplicationState {
  const job = (event.data as { job?: unknown }).job;
  if (typeof job !== "string") return state;
  if (event.type === "JobDeleted") {
    const next = new Map(state);
    next.delete(job);
    return next;
  }
  const view = state.get(job) ?? fresh(job);
  const next = evolveView(view, event, self);
  if (next === view && state.has(job)) return state;
  return new Map(state).set(job, next);
}

function evolveView(view: ReplicationView, event: Recorded, self: string): ReplicationView {
  switch (event.type) {
    case "BatchCaptured": {
      const last = view.queue.batches === 0 ? undefined : view.unacked.at(-1);
      const unacked = last === undefined ? [{ batch: event.data.batch, at: event.at }] : event.at - last.at >= UNACKED_SAMPLE_MS ? [...view.unacked, { batch: event.data.batch, at: event.at }] : view.unacked;
      return { ...view, lastCaptured: Math.max(view.lastCaptured, event.data.batch), capturedBytes: view.capturedBytes + event.data.bytes, queue: { batches: view.queue.batches + 1, bytes: view.queue.bytes + event.data.bytes }, unacked };
    }
    case "BatchApplied":
      return { ...view, lastApplied: Math.max(view.lastApplied, event.data.batch) };
    case "BatchAcked": {
      if (event.data.batch < view.lastAcked)
        throw new Error(`replication ${view.job}: acknowledged batch went backwards from ${view.lastAcked} to ${event.data.batch} (seq ${event.seq})`);
      const acked = event.data.batch - view.lastAcked;
      const batches = Math.max(0, view.lastCaptured - event.data.batch);
      // Bytes of the acknowledged batches are not in the ack; the queue report corrects the estimate.
      const bytes = batches === 0 ? 0 : Math.max(0, view.queue.bytes - Math.round((view.queue.bytes / Math.max(1, view.queue.batches)) * acked));
      const samples = acked > 0 ? ackSamples(view.acked, event.at, view.queue.bytes - bytes) : view.acked;
      return { ...view, lastAcked: event.data.batch, ackedBatches: view.ackedBatches + Math.max(0, acked), queue: { batches, bytes }, unacked: batches === 0 ? [] : dropAcked(view.unacked, event.data.batch), acked: samples };
    }
    case "QueueReported":
      if (event.data.node !== self) {
        const { node, batches, bytes, oldestUnackedMs } = event.data;
        return { ...view, peerQueue: { node, batches, bytes, oldestUnackedMs: oldestUnackedMs ?? null, at: event.at } };
      }
      return { ...view, queue: { batches: event.data.batches, bytes: event.data.bytes }, unacked: event.data.batches === 0 ? [] : view.unacked };
    case "LineageCompared":
      return { ...view, lineageCompared: { at: event.at, node: event.data.node, peer: event.data.peer, generation: event.data.generation, peerGeneration: event.data.peerGeneration, newer: event.data.newer } };
    case "OpRefused":
      return { ...view, refused: { at: event.at, batch: event.data.batch, path: event.data.path, reason: event.data.reason } };
    case "VerificationStarted":
      return { ...view, refused: null, verification: { state: "running", doneBytes: 0, totalBytes: event.data.bytes, differingBlocks: 0, since: event.at } };
    case "VerificationProgress":
      return view.verification.state === "running"
        ? { ...view, verification: { ...view.verification, doneBytes: event.data.doneBytes, totalBytes: event.data.totalBytes, differingBlocks: event.data.differingBlocks } }
        : view;
    case "VerificationCompleted":
      // A verification covers everything, including what an interrupted resync left undone.
      return { ...view, resync: null, verification: { state: "done", at: event.at, differingBlocks: event.data.differingBlocks }, shippedBytes: view.shippedBytes + event.data.shippedBytes };
    case "DivergenceDetected":
      return { ...view, diverged: { at: event.at, local: event.data.local, peer: event.data.peer }, verification: { state: "none" } };
    case "SourceSelected":
      return { ...view, diverged: null, refused: null, sourceSelected: { at: event.at, from: event.data.from, by: event.data.by } };
    case "ResyncStarted":
      return { ...view, refused: null, resync: { from: event.data.from, to: event.data.to, paths: event.data.paths, bytes: event.data.bytes, since: event.at } };
    case "ResyncCompleted":
      // A completed resync leaves both sides equal, as a verification would.
      return { ...view, resync: null, verification: { state: "done", at: event.at, differingBlocks: 0 }, shippedBytes: view.shippedBytes + event.data.shippedBytes };
    case "JobCreated": {
      const { mirrors } = event.data;
      // A job's first mirrors begin with its first bring-in's verification; later ones are held.
      const ranOn = view.runningOn === null ? [] : [view.runningOn];
      const added = view.mirrors.length === 0 ? [] : mirrors.filter((p) => !view.mirrors.includes(p)).map((path) => ({ path, seq: event.seq, ranOn }));
      return { ...view, mirrors, addedPaths: [...view.addedPaths.filter((a) => mirrors.includes(a.path)), ...added] };
    }
    case "JobBroughtIn": {
      const { node } = event.data;
      const addedPaths = view.addedPaths.map((a) => (a.ranOn.includes(node) ? a : { ...a, ranOn: [...a.ranOn, node] }));
      return { ...view, runningOn: node, addedPaths };
    }
    case "JobBroughtOut":
      return view.runningOn === event.data.node ? { ...view, runningOn: null } : view;
    case "MirrorPathVerified":
      return { ...view, addedPaths: view.addedPaths.filter((a) => a.path !== event.data.path) };
    case "GenerationStarted":
      // A new line of history on this side: what was verified before no longer describes the pair.
      return event.data.reason === "wrote-without-peer" ? { ...view, verification: { state: "none" } } : view;
    default:
      return view;
  }
}

/** Adds BYTES acknowledged at AT to the samples, dropping those older than the window. */
function ackSamples(samples: { at: number; bytes: number }[], at: number, bytes: number): { at: number; bytes: number }[] {
  const kept = samples[0] !== undefined && samples[0].at < at - ACK_RATE_WINDOW_MS ? samples.filter((x) => x.at >= at - ACK_RATE_WINDOW_MS) : samples;
  const last = kept.at(-1);
  if (last !== undefined && at - last.at < UNACKED_SAMPLE_MS) return [...kept.slice(0, -1), { at: last.at, bytes: last.bytes + bytes }];
  return [...kept, { at, bytes }];
}

/** Keeps the sample that covers the first unacknowledged batch (acked + 1) and those after it. */
function dropAcked(unacked: { batch: number; at: number }[], acked: number): { batch: number; at: number }[] {
  let first = 0;
  while (first + 1 < unacked.length && unacked[first + 1]!.batch <= acked + 1) first += 1;
  return first === 0 ? unacked : unacked.slice(first);
}

export type MirrorColour = "green" | "yellow" | "gray" | "red" | "none";

/**
 * gray: the sides may differ and only an operator restarts the link; red: broken (peer lost or a
 * refused op); yellow: verifying, resyncing or not verified yet; green: realtime and draining.
 */
export function mirrorColour(view: ReplicationView | undefined, hasMirrors: boolean, peerConnected: boolean): MirrorColour {
  if (!hasMirrors) return "none";
  if (!view) return peerConnected ? "yellow" : "red";
  if (view.diverged) return "gray";
  if (view.refused || !peerConnected) return "red";
  if (view.resync || view.verification.state !== "done") return "yellow";
  return "green";
}
