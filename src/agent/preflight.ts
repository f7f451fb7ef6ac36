import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import { ConfigError, type ConfigIssue } from "../config/load.ts";
import { parsePingTarget } from "../cluster/tiebreak.ts";
import { findProgram, notInstalled } from "../world/programs.ts";

/** A program this node's configuration makes it run, with the config key that asks for it. */
export interface ProgramNeed {
  key: string;
  program: string;
  /** Said when it is missing, if more helpful than notInstalled(program). */
  missing?: string;
}

/**
 * Every external program the agent will run for this node: resources of the jobs it can run, the
 * tiebreaker's ICMP ping and fence command. Listed from the config alone, so a missing one is
 * found at start, not at 3 a.m. when a takeover needs it.
 */
export function requiredPrograms(config: Config, self: string): ProgramNeed[] {
  const needs: ProgramNeed[] = [];
  const ping = config.tiebreaker.ping;
  ping?.targets.forEach((target, i) => {
    if (parsePingTarget(target).kind === "icmp") needs.push({ key: `tiebreaker.ping.targets[${i}]`, program: "ping" });
  });
  if (config.tiebreaker.fence) needs.push({ key: "tiebreaker.fence.command", program: config.tiebreaker.fence.command[0]! });
  config.jobs.forEach((job, j) => {
    if (!job.nodes.includes(self)) return;
    job.resources.forEach((r, i) => {
      const key = `jobs[${j}].resources[${i}]`;
      if ("vip" in r) needs.push({ key: `${key}.vip`, program: "ip" }, { key: `${key}.vip`, program: "arping" }, { key: `${key}.vip`, program: "timeout" });
      if ("ping" in r) needs.push({ key: `${key}.ping`, program: "ping" });
      if ("nic" in r) needs.push({ key: `${key}.nic`, program: "cat" });
      if ("process" in r) {
        needs.push({ key: `${key}.process.command`, program: r.process.command[0]! });
        if ("command" in r.process.health) needs.push({ key: `${key}.process.health.command`, program: r.process.health.command[0]! });
        if (r.process.user) needs.push({ key: `${key}.process.user`, program: "id" });
      }
      if ("script" in r) for (const action of ["start", "stop", "monitor"] as const) needs.push({ key: `${key}.script.${action}`, program: r.script[action][0]! });
      if ("ocf" in r) {
        const [provider, type] = r.ocf.agent.split("/") as [string, string];
        const pkg = provider === "heartbeat" ? " (apt-get install resource-agents)" : "";
        needs.push({ key: `${key}.ocf.agent`, program: join(r.ocf.root, "resource.d", provider, type), missing: `OCF agent ${r.ocf.agent}: no executable ${join(r.ocf.root, "resource.d", provider, type)}${pkg}` });
      }
    });
  });
  return needs;
}

/** The needs that cannot run here, as config issues: key, program and what to install. */
export function missingPrograms(needs: readonly ProgramNeed[], path = process.env.PATH ?? ""): ConfigIssue[] {
  const found = new Map<string, boolean>();
  const issues: ConfigIssue[] = [];
  for (const need of needs) {
    if (!found.has(need.program)) found.set(need.program, findProgram(need.program, path) !== null);
    if (!found.get(need.program)) issues.push({ path: need.key, message: need.missing ?? notInstalled(need.program) });
  }
  return issues;
}

/** Refuses to start an agent that could not carry out its own configuration. */
export function checkPrograms(config: Config, self: string, source: string): void {
  const issues = missingPrograms(requiredPrograms(config, self));
  if (issues.length > 0) throw new ConfigError(source, issues);
}
