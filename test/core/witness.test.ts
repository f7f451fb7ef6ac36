import { describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { projectCluster } from "../../src/projections/cluster.ts";
import { decide, tiebreakerNeeded } from "../../src/policy/decide.ts";
import { witnessClaimNeeded } from "../../src/policy/takeover.ts";
import { witnessFenceMarginMs, witnessRenewMs } from "../../src/policy/witness.ts";
import { stamp } from "../arbitraries.ts";

// stamp() dates the first event at 1_000_000 and each next one 100 ms later.
const T0 = 1_000_000;
const created: DuetEvent = { type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "unconditional", reverseWhenConsistent: false, restartMax: 2, resources: [{ name: "ip", kind: "vip" }], mirrors: [] } };
const started = (node: string): DuetEvent => ({ type: "AgentStarted", data: { node, version: "t", pid: 1, configHash: "h", heartbeatIntervalMs: 500, suspectMs: 1000, deadtimeMs: 3000, pingTimeoutMs: 500, selfFenceGraceMs: 5000, links: [] } });
const lease = (node: string, state: "granting" | "held" | "renew-failing" | "expired", validUntil?: number, unreachable: "self-fence" | "keep-running" = "self-fence"): DuetEvent => ({ type: "WitnessLease", data: { node, state, leaseId: "7", ttlMs: 10_000, unreachable, ...(validUntil === undefined ? {} : { validUntil }) } });
const peerSeen = (node: string, peer: string): DuetEvent => ({ type: "PeerSeen", data: { node, peer } });
const broughtIn = (node: string): DuetEvent => ({ type: "JobBroughtIn", data: { job: "web", node } });
const lost: DuetEvent = { type: "PeerLost", data: { node: "b", peer: "a", lastHeardAt: T0, deadtimeMs: 3000 } };
const confirmed: DuetEvent = { type: "TiebreakerResult", data: { node: "b", peer: "a", method: "ping", purpose: "peer-lost", verdict: "confirmed", targets: [{ target: "10.0.0.254", ok: true }] } };
const claim = (won: boolean, extra: { holder?: string | null; holderTtlMs?: number; error?: string; purpose?: "takeover" | "start" | "renew"; node?: string } = {}): DuetEvent => ({
  type: "WitnessClaimed",
  data: { node: extra.node ?? "b", job: "web", purpose: extra.purpose ?? "takeover", won, holder: extra.holder === undefined ? (won ? "b" : "a") : extra.holder, revision: 42, ...(extra.holderTtlMs === undefined ? {} : { holderTtlMs: extra.holderTtlMs }), ...(extra.error === undefined ? {} : { error: extra.error }) },
});

function scene(self: string, ...events: DuetEvent[]) {
  const recorded = stamp(events, self);
  const state = projectCluster(self, recorded);
  const last = recorded.at(-1)!.at;
  return { state, last, at: (ms: number) => decide(state, last + ms), claims: (ms: number) => witnessClaimNeeded(state, last + ms) };
}

