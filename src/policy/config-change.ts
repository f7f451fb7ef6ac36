import type { Config, JobSpec } from "../config/schema.ts";
import { kindOf, resourceChange, type ResourceSpec } from "../resources/spec.ts";

/**
 * What applying a new configuration to a running pair would do, item by item, and what it
 * refuses: the plan `duet config apply --dry-run` prints and the apply carries out. Pure: both
 * nodes plan the same document against their running configuration and must agree it applies.
 */
export interface PlannedChange {
  /** "cluster", or "job NAME". */
  scope: string;
  /** The config key, e.g. "policy", "resources.app", "users.ops". */
  item: string;
  change: "added" | "removed" | "changed";
  from?: string;
  to?: string;
  /** What it does to a running job, in words ("nothing: ..."). */
  effect: string;
  /** Why it cannot be applied online; the whole apply is refused while any item is. */
  refused?: string;
}

export interface ConfigPlan {
  changes: PlannedChange[];
  /** No change is refused (an empty plan is allowed: it changes nothing). */
  allowed: boolean;
}

/** Where each job stands, as this node's journal says. */
export type JobPlaces = ReadonlyMap<string, { phase: string; active: string | null; recovering?: boolean }>;

const RESTART_BOTH = "stop both agents, change it in both files, start them";

export function planConfigChange(running: Config, next: Config, jobs: JobPlaces): ConfigPlan {
  const changes = [...clusterChanges(running, next), ...jobChanges(running, next, jobs)];
  return { changes, allowed: changes.every((c) => c.refused === undefined) };
}

function clusterChanges(running: Config, next: Config): PlannedChange[] {
  const out: PlannedChange[] = [];
  const fixed = (item: string, from: unknown, to: unknown, why: string) => {
    if (!same(from, to)) out.push({ scope: "cluster", item, change: "changed", from: show(from), to: show(to), effect: "none (refused)", refused: `${why}: ${RESTART_BOTH}` });
  };
  fixed("cluster", running.cluster, next.cluster, "the peer channel and heartbeat frames are keyed by the cluster's name and key from the agents' start");
  running.nodes.forEach((node, i) => {
    const other = next.nodes[i]!;
    if (node.name !== other.name)
      out.push({ scope: "cluster", item: `nodes[${i}].name`, change: "changed", from: node.name, to: other.name, effect: "none (refused)", refused: "a node cannot be renamed online: both journals, the lineage of every mirror and the peer know it by its name" });
    fixed(`nodes.${node.name}`, { address: node.address, dataDir: node.dataDir }, { address: other.address, dataDir: other.dataDir }, "an agent listens on its address and keeps its journal in its dataDir from its start");
  });
  fixed("ports", running.ports, next.ports, "the API and the peer channel listen on them from the agents' start");
  fixed("heartbeat", running.heartbeat, next.heartbeat, "heartbeat links and timings are fixed when the agents start, and both must change them together");
  fixed("tiebreaker.selfFenceGraceMs", running.tiebreaker.selfFenceGraceMs, next.tiebreaker.selfFenceGraceMs, "the self-fence grace sets when a standby may take over, which both agents fixed at their start");
  fixed("tiebreaker.witness", running.tiebreaker.witness, next.tiebreaker.witness, "each agent keeps its lease and its jobs' keys on the witness it started with, and a witness only protects the pair if both use it");
  const live = (item: string, from: unknown, to: unknown, effect: string) => {
    if (!same(from, to)) out.push({ scope: "cluster", item, change: from === undefined ? "added" : to === undefined ? "removed" : "changed", from: show(from), to: show(to), effect });
  };
  const [pingBefore, pingAfter] = [running.tiebreaker.ping, next.tiebreaker.ping];
  const pingTiming = (p: typeof pingBefore) => ({ ping: p !== undefined, timeoutMs: p?.timeoutMs ?? null });
  fixed("tiebreaker.ping (whether there is one, timeoutMs)", pingTiming(pingBefore), pingTiming(pingAfter), "the ping timeout sets when a node cut off fences itself and when the standby may take over, which both agents fixed at their start");
  if (pingBefore && pingAfter) live("tiebreaker.ping", { targets: pingBefore.targets, mode: pingBefore.mode }, { targets: pingAfter.targets, mode: pingAfter.mode }, "nothing: the next tiebreak and reachability check use it");
  live("tiebreaker.fence", running.tiebreaker.fence, next.tiebreaker.fence, "nothing: the next fence uses it");
  live("metrics", running.metrics, next.metrics, "nothing: the next scrape is checked against it");
  live("log.level", running.log.level, next.log.level, "nothing: the agent logs at this level from now on");
  out.push(...userChanges(running, next));
  return out;
}

