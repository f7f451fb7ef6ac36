import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { copyFile, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { clusterView } from "../../src/api/views.ts";
import { localClient, type ApiClient } from "../../src/cli/client.ts";
import { initConfig } from "../../src/config/init.ts";
import type { Recorded } from "../../src/events/catalogue.ts";

const ROOT = resolve(import.meta.dirname, "../..");
export type PairNode = "a" | "b";

/**
 * Two real agent processes (`duet agent`) on loopback addresses, with one job "data" mirroring
 * DIR/{node}/data, driven through their HTTP API like the CLI does. Logs go to DIR/NODE.log.
 */
export async function startProcessPair(options: {
  name: string;
  addresses: Record<PairNode, string>;
  ports: { api: number; peer: number; heartbeat: number };
  policy?: string;
  /** The jobs section instead of the one job "data". */
  jobsYaml?: string;
  /** Each node reads its own copy of the config (DIR/a.yaml, DIR/b.yaml), as two hosts would. */
  configPerNode?: boolean;
}) {
  const dir = await mkdtemp(join(tmpdir(), `duet-${options.name}-`));
  const { configFile } = await initConfig({
    dir,
    cluster: options.name,
    nodes: [
      { name: "a", address: options.addresses.a, dataDir: join(dir, "a") },
      { name: "b", address: options.addresses.b, dataDir: join(dir, "b") },
    ],
    password: "test-password-long-enough",
    ports: options.ports,
    tiebreakerYaml: "  ping: { targets: [127.0.0.1], mode: any, timeoutMs: 1000 }",
    jobsYaml: options.jobsYaml ?? `  - name: data
    policy: ${options.policy ?? "manual"}
    mirrors:
      - path: ${join(dir, "{node}", "data")}`,
  });
  const configOf = (node: PairNode) => (options.configPerNode ? join(dir, `${node}.yaml`) : configFile);
  if (options.configPerNode) for (const node of ["a", "b"] as const) await copyFile(configFile, configOf(node));
  const agents = new Map<PairNode, ChildProcess>();
  const logs = async () => (await Promise.all((["a", "b"] as const).map(async (n) => `--- ${n}\n${(await readFile(join(dir, `${n}.log`), "utf8").catch(() => "")).slice(-3000)}`))).join("\n");

  async function until<T>(what: string, ms: number, probe: () => Promise<T | null | false>, everyMs = 100): Promise<T> {
    const deadline = Date.now() + ms;
    let last: unknown;
    for (;;) {
      const value = await probe().catch((e: unknown) => ((last = e), null));
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (${(last as Error).message})` : ""}\n${await logs()}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
  const client = (node: PairNode): Promise<ApiClient> =>
    until(`agent ${node} answering`, 15_000, async () => {
      const c = await localClient({ url: `http://${options.addresses[node]}:${options.ports.api}`, dataDir: join(dir, node) });
      await c.get("/v1/health");
      return c;
    });

  const pair = {
    dir,
    configFile: configOf,
    data: (node: PairNode) => join(dir, node, "data"),
    until,
    client,
    /** `wrap`: a command line to run the agent under, e.g. a profiler's (`clinic flame --`). */
    start(node: PairNode, wrap: string[] = []): ChildProcess {
      const log = openSync(join(dir, `${node}.log`), "a");
      // DUET_AGENT_NODE_ARGS: node flags for the agents only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile a bench;
      // DUET_AGENT_STDOUT=1 adds their stdout to the log (where --trace-gc writes).
      const nodeArgs = process.env.DUET_AGENT_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
      const argv = [...wrap, process.execPath, ...nodeArgs, join(ROOT, "bin/duet.js"), "agent", "--config", configOf(node), "--node", node];
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", process.env.DUET_AGENT_STDOUT ? log : "ignore", log] });
      closeSync(log);
      agents.set(node, child);
      return child;
    },
    pid: (node: PairNode) => agents.get(node)?.pid,
    child: (node: PairNode) => agents.get(node),
    /** SIGKILL: the host dies as far as this agent is concerned. */
    kill(node: PairNode): Promise<void> {
      return pair.signal(node, "SIGKILL");
    },
    /** SIGTERM: what `systemctl stop` does. */
    stop(node: PairNode): Promise<void> {
      return pair.signal(node, "SIGTERM");
    },
    signal(node: PairNode, signal: NodeJS.Signals): Promise<void> {
      const child = agents.get(node);
      agents.delete(node);
      if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise((done) => {
        child.once("exit", () => done());
        child.kill(signal);
      });
    },
    async cluster(node: PairNode) {
      return (await client(node)).get<ReturnType<typeof clusterView>>("/v1/cluster");
    },
    async job(node: PairNode) {
      return (await pair.cluster(node)).jobs.find((j) => j.name === "data")!;
    },
    /** Every journal event of `node` from `from` on, paged through the API. */
    async events(node: PairNode, from = 1): Promise<Recorded[]> {
      const c = await client(node);
      const out: Recorded[] = [];
      for (let next = from; ; ) {
        const page = await c.get<{ events: Recorded[]; head: number }>(`/v1/events?from=${next}&limit=1000`);
        out.push(...page.events);
        if (page.events.length === 0 || page.events.at(-1)!.seq >= page.head) return out;
        next = page.events.at(-1)!.seq + 1;
      }
    },
    async close(): Promise<void> {
      for (const node of [...agents.keys()]) await pair.kill(node);
      // An agent killed leaves its process resources running (each in a group of its own): end them.
      for (const node of ["a", "b"] as const) {
        for (const job of await readdir(join(dir, node, "jobs")).catch(() => [] as string[])) {
          for (const file of (await readdir(join(dir, node, "jobs", job)).catch(() => [] as string[])).filter((f) => f.endsWith(".pid"))) {
            const { pid } = JSON.parse(await readFile(join(dir, node, "jobs", job, file), "utf8").catch(() => "{}")) as { pid?: number };
            if (pid) killGroup(pid);
          }
        }
      }
      if (!process.env.DUET_KEEP) await rm(dir, { recursive: true, force: true });
    },
  };
  return pair;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}
