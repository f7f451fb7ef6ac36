import { mkdir, rm } from "node:fs/promises";
import { isAbsolute, join, resolve as resolvePath } from "node:path";
import { Packr } from "msgpackr";
import type { DuetEvent, Recorded } from "../events/catalogue.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { lineageSummary, lineageView, parseLineageSummary, type LineageSummary } from "../projections/lineage.ts";
import { compareLineage, decideSourceSelection, type Paths } from "../policy/lineage.ts";
import { decideReleaseAddedPath, planMirrorSession, type SessionMode } from "../policy/mirror-session.ts";
import { Refusal } from "../api/ports.ts";
import { oldestUnackedAt } from "../projections/replication.ts";
import { JoinedBytes } from "../cluster/peer-channel.ts";
import type { RandomSource } from "../world/random.ts";
import type { Timers } from "../world/clock.ts";
import { createApplier, RefusedBatchError } from "../replication/apply.ts";
import { BatchError, decodeBatch, encodedLength, type Batch } from "../replication/batch.ts";
import { createCapture, type Capture } from "../replication/capture.ts";
import { createBatchQueue, type BatchQueue } from "../replication/queue.ts";
import { joinManifestPage, paginateManifest, type ManifestItem } from "../replication/manifest-pages.ts";
import { loadIndex, readManifest, type ChangeIndex } from "../replication/scan.ts";
import { createSnapshots, SnapshotError, type SnapshotInfo } from "../replication/snapshot.ts";
import { parseMirrorRequest, parseMirrorResponse, type MirrorKind, type MirrorRequest, type MirrorResponse, type OutgoingMirrorRequest } from "./peer-protocol.ts";

/** Batches sent and not yet acknowledged: enough to keep the link busy while one applies. */
export const MIRROR_WINDOW = 4;
/** How long one batch may take to reach the replica and be applied there. */
export const MIRROR_BATCH_TIMEOUT_MS = 60_000;
/** A manifest page holds about this many bytes of entries: it travels in one peer-channel frame. */
export const MANIFEST_PAGE_BYTES = 4 * 1024 * 1024;
/** A mirror session that failed (not one that went gray) is opened again after this long. */
export const MIRROR_RETRY_MS = 2000;
/** Verification and resync progress is journaled at most this often. */
export const PROGRESS_REPORT_MS = 500;
/** Queue depth is journaled at most this often. */
export const QUEUE_REPORT_MS = 1000;

const packr = new Packr({ useRecords: false, moreTypes: false });

export interface MirrorHost {
  self: string;
  peer: string;
  dataDir: string;
  state(): ClusterState;
  now(): number;
  record(events: DuetEvent[]): Promise<Recorded[]>;
  /** The journal's last seq. */
  head(): number;
  relay(event: DuetEvent): void;
  request(body: OutgoingMirrorRequest, timeoutMs: number): Promise<unknown>;
  connected(): boolean;
  timers: Timers;
  random: RandomSource;
  log(message: string, fields?: Record<string, unknown>): void;
}

/** A job's mirrored roots on this node: `{node}` in a configured path is this node's name (two nodes on one machine). */
export function mirrorRoots(paths: readonly string[], node: string): string[] {
  return paths.map((p) => p.replaceAll("{node}", node));
}

interface Source {
  capture: Capture;
  queue: BatchQueue;
  /** Bumped whenever the session stops: a loop holding an older token ends. */
  token: number;
  wake: (() => void) | null;
  /** This node started a generation while alone; the peer has not taken it yet. */
  alone: boolean;
  lastQueueReport: number;
  /** When a report was last relayed to the peer, and whether it showed batches waiting. */
  lastQueueRelay: { at: number; waiting: boolean };
  /** A session is streaming batches to the replica (not gray, not broken). */
  streaming: boolean;
  /** Started only to resync a selected source while the job runs nowhere: stops after the sync. */
  temporary: boolean;
  /**
   * Added paths released by capture (their batches queued through `through`) but not yet
   * acknowledged: a session cut short here ends their verification in the next one.
   */
  released: Map<string, { through: number; blocks: number; bytes: number }>;
}

/**
 * The node's part in mirroring: the source side (capture, queue, sessions that resync or verify
 * and then stream batches) for jobs that run here, and the replica side (applier, manifests) for
 * jobs that run on the peer. Every fact goes to the journal; lineage and the replication
 * projection decide what the link's colour is.
 */
export interface MirroredJob {
  name: string;
  paths: readonly string[];
  snapshots: { intervalMs?: number; firstAt?: string; keep: number };
  /** The most a verification or resync sends per second, in MiB (absent: no limit). */
  syncMaxMiBps?: number;
}

/** The replica answered a batch with a refusal; `code` "refused" means an op it will never apply. */
class PeerRefusedBatch extends Error {
  constructor(
    peer: string,
    readonly batch: number,
    readonly code: string,
    detail: string,
  ) {
    super(`${peer} refused batch ${batch}: ${detail || code}`);
    this.name = "PeerRefusedBatch";
  }
}

/** Where a job's snapshots live: beside its first mirrored directory, on the same file system (hard links). */
export const snapshotDir = (roots: readonly string[]) => `${roots[0]}.duet-snapshots`;

type PageRequest = Extract<OutgoingMirrorRequest, { kind: "mirror-manifest" | "mirror-index" }>;

