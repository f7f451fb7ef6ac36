import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { oldestUnackedAt } from "../projections/replication.ts";
import { DUET_VERSION } from "../agent/package-info.ts";
import type { ApiJournal } from "./ports.ts";
import { clusterView } from "./views.ts";

const PHASES = ["out", "bringing-in", "in", "bringing-out", "failed"] as const;

/** What /metrics reads from the running agent rather than the journal. */
export interface MetricsLive {
  /** Milliseconds since a frame from the peer was heard, per link (null: never). */
  heartbeatAgesMs?: () => { link: string; kind: string; ageMs: number | null }[];
  /** Failed logins since the agent started. */
  loginsFailed?: () => number;
  /** How long etcd keeps this node's lease at least, from its last renewal (null: no lease). */
  witnessRemainingMs?: () => number | null;
}

/**
 * The process's own metrics (CPU, memory, event-loop lag, GC), collected once per process: they
 * describe the process, and each collection holds an event-loop histogram and GC observers that
 * are never let go, so one per agent leaked every agent of a process that runs many (the
 * simulator: 0.8 MB each, most of a 10,000-seed run's memory).
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (processRegistry) return processRegistry;
  processRegistry = new Registry();
  collectDefaultMetrics({ register: processRegistry });
  // prom-client's gauges of live handles are named like counters, which promtool rejects.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) processRegistry.removeSingleMetric(name);
  return processRegistry;
}

/**
 * Prometheus metrics computed from the folded state at scrape time: nothing to keep in sync, and
 * a registry of its own so two agents in one process (tests, the simulator) never share series;
 * the process's metrics beside them. Counters folded from the journal survive restarts, as
 * counters may.
 */
