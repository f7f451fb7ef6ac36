import type { EventData } from "../events/catalogue.ts";
import type { Clock } from "../world/clock.ts";
import type { ProcessRunner, RunResult } from "../world/process.ts";
import type { TcpReach } from "../world/reach.ts";
import { missingProgram } from "../world/programs.ts";

/** What the journal keeps of a command's output: enough to explain, bounded (the event's own limit). */
export const TIEBREAK_OUTPUT_MAX_CHARS = 4096;
/** Beyond ping's own -W wait: time for the process to start and exit before it is killed. */
export const PING_PROCESS_SLACK_MS = 2000;

export interface TiebreakerOptions {
  self: string;
  peer: string;
  /** peer-lost: ping, then the fence command; reachability (on a suspicion): ping only. */
  purpose: "peer-lost" | "reachability";
  ping: { targets: string[]; mode: "any" | "all"; timeoutMs: number } | null;
  fence: { command: string[]; timeoutMs: number } | null;
  processes: ProcessRunner;
  reach: TcpReach;
  clock: Clock;
  /** For peer-lost: where to look for the peer on the public network (see probePublicNetwork). */
  arpTargets?: ArpTarget[];
}

/** One ARP question: does `address` answer on `interface`? `dad`: ask as duplicate-address detection (for a VIP). */
export interface ArpTarget {
  /** null: the interface the kernel routes `address` through (`ip route get`), a heartbeat link's own. */
  interface: string | null;
  address: string;
  dad: boolean;
}
/** How long an ARP question waits: on a LAN an answer comes within milliseconds. */
export const ARP_LISTEN_MS = 300;

/** A ping target: an address for ICMP (iputils' ping), or `tcp:HOST:PORT` for a TCP connect. */
export function parsePingTarget(target: string): { kind: "icmp"; address: string } | { kind: "tcp"; address: string; port: number } {
  const tcp = /^tcp:\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  return tcp ? { kind: "tcp", address: tcp[1]!, port: Number(tcp[2]) } : { kind: "icmp", address: target };
}

type Result = EventData<"TiebreakerResult">;
type Target = Result["targets"][number];

/**
 * Asked after the peer is lost, before any takeover. Reaching the ping targets shows this node is
 * not the one cut off; a fence command, when configured, must also succeed. A node that cannot
 * confirm — no targets reached, no tiebreaker configured, or a failed fence — never takes over.
 */
export async function runTiebreaker(options: TiebreakerOptions): Promise<Result> {
  const { self, peer, purpose } = options;
  const fence = purpose === "peer-lost" ? options.fence : null;
  const base = { node: self, peer, purpose };
  // An empty target list would make mode "all" vacuously true: it counts as no ping configured.
  const ping = options.ping && options.ping.targets.length > 0 ? options.ping : null;
  if (!ping && purpose === "reachability")
    return { ...base, method: "ping", verdict: "failed", targets: [], output: "no ping targets configured (tiebreaker.ping): this node cannot tell whether it is the one cut off" };
  if (!ping && !fence)
    return { ...base, method: "ping", verdict: "failed", targets: [], output: "no tiebreaker configured (tiebreaker.ping or tiebreaker.fence): this node cannot confirm the peer is gone, so it does not take over" };

  const targets: Target[] = [];
  // Asked beside the ping, not after it: the answer must not add to the takeover's time.
  const arp = purpose === "peer-lost" && options.arpTargets?.length ? probePublicNetwork(options.processes, options.arpTargets) : Promise.resolve(undefined);
  const withArp = async (result: Result): Promise<Result> => {
    const peerOnNetwork = await arp;
    return peerOnNetwork ? { ...result, peerOnNetwork } : result;
  };
  if (ping) {
    const pinged = await Promise.all(ping.targets.map((target) => pingOnce(options, target, ping.timeoutMs)));
    targets.push(...pinged.map((p) => p.target));
    // A ping that could not even start says nothing about this node's network: the tiebreaker is broken.
    const broken = pinged.find((p) => p.error !== null);
    if (broken) return withArp({ ...base, method: "ping", verdict: "failed", targets, output: bounded(`ping ${broken.target.target} could not run: ${broken.error}; this node cannot tell whether it is the one cut off`) });
    const reached = ping.mode === "all" ? targets.every((t) => t.ok) : targets.some((t) => t.ok);
    if (!reached) return withArp({ ...base, method: "ping", verdict: "isolated", targets });
  }
  if (!fence) return withArp({ ...base, method: "ping", verdict: "confirmed", targets });

  const argv = fence.command.map((arg) => arg.replaceAll("{peer}", peer));
  const result = await runBounded(options.processes, argv, fence.timeoutMs);
  const note = result.timedOut ? `\n(timed out after ${fence.timeoutMs} ms)` : result.signal ? `\n(killed by ${result.signal})` : "";
  const confirmed = result.code === 0 && !result.timedOut;
  return withArp({ ...base, method: "fence", verdict: confirmed ? "confirmed" : "failed", targets, exitCode: result.code ?? -1, output: bounded(`${result.stdout}${result.stderr}${note}`) });
}