describe("the standby's takeover with a witness", () => {
  const standby = [created, started("b"), lease("b", "granting"), lease("b", "held", T0 + 10_000), peerSeen("b", "a"), broughtIn("a"), lost, confirmed];

  it("asks for the key at once (no wait for the peer's self-fence), and decides nothing before the answer", () => {
    const s = scene("b", ...standby);
    expect(s.claims(1)).toEqual(["web"]);
    expect(s.at(1)).toEqual([]);
  });

  it("without a witness the same standby waits for the peer's self-fence window instead", () => {
    const s = scene("b", created, started("b"), peerSeen("b", "a"), broughtIn("a"), lost, confirmed);
    expect(s.claims(1)).toEqual([]);
    expect(s.at(1)).toEqual([]);
    expect(s.at(60_000)[0]).toMatchObject({ kind: "takeover" });
  });

  it("takes over once it won the key, with the key's revision among its reasons", () => {
    const [d] = scene("b", ...standby, claim(true)).at(1);
    expect(d).toMatchObject({ kind: "takeover", to: "b" });
    expect(d!.reasons).toContainEqual({ name: "witness-key-won", ok: true, value: expect.objectContaining({ won: true, revision: 42 }) });
  });

  it("under keep-running the key is not proof enough: the peer may run past its lease while it heard this node, so the self-fence wait applies too", () => {
    const keep = [created, started("b"), lease("b", "granting"), lease("b", "held", T0 + 10_000, "keep-running"), peerSeen("b", "a"), broughtIn("a"), lost, confirmed, claim(true)];
    const s = scene("b", ...keep);
    expect(s.at(1)).toEqual([]);
    expect(s.at(60_000)[0]).toMatchObject({ kind: "takeover" });
  });

  it("declines while the peer holds the key, once; asks again when the peer's lease may have run out", () => {
    const held = scene("b", ...standby, claim(false, { holderTtlMs: 4000 }));
    const [d] = held.at(1);
    expect(d).toMatchObject({ kind: "decline", code: "witness-held-by-peer" });
    expect(held.claims(1)).toEqual([]);
    expect(held.claims(4099)).toEqual([]);
    expect(held.claims(4100)).toEqual(["web"]); // the holder's TTL, and 100 ms for etcd to revoke it
    const declined: DuetEvent = { type: "TakeoverDeclined", data: { job: "web", by: "b", from: "a", policy: "unconditional", code: "witness-held-by-peer", reasons: [] } };
    const after = scene("b", ...standby, claim(false, { holderTtlMs: 4000 }), declined);
    expect(after.at(1)).toEqual([]);
    expect(after.claims(3999)).toEqual([]);
    expect(after.claims(4000)).toEqual(["web"]); // the claim was 100 ms before the decline
    // The answer that came next: won, so it takes over.
    expect(scene("b", ...standby, claim(false, { holderTtlMs: 4000 }), declined, claim(true)).at(1)[0]).toMatchObject({ kind: "takeover" });
  });

  it("a witness that did not answer is a decline too (no key, no start), asked again a second later", () => {
    const s = scene("b", ...standby, claim(false, { holder: null, error: "no answer within 2500 ms" }));
    expect(s.at(1)[0]).toMatchObject({ kind: "decline", code: "witness-unreachable" });
    expect(s.claims(500)).toEqual([]);
    expect(s.claims(1000)).toEqual(["web"]);
  });

  it("a claim made before this loss's verdict does not count", () => {
    const s = scene("b", created, started("b"), lease("b", "held", T0 + 10_000), peerSeen("b", "a"), broughtIn("a"), claim(true), lost, confirmed);
    expect(s.at(1)).toEqual([]);
    expect(s.claims(1)).toEqual(["web"]);
  });

  it("the other checks still hold first: an isolated standby never asks for the key", () => {
    const isolated: DuetEvent = { type: "TiebreakerResult", data: { node: "b", peer: "a", method: "ping", purpose: "peer-lost", verdict: "isolated", targets: [{ target: "10.0.0.254", ok: false }] } };
    const s = scene("b", created, started("b"), lease("b", "held", T0 + 10_000), peerSeen("b", "a"), broughtIn("a"), lost, isolated);
    expect(s.claims(1)).toEqual([]);
    expect(s.at(1)[0]).toMatchObject({ kind: "decline", code: "i-am-isolated" });
  });
});

describe("the standby on a suspicion, with a witness", () => {
  const suspected: DuetEvent = { type: "PeerSuspected", data: { node: "b", peer: "a", lastHeardAt: T0, suspectMs: 1000 } };
  const looked: DuetEvent = { type: "TiebreakerResult", data: { node: "b", peer: "a", method: "ping", purpose: "peer-lost", verdict: "confirmed", targets: [{ target: "10.0.0.254", ok: true }], peerOnNetwork: [{ interface: "eth0", address: "10.0.0.100", answered: false }] } };
  const base = [created, started("b"), lease("b", "granting"), lease("b", "held", T0 + 10_000), peerSeen("b", "a"), broughtIn("a"), suspected];

  it("asks the whole tiebreaker but the fence at once, then the key; without a witness it waits for the loss", () => {
    expect(tiebreakerNeeded(scene("b", ...base).state)).toBe("peer-suspected");
    expect(scene("b", ...base, looked).claims(1)).toEqual(["web"]);
    const plain = scene("b", created, started("b"), peerSeen("b", "a"), broughtIn("a"), suspected);
    expect(tiebreakerNeeded(plain.state)).toBeNull();
  });

  it("takes over on the key alone, before the deadtime", () => {
    expect(scene("b", ...base, looked, claim(true)).at(1)[0]).toMatchObject({ kind: "takeover", to: "b" });
  });

  it("a refused key, or a policy that would decline, journals nothing while the peer is only suspected", () => {
    expect(scene("b", ...base, looked, claim(false, { holderTtlMs: 3000 })).at(1)).toEqual([]);
    const manual: DuetEvent = { ...created, data: { ...(created.data as object), policy: "manual" } } as DuetEvent;
    const s = scene("b", manual, ...base.slice(1), looked);
    expect(s.at(1)).toEqual([]);
    expect(s.claims(1)).toEqual([]);
  });
});

