import type { Clock, Timers } from "../world/clock.ts";
import type { ProcessRunner, RunResult } from "../world/process.ts";
import { kindOf, type ResourceSpec } from "./spec.ts";
import { createVip } from "./vip.ts";
import { createProcess } from "./process.ts";
import { createOcf } from "./ocf.ts";
import { createScript } from "./script.ts";
import { createNic } from "./nic.ts";
import { createPing } from "./ping.ts";

export type MonitorResult = { ok: true } | { ok: false; error: string; notRunning?: boolean };

/** One resource of a job on this node: start and stop are idempotent, monitor never throws. */
export interface ResourceAgent {
  /**
   * signal: the start is abandoned (the peer turned out to run the job): an agent that waits, as a
   * VIP waits for its address to fall silent elsewhere, stops waiting and throws StartAbandoned.
   */
  start(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * urgent: a fence (this node may be cut off and the peer about to take over): a process is killed
   * at once rather than asked to exit, so the stop ends within the standby's wait, as a fencing
   * device's reset would. Agents that cannot hurry (OCF, scripts) stop as usual.
   */
  stop(options?: { urgent?: boolean }): Promise<void>;
  monitor(): Promise<MonitorResult>;
  /** Tells the network again that this host holds the resource (a VIP's gratuitous ARP); optional. */
  announce?(): Promise<void>;
}

export class ResourceError extends Error {
  constructor(
    message: string,
    readonly exitCode?: number,
  ) {
    super(message);
    this.name = "ResourceError";
  }
}

/** A start given up on purpose (its signal fired): not a failure of the resource. */
export class StartAbandoned extends ResourceError {
  constructor(resource: string, readonly why: string) {
    super(`${resource}: start abandoned: ${why}`);
    this.name = "StartAbandoned";
  }
}

/** Throws StartAbandoned when the signal has fired. */
export function throwIfAbandoned(resource: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new StartAbandoned(resource, String(signal.reason ?? "abandoned"));
}

export interface AgentContext {
  job: string;
  node: string;
  /** Per node and job: pid files, the OCF agents' HA_RSCTMP, process logs. */
  stateDir: string;
  processes: ProcessRunner;
  clock: Clock;
  /** Waits between attempts (duplicate address detection, repeated ARP) run on these. */
  timers: Timers;
}

export function createAgent(spec: ResourceSpec, ctx: AgentContext): ResourceAgent {
  switch (kindOf(spec)) {
    case "vip":
      return createVip(spec as Extract<ResourceSpec, { vip: unknown }>, ctx);
    case "process":
      return createProcess(spec as Extract<ResourceSpec, { process: unknown }>, ctx);
    case "ocf":
      return createOcf(spec as Extract<ResourceSpec, { ocf: unknown }>, ctx);
    case "script":
      return createScript(spec as Extract<ResourceSpec, { script: unknown }>, ctx);
    case "nic":
      return createNic(spec as Extract<ResourceSpec, { nic: unknown }>, ctx);
    case "ping":
      return createPing(spec as Extract<ResourceSpec, { ping: unknown }>, ctx);
  }
}

/** A resource that nothing starts (a NIC, a reachable gateway): start checks it, stop has nothing to undo. */
export function checkOnly(check: () => Promise<MonitorResult>): ResourceAgent {
  return {
    async start() {
      const result = await check();
      if (!result.ok) throw new ResourceError(result.error);
    },
    async stop() {},
    monitor: check,
  };
}

/** The last lines of a command's output, for an error message that explains itself. */
export function outputTail(result: RunResult, maxChars = 400): string {
  const text = `${result.stderr}${result.stdout}`.trim();
  if (!text) return result.timedOut ? "timed out" : `exit ${result.code ?? result.signal}`;
  return text.length > maxChars ? `…${text.slice(-maxChars)}` : text;
}

/** Runs a command; throws a ResourceError naming the resource and the command's own complaint. */
export async function runOrThrow(ctx: AgentContext, resource: string, what: string, argv: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  const result = await ctx.processes.run(argv, { timeoutMs, env });
  if (result.code !== 0 || result.timedOut)
    throw new ResourceError(`${resource}: ${what} failed${result.timedOut ? ` (timed out after ${timeoutMs} ms)` : ` (exit ${result.code ?? result.signal})`}: ${outputTail(result)}`, result.code ?? undefined);
  return result;
}
