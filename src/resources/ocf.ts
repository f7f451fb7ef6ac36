import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { AgentContext, ResourceAgent } from "./agent.ts";
import { ResourceError, outputTail } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";

type OcfSpec = Extract<ResourceSpec, { ocf: unknown }>;

/** OCF exit codes (resource-agents' ocf-returncodes) and what an operator should read from them. */
export const OCF_CODES: Record<number, string> = {
  0: "success",
  1: "generic error",
  2: "invalid arguments",
  3: "unimplemented action",
  4: "insufficient privileges",
  5: "not installed (it will not work on the other node either)",
  6: "not configured (it will not work on the other node either)",
  7: "not running",
  8: "running as promoted",
  9: "failed as promoted",
};
export const OCF_NOT_RUNNING = 7;

/** Any Pacemaker OCF resource agent: the same environment and exit codes Pacemaker gives it. */
export function createOcf(spec: OcfSpec, ctx: AgentContext): ResourceAgent {
  const [provider, type] = spec.ocf.agent.split("/") as [string, string];
  const script = join(spec.ocf.root, "resource.d", provider, type);
  const rscTmp = join(ctx.stateDir, "rsctmp");
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    OCF_ROOT: spec.ocf.root,
    OCF_RESOURCE_INSTANCE: spec.name,
    OCF_RESOURCE_TYPE: type,
    OCF_RESOURCE_PROVIDER: provider,
    // Two nodes on one machine (tests, the demo) must not see each other's state files.
    HA_RSCTMP: rscTmp,
    ...Object.fromEntries(Object.entries(spec.ocf.params).map(([k, v]) => [`OCF_RESKEY_${k}`, v])),
  };
  const action = async (name: string, timeoutMs: number) => {
    await mkdir(rscTmp, { recursive: true });
    return ctx.processes.run([script, name], { timeoutMs, env: { ...env, OCF_RESKEY_CRM_meta_timeout: String(timeoutMs) } });
  };
  const fail = (name: string, code: number | null, detail: string, timedOut: boolean, timeoutMs: number) =>
    new ResourceError(`${spec.name}: ocf:${spec.ocf.agent} ${name} ${timedOut ? `timed out after ${timeoutMs} ms` : `returned ${code} (${OCF_CODES[code ?? -1] ?? "unknown code"})`}: ${detail}`, code ?? undefined);
  return {
    async start() {
      const r = await action("start", spec.startTimeoutMs);
      if (r.code !== 0 || r.timedOut) throw fail("start", r.code, outputTail(r), r.timedOut, spec.startTimeoutMs);
    },
    async stop() {
      const r = await action("stop", spec.stopTimeoutMs);
      // A stop that finds the resource not running has done its job.
      if ((r.code !== 0 && r.code !== OCF_NOT_RUNNING) || r.timedOut) throw fail("stop", r.code, outputTail(r), r.timedOut, spec.stopTimeoutMs);
    },
    async monitor() {
      const r = await action("monitor", spec.monitor.timeoutMs);
      if (r.code === 0 && !r.timedOut) return { ok: true };
      return { ok: false, error: fail("monitor", r.code, outputTail(r), r.timedOut, spec.monitor.timeoutMs).message, notRunning: r.code === OCF_NOT_RUNNING };
    },
  };
}

/** The agent's meta-data XML: its parameters and actions, as `crm_resource --show-metadata` prints. */
export async function ocfMetadata(spec: OcfSpec, ctx: AgentContext): Promise<string> {
  const [provider, type] = spec.ocf.agent.split("/") as [string, string];
  const r = await ctx.processes.run([join(spec.ocf.root, "resource.d", provider, type), "meta-data"], { timeoutMs: 10_000, env: { OCF_ROOT: spec.ocf.root, PATH: process.env.PATH } });
  if (r.code !== 0) throw new ResourceError(`${spec.name}: meta-data failed: ${outputTail(r)}`, r.code ?? undefined);
  return r.stdout;
}
