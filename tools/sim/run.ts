import type { Recorded } from "../../src/events/catalogue.ts";
import { seededRandom } from "../../src/world/sim.ts";
import { describe, explainJournals } from "../replay/explain.ts";
import { NODES, startSimPair, VIP, type Node, type SimWitnessConfig } from "./pair.ts";

/**
 * One seed of the simulator: two real agents, a seeded schedule of faults (sometimes two at once),
 * and the invariants checked at every 5 ms step and at the end. The same seed runs the same
 * schedule again.
 */
export const FAULT_KINDS = ["split", "isolate", "one-way", "app-crash", "switchover", "pause", "host-crash", "agent-crash", "nic-down", "loss", "bring-out", "bring-in"] as const;
/** With a witness, also: a node cut from etcd alone (it keeps the gateway), and etcd down for both. */
export const WITNESS_FAULT_KINDS = [...FAULT_KINDS, "etcd-cut", "etcd-down"] as const;
export type FaultKind = (typeof WITNESS_FAULT_KINDS)[number];

/** The faults run for this long, then everything heals and the pair must settle within SETTLE_MS. */
export const FAULT_PHASE_MS = 30_000;
export const SETTLE_MS = 30_000;
/**
 * A cut that hides the nodes from each other while both still reach the gateway (all of it, or
 * one way) leaves each unable to tell the other's death from the cut: without a witness both
 * may run the job until the cut heals (with one, never). So does a node that cannot let go (paused, or
 * its agent dead while its host holds the job) hidden from its peer even by ARP: it looks dead.
 * That overlap is allowed while such a state lasts and for this long after it ends (the
 * both-active resolution, the woken node's stall check); a frozen node extends it until this long
 * after it wakes. Any other overlap is a violation.
 */
export const RESOLVE_AFTER_HEAL_MS = 5000;
/** The share of seeds whose faults may overlap, and how likely a second fault is then. */
const STACK_CHANCE = 0.35;
/** The datagram loss a seed runs with all along, at most (its "loss" faults raise it for a while). */
const BASE_LOSS_MAX = 0.05;

export interface SeedResult {
  seed: number;
  virtualMs: number;
  faults: Partial<Record<FaultKind, number>>;
  checks: number;
  violations: string[];
  /** For a failing seed: the faults as they were injected and both journals' story, in time order. */
  story: string[];
}

type Pair = Awaited<ReturnType<typeof startSimPair>>;
/** A fault in force: what it holds (a node, the network) and how it ends. */
interface Active {
  kind: FaultKind;
  node: Node;
  startedAt: number;
  endAt: number;
  /** No other fault began while this one lasted. */
  alone: boolean;
  /** The node the job ran on when the fault began (both journals agreeing), or null. */
  ranOn: Node | null;
  end(): Promise<void> | void;
}

/**
 * A public NIC that failed, or a host that crashed, alone on the node running the job: within
 * this long the job must be served by the other node (a NIC: the monitor's interval, the failover
 * through the peer channel on the backup link, the start there; a host: the deadtime, the
 * tiebreaker and the self-fence grace the standby waits for, the start).
 */
export const FAILOVER_WITHIN_MS = 8000;

/** The fault A, ending now, left the job unserved where the other node could serve it. */
function failoverMissed(pair: Pair, a: Active, now: number): string | null {
  // etcd lost by the active alone, under unreachable: self-fence: the job moves to the peer.
  const movesOnEtcd = a.kind === "etcd-cut" && pair.witnessConfig?.unreachable === "self-fence";
  if ((a.kind !== "nic-down" && a.kind !== "host-crash" && !movesOnEtcd) || !a.alone || a.ranOn !== a.node || now - a.startedAt < FAILOVER_WITHIN_MS) return null;
  const other = NODES.find((n) => n !== a.node)!;
  if (pair.hosts.holders(VIP).join() === other && pair.hosts.running("web").join() === other) return null;
  const what = a.kind === "nic-down" ? `${a.node}'s public NIC failed` : a.kind === "etcd-cut" ? `${a.node} lost etcd` : `${a.node}'s host crashed`;
  return `availability: ${what} at ${Math.round(a.startedAt)} ms while it ran the job, and ${Math.round(now - a.startedAt)} ms later the job was not served by ${other} (VIP on [${pair.hosts.holders(VIP).join(", ")}], application on [${pair.hosts.running("web").join(", ")}])`;
}