function userChanges(running: Config, next: Config): PlannedChange[] {
  const out: PlannedChange[] = [];
  for (const user of next.users) {
    const old = running.users.find((u) => u.name === user.name);
    if (!old) out.push({ scope: "cluster", item: `users.${user.name}`, change: "added", to: user.role, effect: "nothing: the user can log in at once" });
    else if (!same(old, user))
      out.push({ scope: "cluster", item: `users.${user.name}`, change: "changed", from: old.role, to: user.role + (old.passwordHash === user.passwordHash ? "" : ", new password"), effect: "nothing: the user's sessions end; it logs in again" });
  }
  for (const user of running.users)
    if (!next.users.some((u) => u.name === user.name)) out.push({ scope: "cluster", item: `users.${user.name}`, change: "removed", from: user.role, effect: "nothing: the user can no longer log in; its sessions end" });
  return out;
}

function jobChanges(running: Config, next: Config, jobs: JobPlaces): PlannedChange[] {
  const out: PlannedChange[] = [];
  for (const job of next.jobs) {
    const old = running.jobs.find((j) => j.name === job.name);
    if (old) out.push(...changedJob(old, job, jobs.get(job.name)));
    else {
      const mirrored = job.mirrors.length > 0 ? `; its first bring-in verifies its ${job.mirrors.length} mirrored path(s) against the other node and ships what differs` : "";
      out.push({ scope: `job ${job.name}`, item: "(job)", change: "added", to: `${job.resources.length} resource(s)${job.mirrors.length > 0 ? `, ${job.mirrors.length} mirror(s)` : ""}`, effect: `created, brought out: bring it in when ready${mirrored}` });
    }
  }
  for (const job of running.jobs) {
    if (next.jobs.some((j) => j.name === job.name)) continue;
    const where = jobs.get(job.name);
    const running_ = where !== undefined && where.phase !== "out";
    out.push({ scope: `job ${job.name}`, item: "(job)", change: "removed", effect: running_ ? "none (refused)" : "deleted on both nodes (it is out)", ...(running_ ? { refused: `job ${job.name} is ${where.phase}${where.active ? ` on ${where.active}` : ""}: bring it out first` } : {}) });
  }
  return out;
}

