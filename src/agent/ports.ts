import type { DuetEvent, Recorded } from "../events/catalogue.ts";
import type { Reason } from "../events/ids.ts";
import type { PeerRequest, PeerResponse } from "./peer-protocol.ts";

/** What the control loop needs to know of the folded state; implemented over src/projections. */
export interface StateReader {
  jobs(): string[];
  jobExists(job: string): boolean;
  jobNodes(job: string): readonly [string, string];
  /** The node the job runs on (null when brought out), and its phase. */
  jobActive(job: string): string | null;
  jobPhase(job: string): "out" | "bringing-in" | "in" | "bringing-out" | "failed";
  peerConnected(): boolean;
  /** When the peer was lost (null when connected), and the tiebreaker verdict recorded since. */
  peerLostAt(): number | null;
  tiebreakerSince(at: number): { verdict: string; at: number } | null;
}

export interface Decision {
  kind: "takeover" | "decline" | "self-fence" | "failover";
  job: string;
  code: string;
  reasons: Reason[];
}

export interface Gate {
  allowed: boolean;
  code: string;
  reasons: Reason[];
}

/** The job runner as the agent drives it (src/resources/runner.ts). */
export interface RunnerPort {
  bringIn(): Promise<boolean>;
  bringOut(): Promise<void>;
}

export interface PeerPort {
  connected(): boolean;
  request(request: PeerRequest, timeoutMs: number): Promise<PeerResponse>;
}

export interface JournalPort<S> {
  state(): S;
  head(): number;
  append(events: DuetEvent[]): Promise<Recorded[]>;
}
