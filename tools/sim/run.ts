import type { Recorded } from "../../src/events/catalogue.ts";
import { seededRandom } from "../../src/world/sim.ts";
import { describe, explainJournals } from "../replay/explain.ts";
import { NODES, startSimPair, VIP, type Node } from "./pair.ts";

/**
 * One seed of the simulator: two real agents, a seeded schedule of faults, and the invariants
 * checked at every 5 ms step and at the end. The same seed runs the same schedule again.
 */
export const FAULT_KINDS = ["split", "isolate", "one-way", "app-crash", "switchover", "pause"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The faults run for this long, then the network heals and the pair must settle within SETTLE_MS. */
export const FAULT_PHASE_MS = 30_000;
export const SETTLE_MS = 30_000;
/**
 * A cut that hides the nodes from each other while both still reach the gateway (all of it, or
 * one way) leaves each unable to tell the other's death from the cut: without a witness (issue
 * 18) both may run the job until the cut heals. That overlap is allowed while such a cut is in
 * force and for this long after it heals (the both-active resolution), a window that a pause of
 * either node during it extends to the pause's end (a stopped agent cannot let go); any other
 * overlap is a violation.
 */
export const RESOLVE_AFTER_HEAL_MS = 5000;

export interface SeedResult {
  seed: number;
  virtualMs: number;
  faults: Partial<Record<FaultKind, number>>;
  checks: number;
  violations: string[];
  /** For a failing seed: the faults as they were injected and both journals' story, in time order. */
  story: string[];
}

export async function runSeed(seed: number, kinds: readonly FaultKind[] = FAULT_KINDS): Promise<SeedResult> {
  const random = seededRandom(seed ^ 0x5eed);
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const pair = await startSimPair(seed);
  const faults: SeedResult["faults"] = {};
  const violations: string[] = [];
  let checks = 0;
  const now = () => pair.world.clock.monotonic();
  /** Since when a hiding cut has been in force (null: none), and when the last one healed. */
  let hidingSince: number | null = null;
  let hidingHealedAt = -Infinity;
  /** A pause began while an overlap was allowed: it stays allowed until the node wakes. */
  let pausedUnresolved = false;
  const check = () => {
    checks++;
    const holders = pair.hosts.holders(VIP);
    const running = pair.hosts.running("web");
    if (holders.length <= 1 && running.length <= 1) return;
    if (hidingSince !== null || pausedUnresolved || now() - hidingHealedAt <= RESOLVE_AFTER_HEAL_MS) return;
    if (violations.length < 5) violations.push(`at ${now()} ms: the VIP on ${holders.join(" and ") || "none"}, the application on ${running.join(" and ") || "none"}, with no cut hiding the nodes from each other (the last healed ${Math.round(now() - hidingHealedAt)} ms before)`);
  };
  const injected: { at: number; text: string }[] = [];
  const count = (kind: FaultKind, node: string) => {
    faults[kind] = (faults[kind] ?? 0) + 1;
    injected.push({ at: now(), text: `FAULT ${kind} (${node})` });
  };
  try {
    await pair.run(1500, check);
    await pair.agent(pick(NODES)).control.bringIn("web", "sim", pick(NODES)).catch(() => undefined);
    let cut: (() => void) | null = null;
    const end = now() + FAULT_PHASE_MS;
    while (now() < end) {
      // Short faults (under the suspicion time) and long ones (past the deadtime and the
      // tiebreaker, when the standby decides), half and half.
      await pair.run(random() < 0.5 ? 200 + Math.floor(random() * 1500) : 3000 + Math.floor(random() * 6000), check);
      if (cut) {
        cut();
        cut = null;
        injected.push({ at: now(), text: "FAULT ends" });
        continue;
      }
      const kind = pick(kinds);
      const node = pick(NODES);
      count(kind, node);
      if (kind === "split" || kind === "one-way") {
        if (kind === "split") pair.split();
        else pair.cutOneWay(node);
        hidingSince = now();
        cut = () => {
          pair.heal();
          hidingSince = null;
          hidingHealedAt = now();
        };
      } else if (kind === "isolate") {
        pair.isolate(node);
        cut = () => pair.heal();
      } else if (kind === "pause") {
        pair.pause(node);
        // A node paused before it could resolve an overlap holds its address until it wakes.
        pausedUnresolved = hidingSince !== null || now() - hidingHealedAt <= RESOLVE_AFTER_HEAL_MS;
        cut = () => {
          pair.resume(node);
          if (pausedUnresolved) hidingHealedAt = now();
          pausedUnresolved = false;
        };
      } else if (kind === "app-crash") {
        const active = pair.job("a").active;
        if (active) pair.hosts.crashApp(active, "web");
      } else if (kind === "switchover") {
        await pair.agent(node).control.switchover("web", "sim").catch(() => undefined);
      }
    }
    cut?.();
    injected.push({ at: now(), text: "FAULT ends; the pair settles" });
    await pair.run(SETTLE_MS, check);
    violations.push(...liveness(pair), ...(await replayed(pair)));
  } catch (error) {
    violations.push(`the run failed: ${(error as Error).stack ?? String(error)}`);
  }
  const story = violations.length > 0 ? await storyOf(pair, injected) : [];
  await pair.close().catch((error: Error) => violations.push(`closing failed: ${error.message}`));
  return { seed, virtualMs: FAULT_PHASE_MS + SETTLE_MS + 1500, faults, checks, violations, story };
}

async function journalsOf(pair: Awaited<ReturnType<typeof startSimPair>>) {
  return Promise.all(
    NODES.map(async (node: Node) => {
      const events: Recorded[] = [];
      for await (const r of pair.agent(node).journal.read()) events.push(r);
      return { node, events };
    }),
  );
}

/** The injected faults and every described fact of both journals, by virtual time. */
async function storyOf(pair: Awaited<ReturnType<typeof startSimPair>>, injected: { at: number; text: string }[]): Promise<string[]> {
  const t0 = pair.world.clock.now() - pair.world.clock.monotonic();
  const all = process.env.DUET_SIM_ALL_FACTS === "1";
  const text = (r: Recorded) => describe(r) ?? (all ? `${r.type} ${JSON.stringify(r.data).slice(0, 300)}` : null);
  const facts = (await journalsOf(pair)).flatMap(({ node, events }) => events.flatMap((r) => (text(r) ? [{ at: r.at - t0, text: `[${node}] ${text(r)}` }] : [])));
  return [...injected, ...facts].sort((x, y) => x.at - y.at).map((x) => `${String(Math.round(x.at)).padStart(6)} ms  ${x.text}`);
}

/** After the faults: the job runs on exactly one node, and both journals say which. */
function liveness(pair: Awaited<ReturnType<typeof startSimPair>>): string[] {
  const holders = pair.hosts.holders(VIP);
  const running = pair.hosts.running("web");
  const views = NODES.map((n) => pair.job(n));
  const out: string[] = [];
  if (holders.length !== 1 || running.length !== 1) out.push(`liveness: ${SETTLE_MS} ms after the last fault the VIP is on [${holders.join(", ")}] and the application on [${running.join(", ")}]`);
  else if (views.some((v) => v.active !== holders[0] || v.phase !== "in")) out.push(`liveness: the job runs on ${holders[0]} but the journals say ${views.map((v, i) => `${NODES[i]}: ${v.phase} on ${v.active}`).join(", ")}`);
  return out;
}

/** Every automatic decision of both journals re-derived by replay at its basis. */
async function replayed(pair: Awaited<ReturnType<typeof startSimPair>>): Promise<string[]> {
  return explainJournals(await journalsOf(pair))
    .filter((e) => !e.recheck.matches || !e.recheck.exact)
    .map((e) => `replay: ${e.kind} (${e.code}) of ${e.job} on ${e.node} at seq ${e.seq} ${e.recheck.matches ? "re-checked only approximately" : `does not follow: replayed ${e.recheck.replayed ? `${e.recheck.replayed.kind} (${e.recheck.replayed.code})` : "no decision"}${e.recheck.note ? ` (${e.recheck.note})` : ""}`}`);
}