/** What a fault on NODE needs to be free: one cut at a time, one state per node, one loss. */
function blocks(active: readonly Active[], kind: FaultKind, node: Node): boolean {
  const cuts: FaultKind[] = ["split", "isolate", "one-way", "etcd-cut"];
  const holdsNode: FaultKind[] = ["pause", "host-crash", "agent-crash"];
  return active.some(
    (a) =>
      (cuts.includes(a.kind) && cuts.includes(kind)) ||
      (a.kind === kind && (kind === "loss" || a.node === node)) ||
      (a.node === node && holdsNode.includes(a.kind) && holdsNode.includes(kind)) ||
      // an operator works on the job while it is brought out: the bring-out ends with a bring-in
      (a.kind === "bring-out" && (kind === "bring-out" || kind === "bring-in")),
  );
}

/** The overlap rule above, fed after every step. */
function overlapJudge(pair: Pair, now: () => number) {
  let allowedAt = -Infinity;
  let excused = false;
  let wokeAt = -Infinity;
  const frozen = new Set<Node>();
  return {
    freeze: (node: Node) => void frozen.add(node),
    wake(node: Node) {
      if (frozen.delete(node)) wokeAt = now();
    },
    /** null, or why the overlap now is not allowed. */
    judge(): string | null {
      // A node that cannot let go (frozen), hidden from its peer even by ARP, looks dead to it:
      // the peer takes over, and both hold the job until the frozen one wakes (its stall check).
      // With a witness the cut excuses nothing: the lease decides who may run the job.
      const hidden = pair.witnessConfig === null && pair.hiddenFromEachOther();
      if (hidden || (frozen.size > 0 && pair.cutOff())) allowedAt = now();
      const holders = pair.hosts.holders(VIP);
      const running = pair.hosts.running("web");
      if (holders.length <= 1 && running.length <= 1) {
        excused = false;
        return null;
      }
      if (now() - allowedAt <= RESOLVE_AFTER_HEAL_MS) excused = true;
      if (excused && (now() - allowedAt <= RESOLVE_AFTER_HEAL_MS || frozen.size > 0 || now() - wokeAt <= RESOLVE_AFTER_HEAL_MS)) return null;
      const last = allowedAt === -Infinity ? "none before" : `the last ended ${Math.round(now() - allowedAt)} ms before`;
      return `at ${Math.round(now())} ms: the VIP on ${holders.join(" and ") || "none"}, the application on ${running.join(" and ") || "none"}, with no cut hiding the nodes from each other (${last})`;
    },
  };
}

export interface SeedOptions {
  story?: boolean;
  /** A witness (etcd at the gateway) for the pair: a split no longer excuses two actives. */
  witness?: SimWitnessConfig | null;
}