export function createMirrors(host: MirrorHost, configured: readonly MirroredJob[]) {
  /** A request to the peer and its answer, checked against the answer that kind of request gets. */
  const ask = async <K extends MirrorKind>(body: Extract<OutgoingMirrorRequest, { kind: K }>): Promise<MirrorResponse<K>> =>
    parseMirrorResponse(body.kind as K, await host.request(body, MIRROR_BATCH_TIMEOUT_MS));
  const jobs: MirroredJob[] = [];
  const roots = new Map<string, string[]>();
  /** Bytes per millisecond a sync may send, per job with a limit. */
  const syncRates = new Map<string, number>();
  const snapshotStores = new Map<string, ReturnType<typeof createSnapshots>>();
  /** A job this node mirrors from now on: at start, or added by a configuration change. */
  function addJob(j: MirroredJob): void {
    jobs.push(j);
    if (j.syncMaxMiBps !== undefined) syncRates.set(j.name, (j.syncMaxMiBps * 1024 * 1024) / 1000);
    if (j.paths.length === 0) return;
    const jobRoots = mirrorRoots(j.paths, host.self);
    roots.set(j.name, jobRoots);
    snapshotStores.set(j.name, createSnapshots({ job: j.name, node: host.self, roots: jobRoots, dir: snapshotDir(jobRoots), keep: j.snapshots.keep, report: (e) => report(e), now: host.now }));
  }
  for (const j of configured) addJob(j);
  const sources = new Map<string, Source>();
  const applyChains = new Map<string, Promise<unknown>>();
  const manifests = new Map<string, { key: string; pages: ManifestItem[][] }>();
  const jobDir = (job: string) => join(host.dataDir, "mirror", job);
  const view = (job: string) => lineageView(host.state().lineage, job, host.self);
  const summary = (job: string): LineageSummary => lineageSummary(view(job));

  const report = async (events: DuetEvent[]) => {
    await host.record(events);
  };
  const recordAndRelay = async (event: DuetEvent) => {
    await host.record([event]);
    host.relay(event);
  };

  async function newGeneration(job: string, reason: "initial" | "wrote-without-peer" | "forced-bring-in"): Promise<string> {
    const generation = host.random.hex(8);
    await recordAndRelay({ type: "GenerationStarted", data: { job, node: host.self, generation, parent: view(job).current, reason } });
    host.log(`job ${job}: data generation ${generation} started (${reason})`);
    return generation;
  }

  // ---------------------------------------------------------------- source side

  /** The job's roots whose paths were added to it and not yet verified against the peer. */
  function heldRootsOf(job: string): number[] {
    const added = new Set((host.state().replication.get(job)?.addedPaths ?? []).map((a) => a.path));
    return (jobs.find((j) => j.name === job)?.paths ?? []).flatMap((path, i) => (added.has(path) ? [i] : []));
  }

  async function startSource(job: string, temporary = false, mode: "normal" | "selected" = "normal"): Promise<void> {
    const jobRoots = roots.get(job);
    if (!jobRoots) return;
    const running = sources.get(job);
    if (running) {
      running.temporary &&= temporary; // the job starting here keeps a temporary source running
      return;
    }
    for (const root of jobRoots) await mkdir(root, { recursive: true });
    const queue = createBatchQueue(join(jobDir(job), "queue"));
    await queue.open();
    const replication = host.state().replication.get(job);
    const source: Source = { capture: undefined as unknown as Capture, queue, token: 0, wake: null, alone: false, lastQueueReport: 0, lastQueueRelay: { at: 0, waiting: false }, streaming: false, temporary, released: new Map() };
    // This node becomes the writer: a first bring-in starts the job's data history here.
    const first = view(job).current === null;
    if (first) await newGeneration(job, "initial");
    const peerIndexes = first ? undefined : await fetchPeerIndexes(job);
    source.capture = createCapture({
      job,
      node: host.self,
      roots: jobRoots,
      stateDir: join(jobDir(job), "capture"),
      queue,
      lastCaptured: Math.max(replication?.lastCaptured ?? 0, view(job).lastCaptured ?? 0, ...queue.numbers()),
      peerHasNothing: first,
      peerIndexes,
      heldRoots: heldRootsOf(job),
      generation: async () => {
        const current = view(job).current;
        if (current === null) return newGeneration(job, "initial");
        // Writing without a connected peer starts a new line of history (once per such stretch).
        if (!host.connected() && !source.alone) {
          source.alone = true;
          return newGeneration(job, "wrote-without-peer");
        }
        return current;
      },
      report,
      onQueued: () => {
        source.wake?.();
        void reportQueue(job, source, false);
      },
      timers: host.timers,
      now: host.now,
      onError: (error) => host.log(`job ${job}: capture failed: ${error.message}`),
    });
    await source.capture.open();
    sources.set(job, source);
    await source.capture.start();
    void runSession(job, mode);
  }

  async function reportQueue(job: string, source: Source, force: boolean): Promise<void> {
    const now = host.now();
    if (!force && now - source.lastQueueReport < QUEUE_REPORT_MS) return;
    source.lastQueueReport = now;
    const { batches, bytes } = source.queue.stats();
    const oldest = batches === 0 ? null : oldestUnackedAt(host.state().replication.get(job));
    const event: DuetEvent = { type: "QueueReported", data: { job, node: host.self, batches, bytes, oldestUnackedMs: oldest === null ? null : Math.max(0, now - oldest) } };
    await host.record([event]);
    // The replica hears at most one report a second, and the queue's draining at once: a report
    // per drained batch would double its journal's records under small writes.
    const waiting = batches > 0;
    if (now - source.lastQueueRelay.at < QUEUE_REPORT_MS && waiting === source.lastQueueRelay.waiting) return;
    source.lastQueueRelay = { at: now, waiting };
    host.relay(event);
  }

  /**
   * One session with the replica: compare lineage, bring the replica level (resume the queue,
   * resync the paths lineage names, or verify everything), then stream batches as they are
   * captured. Ends when the channel drops or the source stops; the next connect starts another.
   */
  async function runSession(job: string, mode: "normal" | "verify" | "selected" = "normal"): Promise<void> {
    const source = sources.get(job);
    if (!source || !host.connected()) return;
    const token = ++source.token;
    const live = () => source.token === token && sources.get(job) === source;
    try {
      // Planned and begun inside the capture's exclusive section: no batch is captured between the
      // lineage comparison and the resync's reset, so nothing captured in between can fall outside
      // the resync's scope.
      const begun = await source.capture.exclusive(async () => {
        const hello = await ask({ kind: "mirror-hello", job, from: host.self });
        if (!live()) return null;
        // e.g. the peer still believes it runs the job, until the job reports on reconnect settle it
        if (!hello.ok) throw new Error(`${host.peer} did not open a session: ${hello.code}: ${hello.message}`);
        const peerSummary = parseLineageSummary(hello.summary);
        const verdict = compareLineage(summary(job), peerSummary);
        const jobState = host.state().jobs.get(job);
        if (!jobState) throw new Error(`job ${job} is not in this node's state`);
        // A replica ahead of what this node's journal says it captured (sync batches whose facts a
        // crash lost) must never resume: the next batch numbers would be taken for duplicates.
        const last = source.capture.lastCaptured();
        const queueComplete = hello.applied <= last && Array.from({ length: last - hello.applied }, (_, i) => hello.applied + 1 + i).every((n) => source.queue.has(n));
        const verified = host.state().replication.get(job)?.verification.state === "done";
        const plan = planMirrorSession({ mode, self: host.self, peer: host.peer, job: jobState, local: summary(job), peerSummary, applied: hello.applied, queueComplete, verified });
        host.log(`job ${job}: mirror session with ${host.peer}: ${verdict.kind} -> ${plan.kind}${plan.kind === "sync" ? ` (${plan.why})` : ""}`);
        const syncing = plan.kind === "sync" ? await beginSync(job, source, plan.scope, plan.as, live) : plan.kind === "replay" ? await beginReplay(job, source, plan.next, plan.scope, live) : null;
        return { plan, verdict, peerSummary, syncing };
      });
      if (begun === null) return;
      const { plan, verdict, peerSummary, syncing } = begun;
      // An operator's source selection settles it: this node's data wins, whatever the comparison.
      const newer = mode === "selected" ? host.self : verdict.kind === "source" ? verdict.from : verdict.kind === "in-sync" ? "equal" : verdict.kind;
      await recordAndRelay({ type: "LineageCompared", data: { job, node: host.self, peer: host.peer, generation: summary(job).current, peerGeneration: peerSummary.current, newer } });
      if (plan.kind === "gray") {
        const event: DuetEvent = { type: "DivergenceDetected", data: { job, node: host.self, local: summary(job).current ?? "0000000000000000", peer: peerSummary.current ?? "0000000000000000", commonAncestor: verdict.kind === "diverged" ? verdict.commonAncestor : null } };
        await recordAndRelay(event);
        await host.record([{ type: "AlertRaised", data: { node: host.self, job, code: "mirror-gray", message: `mirror of ${job} stopped (gray): ${plan.why}` } }]);
        return;
      }
      if (plan.kind === "resume") {
        source.alone = false;
        void verifyAddedPaths(job, source, live, mode);
        await pump(job, source, plan.next, live);
        return;
      }
      // A sync or a replay: bring the replica level, then stream.
      const synced = await finishSync(job, source, syncing!, live);
      // The replica is now level with this node: one line of history, said in both journals.
      if (live()) await recordAndRelay({ type: "LineageCompared", data: { job, node: host.self, peer: host.peer, generation: summary(job).current, peerGeneration: summary(job).current, newer: "equal" } });
      if (source.temporary) {
        await stopSource(job, false);
        return;
      }
      if (!live()) return;
      void verifyAddedPaths(job, source, live, mode);
      await pump(job, source, synced + 1, live);
    } catch (error) {
      if (!live()) return;
      if (error instanceof PeerRefusedBatch && error.code === "refused") {
        // An op the replica refuses (a path or symlink leaving the mirror root) would be refused
        // again: the link stays red until the tree is fixed and an operator verifies.
        await host.record([{ type: "AlertRaised", data: { node: host.self, job, code: "mirror-red", message: `${error.message}; the mirror of ${job} stops until the source tree is fixed and duet job verify ${job} runs` } }]);
        return;
      }
      host.log(`job ${job}: mirror session ended: ${(error as Error).message}; retrying in ${MIRROR_RETRY_MS} ms`);
      // A failed session (not a gray one, which waits for an operator) is tried again while the channel is up.
      host.timers.after(MIRROR_RETRY_MS, () => {
        if (live() && host.connected()) void runSession(job, mode === "verify" ? "verify" : mode);
      });
    }
  }

  /**
   * Ships queued batches from `next` on, MIRROR_WINDOW at a time, journaling each acknowledgement
   * in order. `until` (read as it goes: a sync learns its last batch when its scan ends) stops it.
   * `scanned`: the batches up to `until` were made by a verification's scan.
   */
  async function pump(job: string, source: Source, next: number, live: () => boolean, until?: () => number, onAcked?: (bytes: number) => Promise<void>, scanned = false): Promise<void> {
    const inFlight: Promise<void>[] = [];
    let issued: Promise<void> = Promise.resolve();
    let acked = next - 1;
    // A sync's batches are paced to the job's syncMaxMiBps: each leaves once the one before it has
    // had its time at that rate (the first at once); a pause in the scan is not saved up for a burst.
    const rate = until === undefined ? undefined : syncRates.get(job);
    let nextDeparture = 0;
    source.streaming = true;
    const stopSending = source.queue.sending();
    try {
      await pumpLoop();
    } finally {
      stopSending();
      source.streaming = false;
    }
    async function pumpLoop(): Promise<void> {
      while (live() && (until === undefined || acked < until())) {
        if (inFlight.length >= MIRROR_WINDOW || (until !== undefined && next > until())) {
          await inFlight.shift();
          continue;
        }
        const bytes = source.queue.has(next) ? await source.queue.get(next) : null;
        if (bytes === null) {
          if (next <= source.capture.lastCaptured()) throw new Error(`batch ${next} is no longer queued; the next session verifies instead`);
          if (inFlight.length > 0) {
            await inFlight.shift();
            continue;
          }
          await new Promise<void>((resolve) => {
            source.wake = resolve;
            if (source.capture.lastCaptured() >= next || !live() || (until !== undefined && acked >= until())) resolve();
          });
          source.wake = null;
          continue;
        }
        if (rate !== undefined && next <= until!()) {
          if (nextDeparture > host.now()) await new Promise<void>((resolve) => host.timers.after(nextDeparture - host.now(), resolve));
          nextDeparture = host.now() + encodedLength(bytes) / rate;
          if (!live()) break;
        }
        const n = next++;
        const previous = issued;
        // A verification's batches (up to its last, unknown while it scans) leave no prefix of this
        // node's history on the replica anyway: it applies them unstaged. Queued batches (resume,
        // replay) are history: staged, so a crash still leaves a whole prefix.
        const sync = scanned && until !== undefined && n <= until();
        const sent = ask({ kind: "mirror-batch", job, from: host.self, batch: new JoinedBytes(bytes), ...(sync ? { sync } : {}) });
        // Acknowledgements are journaled in order; each is appended once the one before it has been
        // appended (not yet made durable), so the journal writes several in one synced batch.
        const appended = (async () => {
          const answer = await sent;
          await previous;
          if (!answer.ok) throw new PeerRefusedBatch(host.peer, n, answer.code, answer.message);
          acked = n;
          return { durable: host.record([{ type: "BatchAcked", data: { job, node: host.self, by: host.peer, batch: n } }]) };
        })();
        issued = appended.then(() => undefined);
        issued.catch(() => undefined); // the next acknowledgement, or inFlight, reports it
        inFlight.push(
          (async () => {
            await (await appended).durable;
            await onAcked?.(encodedLength(bytes));
            await source.queue.dropThrough(n, { acknowledged: true });
            if (source.queue.stats().batches === 0 || host.now() - source.lastQueueReport >= QUEUE_REPORT_MS) await reportQueue(job, source, true);
            if (source.queue.stats().bytes === 0) source.capture.resume();
          })(),
        );
        // A failure surfaces when its turn comes; keep it from being unhandled meanwhile.
        inFlight.at(-1)!.catch(() => undefined);
      }
      await Promise.all(inFlight);
    }
  }

  /** A resync or verification under way. */
  interface Syncing {
    as: "verification" | "resync";
    started: number;
    position: number;
    target: number;
    before: { blocks: number; bytes: number };
    /** Bytes of the sync's batches the replica acknowledged so far. */
    acked: number;
    pumping: Promise<void>;
  }

  /** Counts the sync's acknowledged bytes and journals its progress at most every PROGRESS_REPORT_MS. */
  function progressOf(job: string, source: Source, syncing: Syncing, total: () => number): (bytes: number) => Promise<void> {
    let reported = 0;
    return async (bytes) => {
      syncing.acked += bytes;
      if (host.now() - reported < PROGRESS_REPORT_MS && syncing.acked < total()) return;
      reported = host.now();
      await host.record([{ type: "VerificationProgress", data: { job, node: host.self, doneBytes: syncing.acked, totalBytes: total(), differingBlocks: source.capture.shipped().blocks - syncing.before.blocks } }]);
    };
  }

  /**
   * A resync from the queue (plan "replay"), inside the capture's exclusive section: the batches
   * after the replica's position up to the last captured are sent as they are; nothing is read.
   */
  async function beginReplay(job: string, source: Source, next: number, scope: Paths, live: () => boolean): Promise<Syncing> {
    const position = next - 1;
    await source.queue.dropThrough(position); // the replica applied these; an acknowledgement was lost
    const target = source.capture.lastCaptured();
    const { bytes } = source.queue.stats();
    await recordAndRelay({ type: "ResyncStarted", data: { job, from: host.self, to: host.peer, paths: scope === "all" ? 0 : scope.length, bytes, queued: target - position } });
    const syncing: Syncing = { as: "resync", started: host.now(), position, target, before: source.capture.shipped(), acked: 0, pumping: Promise.resolve() };
    syncing.pumping = pump(job, source, next, live, () => target, progressOf(job, source, syncing, () => bytes));
    syncing.pumping.catch(() => undefined);
    return syncing;
  }

  /**
   * The part of a sync that runs inside the capture's exclusive section: the replica's manifest
   * for `scope` replaces what the index assumed of it, the queue built on that assumption is
   * dropped, and one scan ships exactly the blocks that differ — sent while the scan still reads.
   */
  async function beginSync(job: string, source: Source, scope: Paths, as: "verification" | "resync", live: () => boolean): Promise<Syncing> {
    const jobRoots = roots.get(job)!;
    const scopes = jobRoots.map((_, i) => scopeFor(scope, i));
    if (as === "verification") await recordAndRelay({ type: "VerificationStarted", data: { job, node: host.self, files: 0, bytes: 0 } });
    else await recordAndRelay({ type: "ResyncStarted", data: { job, from: host.self, to: host.peer, paths: scope === "all" ? 0 : scope.length, bytes: 0 } });
    const syncing: Syncing = { as, started: host.now(), position: 0, target: Infinity, before: { blocks: 0, bytes: 0 }, acked: 0, pumping: Promise.resolve() };
    const progress = progressOf(job, source, syncing, () => source.capture.shipped().bytes - syncing.before.bytes);
    const fetched: ChangeIndex[] = [];
    const held = new Set(source.capture.held()); // verified apart, once this sync is done
    for (const [i, s] of scopes.entries()) fetched.push(s === "none" || held.has(i) ? new Map() : await fetchManifest(job, i, s));
    syncing.position = source.capture.lastCaptured();
    await source.queue.dropThrough(syncing.position);
    const reset = await ask({ kind: "mirror-reset", job, from: host.self, position: syncing.position });
    if (!reset.ok) throw new Error(`${host.peer} did not reset job ${job} to batch ${syncing.position}: ${reset.code}: ${reset.message}`);
    await source.capture.adopt(
      fetched,
      scopes.map((s) => (s === "none" ? [] : s)),
    );
    syncing.before = source.capture.shipped();
    // A verification's batches go unstaged (the replica is anything until it ends); a resync's,
    // usually few, are staged, so a crash during one still leaves every file whole.
    syncing.pumping = pump(job, source, syncing.position + 1, live, () => syncing.target, progress, as === "verification");
    syncing.pumping.catch(() => undefined);
    await source.capture.scanAll();
    syncing.target = source.capture.lastCaptured();
    source.wake?.();
    return syncing;
  }

  /** Waits for the sync's batches, moves the replica onto this node's generation, and journals the outcome. Returns the sync's last batch. */
  async function finishSync(job: string, source: Source, syncing: Syncing, live: () => boolean): Promise<number> {
    const { position, target, as } = syncing;
    await syncing.pumping;
    const shipped = { bytes: syncing.acked, blocks: source.capture.shipped().blocks - syncing.before.blocks };
    if (!live()) return target;
    if (target === position && position > 0) await host.record([{ type: "BatchAcked", data: { job, node: host.self, by: host.peer, batch: position } }]);
    // The replica takes this node's generation before the link may turn green.
    const line = view(job);
    if (line.current !== null) {
      const answer = await ask({ kind: "mirror-synced", job, from: host.self, generation: line.current, parent: line.ancestors[0] ?? null });
      if (!answer.ok) throw new Error(`${host.peer} did not take generation ${line.current}: ${answer.message}`);
    }
    if (as === "verification") await recordAndRelay({ type: "VerificationCompleted", data: { job, node: host.self, differingBlocks: shipped.blocks, shippedBytes: shipped.bytes } });
    else await recordAndRelay({ type: "ResyncCompleted", data: { job, from: host.self, to: host.peer, shippedBytes: shipped.bytes, ms: host.now() - syncing.started } });
    source.alone = false;
    await reportQueue(job, source, true);
    host.log(`job ${job}: ${as} with ${host.peer} done: ${target - position} batches, ${shipped.bytes} bytes shipped`);
    return target;
  }

  /**
   * What the peer holds, from the change index it kept as the source, when this node becomes the
   * source with the peer connected and the pair verified (a switchover): null for a root it kept
   * none of, or on any failure, and capture then starts from lstat and reads in the background.
   */
  async function fetchPeerIndexes(job: string): Promise<(ChangeIndex | null)[] | undefined> {
    if (!host.connected() || host.state().replication.get(job)?.verification.state !== "done") return undefined;
    const out: (ChangeIndex | null)[] = [];
    for (const i of roots.get(job)!.keys()) {
      try {
        const index = await fetchPages(`index of mirror ${i}`, (page) => ({ kind: "mirror-index", job, index: i, page }));
        out.push(index);
        host.log(`job ${job}: took ${host.peer}'s index of mirror ${i} (${index.size} entries): what it holds is not read again here`);
      } catch (error) {
        host.log(`job ${job}: ${host.peer}'s index of mirror ${i} not taken (${(error as Error).message}); reading this node's copy in the background instead`);
        out.push(null);
      }
    }
    return out;
  }

  function fetchManifest(job: string, index: number, scope: readonly string[] | "all"): Promise<ChangeIndex> {
    return fetchPages(`manifest of ${job}`, (page) => ({ kind: "mirror-manifest", job, index, scope, page }));
  }

  /** Asks the peer for every page of a paged answer (see answerPage) and joins them. */
  async function fetchPages(what: string, pageOf: (page: number) => PageRequest): Promise<ChangeIndex> {
    const joined: ChangeIndex = new Map();
    for (let page = 0; ; page++) {
      const answer = await ask(pageOf(page));
      if (!answer.ok) throw new Error(`${what} from ${host.peer}: ${answer.message}`);
      joinManifestPage(joined, packr.unpack(answer.entries) as ManifestItem[]);
      if (!answer.more) return joined;
    }
  }

  async function stopSource(job: string, flush: boolean): Promise<void> {
    const source = sources.get(job);
    if (!source) return;
    if (flush && host.connected()) {
      // A planned hand-over: what the application wrote last reaches the peer before it starts there.
      await source.capture.flush();
      const target = source.capture.lastCaptured();
      const deadline = host.now() + MIRROR_BATCH_TIMEOUT_MS;
      while (source.streaming && source.queue.stats().batches > 0 && source.queue.numbers()[0]! <= target && host.now() < deadline && host.connected()) {
        await new Promise<void>((resolve) => host.timers.after(20, resolve));
      }
    }
    source.token++;
    source.wake?.();
    await source.capture.stop();
    sources.delete(job);
    await reportQueue(job, source, true);
  }

  /**
   * Paths a configuration change added to a job mirrored already (after its JobCreated is
   * journaled). Both sides learn the new roots; where the job runs, capture holds them until the
   * session verifies them (verifyAddedPaths), while the other paths stream on.
   */
  async function addPaths(job: string, added: readonly string[]): Promise<void> {
    const index = jobs.findIndex((j) => j.name === job);
    if (index < 0) throw new Error(`mirrors: job ${job} is not mirrored here`);
    const paths = [...jobs[index]!.paths, ...added];
    jobs[index] = { ...jobs[index]!, paths };
    const jobRoots = mirrorRoots(paths, host.self);
    const wasMirrored = roots.has(job);
    roots.set(job, jobRoots);
    const keep = jobs[index]!.snapshots.keep;
    snapshotStores.set(job, createSnapshots({ job, node: host.self, roots: jobRoots, dir: snapshotDir(jobRoots), keep, report: (e) => report(e), now: host.now }));
    // Appliers opened with the old roots reopen with the new ones, between two batches.
    await serialStage(job, () =>
      serialApply(job, async () => {
        for (const [key, applier] of [...opened]) {
          if (!key.startsWith(`${job}\u0000`)) continue;
          opened.delete(key);
          await (await applier).flush();
        }
      }),
    );
    const source = sources.get(job);
    if (source) {
      await source.capture.addRoots(mirrorRoots(added, host.self));
      for (const root of jobRoots) await mkdir(root, { recursive: true });
      source.token++; // a new session verifies the added paths while the others stream on
      source.wake?.();
      void runSession(job);
      return;
    }
    const view = host.state().jobs.get(job);
    if (!wasMirrored && view?.active === host.self && view.phase === "in") await startSource(job);
  }

  /** Resolves true once the replica acknowledged every batch up to `batch`; false if the session ended. */
  async function acknowledged(source: Source, batch: number, live: () => boolean): Promise<boolean> {
    while (live() && source.queue.stats().batches > 0 && source.queue.numbers()[0]! <= batch) {
      await new Promise<void>((resolve) => host.timers.after(20, resolve));
    }
    return live();
  }

  /**
   * Verifies the paths added to the running job, one at a time, while the session streams the
   * others: once every batch captured so far is acknowledged (nothing of a held root is queued but
   * what a release cut short by a restart left, and that lands first), the replica's copy is
   * fetched, capture takes it as what the replica holds and ships what differs, and the path is
   * verified when those batches are acknowledged. A replica whose copy may be the newer keeps the
   * path held until an operator verifies (decideReleaseAddedPath).
   */
  async function verifyAddedPaths(job: string, source: Source, live: () => boolean, mode: SessionMode): Promise<void> {
    let path = "";
    try {
      for (const i of source.capture.held()) {
        path = jobs.find((j) => j.name === job)!.paths[i]!;
        if (!(await acknowledged(source, source.capture.lastCaptured(), live))) return;
        const manifest = await fetchManifest(job, i, "all");
        if (!live()) return;
        const added = host.state().replication.get(job)?.addedPaths.find((a) => a.path === path);
        const replicaFiles = [...manifest.values()].filter((e) => e.kind !== "dir").length;
        const release = decideReleaseAddedPath(added, { peer: host.peer, mode, replicaFiles });
        if (!release.ok) {
          const why = `${host.peer} ran ${job} since ${path} was added and holds ${replicaFiles} file(s) there: either copy may be the newer`;
          await host.record([{ type: "AlertRaised", data: { node: host.self, job, code: "mirror-path-held", message: `${path} of ${job} is not mirrored yet: ${why}; run duet job verify ${job} while it runs on the node whose copy is right` } }]);
          continue;
        }
        await recordAndRelay({ type: "MirrorPathVerificationStarted", data: { job, node: host.self, path, reasons: release.reasons } });
        const shipped = await source.capture.release(i, manifest);
        source.released.set(path, { through: source.capture.lastCaptured(), ...shipped });
        source.wake?.();
      }
      for (const [released, shipped] of source.released) {
        path = released;
        if (!(await acknowledged(source, shipped.through, live))) return;
        await recordAndRelay({ type: "MirrorPathVerified", data: { job, node: host.self, path, differingBlocks: shipped.blocks, shippedBytes: shipped.bytes } });
        source.released.delete(path);
        host.log(`job ${job}: added path ${path} verified with ${host.peer}: ${shipped.bytes} bytes shipped`);
      }
    } catch (error) {
      host.log(`job ${job}: verifying added path ${path} failed: ${(error as Error).message}; retrying in ${MIRROR_RETRY_MS} ms`);
      host.timers.after(MIRROR_RETRY_MS, () => {
        if (live() && host.connected()) void verifyAddedPaths(job, source, live, mode);
      });
    }
  }

  // ---------------------------------------------------------------- replica side

  const opened = new Map<string, Promise<ReturnType<typeof createApplier>>>();
  /** The applier for batches from `from`, opened once (which re-applies a batch staged before a crash). */
  function openApplier(job: string, from: string): Promise<ReturnType<typeof createApplier>> {
    const key = `${job}\u0000${from}`;
    let applier = opened.get(key);
    if (!applier) {
      applier = (async () => {
        for (const root of roots.get(job)!) await mkdir(root, { recursive: true });
        const created = createApplier({ job, node: host.self, roots: roots.get(job)!, stateDir: join(jobDir(job), `from-${from}`), report });
        await created.open();
        return created;
      })();
      opened.set(key, applier);
      applier.catch(() => opened.delete(key));
    }
    return applier;
  }

  /** Applies in arrival order, one batch at a time per job. */
  const serialApply = <T>(job: string, work: () => Promise<T>): Promise<T> => {
    const next = (applyChains.get(job) ?? Promise.resolve()).then(work, work);
    applyChains.set(job, next.catch(() => undefined));
    return next;
  };
  const stageChains = new Map<string, Promise<unknown>>();
  /** Stages in arrival order, one batch at a time per job (ahead of, and beside, applying). */
  const serialStage = <T>(job: string, work: () => Promise<T>): Promise<T> => {
    const next = (stageChains.get(job) ?? Promise.resolve()).then(work, work);
    stageChains.set(job, next.catch(() => undefined));
    return next;
  };

  /**
   * One page of a paged answer (a manifest, a kept index): built when its first page is asked for
   * and kept until its last has gone. `build` returns why there is nothing to page, if so.
   */
  async function answerPage(job: string, key: string, page: number, build: () => Promise<ChangeIndex | string>): Promise<MirrorResponse<PageRequest["kind"]>> {
    let cached = manifests.get(job);
    if (cached === undefined || page === 0 || cached.key !== key) {
      const built = await build();
      if (typeof built === "string") return { ok: false, code: "nothing-to-page", message: built };
      cached = { key, pages: paginateManifest(built, MANIFEST_PAGE_BYTES) };
      manifests.set(job, cached);
    }
    const more = page + 1 < cached.pages.length;
    if (!more) manifests.delete(job);
    return { ok: true, entries: packr.pack(cached.pages[page] ?? []), more };
  }

  async function onRequest(body: unknown): Promise<MirrorResponse> {
    let request: MirrorRequest;
    try {
      request = parseMirrorRequest(body);
    } catch (error) {
      return { ok: false, code: "bad-request", message: (error as Error).message };
    }
    const jobRoots = roots.get(request.job);
    if (!jobRoots) return { ok: false, code: "not-mirrored", message: `job ${request.job} has no mirrored paths on ${host.self}` };
    const job = host.state().jobs.get(request.job);
    const runsHere = job?.active === host.self && job.phase !== "out" && job.phase !== "failed";
    const replicaKinds = ["mirror-hello", "mirror-manifest", "mirror-index", "mirror-reset", "mirror-batch", "mirror-synced", "mirror-keep"];
    // Two sources for one job would overwrite the data the application is using: refuse.
    if (replicaKinds.includes(request.kind) && (runsHere || sources.has(request.job)))
      return { ok: false, code: "job-runs-here", message: `job ${request.job} runs on ${host.self}; it does not take batches` };

    switch (request.kind) {
      case "mirror-hello": {
        // This node is the replica from now on: the index it kept as the source stops describing
        // what its peer holds once a batch arrives, so it goes (one kept is always current: the
        // peer may take it at the next switchover, and so may this node's next turn as source).
        await rm(join(jobDir(request.job), "capture"), { recursive: true, force: true });
        const applier = await openApplier(request.job, request.from);
        return { ok: true, summary: summary(request.job), applied: applier.lastApplied() };
      }
      case "mirror-manifest": {
        const root = jobRoots[request.index];
        if (root === undefined) return { ok: false, code: "bad-request", message: `mirror index ${request.index}: job ${request.job} has ${jobRoots.length}` };
        return answerPage(request.job, JSON.stringify([request.index, request.scope]), request.page, () => readManifest(root, request.scope, { pieces: true }));
      }
      case "mirror-index": {
        if (request.index >= jobRoots.length) return { ok: false, code: "bad-request", message: `mirror index ${request.index}: job ${request.job} has ${jobRoots.length}` };
        return answerPage(request.job, JSON.stringify(["index", request.index]), request.page, async () => {
          const index = await loadIndex(join(jobDir(request.job), "capture", `index-${request.index}`));
          return index.size > 0 ? index : `${host.self} kept no index of ${request.job}`;
        });
      }
      case "mirror-reset":
        return serialStage(request.job, () =>
          serialApply(request.job, async () => {
            await (await openApplier(request.job, request.from)).reset(request.position);
            // Whatever this node once queued as a source is superseded by the data it now receives.
            await rm(join(jobDir(request.job), "queue"), { recursive: true, force: true });
            return { ok: true };
          }),
        );
      case "mirror-batch": {
        // Staged (checked, durable) as it arrives, applied in order: the next batch is staged while one applies.
        const { job: name, from } = request;
        const refusal = (error: unknown): MirrorResponse<"mirror-batch"> => {
          if (error instanceof RefusedBatchError) {
            host.relay({ type: "OpRefused", data: { job: name, node: host.self, batch: error.batch, path: error.path, reason: error.reason } });
            return { ok: false, code: "refused", message: error.message };
          }
          return { ok: false, code: error instanceof BatchError ? "bad-batch" : "apply-failed", message: (error as Error).message };
        };
        const durable = request.sync !== true;
        let staged: Batch | null;
        try {
          staged = await serialStage(name, async () => {
            const bytes = Buffer.isBuffer(request.batch) ? request.batch : Buffer.from(request.batch.buffer, request.batch.byteOffset, request.batch.byteLength);
            const decoded = decodeBatch(bytes);
            if (decoded.job !== name) throw new BatchError(`batch of job ${decoded.job} sent for job ${name}`);
            return (await openApplier(name, from)).stage(bytes, { decoded, durable });
          });
        } catch (error) {
          return refusal(error);
        }
        // A duplicate is answered once whatever was staged before it has been applied.
        return serialApply(name, async (): Promise<MirrorResponse<"mirror-batch">> => {
          const applier = await openApplier(name, from);
          if (staged !== null) await applier.applyStaged(staged, { durable });
          return { ok: true, applied: applier.lastApplied() };
        }).catch(refusal);
      }
      case "mirror-synced": {
        // The sync's batches were applied without fsync: durable before the replica counts as level.
        await serialApply(request.job, async () => (await openApplier(request.job, request.from)).flush());
        if (view(request.job).current !== request.generation)
          await recordAndRelay({ type: "GenerationStarted", data: { job: request.job, node: host.self, generation: request.generation, parent: request.parent, reason: "source-selected" } });
        return { ok: true };
      }
      case "mirror-verify":
        return verifyHere(request.job, request.by).then(
          (r): MirrorResponse<"mirror-verify"> => ({ ok: true, ...r }),
          (e: Error): MirrorResponse<"mirror-verify"> => ({ ok: false, code: (e as Refusal).code ?? "error", message: e.message }),
        );
      case "mirror-summary":
        return { ok: true, summary: summary(request.job) };
      case "mirror-keep":
        return keepHere(request.job).then(
          (snapshot): MirrorResponse<"mirror-keep"> => ({ ok: true, snapshot }),
          (e: Error): MirrorResponse<"mirror-keep"> => ({ ok: false, code: "snapshot-failed", message: e.message }),
        );
      case "mirror-select": {
        const { job, from, by, force, keptSnapshot, losingPaths } = request;
        await host.record([{ type: "SourceSelected", data: { job, from, by, force, keptSnapshot, losingPaths } }]);
        if (from === host.self) await becomeSelectedSource(job);
        return { ok: true };
      }
    }
  }

  /** The losing side's data, kept before anything of it is overwritten (at a batch boundary). */
  async function keepHere(job: string): Promise<string | null> {
    return (await takeSnapshot(job, "before-source-select")).name;
  }

  /**
   * A snapshot of this node's copy, between two batches. Not where the job runs: its application
   * writes files in place, which would change a snapshot sharing them.
   */
  function takeSnapshot(job: string, reason: "operator" | "schedule" | "before-source-select"): Promise<SnapshotInfo> {
    const store = snapshotStores.get(job);
    if (!store) return Promise.reject(new Refusal("not-mirrored", `job ${job} has no mirrored paths`));
    if (sources.has(job) && !sources.get(job)!.temporary)
      return Promise.reject(new Refusal("job-runs-here", `job ${job} runs on ${host.self}, whose application writes its files in place; take the snapshot of the replica on ${host.peer}`));
    return serialApply(job, () => store.take(reason, { generation: view(job).current, batch: view(job).lastApplied?.batch ?? 0 }));
  }

  /**
   * Restores a snapshot: elsewhere at any time; in place only while the job runs nowhere. In place,
   * this node's data starts a new generation of unknown extent, so the next session resyncs all of
   * it, from here if the job is brought in here, or gray if the peer runs it.
   */
  /**
   * A restore target, normalized, that is neither inside a mirrored path (the replica would change
   * under the applier, or the source under capture) nor inside a snapshot directory (a snapshot
   * must never change; restoring a snapshot into itself recursed until ENAMETOOLONG).
   */
  function restoreTarget(to: string): string {
    if (to.includes("\u0000")) throw new Refusal("bad-request", "to: a path may not contain a NUL byte");
    if (!isAbsolute(to)) throw new Refusal("bad-request", `to: expected an absolute directory, got ${JSON.stringify(to)}`);
    const target = resolvePath(to);
    const within = (dir: string) => target === dir || target.startsWith(`${dir}/`);
    for (const [name, paths] of roots) {
      const mirrored = paths.find((p) => within(resolvePath(p)));
      if (mirrored) throw new Refusal("bad-request", `to: ${target} is inside ${mirrored}, a mirrored path of job ${name}; restore into a directory outside every mirror`);
      const snapshots = resolvePath(snapshotDir(paths));
      if (within(snapshots)) throw new Refusal("bad-request", `to: ${target} is inside ${snapshots}, where job ${name}'s snapshots are kept (they never change); restore elsewhere`);
    }
    return target;
  }

  async function restoreSnapshot(job: string, name: string, to: string | undefined, by: string): Promise<{ seq: number }> {
    const store = snapshotStores.get(job);
    if (!store) throw new Refusal("not-mirrored", `job ${job} has no mirrored paths`);
    const state = host.state().jobs.get(job);
    if (to === undefined && (sources.has(job) || (state && state.phase !== "out")))
      throw new Refusal("job-not-out", `job ${job} is ${state?.phase ?? "running"}${state?.active ? ` on ${state.active}` : ""}; bring it out before restoring in place (or restore --to a directory)`);
    if (to !== undefined) to = restoreTarget(to);
    try {
      await serialApply(job, () => store.restore(name, { to, by }));
    } catch (error) {
      if (error instanceof SnapshotError) throw error.kind === "not-found" ? new Refusal("not-found", error.message) : new Refusal("snapshot-refused", error.message);
      throw error;
    }
    if (to !== undefined) return { seq: host.head() }; // SnapshotRestored, just journaled
    const generation = host.random.hex(8);
    const [recorded] = await host.record([{ type: "GenerationStarted", data: { job, node: host.self, generation, parent: view(job).current, reason: "restored" } }]);
    return { seq: recorded!.seq };
  }

  async function becomeSelectedSource(job: string): Promise<void> {
    const running = sources.get(job);
    if (running) {
      running.token++;
      running.wake?.();
      void runSession(job, "selected");
    } else {
      await startSource(job, true, "selected");
    }
  }

  /**
   * `duet source select JOB --from NODE`: lineage says what the other side loses; choosing the
   * older side needs force; the loser's data is kept in a snapshot first; both journals record who
   * chose; then the chosen side resyncs the other.
   */
  async function selectSource(job: string, from: string, by: string, force: boolean): Promise<{ seq: number }> {
    if (!roots.has(job)) throw new Refusal("not-mirrored", `job ${job} has no mirrored paths`);
    if (from !== host.self && from !== host.peer) throw new Refusal("bad-request", `from: expected ${host.self} or ${host.peer}, got "${from}"`);
    if (!host.connected()) throw new Refusal("peer-not-connected", `job ${job}: the peer is not connected; a source can be selected only with both nodes up`);
    const answer = await ask({ kind: "mirror-summary", job });
    if (!answer.ok) throw new Refusal("peer-refused", answer.message);
    const decision = decideSourceSelection(summary(job), parseLineageSummary(answer.summary), from, force);
    const lost = decision.losing.paths === "all" ? "all of its data" : `${decision.losing.paths.length} path(s)${decision.losing.paths.length > 0 ? `: ${decision.losing.paths.slice(0, 10).join(", ")}${decision.losing.paths.length > 10 ? ", ..." : ""}` : ""}`;
    if (!decision.allowed) throw new Refusal(decision.code, `source ${from} for ${job} refused (${decision.code}): ${decision.losing.node} would lose ${lost}; add --force to accept that`, decision.reasons);
    const state = host.state().jobs.get(job);
    if (state?.active === decision.losing.node && state.phase !== "out")
      throw new Refusal("job-runs-on-losing-side", `job ${job} runs on ${decision.losing.node}, whose data would be overwritten; bring it out first (or select ${decision.losing.node} as the source)`);
    const kept =
      decision.losing.node === host.self
        ? await keepHere(job)
        : await ask({ kind: "mirror-keep", job, by });
    const keptSnapshot = typeof kept === "object" && kept !== null ? (kept.ok ? kept.snapshot : null) : kept;
    if (typeof kept === "object" && kept !== null && !kept.ok) throw new Refusal("snapshot-failed", `${decision.losing.node} could not keep its data before the resync: ${kept.message}; nothing was changed`);
    const losingPaths = decision.losing.paths === "all" ? 0 : decision.losing.paths.length;
    const [recorded] = await host.record([{ type: "SourceSelected", data: { job, from, by, force, keptSnapshot, losingPaths } }]);
    host.log(`job ${job}: ${by} selected ${from} as the source; ${decision.losing.node} loses ${lost}${keptSnapshot ? ` (kept in snapshot ${keptSnapshot})` : ""}`);
    const told = await ask({ kind: "mirror-select", job, from, by, force, keptSnapshot, losingPaths });
    if (!told.ok) throw new Refusal("peer-refused", `${host.peer} did not take the selection: ${told.message}`);
    if (from === host.self) await becomeSelectedSource(job);
    return { seq: recorded!.seq };
  }

  async function verifyHere(job: string, by: string): Promise<{ seq: number }> {
    const source = sources.get(job);
    if (!source) throw new Refusal("job-not-in", `job ${job} does not run on ${host.self}; verification runs where the job runs`);
    if (!host.connected()) throw new Refusal("peer-not-connected", `job ${job}: the peer is not connected; nothing to verify against`);
    const [requested] = await host.record([{ type: "VerificationRequested", data: { job, by } }]);
    source.token++; // ends the running session; the new one verifies first
    source.wake?.();
    void runSession(job, "verify");
    return { seq: requested!.seq };
  }

  return {
    hasMirrors: (job: string) => roots.has(job),
    roots: (job: string) => roots.get(job) ?? [],
    /** Before the job's resources start here: capture begins (and the index is taken, if none). */
    startSource,
    /**
     * An operator forced a bring-in here while the peer ran the job with writes not yet here: this
     * node's data starts a line of history of its own, so lineage shows the fork (and the loss).
     */
    forceGeneration: async (job: string) => void (roots.has(job) && (await newGeneration(job, "forced-bring-in"))),
    /** After the job's resources stopped here; `flush` when the peer is about to take over. */
    stopSource,
    /** The peer channel came up: every job that runs here opens a session. */
    onPeerUp(): void {
      for (const job of sources.keys()) void runSession(job);
    },
    onPeerDown(): void {
      for (const source of sources.values()) {
        source.token++;
        source.wake?.();
      }
    },
    onRequest,
    async verify(job: string, by: string): Promise<{ seq: number }> {
      if (!roots.has(job)) throw new Refusal("not-mirrored", `job ${job} has no mirrored paths`);
      if (sources.has(job)) return verifyHere(job, by);
      if (!host.connected()) throw new Refusal("peer-not-connected", `job ${job} does not run here and the peer is not connected`);
      const answer = await ask({ kind: "mirror-verify", job, by });
      if (!answer.ok) throw new Refusal(answer.code, answer.message);
      const [requested] = await host.record([{ type: "VerificationRequested", data: { job, by } }]);
      return { seq: requested!.seq };
    },
    selectSource,
    takeSnapshot: (job: string) => takeSnapshot(job, "operator"),
    listSnapshots: async (job: string): Promise<SnapshotInfo[]> => {
      const store = snapshotStores.get(job);
      if (!store) throw new Refusal("not-mirrored", `job ${job} has no mirrored paths`);
      return store.list();
    },
    restoreSnapshot,
    /**
     * A new job added by a configuration change: mirrored as one known at start. It is created
     * brought out, so its first bring-in starts its data's history and ships the tree whole.
     */
    addJob(job: MirroredJob): void {
      if (jobs.some((j) => j.name === job.name)) throw new Error(`mirrors: job ${job.name} is already mirrored here`);
      addJob(job);
    },
    addPaths,
    /**
     * A configuration change of a job's snapshot schedule or sync rate: the next sync is paced by
     * it, and a schedule started after this (scheduleSnapshots again) follows it.
     */
    retune(job: string, settings: Pick<MirroredJob, "snapshots" | "syncMaxMiBps">): void {
      const index = jobs.findIndex((j) => j.name === job);
      if (index < 0) return;
      jobs[index] = { ...jobs[index]!, ...settings };
      if (settings.syncMaxMiBps === undefined) syncRates.delete(job);
      else syncRates.set(job, (settings.syncMaxMiBps * 1024 * 1024) / 1000);
      snapshotStores.get(job)?.setKeep(settings.snapshots.keep);
    },
    /** Scheduled snapshots (config: snapshots.intervalMs from firstAt), taken on the replica side. */
    /** cancel() resolves once a scheduled snapshot under way (taken, then pruned) has finished. */
    scheduleSnapshots(): { cancel(): Promise<void> } {
      const timers: { cancel(): void }[] = [];
      const running = new Set<Promise<unknown>>();
      for (const j of jobs) {
        const every = j.snapshots.intervalMs;
        if (!every || !snapshotStores.has(j.name)) continue;
        let due = firstDue(host.now(), every, j.snapshots.firstAt);
        timers.push(
          host.timers.every(Math.min(60_000, every), () => {
            if (host.now() < due) return;
            due = firstDue(host.now() + 1, every, j.snapshots.firstAt);
            // The replica side takes them: this node holds the copy of a job in on the peer. Not
            // a node whose job runs nowhere (it may be the next source), nor the source itself.
            const view = host.state().jobs.get(j.name);
            if (sources.has(j.name) || view?.phase !== "in" || view.active === null || view.active === host.self) return;
            const taking = takeSnapshot(j.name, "schedule").catch((error: Error) => host.log(`job ${j.name}: scheduled snapshot failed: ${error.message}`));
            running.add(taking);
            void taking.finally(() => running.delete(taking));
          }),
        );
      }
      return {
        async cancel() {
          timers.forEach((t) => t.cancel());
          await Promise.all(running);
        },
      };
    },
    async close(): Promise<void> {
      for (const job of [...sources.keys()]) await stopSource(job, false);
    },
  };
}

export type Mirrors = ReturnType<typeof createMirrors>;

/** The first moment at or after `now` on the schedule: `firstAt` (local time of day) today, then every `every` ms. */
export function firstDue(now: number, every: number, firstAt?: string): number {
  const start = new Date(now);
  if (firstAt) {
    const [h, m] = firstAt.split(":").map(Number);
    start.setHours(h!, m!, 0, 0);
  }
  const origin = start.getTime();
  return origin >= now ? origin : origin + Math.ceil((now - origin) / every) * every;
}

/** The part of a lineage scope that lies under mirror root `index`, relative to it. */
function scopeFor(scope: Paths, index: number): readonly string[] | "all" | "none" {
  if (scope === "all") return "all";
  const prefix = `${index}/`;
  const paths = scope.filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length)).filter((p) => p.length > 0);
  return paths.length === 0 ? "none" : paths;
}

