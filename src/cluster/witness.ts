import type { EventOf } from "../events/catalogue.ts";
import type { WitnessSpec } from "../config/schema.ts";
import type { Clock, Timers } from "../world/clock.ts";
import { witnessRenewMs } from "../policy/witness.ts";

/**
 * The witness's operations, as etcd gives them (etcd-gateway.ts) and as the simulator models them
 * (world/sim-witness.ts). Every call has a deadline and rejects when it passes.
 */
export interface WitnessStore {
  grant(ttlMs: number, timeoutMs: number): Promise<{ leaseId: string; ttlMs: number; revision: number }>;
  /** ttlMs 0: etcd no longer has the lease. */
  keepAlive(leaseId: string, timeoutMs: number): Promise<{ ttlMs: number }>;
  /** KEY = VALUE on LEASE if absent or already VALUE; otherwise who holds it, and for how long at most. */
  claim(key: string, value: string, leaseId: string, timeoutMs: number): Promise<{ won: boolean; holder: string | null; revision: number; holderTtlMs?: number }>;
  /** Deletes KEY if it is still VALUE. */
  release(key: string, value: string, timeoutMs: number): Promise<{ released: boolean; revision: number }>;
  holder(key: string, timeoutMs: number): Promise<string | null>;
}

type LeaseFact = EventOf<"WitnessLease">;
type ClaimFact = EventOf<"WitnessClaimed">;
type ReleaseFact = EventOf<"WitnessReleased">;

export interface WitnessSessionOptions {
  self: string;
  spec: WitnessSpec;
  store: WitnessStore;
  clock: Clock;
  timers: Timers;
  /** Journals a change of the lease's state (the policy fences on it); resolves once durable. */
  report(fact: LeaseFact): Promise<unknown>;
  /**
   * A lease was granted (at start, or after the last one was lost): the jobs the journal says run
   * here (what a crash left running among them) ask for their keys on it at once.
   */
  onNewLease(): void;
  log(message: string): void;
}

export type WitnessSession = ReturnType<typeof createWitnessSession>;

/** A job's holder key: PREFIX/jobs/JOB/holder. */
export function holderKey(prefix: string, job: string): string {
  return `${prefix.replace(/\/+$/, "")}/jobs/${job}/holder`;
}

/**
 * This node's lease on the witness: granted at start, renewed every quarter of its TTL. The lease
 * lasts in etcd's eyes at least until the last successful renewal's *send* time plus its TTL
 * (etcd counts from when it received it), so that is the deadline the policy fences before. Only
 * changes of state are journaled; the holder keys of the jobs running here hang on the lease.
 */
