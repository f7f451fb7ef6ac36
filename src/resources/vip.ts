import type { AgentContext, ResourceAgent } from "./agent.ts";
import { ResourceError, outputTail, runOrThrow, throwIfAbandoned } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";
import type { RunResult } from "../world/process.ts";
import { sleep } from "../world/clock.ts";

type VipSpec = Extract<ResourceSpec, { vip: unknown }>;
const DAD_RETRY_MS = 250;
/** How long to listen for an answer to the ARP probe: on a LAN one comes within milliseconds. */
export const DAD_LISTEN_MS = 300;

/**
 * A virtual IP: `ip addr add`, then gratuitous ARP so clients and switches follow at once (without
 * it a client keeps the old MAC for 20–30 s). It refuses to start while the address answers
 * elsewhere: two hosts claiming one address is the failure an HA pair exists to prevent. With a
 * fixed MAC the address goes on a macvlan interface of that MAC, which moves with the job.
 */
export function createVip(spec: VipSpec, ctx: AgentContext): ResourceAgent {
  const { address: cidr, arpCount, arpIntervalMs, mac } = spec.vip;
  const dev = mac ? macvlanName(mac) : spec.vip.interface;
  const address = cidr.split("/")[0]!;
  const present = async () => {
    const result = await ctx.processes.run(["ip", "-o", "addr", "show", "dev", dev], { timeoutMs: spec.monitor.timeoutMs });
    if (result.code !== 0) {
      if (mac && /does not exist/.test(result.stderr)) return false; // the macvlan goes with the address
      throw new ResourceError(`${spec.name}: interface ${dev}: ${outputTail(result)}`);
    }
    return result.stdout.split("\n").some((line) => line.includes(` ${cidr} `) || line.includes(` ${address}/`));
  };
  // Announcements under way: a stop ends them, or the node letting go of the address would go on
  // claiming it and turn clients back from the node that took it.
  const announcing = new Set<AbortController>();
  const announce = async () => {
    const abort = new AbortController();
    announcing.add(abort);
    const sent: Promise<unknown>[] = [];
    try {
      // One arping each (it lingers a second after sending), ARPCOUNT of them ARPINTERVALMS apart.
      for (let i = 0; i < Math.max(1, arpCount) && !abort.signal.aborted; i++) {
        if (i > 0) await sleep(ctx.timers, arpIntervalMs, abort.signal);
        if (abort.signal.aborted) break;
        sent.push(ctx.processes.run(["arping", "-U", "-c", "1", "-I", dev, address], { timeoutMs: 3000, signal: abort.signal }));
      }
      await Promise.all(sent);
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
        // From the parent: with a fixed MAC, a probe from an interface of that MAC would not see
        // the other node's, which answers from the same MAC.
        const dad = await detectDuplicate(ctx, spec.vip.interface, address, spec.startTimeoutMs);
        throwIfAbandoned(spec.name, signal);
        if (!dad.answered) break;
        if (ctx.clock.monotonic() + DAD_RETRY_MS > deadline) throw new ResourceError(`${spec.name}: ${address} still answers on the network after ${spec.startTimeoutMs} ms (${dad.output}); refusing to start it here too`);
        // An abandoned start stops waiting at once (the delay rejects; the loop's check throws).
        await sleep(ctx.timers, DAD_RETRY_MS, signal);
      }
      try {
        if (mac) await addMacvlan(ctx, spec, mac, dev);
        await runOrThrow(ctx, spec.name, `ip addr add ${cidr} dev ${dev}`, ["ip", "addr", "add", cidr, "dev", dev], spec.startTimeoutMs);
      } catch (error) {
        // A failed start leaves no interface answering from the fixed MAC (the runner rolls back only what started).
        if (mac) await removeMacvlan(ctx, spec, dev).catch(() => undefined);
        throw error;
      }
      // Gratuitous ARP in the background rather than delaying the application's start.
      if (arpCount > 0) void announce();
    },
    announce,
    async stop({ urgent = false } = {}) {
      for (const abort of announcing) abort.abort();
      // With a fixed MAC the interface goes, and the address with it: no other host may answer from this MAC.
      if (mac) {
        try {
          return await removeMacvlan(ctx, spec, dev);
        } catch (error) {
          if (!urgent || (await present())) throw error;
          return;
        }
      }
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

/** The macvlan interface of a fixed MAC: named after all of it, so both nodes name it alike (14 of 15 characters). */
export const macvlanName = (mac: string) => `dv${mac.replaceAll(":", "")}`;

async function addMacvlan(ctx: AgentContext, spec: VipSpec, mac: string, dev: string): Promise<void> {
  const parent = spec.vip.interface;
  // The parent answers ARP only for its own addresses (arp_ignore=1), and asks with its own address
  // (arp_announce=2), never the VIP's, which would teach the asked host the parent's MAC for the VIP.
  // Through a process like every other network change, so it acts in the agent's namespace.
  const conf = `/proc/sys/net/ipv4/conf/${parent}`;
  await runOrThrow(ctx, spec.name, `arp_ignore=1, arp_announce=2 on ${parent}`, ["sh", "-c", 'echo 1 > "$1/arp_ignore" && echo 2 > "$1/arp_announce"', "sh", conf], spec.startTimeoutMs);
  const exists = (await ctx.processes.run(["ip", "link", "show", "dev", dev], { timeoutMs: spec.startTimeoutMs })).code === 0;
  if (!exists) await runOrThrow(ctx, spec.name, `ip link add ${dev}`, ["ip", "link", "add", "link", parent, "name", dev, "address", mac, "type", "macvlan", "mode", "bridge"], spec.startTimeoutMs);
  await runOrThrow(ctx, spec.name, `ip link set ${dev} up`, ["ip", "link", "set", dev, "up"], spec.startTimeoutMs);
}

async function removeMacvlan(ctx: AgentContext, spec: VipSpec, dev: string): Promise<void> {
  const result = await ctx.processes.run(["ip", "link", "del", dev], { timeoutMs: spec.stopTimeoutMs });
  if (result.code !== 0 && !/Cannot find device|does not exist/.test(result.stderr)) throw new ResourceError(`${spec.name}: ip link del ${dev}: ${outputTail(result)}`);
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
