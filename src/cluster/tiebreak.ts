import type { EventData } from "../events/catalogue.ts";
import type { Clock } from "../world/clock.ts";
import type { ProcessRunner } from "../world/process.ts";

/** What the journal keeps of a fence command's output: enough to explain, bounded. */
export const TIEBREAK_OUTPUT_MAX_CHARS = 4096;

export interface TiebreakerOptions {
  self: string;
  peer: string;
  ping: { targets: string[]; mode: "any" | "all"; timeoutMs: number } | null;
  fence: { command: string[]; timeoutMs: number } | null;
  processes: ProcessRunner;
  clock: Clock;
}

/**
 * Asked after the peer is lost, before any takeover. Reaching the ping targets shows this node is
 * not the one cut off; a fence command, when configured, must also succeed. A node that cannot
 * confirm — no targets reached, no tiebreaker configured, or a failed fence — never takes over.
 */
export async function runTiebreaker(options: TiebreakerOptions): Promise<EventData<"TiebreakerResult">> {
  const { self, peer, processes, clock } = options;
  const base = { node: self, peer };
  if (!options.ping && !options.fence)
    return { ...base, method: "ping", verdict: "failed", targets: [], output: "no tiebreaker configured (tiebreaker.ping or tiebreaker.fence): this node cannot confirm the peer is gone" };

  const targets = await Promise.all(
    (options.ping?.targets ?? []).map(async (target) => {
      const started = clock.monotonic();
      const seconds = String(Math.max(1, Math.ceil(options.ping!.timeoutMs / 1000)));
      const result = await processes.run(["ping", "-c", "1", "-W", seconds, "-n", target], { timeoutMs: options.ping!.timeoutMs + 2000 });
      const ok = result.code === 0;
      return ok ? { target, ok, ms: Math.round(clock.monotonic() - started) } : { target, ok };
    }),
  );
  if (options.ping) {
    const reached = options.ping.mode === "all" ? targets.every((t) => t.ok) : targets.some((t) => t.ok);
    if (!reached) return { ...base, method: "ping", verdict: "isolated", targets };
  }
  if (!options.fence) return { ...base, method: "ping", verdict: "confirmed", targets };

  const argv = options.fence.command.map((arg) => arg.replaceAll("{peer}", peer));
  const result = await processes.run(argv, { timeoutMs: options.fence.timeoutMs });
  const output = `${result.stdout}${result.stderr}${result.timedOut ? `\n(timed out after ${options.fence.timeoutMs} ms)` : ""}`.slice(-TIEBREAK_OUTPUT_MAX_CHARS);
  const exitCode = result.code ?? -1;
  return { ...base, method: "fence", verdict: result.code === 0 && !result.timedOut ? "confirmed" : "failed", targets, exitCode, output };
}