export async function runSeed(seed: number, kinds: readonly FaultKind[] = FAULT_KINDS, options: SeedOptions = {}): Promise<SeedResult> {
  if (!options.witness && kinds.some((k) => k === "etcd-cut" || k === "etcd-down")) throw new Error("the etcd faults need a witness (--witness)");
  const random = seededRandom(seed ^ 0x5eed);
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const pair = await startSimPair(seed, { witness: options.witness ?? null });
  const faults: SeedResult["faults"] = {};
  const violations: string[] = [];
  let checks = 0;
  const now = () => pair.world.clock.monotonic();
  const judge = overlapJudge(pair, now);
  const check = () => {
    checks++;
    const violation = judge.judge();
    if (violation && violations.length < 5) violations.push(violation);
  };
  const injected: { at: number; text: string }[] = [];
  const note = (text: string) => {
    injected.push({ at: now(), text });
    if (process.env.DUET_SIM_LOG) process.stderr.write(`${JSON.stringify({ vt: now(), sim: text })}\n`);
  };
  const stacking = random() < STACK_CHANCE;
  const baseLoss = random() < 0.5 ? 0 : random() * BASE_LOSS_MAX;
  pair.setDropRate(baseLoss);
  const active: Active[] = [];
  try {
    await pair.run(1500, check);
    await pair.agent(pick(NODES)).control.bringIn("web", "sim", pick(NODES)).catch(() => undefined);
    const end = now() + FAULT_PHASE_MS;
    let nextStartAt = now() + gap(random);
    while (now() < end) {
      const target = Math.min(nextStartAt, end, ...active.map((a) => a.endAt));
      await pair.run(Math.max(0, target - now()), check);
      for (const a of active.filter((x) => x.endAt <= now())) {
        active.splice(active.indexOf(a), 1);
        const missed = failoverMissed(pair, a, now());
        if (missed && violations.length < 5) violations.push(missed);
        note(`FAULT ${a.kind} (${a.node}) ends`);
        await a.end();
      }
      if (now() < nextStartAt) continue;
      nextStartAt = now() + gap(random);
      if (active.length > (stacking ? 1 : 0) || (active.length === 1 && random() > 0.5)) continue;
      const kind = pick(kinds);
      const node = pick(NODES);
      if (blocks(active, kind, node)) continue;
      faults[kind] = (faults[kind] ?? 0) + 1;
      note(`FAULT ${kind} (${node})`);
      const ranOn = runsOn(pair);
      const ends = await inject(pair, kind, node, { judge, random, pick, baseLoss });
      for (const a of active) a.alone = false;
      if (ends) active.push({ kind, node, startedAt: now(), endAt: now() + duration(random), alone: active.length === 0, ranOn, end: ends });
    }
    for (const a of active.splice(0)) {
      note(`FAULT ${a.kind} (${a.node}) ends`);
      await a.end();
    }
    note("the faults end; the pair settles");
    await pair.run(SETTLE_MS / 2, check);
    await bringInIfOut(pair, pick, note);
    await pair.run(SETTLE_MS / 2, check);
    violations.push(...liveness(pair), ...(await replayed(pair)));
  } catch (error) {
    violations.push(`the run failed: ${(error as Error).stack ?? String(error)}`);
  }
  const story = violations.length > 0 || options.story ? await storyOf(pair, injected) : [];
  await pair.close().catch((error: Error) => violations.push(`closing failed: ${error.message}`));
  return { seed, virtualMs: FAULT_PHASE_MS + SETTLE_MS + 1500, faults, checks, violations, story };
}

/** Where both journals say the job runs, if they agree and it does. */
function runsOn(pair: Pair): Node | null {
  if (NODES.some((n) => !pair.answers(n))) return null;
  const [a, b] = NODES.map((n) => pair.job(n));
  return a!.phase === "in" && b!.phase === "in" && a!.active === b!.active ? (a!.active as Node | null) : null;
}

/** Time to the next fault: often within the suspicion time of the last, often after a quiet spell. */
const gap = (random: () => number) => 300 + Math.floor(random() * 3500);
/** Short faults (under the suspicion time) and long ones (past the deadtime and the tiebreaker), half and half. */
const duration = (random: () => number) => (random() < 0.5 ? 200 + Math.floor(random() * 1500) : 3000 + Math.floor(random() * 6000));

interface InjectTools {
  judge: ReturnType<typeof overlapJudge>;
  random: () => number;
  pick: <T>(items: readonly T[]) => T;
  baseLoss: number;
}

/** Starts fault KIND on NODE; returns how it ends, or null for a fault that is over at once. */
async function inject(pair: Pair, kind: FaultKind, node: Node, tools: InjectTools): Promise<(() => Promise<void> | void) | null> {
  const { judge, random, pick } = tools;
  const up = NODES.filter((n) => !pair.isDown(n));
  // An operator reaches an agent that answers: a paused or dead one's API does not.
  const operator = (fn: (n: Node) => Promise<unknown>) => {
    const answering = NODES.filter((n) => pair.answers(n));
    const at = answering.includes(node) ? node : answering[0];
    if (at) void fn(at).catch(() => undefined); // a refusal is an answer too; it takes virtual time
  };
  switch (kind) {
    case "split":
      pair.split();
      return () => pair.heal();
    case "one-way":
      pair.cutOneWay(node);
      return () => pair.heal();
    case "isolate":
      pair.isolate(node);
      return () => pair.heal();
    case "pause":
      pair.pause(node);
      judge.freeze(node);
      return () => {
        pair.resume(node);
        judge.wake(node);
      };
    case "host-crash":
    case "agent-crash":
      if (pair.isDown(node)) return null;
      // A dead agent whose host still holds the job cannot let it go, as a paused one cannot.
      if (kind === "agent-crash") judge.freeze(node);
      await pair.crash(node, { host: kind === "host-crash" });
      return async () => {
        await pair.restart(node);
        judge.wake(node);
      };
    case "etcd-cut":
      pair.cutFromWitness(node);
      return () => pair.heal();
    case "etcd-down":
      pair.witness.setDown(true);
      return () => pair.witness.setDown(false);
    case "nic-down":
      pair.setNic(node, false);
      return () => pair.setNic(node, true);
    case "loss":
      pair.setDropRate(0.3 + random() * 0.65);
      return () => pair.setDropRate(tools.baseLoss);
    case "app-crash": {
      const active = up.length > 0 ? pair.job(up[0]!).active : null;
      if (active) pair.hosts.crashApp(active, "web");
      return null;
    }
    case "switchover":
      operator((n) => pair.agent(n).control.switchover("web", "sim"));
      return null;
    case "bring-in":
      operator((n) => pair.agent(n).control.bringIn("web", "sim", pick(NODES), random() < 0.3));
      return null;
    case "bring-out":
      operator((n) => pair.agent(n).control.bringOut("web", "sim"));
      return () => {
        const back = NODES.filter((n) => pair.answers(n));
        if (back.length > 0) void pair.agent(pick(back)).control.bringIn("web", "sim", pick(NODES)).catch(() => undefined);
      };
  }
}

