import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import { localClient, type ApiClient } from "../../src/cli/client.ts";
import type { clusterView } from "../../src/api/views.ts";
import { createApplier } from "../../src/replication/apply.ts";
import { expected, name } from "./fixtures/writer.mjs";

const ROOT = resolve(import.meta.dirname, "../..");
const NODES = { a: "127.0.0.31", b: "127.0.0.32" } as const;
const PORTS = { api: 27520, peer: 27521, heartbeat: 27522 };
type Node = keyof typeof NODES;

let dir: string;
let configFile: string;
const agents = new Map<Node, ChildProcess>();
const others: ChildProcess[] = [];

function startAgent(node: Node): void {
  const log = openSync(join(dir, `${node}.log`), "a");
  const child = spawn(process.execPath, [join(ROOT, "bin/duet.js"), "agent", "--config", configFile, "--node", node], { stdio: ["ignore", "ignore", log] });
  closeSync(log);
  agents.set(node, child);
}
function kill(node: Node): Promise<void> {
  const child = agents.get(node)!;
  agents.delete(node);
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((done) => {
    child.once("exit", () => done());
    child.kill("SIGKILL");
  });
}
async function client(node: Node): Promise<ApiClient> {
  return until(`agent ${node} answering`, 15_000, async () => {
    const c = await localClient({ url: `http://${NODES[node]}:${PORTS.api}`, dataDir: join(dir, node) });
    await c.get("/v1/health");
    return c;
  });
}
async function cluster(node: Node) {
  return (await client(node)).get<ReturnType<typeof clusterView>>("/v1/cluster");
}
async function until<T>(what: string, ms: number, probe: () => Promise<T | null | false>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    const value = await probe().catch((e: unknown) => ((last = e), null));
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (${(last as Error).message})` : ""}\n${await logs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const logs = async () => (await Promise.all((["a", "b"] as const).map(async (n) => `--- ${n}\n${(await readFile(join(dir, `${n}.log`), "utf8").catch(() => "")).slice(-3000)}`))).join("\n");

/**
 * What the writer's files on a replica say: every file there is whole and right, and they are
 * files 0..count-1 with no gap — the state the source had at some moment, never a torn mix.
 */
async function replicaState(data: string): Promise<{ count: number; problems: string[] }> {
  const names = (await readdir(join(data, "files")).catch(() => [] as string[])).filter((n) => !n.startsWith(".tmp-")).sort();
  const problems: string[] = [];
  for (const [i, n] of names.entries()) {
    if (n !== name(i)) problems.push(`file ${n} present but ${name(i)} missing`);
    const content = await readFile(join(data, "files", n), "utf8");
    if (content !== expected(Number(n))) problems.push(`file ${n} holds ${content.length} bytes that are not what was written`);
  }
  return { count: names.length, problems };
}

function startWriter(data: string, count: number, rate: number): ChildProcess {
  const writer = spawn(process.execPath, [join(import.meta.dirname, "fixtures/writer.mjs"), data, String(count), String(rate)], { stdio: ["ignore", "ignore", "inherit"] });
  others.push(writer);
  return writer;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "duet-mirror-crash-"));
  ({ configFile } = await initConfig({
    dir,
    cluster: "mirror-crash",
    nodes: [
      { name: "a", address: NODES.a, dataDir: join(dir, "a") },
      { name: "b", address: NODES.b, dataDir: join(dir, "b") },
    ],
    password: "test-password-long-enough",
    ports: PORTS,
    tiebreakerYaml: "  ping: { targets: [127.0.0.1], mode: any, timeoutMs: 1000 }",
    jobsYaml: `  - name: data
    policy: manual
    mirrors:
      - path: ${join(dir, "{node}", "data")}`,
  }));
  await mkdir(join(dir, "a", "data"), { recursive: true });
});
afterAll(async () => {
  for (const p of others) p.kill("SIGKILL");
  for (const node of [...agents.keys()]) await kill(node);
  if (!process.env.DUET_KEEP) await rm(dir, { recursive: true, force: true });
});

describe("mirroring through crashes (real agent processes on loopback)", () => {
  it("the standby killed again and again mid-apply always holds a whole prefix of the writes, and converges once it stays up", async () => {
    startAgent("a");
    startAgent("b");
    await until("both connected", 15_000, async () => (await cluster("a")).peerStatus === "connected" && (await cluster("b")).peerStatus === "connected");
    await (await client("a")).post("/v1/jobs/data/bring-in", { on: "a" });
    await until("green", 15_000, async () => (await cluster("a")).jobs[0]!.replication.colour === "green");

    const writer = startWriter(join(dir, "a", "data"), 600, 100);
    for (let round = 0; round < 5; round++) {
      await until(`round ${round}: b applying`, 15_000, async () => (await replicaState(join(dir, "b", "data"))).count > round * 60);
      await kill("b");
      // What b's agent does first on restart: re-apply the batch it was applying when killed.
      await createApplier({ job: "data", node: "b", roots: [join(dir, "b", "data")], stateDir: join(dir, "b", "mirror", "data", "from-a") }).open();
      const state = await replicaState(join(dir, "b", "data"));
      expect(state.problems, `after kill ${round}`).toEqual([]);
      startAgent("b");
    }
    await new Promise<void>((done) => (writer.exitCode !== null ? done() : writer.once("exit", () => done())));
    await until("b converged to all 600 files", 30_000, async () => {
      const state = await replicaState(join(dir, "b", "data"));
      return state.count === 600 && state.problems.length === 0;
    });
    await until("green again", 15_000, async () => (await cluster("a")).jobs[0]!.replication.colour === "green");
  }, 120_000);

  it("the active killed under a steady write load: the standby's copy is a whole prefix of what was written", async () => {
    const writer = startWriter(join(dir, "a", "data"), 100_000, 150);
    await until("b applying the new writes", 15_000, async () => (await replicaState(join(dir, "b", "data"))).count > 800);
    writer.kill("SIGKILL");
    await kill("a"); // the host dies: agent and application at once
    // b stays up: whatever was in flight when a died is applied whole or not at all
    await until("b noticing the loss", 15_000, async () => (await cluster("b")).peerStatus === "lost");
    const settled = await replicaState(join(dir, "b", "data"));
    expect(settled.problems).toEqual([]);
    expect(settled.count).toBeGreaterThan(800);
  }, 60_000);
});
