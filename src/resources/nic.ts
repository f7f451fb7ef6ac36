import type { AgentContext, ResourceAgent } from "./agent.ts";
import { checkOnly } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";

/**
 * The public NIC: nothing to start, but a job must not run on a host whose NIC has no carrier.
 * Read through the process runner, not fs: /sys/class/net shows the network namespace of the
 * reader, and the runner is what places the agent's commands in the node's namespace.
 */
export function createNic(spec: Extract<ResourceSpec, { nic: unknown }>, ctx: AgentContext): ResourceAgent {
  const dev = spec.nic.interface;
  const check = async () => {
    const read = await ctx.processes.run(["cat", `/sys/class/net/${dev}/operstate`, `/sys/class/net/${dev}/carrier`], { timeoutMs: spec.monitor.timeoutMs });
    // cat prints what it could read; carrier is unreadable ("Invalid argument") while the link is administratively down.
    const [operstate, carrier] = read.stdout.split("\n").map((s) => s.trim());
    if (!operstate) return { ok: false as const, error: `${spec.name}: no interface ${dev}${read.timedOut ? " (reading it timed out)" : ""}` };
    // "unknown" is what loopback and some virtual NICs report while working.
    if (carrier !== "1" || (operstate !== "up" && operstate !== "unknown")) return { ok: false as const, error: `${spec.name}: ${dev} is ${operstate}, carrier ${carrier || "unknown"}` };
    return { ok: true as const };
  };
  return checkOnly(check);
}
