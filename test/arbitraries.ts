import fc from "fast-check";
import type { DuetEvent, Recorded } from "../src/events/catalogue.ts";
import { validateEvent } from "../src/events/catalogue.ts";

/** Names a user might choose, including the ones that break naive object-keyed code. */
export const nameArb = fc.oneof(fc.constantFrom("a", "b", "web", "__proto__", "constructor", "toString", "ü-db"), fc.string({ minLength: 1, maxLength: 8 }));
const nodes = ["a", "b"] as const;
const nodeArb = fc.constantFrom(...nodes);
const jobArb = fc.constantFrom("web", "__proto__", "db");
const resourceArb = fc.constantFrom("ip", "app", "nic", "constructor");
const linkArb = fc.constantFrom("udp0", "udp1", "tcp");
const gen = fc.constantFrom("0123456789abcdef", "fedcba9876543210", "00000000000000aa");
const count = fc.integer({ min: 1, max: 20 });

/** Valid events of the types the projections and policy react to, for a two-node pair. */
export const eventArb: fc.Arbitrary<DuetEvent> = fc
  .oneof(
    fc.record({ type: fc.constant("AgentStarted"), data: fc.record({ node: nodeArb, version: fc.constant("0.1.0"), pid: fc.nat(), configHash: fc.constant("h"), heartbeatIntervalMs: fc.constant(500), suspectMs: fc.constantFrom(1000, 3000), deadtimeMs: fc.constant(3000), pingTimeoutMs: fc.constantFrom(500, 1000), selfFenceGraceMs: fc.constantFrom(0, 5000), links: fc.constantFrom([], [{ link: "lan", kind: "udp" as const }, { link: "tcp", kind: "tcp" as const }]) }) }),
    fc.record({
      type: fc.constant("JobCreated"),
      data: fc.record({
        job: jobArb,
        nodes: fc.constant(["a", "b"] as [string, string]),
        policy: fc.constantFrom("manual", "when-consistent", "allow-difference", "unconditional" as const),
        reverseWhenConsistent: fc.boolean(),
        restartMax: fc.integer({ min: 0, max: 3 }),
        resources: fc.constant([{ name: "ip", kind: "vip" as const }, { name: "app", kind: "process" as const }, { name: "nic", kind: "nic" as const }]),
        mirrors: fc.constantFrom([], ["/srv/data"]),
      }),
    }),
    fc.record({ type: fc.constantFrom("LinkUp", "LinkDown"), data: fc.record({ node: nodeArb, peer: nodeArb, link: linkArb, kind: fc.constantFrom("udp", "tcp" as const), lastHeardAt: fc.nat() }) }).map((e) =>
      e.type === "LinkUp" ? { type: e.type, data: { node: e.data.node, peer: e.data.peer, link: e.data.link, kind: e.data.kind } } : e,
    ),
    fc.record({ type: fc.constant("PeerLost"), data: fc.record({ node: nodeArb, peer: nodeArb, lastHeardAt: fc.nat(), deadtimeMs: fc.constant(3000) }) }),
    fc.record({ type: fc.constant("PeerSeen"), data: fc.record({ node: nodeArb, peer: nodeArb }) }),
    fc.record({ type: fc.constant("TiebreakerResult"), data: fc.record({ node: nodeArb, peer: nodeArb, method: fc.constantFrom("ping", "fence" as const), verdict: fc.constantFrom("confirmed", "isolated", "peer-alive", "failed" as const), targets: fc.constant([]) }) }),
    fc.record({ type: fc.constantFrom("BringInRequested"), data: fc.record({ job: jobArb, on: nodeArb, by: nameArb }) }),
    fc.record({ type: fc.constantFrom("JobBroughtIn", "JobBroughtOut"), data: fc.record({ job: jobArb, node: nodeArb }) }),
    fc.record({ type: fc.constant("MonitorFailed"), data: fc.record({ job: jobArb, node: nodeArb, resource: resourceArb, error: fc.constant("down"), failures: count }) }),
    fc.record({ type: fc.constantFrom("ResourceStarted", "ResourceStopped"), data: fc.record({ job: jobArb, node: nodeArb, resource: resourceArb }) }),
    fc.record({ type: fc.constant("BatchCaptured"), data: fc.record({ job: jobArb, node: nodeArb, batch: count, generation: gen, ops: fc.constant([]), bytes: fc.nat({ max: 1 << 20 }), sha256: fc.constant("0".repeat(64)) }) }),
    fc.record({ type: fc.constant("BatchApplied"), data: fc.record({ job: jobArb, node: nodeArb, batch: count, generation: gen }) }),
    fc.record({ type: fc.constant("VerificationStarted"), data: fc.record({ job: jobArb, node: nodeArb, files: fc.nat(), bytes: fc.nat() }) }),
    fc.record({ type: fc.constant("VerificationCompleted"), data: fc.record({ job: jobArb, node: nodeArb, differingBlocks: fc.nat(), shippedBytes: fc.nat() }) }),
    fc.record({ type: fc.constant("DivergenceDetected"), data: fc.record({ job: jobArb, node: nodeArb, local: gen, peer: gen, commonAncestor: fc.constant(null) }) }),
    fc.record({ type: fc.constant("SourceSelected"), data: fc.record({ job: jobArb, from: nodeArb, by: nameArb, force: fc.boolean(), keptSnapshot: fc.constant(null), losingPaths: fc.nat() }) }),
    fc.record({ type: fc.constant("TakeoverDeclined"), data: fc.record({ job: jobArb, by: nodeArb, from: nodeArb, policy: fc.constant("manual" as const), code: fc.constant("policy-manual"), reasons: fc.constant([]) }) }),
  )
  .map((e) => validateEvent(e.type, e.data));

/** Events stamped as a journal would: contiguous seqs, non-decreasing times, all on node `self`. */
export function recordedArb(self = "a", maxLength = 60): fc.Arbitrary<Recorded[]> {
  return fc.array(fc.tuple(eventArb, fc.integer({ min: 0, max: 4000 })), { maxLength }).map((items) => {
    let at = 1_000_000;
    return items.map(([event, step], i) => {
      at += step;
      return { ...event, seq: i + 1, at, hlc: [at, 0] as const, node: self } as Recorded;
    });
  });
}

/** Stamps hand-written events for given/when/then tests. */
export function stamp(events: DuetEvent[], self = "a", start = 1_000_000, stepMs = 100): Recorded[] {
  return events.map((event, i) => {
    const checked = validateEvent(event.type, event.data);
    return { ...checked, seq: i + 1, at: start + i * stepMs, hlc: [start + i * stepMs, 0] as const, node: self } as Recorded;
  });
}
