import { Gauge, Registry } from "prom-client";
import type { ApiJournal } from "./ports.ts";
import { clusterView } from "./views.ts";

const PHASES = ["out", "bringing-in", "in", "bringing-out", "failed"] as const;

/**
 * Prometheus metrics computed from the folded state at scrape time: nothing to keep in sync, and
 * a registry of its own so two agents in one process (tests, the simulator) never share series.
 */
export function createMetrics(journal: ApiJournal) {
  const registry = new Registry();
  const view = () => clusterView(journal.state());
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); collect(this); } });

  gauge("duet_link_up", "1 when the heartbeat link carries frames from the peer", ["link", "kind"], (g) => {
    for (const l of view().links) g.set({ link: l.link, kind: l.kind }, l.up ? 1 : 0);
  });
  gauge("duet_peer_connected", "1 when the peer is connected", [], (g) => g.set(view().peerStatus === "connected" ? 1 : 0));
  gauge("duet_job_active", "1 for the node a job runs on", ["job", "node"], (g) => {
    for (const j of view().jobs) for (const n of j.nodes) g.set({ job: j.name, node: n }, j.active === n ? 1 : 0);
  });
  gauge("duet_job_phase", "1 for the job's current phase", ["job", "phase"], (g) => {
    for (const j of view().jobs) for (const p of PHASES) g.set({ job: j.name, phase: p }, j.phase === p ? 1 : 0);
  });
  gauge("duet_queue_batches", "write batches captured and not yet acknowledged", ["job"], (g) => {
    for (const j of view().jobs) g.set({ job: j.name }, j.replication.queue?.batches ?? 0);
  });
  gauge("duet_queue_bytes", "bytes of write batches not yet acknowledged", ["job"], (g) => {
    for (const j of view().jobs) g.set({ job: j.name }, j.replication.queue?.bytes ?? 0);
  });
  gauge("duet_verification_progress_ratio", "verification progress, 0..1", ["job"], (g) => {
    for (const j of view().jobs) {
      const v = j.replication.verification as { state: string; doneBytes?: number; totalBytes?: number } | null;
      g.set({ job: j.name }, v?.state === "done" ? 1 : v?.state === "running" && v.totalBytes ? (v.doneBytes ?? 0) / v.totalBytes : 0);
    }
  });
  gauge("duet_mirror_colour", "1 for the data link's current colour (green, yellow, gray, red)", ["job", "colour"], (g) => {
    for (const j of view().jobs) if (j.mirrors.length > 0) for (const c of ["green", "yellow", "gray", "red"]) g.set({ job: j.name, colour: c }, j.replication.colour === c ? 1 : 0);
  });
  gauge("duet_replication_captured_bytes", "bytes of write batches captured on this node (a counter: rate() is the replication throughput)", ["job"], (g) => {
    for (const j of view().jobs) if (j.mirrors.length > 0) g.set({ job: j.name }, j.replication.capturedBytes);
  });
  gauge("duet_replication_acked_batch", "the last of this node's batches the peer acknowledged (a counter: rate() is batches per second)", ["job"], (g) => {
    for (const j of view().jobs) if (j.mirrors.length > 0) g.set({ job: j.name }, j.replication.lastAcked ?? 0);
  });
  gauge("duet_takeovers", "automatic takeovers of the job this node decided (a counter)", ["job"], (g) => {
    for (const j of view().jobs) g.set({ job: j.name }, j.takeovers);
  });
  gauge("duet_frames_rejected", "heartbeat frames rejected, by reason, as journaled", ["reason"], (g) => {
    for (const r of view().framesRejected) g.set({ reason: r.reason }, r.count);
  });
  gauge("duet_journal_head_seq", "the journal's last sequence number", [], (g) => g.set(journal.head()));
  return registry;
}