export function createWitnessSession(options: WitnessSessionOptions) {
  const { self, spec, store, clock, timers } = options;
  const renewMs = witnessRenewMs(spec.leaseMs);
  const base = { node: self, unreachable: spec.unreachable };
  let lease: { id: string; ttlMs: number; validUntilMono: number } | null = null;
  let reported: LeaseFact["data"]["state"] | null = null;
  let granted = 0;
  let busy = false;
  let stopped = false;
  let timer: { cancel(): void } | null = null;
  /** Claims waiting for the first grant's answer. */
  const firstGrant: (() => void)[] = [];

  const wallOf = (mono: number) => Math.max(0, Math.round(clock.now() + (mono - clock.monotonic())));
  const report = (data: Omit<LeaseFact["data"], "node" | "unreachable">) => {
    reported = data.state;
    return options.report({ type: "WitnessLease", data: { ...base, ...data } });
  };

  async function tick(): Promise<void> {
    if (busy || stopped) return;
    busy = true;
    try {
      if (lease === null) await grant();
      else await renew(lease);
    } finally {
      busy = false;
      for (const waiting of firstGrant.splice(0)) waiting();
    }
  }

  async function grant(): Promise<void> {
    const sentAt = clock.monotonic();
    try {
      const g = await store.grant(spec.leaseMs, renewMs);
      lease = { id: g.leaseId, ttlMs: g.ttlMs, validUntilMono: sentAt + g.ttlMs };
      granted++;
      await report({ state: "held", leaseId: g.leaseId, ttlMs: g.ttlMs, validUntil: wallOf(lease.validUntilMono), revision: g.revision });
      options.onNewLease();
    } catch (error) {
      if (reported !== "expired") await report({ state: "expired", validUntil: 0, error: messageOf(error) });
    }
  }

  async function renew(held: NonNullable<typeof lease>): Promise<void> {
    const sentAt = clock.monotonic();
    try {
      const { ttlMs } = await store.keepAlive(held.id, renewMs);
      if (ttlMs === 0) return await lost(`etcd no longer has lease ${held.id}`);
      held.validUntilMono = sentAt + ttlMs;
      if (reported !== "held") await report({ state: "held", leaseId: held.id, ttlMs, validUntil: wallOf(held.validUntilMono) });
    } catch (error) {
      if (clock.monotonic() >= held.validUntilMono) return await lost(messageOf(error));
      if (reported !== "renew-failing") await report({ state: "renew-failing", leaseId: held.id, ttlMs: held.ttlMs, validUntil: wallOf(held.validUntilMono), error: messageOf(error) });
    }
  }

  async function lost(why: string): Promise<void> {
    const was = lease;
    lease = null;
    options.log(`witness: lease lost: ${why}`);
    await report({ state: "expired", ...(was ? { leaseId: was.id, ttlMs: was.ttlMs, validUntil: wallOf(was.validUntilMono) } : {}), error: why });
  }

  return {
    /**
     * Journals that a witness is in force (before the policy may decide anything), then asks for
     * the lease without waiting for it: a start needs the lease, the agent's start does not.
     */
    async start(): Promise<void> {
      await report({ state: "granting", ttlMs: spec.leaseMs });
      void tick();
      timer = timers.every(renewMs, () => void tick());
    },
    /** Asks for JOB's holder key on this node's lease: the fact to journal (never throws). */
    async claim(job: string, purpose: ClaimFact["data"]["purpose"]): Promise<ClaimFact> {
      const fact = (data: Partial<ClaimFact["data"]>): ClaimFact => ({ type: "WitnessClaimed", data: { node: self, job, purpose, won: false, holder: null, revision: 0, ...data } });
      // Asked while the first lease is being granted (a recovery right after the agent's start): it waits for it.
      if (lease === null && granted === 0 && busy) await new Promise<void>((r) => firstGrant.push(r));
      const held = lease;
      if (held === null || clock.monotonic() >= held.validUntilMono) return fact({ error: "this node holds no lease on the witness" });
      try {
        const answer = await store.claim(holderKey(spec.etcd.prefix, job), self, held.id, renewMs);
        return fact({ won: answer.won, holder: answer.holder, revision: answer.revision, ...(answer.holderTtlMs === undefined ? {} : { holderTtlMs: answer.holderTtlMs }) });
      } catch (error) {
        return fact({ error: messageOf(error) });
      }
    },
    /** Gives JOB's key back if it is still this node's: null when there was nothing to give back or the witness did not answer. */
    async release(job: string): Promise<ReleaseFact | null> {
      try {
        const answer = await store.release(holderKey(spec.etcd.prefix, job), self, renewMs);
        return answer.released ? { type: "WitnessReleased", data: { node: self, job, revision: answer.revision } } : null;
      } catch (error) {
        options.log(`witness: could not give ${job}'s key back (${messageOf(error)}); it goes with this node's lease`);
        return null;
      }
    },
    /** How long etcd keeps the lease at least, from the last renewal's send time; null without a lease. */
    remainingMs(): number | null {
      return lease === null ? null : Math.max(0, Math.round(lease.validUntilMono - clock.monotonic()));
    },
    /** Stops renewing. The lease is not revoked: a job left running here keeps its key until the lease runs out, as after a crash. */
    stop(): void {
      stopped = true;
      timer?.cancel();
    },
  };
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 1000);
}
