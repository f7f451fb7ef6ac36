import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { TestNet } from "../test/e2e/netns.ts";

const pollerScript = fileURLToPath(new URL("./vip-poller.mjs", import.meta.url));

/** A client in its own namespace that keeps asking the VIP who serves it. */
export function startVipClient(net: TestNet, host: string, url: string) {
  const samples: { at: number; ok: boolean; body: string }[] = [];
  const child: ChildProcess = net.spawn(host, [process.execPath, pollerScript, url, "25", "200"]);
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const [at, status, ...rest] = line.split(" ");
    if (samples.length < 200_000) samples.push({ at: Number(at), ok: status === "ok", body: rest.join(" ") });
  });
  return {
    samples,
    /** Resolves with the first time at or after `since` that `servedBy` answered, or rejects at the deadline. */
    async servedBy(expected: string, since: number, deadlineMs: number): Promise<number> {
      const deadline = Date.now() + deadlineMs;
      for (;;) {
        const hit = samples.find((s) => s.at >= since && s.ok && s.body.includes(expected));
        if (hit) return hit.at;
        if (Date.now() > deadline) throw new Error(`client never served by ${expected} within ${deadlineMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop() {
      child.kill("SIGKILL");
    },
  };
}

export function summarize(label: string, ms: number[], budgetMs: number) {
  const sorted = [...ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? NaN;
  const max = sorted[sorted.length - 1] ?? NaN;
  console.log(
    `${label}: runs=${ms.length} median=${median} ms max=${max} ms  median/deadtime=${(median / budgetMs).toFixed(2)} max/deadtime=${(max / budgetMs).toFixed(2)}`,
  );
  return { median, max };
}