/**
 * After the faults an operator brings in a job that runs nowhere and that a node says is out (a
 * bring-out, or a refused bring-in, left it so; the other may still say its start failed, having
 * missed the bring-out during a cut: sim seed 830 with a witness). A job both nodes say failed is
 * the policy's to try again, not the operator's.
 */
async function bringInIfOut(pair: Pair, pick: InjectTools["pick"], note: (text: string) => void): Promise<void> {
  const phases = NODES.map((n) => pair.job(n).phase);
  if (!phases.every((p) => p === "out" || p === "failed") || !phases.includes("out")) return;
  // Every fault has ended: both agents answer.
  const on = pick(NODES);
  note(`the operator brings web in on ${on}`);
  await pair.agent(on).control.bringIn("web", "sim", on).catch((error: Error) => note(`refused: ${error.message}`));
}

async function journalsOf(pair: Pair) {
  return Promise.all(
    NODES.map(async (node: Node) => {
      const events: Recorded[] = [];
      for await (const r of pair.agent(node).journal.read()) events.push(r);
      return { node, events };
    }),
  );
}

/** The injected faults and every described fact of both journals, by virtual time. */
async function storyOf(pair: Pair, injected: { at: number; text: string }[]): Promise<string[]> {
  const t0 = pair.world.clock.now() - pair.world.clock.monotonic();
  const all = process.env.DUET_SIM_ALL_FACTS === "1";
  const text = (r: Recorded) => describe(r) ?? (all ? `${r.type} ${JSON.stringify(r.data).slice(0, 300)}` : null);
  const facts = (await journalsOf(pair)).flatMap(({ node, events }) => events.flatMap((r) => (text(r) ? [{ at: r.at - t0, text: `[${node}] ${text(r)}` }] : [])));
  return [...injected, ...facts].sort((x, y) => x.at - y.at).map((x) => `${String(Math.round(x.at)).padStart(6)} ms  ${x.text}`);
}

/** After the faults: the job runs on exactly one node, and both journals say which. */
function liveness(pair: Pair): string[] {
  const holders = pair.hosts.holders(VIP);
  const running = pair.hosts.running("web");
  const views = NODES.map((n) => pair.job(n));
  const out: string[] = [];
  if (holders.length !== 1 || running.length !== 1) out.push(`liveness: ${SETTLE_MS} ms after the last fault the VIP is on [${holders.join(", ")}] and the application on [${running.join(", ")}]`);
  else if (views.some((v) => v.active !== holders[0] || v.phase !== "in")) out.push(`liveness: the job runs on ${holders[0]} but the journals say ${views.map((v, i) => `${NODES[i]}: ${v.phase} on ${v.active}`).join(", ")}`);
  return out;
}

/** Every automatic decision of both journals re-derived by replay at its basis. */
async function replayed(pair: Pair): Promise<string[]> {
  return explainJournals(await journalsOf(pair))
    .filter((e) => !e.recheck.matches || !e.recheck.exact)
    .map((e) => `replay: ${e.kind} (${e.code}) of ${e.job} on ${e.node} at seq ${e.seq} ${e.recheck.matches ? "re-checked only approximately" : `does not follow: replayed ${e.recheck.replayed ? `${e.recheck.replayed.kind} (${e.recheck.replayed.code})` : "no decision"}${e.recheck.note ? ` (${e.recheck.note})` : ""}`}`);
}