/**
 * ARP for each target from its interface, all at once, each listening ARP_LISTEN_MS (arping is
 * interrupted then; it still prints its counts). An arping that cannot run counts as no answer:
 * the start-up check makes sure it is installed wherever a VIP is configured.
 */
export async function probePublicNetwork(processes: ProcessRunner, targets: readonly ArpTarget[]): Promise<NonNullable<Result["peerOnNetwork"]>> {
  const asked = await Promise.all(
    targets.map(async (t) => {
      const dev = t.interface ?? (await routedInterface(processes, t.address));
      if (dev === null) return null; // no route to a link's address: that network says nothing
      const argv = ["timeout", "-s", "INT", String(ARP_LISTEN_MS / 1000), "arping", ...(t.dad ? ["-D"] : []), "-c", "1", "-w", "1", "-I", dev, t.address];
      const result = await runBounded(processes, argv, ARP_LISTEN_MS + PING_PROCESS_SLACK_MS);
      return { interface: dev, address: t.address, answered: /Received [1-9]\d* response/.test(result.stdout) };
    }),
  );
  // A link on the public network routes through the VIP's interface: that question was asked once.
  const unique = new Map<string, NonNullable<(typeof asked)[number]>>();
  for (const a of asked) if (a !== null && !unique.has(`${a.interface} ${a.address}`)) unique.set(`${a.interface} ${a.address}`, a);
  return [...unique.values()];
}

/** The interface the kernel would send to ADDRESS from, when it is on a directly attached network. */
async function routedInterface(processes: ProcessRunner, address: string): Promise<string | null> {
  const result = await runBounded(processes, ["ip", "-o", "route", "get", address], ARP_LISTEN_MS + PING_PROCESS_SLACK_MS);
  const route = result.code === 0 ? /^\S+ (?:dev (\S+))/.exec(result.stdout.trim()) : null;
  return route?.[1] ?? null;
}

async function pingOnce(options: TiebreakerOptions, target: string, timeoutMs: number): Promise<{ target: Target; error: string | null }> {
  const started = options.clock.monotonic();
  const parsed = parsePingTarget(target);
  const ok = (): { target: Target; error: null } => ({ target: { target, ok: true, ms: Math.round(options.clock.monotonic() - started) }, error: null });
  if (parsed.kind === "tcp") return (await options.reach.reach(parsed.address, parsed.port, timeoutMs)).answered ? ok() : { target: { target, ok: false }, error: null };
  // iputils ping takes fractions of a second (-W 0.5); the suspicion check must answer well within the deadtime.
  const seconds = String(Math.max(0.1, timeoutMs / 1000));
  const result = await runBounded(options.processes, ["ping", "-n", "-c", "1", "-W", seconds, parsed.address], timeoutMs + PING_PROCESS_SLACK_MS);
  if (result.code === null && result.signal === null && !result.timedOut) return { target: { target, ok: false }, error: missingProgram("ping", result.stderr) ?? (result.stderr.trim() || "no exit code") };
  if (result.code !== 0) return { target: { target, ok: false }, error: null };
  return ok();
}

/** A runner that rejects (rather than reporting a failed run) still yields a result: the tiebreaker never throws. */
async function runBounded(processes: ProcessRunner, argv: string[], timeoutMs: number): Promise<RunResult> {
  try {
    return await processes.run(argv, { timeoutMs });
  } catch (error) {
    return { code: null, signal: null, stdout: "", stderr: error instanceof Error ? error.message : String(error), timedOut: false };
  }
}

// The tail is kept: a failing command says why at its end.
function bounded(output: string): string {
  return output.length > TIEBREAK_OUTPUT_MAX_CHARS ? output.slice(-TIEBREAK_OUTPUT_MAX_CHARS) : output;
}