describe("the active's lease", () => {
  const active = (...more: DuetEvent[]) => scene("a", created, started("a"), lease("a", "granting"), lease("a", "held", T0 + 10_000), peerSeen("a", "b"), broughtIn("a"), ...more);

  it("held: nothing to do", () => {
    expect(active().at(60_000)).toEqual([]);
  });

  const silent: DuetEvent = { type: "PeerSuspected", data: { node: "a", peer: "b", lastHeardAt: T0, suspectMs: 1000 } };

  it("renewals failing, the peer silent: fences before the lease can have expired, by the margin, not later", () => {
    const validUntil = T0 + 20_000;
    const s = active(silent, lease("a", "renew-failing", validUntil));
    const fenceAt = validUntil - witnessFenceMarginMs(10_000);
    expect(s.at(fenceAt - s.last - 1)).toEqual([]);
    const [d] = s.at(fenceAt - s.last);
    expect(d).toMatchObject({ kind: "self-fence", code: "witness-lease-lost" });
    expect(witnessFenceMarginMs(10_000)).toBe(1000);
  });

  it("renewals failing, the peer connected: the job moves there a renewal period before the fence would be due", () => {
    const validUntil = T0 + 20_000;
    const s = active(lease("a", "renew-failing", validUntil));
    const moveAt = validUntil - witnessFenceMarginMs(10_000) - witnessRenewMs(10_000);
    expect(s.at(moveAt - s.last - 1)).toEqual([]);
    const [d] = s.at(moveAt - s.last);
    expect(d).toMatchObject({ kind: "failover", code: "witness-lost", to: "b" });
    // Decided once: after it, the fence still comes by its deadline if the job has not moved.
    const moved: DuetEvent = { type: "FailoverDecided", data: { job: "web", from: "a", to: "b", cause: "witness-lost", reasons: [] } };
    const after = active(lease("a", "renew-failing", validUntil), moved);
    expect(after.at(1)).toEqual([]);
    expect(after.at(validUntil - witnessFenceMarginMs(10_000) - after.last)[0]).toMatchObject({ kind: "self-fence", code: "witness-lease-lost" });
  });

  it("expired (etcd no longer has it), the peer silent: fenced at once", () => {
    expect(active(silent, lease("a", "expired", 0)).at(0)[0]).toMatchObject({ kind: "self-fence", code: "witness-lease-lost" });
  });

  it("keep-running: the job stays while the peer is heard, and is fenced once it is not", () => {
    const s = active(lease("a", "expired", 0, "keep-running"));
    expect(s.at(60_000)).toEqual([]);
    const suspected: DuetEvent = { type: "PeerSuspected", data: { node: "a", peer: "b", lastHeardAt: T0, suspectMs: 1000 } };
    expect(active(lease("a", "expired", 0, "keep-running"), suspected).at(0)[0]).toMatchObject({ kind: "self-fence", code: "witness-lease-lost" });
  });

  it("a key asked for again under a new lease and found with the peer: fenced at once", () => {
    const [d] = active(claim(false, { node: "a", holder: "b", purpose: "renew" })).at(0);
    expect(d).toMatchObject({ kind: "self-fence", code: "witness-held-by-peer" });
  });

  it("a restart without a witness configured forgets the old lease", () => {
    const s = scene("a", created, started("a"), lease("a", "expired", 0), started("a"), peerSeen("a", "b"), broughtIn("a"));
    expect(s.state.membership.witness).toBeNull();
    expect(s.at(60_000)).toEqual([]);
  });
});