function changedJob(old: JobSpec, job: JobSpec, where: { phase: string; active: string | null; recovering?: boolean } | undefined): PlannedChange[] {
  const scope = `job ${job.name}`;
  const out: PlannedChange[] = [];
  // Recovering after an agent's restart, a job is in by the journal but not monitored: not settled.
  const phase = where?.recovering ? "recovering" : (where?.phase ?? "out");
  const runsOn = phase === "in" ? where?.active ?? null : null;
  const item = (name: string, from: unknown, to: unknown, effect: string, refused?: string) => {
    if (same(from, to)) return;
    out.push({ scope, item: name, change: from === undefined ? "added" : to === undefined ? "removed" : "changed", from: show(from), to: show(to), effect: refused ? "none (refused)" : effect, ...(refused ? { refused } : {}) });
  };
  const at = phase === "out" ? "" : ` (${job.name} is ${phase}${where?.active ? ` on ${where.active}` : ""})`;
  const onlyOut = (what: string) => (phase === "out" ? undefined : `changing ${what} of a job that is not out is not supported online${at}: bring it out, apply, bring it in`);
  const settled = phase === "out" || phase === "in" ? undefined : `job ${job.name} is ${phase}: apply once it is in or out`;
  item("nodes", old.nodes, job.nodes, "redefined: the job is out, nothing runs", onlyOut("the nodes"));
  item("policy", old.policy, job.policy, "nothing: the takeover policy decides with it from now on");
  item("reverseWhenConsistent", old.reverseWhenConsistent, job.reverseWhenConsistent, "nothing: the takeover policy decides with it from now on");
  item("restart", old.restart, job.restart, "nothing: monitors count restarts against it from now on");
  item("snapshots", old.snapshots, job.snapshots, "nothing: the snapshot schedule starts again from it");
  item("syncMaxMiBps", old.syncMaxMiBps, job.syncMaxMiBps, "nothing: the next verification or resync is paced by it");
  item("switchoverLagMaxMs", old.switchoverLagMaxMs, job.switchoverLagMaxMs, "nothing: the next switchover is gated by it");
  const [before, after] = [old.mirrors.map((m) => m.path), job.mirrors.map((m) => m.path)];
  item("mirrors", before, after, mirrorsEffect(before, runsOn), mirrorsRefusal(before, after) ?? settled);
  for (const r of job.resources) {
    const before = old.resources.find((o) => o.name === r.name);
    item(`resources.${r.name}`, before, r, resourceEffect(before, r, runsOn), settled);
  }
  for (const r of old.resources)
    if (!job.resources.some((n) => n.name === r.name)) item(`resources.${r.name}`, r, undefined, runsOn ? `stopped on ${runsOn}; the others keep running` : "removed: the job is out, nothing runs", settled);
  const names = (spec: JobSpec) => spec.resources.map((r) => r.name);
  const kept = names(job).filter((n) => names(old).includes(n));
  if (!same(kept, names(old).filter((n) => names(job).includes(n)))) item("resources (order)", names(old), names(job), "redefined: the job is out, nothing runs", onlyOut("the order of the resources"));
  return out;
}

/** What adding mirror paths does (see mirrorsRefusal for what it may not do). */
function mirrorsEffect(before: readonly string[], runsOn: string | null): string {
  if (before.length === 0) return runsOn ? `mirrored from now on: ${runsOn} verifies them against the other node, as a first bring-in does` : "mirrored from the next bring-in on, verified against the other node first";
  const where = runsOn ? `on ${runsOn} now` : "at the next bring-in";
  return `the added path(s) verified against the other node ${where}, shipping only what differs there; the other paths keep streaming; a switchover waits for it`;
}

/** Mirror paths are numbered by their place: one may be added after the others, never moved or dropped online. */
function mirrorsRefusal(before: readonly string[], after: readonly string[]): string | undefined {
  if (before.every((path, i) => after[i] === path)) return undefined;
  return "mirror paths can only be added online, after the existing ones: removing or reordering them is not supported online";
}

/** What a resource's change does where the job runs (RUNSON; null: it runs nowhere). */
function resourceEffect(before: ResourceSpec | undefined, after: ResourceSpec, runsOn: string | null): string {
  if (!runsOn) return before ? "redefined: the job is out, nothing runs" : "added: the job is out, nothing runs";
  if (!before) return `started on ${runsOn} in its place in the order; the others keep running`;
  if (resourceChange(before, after) === "timings") return "nothing: it keeps running, its monitor follows the new timings";
  if (kindOf(after) === "vip" && kindOf(before) === "vip") return `on ${runsOn}: the old address removed, the new one added with gratuitous ARP; only this resource blinks`;
  return `stopped and started again on ${runsOn} with the new definition; the others keep running`;
}

/** Equal as configuration: key order does not matter, array order does. */
function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y))) : v,
  );
}

/** A value as a plan shows it: short, and never a password hash. */
function show(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const text = typeof value === "string" ? value : canonical(value).replace(/"passwordHash":"[^"]*"/g, '"passwordHash":"…"');
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** One line per change, as ConfigChanged records them and the CLI prints them. */
export function planLines(plan: ConfigPlan): string[] {
  return plan.changes.map((c) => `${c.scope}: ${c.item} ${c.change}${c.from !== undefined || c.to !== undefined ? ` (${c.from ?? "-"} -> ${c.to ?? "-"})` : ""}: ${c.refused ? `REFUSED: ${c.refused}` : c.effect}`);
}
