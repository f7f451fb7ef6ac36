import { setTimeout as delay } from "node:timers/promises";
import type { AgentContext, ResourceAgent } from "./agent.ts";
import { ResourceError, outputTail, runOrThrow, throwIfAbandoned } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";
import type { RunResult } from "../world/process.ts";

type VipSpec = Extract<ResourceSpec, { vip: unknown }>;
const DAD_RETRY_MS = 250;
/** How long to listen for an answer to the ARP probe: on a LAN one comes within milliseconds. */
export const DAD_LISTEN_MS = 300;

/**
 * A virtual IP: `ip addr add`, then gratuitous ARP so clients and switches follow at once (without
 * it a client keeps the old MAC for 20–30 s). It refuses to start while the address answers
 * elsewhere: two hosts claiming one address is the failure an HA pair exists to prevent.
 */
export function createVip(spec: VipSpec, ctx: AgentContext): ResourceAgent {
  const { address: cidr, interface: dev, arpCount } = spec.vip;
  const address = cidr.split("/")[0]!;
  const present = async () => {
    const result = await ctx.processes.run(["ip", "-o", "addr", "show", "dev", dev], { timeoutMs: spec.monitor.timeoutMs });
    if (result.code !== 0) throw new ResourceError(`${spec.name}: interface ${dev}: ${outputTail(result)}`);
    return result.stdout.split("\n").some((line) => line.includes(` ${cidr} `) || line.includes(` ${address}/`));
  };
  // Announcements under way: a stop ends them, or the node letting go of the address would go on
  // claiming it (arping sends one a second) and turn clients back from the node that took it.
  const announcing = new Set<AbortController>();
  const announce = async () => {
    const abort = new AbortController();
    announcing.add(abort);
    try {
      await ctx.processes.run(["arping", "-U", "-c", String(Math.max(1, arpCount)), "-I", dev, address], { timeoutMs: Math.max(1, arpCount) * 1000 + 2000, signal: abort.signal });
    } finally {
      announcing.delete(abort);
    }
  };
  return {
    async start({ signal } = {}) {
      if (await present()) return;
      // Duplicate address detection. A peer that is fencing itself may still hold the address for a
      // moment, so ask again until the start timeout, or until the start is abandoned (the peer
      // came back and runs the job: the address answers because it is rightly there).
      const deadline = ctx.clock.monotonic() + spec.startTimeoutMs;
      for (;;) {
        throwIfAbandoned(spec.name, signal);
        const dad = await detectDuplicate(ctx, dev, address, spec.startTimeoutMs);
        throwIfAbandoned(spec.name, signal);
        if (!dad.answered) break;
        if (ctx.clock.monotonic() + DAD_RETRY_MS > deadline) throw new ResourceError(`${spec.name}: ${address} still answers on the network after ${spec.startTimeoutMs} ms (${dad.output}); refusing to start it here too`);
        // An abandoned start stops waiting at once (the delay rejects; the loop's check throws).
        await delay(DAD_RETRY_MS, undefined, { signal }).catch(() => undefined);
      }
      await runOrThrow(ctx, spec.name, `ip addr add ${cidr} dev ${dev}`, ["ip", "addr", "add", cidr, "dev", dev], spec.startTimeoutMs);
      // Gratuitous ARP: the first goes out as arping starts, but arping lingers a second after each
      // one, so it runs on in the background rather than delaying the application's start.
      if (arpCount > 0) void announce();
    },
    announce,
    async stop({ urgent = false } = {}) {
      for (const abort of announcing) abort.abort();
      // A fence removes the address without looking first (one command less while the address
      // may be on both nodes); an address already gone is what it wanted.
      if (!urgent && !(await present())) return;
      try {
        await runOrThrow(ctx, spec.name, `ip addr del ${cidr} dev ${dev}`, ["ip", "addr", "del", cidr, "dev", dev], spec.stopTimeoutMs);
      } catch (error) {
        if (!urgent || (await present())) throw error;
      }
    },
    async monitor() {
      try {
        return (await present()) ? { ok: true } : { ok: false, error: `${cidr} is not on ${dev}`, notRunning: true };
      } catch (error) {
        return { ok: false, error: (error as Error).message };
      }
    },
  };
}

/**
 * arping -D waits whole seconds for an answer that a free address never gets, and that second would
 * add to every takeover. So it is interrupted (SIGINT, on which arping still prints its counts)
 * after DAD_LISTEN_MS. Only a probe it reports as sent counts; if none was (a slow start), the
 * question is asked again with arping's own one-second wait.
 */
async function detectDuplicate(ctx: AgentContext, dev: string, address: string, timeoutMs: number): Promise<{ answered: boolean; output: string }> {
  const probe = ["arping", "-D", "-c", "1", "-w", "1", "-I", dev, address];
  const quick = await ctx.processes.run(["timeout", "-s", "INT", String(DAD_LISTEN_MS / 1000), ...probe], { timeoutMs });
  const answered = (r: RunResult) => r.code === 1 || /Received [1-9]\d* response/.test(r.stdout);
  if (answered(quick) || /Sent [1-9]\d* probe/.test(quick.stdout)) return { answered: answered(quick), output: outputTail(quick, 200) };
  const full = await ctx.processes.run(probe, { timeoutMs });
  return { answered: answered(full), output: outputTail(full, 200) };
}
