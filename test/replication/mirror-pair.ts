import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { startAgent, type RunningAgent } from "../../src/agent/agent.ts";
import { initConfig } from "../../src/config/init.ts";
import { loadConfig } from "../../src/config/load.ts";
import { readClusterKey } from "../../src/config/secrets.ts";
import { decideSwitchover } from "../../src/policy/switchover.ts";
import { jobView } from "../../src/api/views.ts";
import type { Recorded } from "../../src/events/catalogue.ts";

/**
 * Two real agents in this process on loopback (127.0.0.x, ports from `base`), one job "data"
 * whose mirrored path is DIR/{node}/data: each node has its own copy on this one machine.
 */
export async function startMirrorPair(name: string, base: number, options: { policy?: string; jobYaml?: string | ((dir: string) => string) } = {}) {
  const dir = await mkdtemp(join(tmpdir(), `duet-${name}-`));
  const jobYaml = typeof options.jobYaml === "function" ? options.jobYaml(dir) : options.jobYaml;
  const nodes = [
    { name: "a", address: "127.0.0.21", dataDir: join(dir, "a") },
    { name: "b", address: "127.0.0.22", dataDir: join(dir, "b") },
  ] as const;
  const { configFile } = await initConfig({
    dir,
    cluster: name,
    nodes: [nodes[0], nodes[1]],
    password: "test-password-long-enough",
    ports: { api: base, peer: base + 1, heartbeat: base + 2 },
    tiebreakerYaml: "  ping: { targets: [127.0.0.1], mode: any, timeoutMs: 1000 }",
    jobsYaml: `  - name: data
    policy: ${options.policy ?? "manual"}
    mirrors:
      - path: ${join(dir, "{node}", "data")}${jobYaml ? `\n${jobYaml}` : ""}`,
  });
  const loaded = await loadConfig(configFile);
  const key = await readClusterKey(loaded.config.cluster.keyFile);
  const agents = new Map<string, RunningAgent>();
  /** `configHash`: the hash this agent says its file has (another file, as far as the peer can tell). */
  const start = async (node: "a" | "b", configHash = loaded.hash) => {
    const log = pino({ base: { node }, level: "info" }, pino.destination({ dest: join(dir, `${node}.log`), sync: true }));
    agents.set(node, await startAgent({ loaded: { ...loaded, hash: configHash }, node, key, log }));
  };
  const agent = (node: "a" | "b") => {
    const a = agents.get(node);
    if (!a) throw new Error(`agent ${node} is not running`);
    return a;
  };
  return {
    dir,
    data: (node: "a" | "b") => join(dir, node, "data"),
    start,
    agent,
    job: (node: "a" | "b") => jobView(agent(node).journal.state(), agent(node).journal.state().jobs.get("data")!),
    client: async (node: "a" | "b") => {
      const { localClient } = await import("../../src/cli/client.ts");
      return localClient({ url: agent(node).apiUrl, dataDir: join(dir, node) });
    },
    async events(node: "a" | "b") {
      const out: Recorded[] = [];
      for await (const r of agent(node).journal.read()) out.push(r);
      return out;
    },
    switchoverGate: (node: "a" | "b", to: string) => decideSwitchover(agent(node).journal.state(), "data", to, Date.now()),
    async stop(node: "a" | "b") {
      await agents.get(node)?.stop();
      agents.delete(node);
    },
    async close() {
      for (const a of agents.values()) await a.stop().catch(() => undefined);
      agents.clear();
      if (!process.env.DUET_KEEP) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` until it returns a value other than null/false, or fails naming `what`. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | null | false> | T | null | false): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== null && value !== false) return value as T;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
