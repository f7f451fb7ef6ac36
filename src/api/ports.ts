import type { Observable } from "rxjs";
import type { DuetEvent, Recorded } from "../events/catalogue.ts";
import type { ClusterState } from "../projections/cluster.ts";
import type { SnapshotInfo } from "../replication/snapshot.ts";
import type { ConfigPlan } from "../policy/config-change.ts";

/** What the API reads and appends: the agent's journal. */
export interface ApiJournal {
  state(): ClusterState;
  head(): number;
  read(from?: number, to?: number): AsyncIterable<Recorded>;
  tail(from: number): Observable<Recorded>;
  append(events: DuetEvent[]): Promise<Recorded[]>;
}

/** What the API asks of the agent. Each act resolves with the seq of its request event to follow. */
export interface ControlPort {
  /** force: even while the other node runs the job and a switchover is refused (its unreplicated writes are lost). */
  bringIn(job: string, by: string, on?: string, force?: boolean): Promise<{ seq: number }>;
  bringOut(job: string, by: string): Promise<{ seq: number }>;
  switchover(job: string, by: string, to?: string): Promise<{ seq: number }>;
  deleteJob(job: string, by: string): Promise<{ seq: number }>;
  verify(job: string, by: string): Promise<{ seq: number }>;
  selectSource(job: string, from: string, by: string, force: boolean): Promise<{ seq: number }>;
  /** A snapshot of this node's copy of the job's data (the replica side). */
  takeSnapshot(job: string, by: string): Promise<{ seq: number; snapshot: SnapshotInfo }>;
  listSnapshots(job: string): Promise<SnapshotInfo[]>;
  /** In place (`to` absent; the job must run nowhere) or into the directory `to`. */
  restoreSnapshot(job: string, name: string, to: string | undefined, by: string): Promise<{ seq: number }>;
  clearConfig(by: string, force: boolean): Promise<{ archivedTo: string }>;
  /**
   * The plan of a new configuration document and, unless dryRun, its apply on both nodes; refused
   * (Refusal) when an item cannot be done online or the peer cannot be reached (unless force).
   */
  applyConfig(text: string, by: string, options: { dryRun: boolean; force: boolean }): Promise<ConfigApplied>;
  gatherinfo(): Promise<{ file: string }>;
}

export interface ConfigApplied {
  applied: boolean;
  /** The version running here afterwards (the one a dry run would apply, for a dry run). */
  version: number;
  hash: string;
  plan: ConfigPlan;
  /** What the peer did: applied it, already ran it, or was not reached (it adopts it on reconnect). */
  peer: "applied" | "unchanged" | "not-reached" | "not-asked";
}

/**
 * What the agent refuses to do, with a stable code for scripts and the reason in words. It names no
 * transport: the API picks the HTTP status from the code (app.ts statusOf).
 */
export class Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "Refusal";
  }
}

export type Role = "admin" | "monitor";
export interface ApiUser {
  name: string;
  role: Role;
  passwordHash: string;
}