export function createMetrics(journal: ApiJournal, live: MetricsLive = {}, now: () => number = Date.now): { metrics(): Promise<string>; contentType: string } {
  const registry = new Registry();
  const view = () => clusterView(journal.state());
  const mirrored = () => view().jobs.filter((j) => j.mirrors.length > 0);
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); collect(this); } });
  const counter = (name: string, help: string, labelNames: string[], collect: (set: (labels: Record<string, string>, value: number) => void) => void) =>
    new Counter({ name, help, labelNames, registers: [registry], collect() { this.reset(); collect((labels, value) => this.inc(labels, value)); } });

  gauge("duet_build_info", "1, with duet's version and this node's name as labels", ["version", "node"], (g) => g.set({ version: DUET_VERSION, node: view().node }, 1));
  gauge("duet_link_up", "1 when the heartbeat link carries frames from the peer", ["link", "kind"], (g) => {
    for (const l of view().links) g.set({ link: l.link, kind: l.kind }, l.up ? 1 : 0);
  });
  gauge("duet_heartbeat_age_seconds", "seconds since a frame from the peer was heard on the link", ["link", "kind"], (g) => {
    for (const l of live.heartbeatAgesMs?.() ?? []) if (l.ageMs !== null) g.set({ link: l.link, kind: l.kind }, l.ageMs / 1000);
  });
  gauge("duet_peer_connected", "1 when the peer is connected", [], (g) => g.set(view().peerStatus === "connected" ? 1 : 0));
  gauge("duet_job_active", "1 for the node a job runs on", ["job", "node"], (g) => {
    for (const j of view().jobs) for (const n of j.nodes) g.set({ job: j.name, node: n }, j.active === n ? 1 : 0);
  });
  gauge("duet_job_phase", "1 for the job's current phase", ["job", "phase"], (g) => {
    for (const j of view().jobs) for (const p of PHASES) g.set({ job: j.name, phase: p }, j.phase === p ? 1 : 0);
  });
  gauge("duet_queue_batches", "write batches captured and not yet acknowledged", ["job"], (g) => {
    for (const j of mirrored()) g.set({ job: j.name }, j.replication.queue?.batches ?? 0);
  });
  gauge("duet_queue_bytes", "bytes of write batches not yet acknowledged", ["job"], (g) => {
    for (const j of mirrored()) g.set({ job: j.name }, j.replication.queue?.bytes ?? 0);
  });
  gauge("duet_replication_lag_seconds", "age of the oldest write batch the peer has not acknowledged (0 when none waits)", ["job"], (g) => {
    const state = journal.state();
    for (const j of mirrored()) {
      const since = oldestUnackedAt(state.replication.get(j.name));
      g.set({ job: j.name }, since === null ? 0 : Math.max(0, now() - since) / 1000);
    }
  });
  gauge("duet_verification_progress_ratio", "verification progress, 0..1", ["job"], (g) => {
    for (const j of mirrored()) {
      const v = j.replication.verification as { state: string; doneBytes?: number; totalBytes?: number } | null;
      g.set({ job: j.name }, v?.state === "done" ? 1 : v?.state === "running" && v.totalBytes ? (v.doneBytes ?? 0) / v.totalBytes : 0);
    }
  });
  gauge("duet_mirror_colour", "1 for the data link's current colour (green, yellow, gray, red)", ["job", "colour"], (g) => {
    for (const j of mirrored()) for (const c of ["green", "yellow", "gray", "red"]) g.set({ job: j.name, colour: c }, j.replication.colour === c ? 1 : 0);
  });
  counter("duet_replication_captured_bytes_total", "bytes of write batches captured on this node (rate() is the replication throughput)", ["job"], (set) => {
    for (const j of mirrored()) set({ job: j.name }, j.replication.capturedBytes);
  });
  counter("duet_replication_acked_batches_total", "write batches of this node the peer acknowledged", ["job"], (set) => {
    const state = journal.state();
    for (const j of mirrored()) set({ job: j.name }, state.replication.get(j.name)?.ackedBatches ?? 0);
  });
  counter("duet_takeovers_total", "automatic takeovers of the job this node decided", ["job"], (set) => {
    for (const j of view().jobs) set({ job: j.name }, j.takeovers);
  });
  counter("duet_monitor_failures_total", "resource monitor failures journaled on this node", ["job"], (set) => {
    for (const j of journal.state().jobs.values()) set({ job: j.name }, j.monitorFailures);
  });
  counter("duet_resource_restarts_total", "resources restarted in place after a monitor failure", ["job"], (set) => {
    for (const j of journal.state().jobs.values()) set({ job: j.name }, j.restarts);
  });
  counter("duet_frames_rejected_total", "heartbeat frames rejected, by reason, as journaled", ["reason"], (set) => {
    for (const r of view().framesRejected) set({ reason: r.reason }, r.count);
  });
  counter("duet_logins_failed_total", "failed API logins since the agent started", [], (set) => set({}, live.loginsFailed?.() ?? 0));
  gauge("duet_witness_lease_held", "1 while this node holds a renewed lease on the witness (absent: no witness configured)", [], (g) => {
    const w = view().witness;
    if (w) g.set(w.state === "held" ? 1 : 0);
  });
  gauge("duet_witness_lease_remaining_seconds", "how long etcd keeps this node's lease at least, from its last renewal", [], (g) => {
    const remaining = live.witnessRemainingMs?.();
    if (remaining !== undefined) g.set(Math.max(0, remaining ?? 0) / 1000);
  });
  gauge("duet_witness_key_held", "1 when this node last won the job's holder key on the witness", ["job"], (g) => {
    for (const j of view().jobs) if (j.witnessKey) g.set({ job: j.name }, j.witnessKey.won ? 1 : 0);
  });
  gauge("duet_journal_head_seq", "the journal's last sequence number", [], (g) => g.set(journal.head()));
  // Merged once: the merged registry holds the same metric objects, collected at each scrape.
  const merged = Registry.merge([processMetrics(), registry]);
  return { metrics: () => merged.metrics(), contentType: registry.contentType };
}
