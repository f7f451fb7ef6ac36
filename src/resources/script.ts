import type { AgentContext, ResourceAgent } from "./agent.ts";
import { outputTail, runOrThrow } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";

/** OCF's monitor convention: exit 7 means cleanly not running. */
export const NOT_RUNNING_EXIT = 7;

/** Custom start/stop/monitor commands, for what no other agent covers. */
export function createScript(spec: Extract<ResourceSpec, { script: unknown }>, ctx: AgentContext): ResourceAgent {
  const env = { ...process.env, DUET_JOB: ctx.job, DUET_NODE: ctx.node, DUET_RESOURCE: spec.name };
  return {
    start: async () => void (await runOrThrow(ctx, spec.name, "start", spec.script.start, spec.startTimeoutMs, env)),
    stop: async () => void (await runOrThrow(ctx, spec.name, "stop", spec.script.stop, spec.stopTimeoutMs, env)),
    async monitor() {
      const result = await ctx.processes.run(spec.script.monitor, { timeoutMs: spec.monitor.timeoutMs, env });
      if (result.code === 0 && !result.timedOut) return { ok: true };
      return { ok: false, error: `${spec.name}: monitor ${result.code === NOT_RUNNING_EXIT ? "says not running" : `failed: ${outputTail(result)}`}`, notRunning: result.code === NOT_RUNNING_EXIT };
    },
  };
}
