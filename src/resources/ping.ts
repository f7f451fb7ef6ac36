import type { AgentContext, ResourceAgent } from "./agent.ts";
import { checkOnly, outputTail } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";

/** Reachability of a target (a gateway, a database): a job is only useful where it can reach it. */
export function createPing(spec: Extract<ResourceSpec, { ping: unknown }>, ctx: AgentContext): ResourceAgent {
  const check = async () => {
    const result = await ctx.processes.run(["ping", "-n", "-c", String(spec.ping.count), "-W", "1", spec.ping.target], { timeoutMs: spec.monitor.timeoutMs });
    return result.code === 0 ? { ok: true as const } : { ok: false as const, error: `${spec.name}: ${spec.ping.target} unreachable: ${outputTail(result, 200)}` };
  };
  return checkOnly(check);
}
