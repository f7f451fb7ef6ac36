import type { WitnessStore } from "../cluster/witness.ts";
import type { Clock, Timers } from "./clock.ts";

export interface SimWitnessOptions {
  clock: Clock;
  /** The server's own time (the world's): a request in flight arrives whatever its sender does meanwhile. */
  timers: Timers;
  /** Where etcd listens on the simulated network (the pair's gateway: a node cut from it reaches neither). */
  address: string;
  /** Whether what FROM sends reaches TO now (the simulated network's cuts and dead NICs). */
  open(from: string, to: string): boolean;
  /** One way's delay of a request or an answer, in virtual ms. */
  delay(from: string): number;
}

/**
 * A one-member etcd for the simulator, with etcd's semantics for what duet uses: leases that
 * expire TTL after their last renewal *as the server received it*, keys deleted with their lease,
 * transactions applied atomically on arrival. A request crosses the network to the server and
 * its answer comes back the same way; either may be lost to a cut, and then the caller's
 * deadline passes (the server may still have applied it, as a real one would).
 */
export function createSimWitness(options: SimWitnessOptions) {
  const { clock, address } = options;
  const leases = new Map<string, { ttlMs: number; expiresAt: number }>();
  const keys = new Map<string, { value: string; lease: string }>();
  let revision = 1;
  let nextLease = 1;
  /** Down: no request is answered, and no lease expires (nothing runs). */
  let down = false;

  /** Leases past their time are gone, and their keys with them (etcd's lessor). */
  function expire(): void {
    const now = clock.now();
    for (const [id, lease] of leases) {
      if (lease.expiresAt > now) continue;
      leases.delete(id);
      for (const [key, kv] of keys) if (kv.lease === id) (keys.delete(key), revision++);
    }
  }

  const server = {
    grant(ttlMs: number) {
      const id = String(nextLease++);
      const granted = Math.max(2000, Math.ceil(ttlMs / 1000) * 1000);
      leases.set(id, { ttlMs: granted, expiresAt: clock.now() + granted });
      return { leaseId: id, ttlMs: granted, revision };
    },
    keepAlive(id: string) {
      const lease = leases.get(id);
      if (!lease) return { ttlMs: 0 };
      lease.expiresAt = clock.now() + lease.ttlMs;
      return { ttlMs: lease.ttlMs };
    },
    claim(key: string, value: string, leaseId: string) {
      const kv = keys.get(key);
      if ((kv === undefined || kv.value === value) && leases.has(leaseId)) {
        keys.set(key, { value, lease: leaseId });
        revision++;
        return { won: true, holder: value, revision };
      }
      if (kv === undefined) return { won: false, holder: null, revision }; // etcd: "requested lease not found"
      const holderTtlMs = Math.max(0, (leases.get(kv.lease)?.expiresAt ?? clock.now()) - clock.now());
      return { won: false, holder: kv.value, revision, holderTtlMs };
    },
    release(key: string, value: string) {
      const kv = keys.get(key);
      if (kv?.value !== value) return { released: false, revision };
      keys.delete(key);
      revision++;
      return { released: true, revision };
    },
    holder: (key: string) => keys.get(key)?.value ?? null,
  };

  /**
   * The store as node FROM (its address) sees it, on TIMERS (its own side of the world: a paused
   * node's answers wait, a dead one's never come).
   */
  function storeFor(from: string, timers: Timers): WitnessStore {
    function call<T>(what: string, timeoutMs: number, apply: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        let done = false;
        const finish = (fn: () => void) => {
          if (done) return;
          done = true;
          fn();
        };
        timers.after(timeoutMs, () => finish(() => reject(new Error(`etcd ${address}${what}: no answer within ${timeoutMs} ms`))));
        if (!options.open(from, address)) return;
        options.timers.after(options.delay(from), () => {
          if (down) return;
          expire();
          const answer = apply();
          if (!options.open(address, from)) return;
          // The answer reaches the node's side of the world: a paused node reads it when it wakes.
          const back = options.delay(address);
          timers.after(back, () => finish(() => resolve(answer)));
        });
      });
    }
    return {
      grant: (ttlMs, timeoutMs) => call("/v3/lease/grant", timeoutMs, () => server.grant(ttlMs)),
      keepAlive: (id, timeoutMs) => call("/v3/lease/keepalive", timeoutMs, () => server.keepAlive(id)),
      claim: (key, value, lease, timeoutMs) => call("/v3/kv/txn", timeoutMs, () => server.claim(key, value, lease)),
      release: (key, value, timeoutMs) => call("/v3/kv/txn", timeoutMs, () => server.release(key, value)),
      holder: (key, timeoutMs) => call("/v3/kv/range", timeoutMs, () => server.holder(key)),
    };
  }

  return {
    storeFor,
    /**
     * etcd stops (every member) or starts again. Back, it refreshes every lease it kept to a whole
     * TTL from now, as etcd's lessor does when a leader takes over: a holder is never cut short by
     * an outage it could not renew through.
     */
    setDown(value: boolean) {
      if (down && !value) for (const lease of leases.values()) lease.expiresAt = clock.now() + lease.ttlMs;
      down = value;
    },
  };
}
