import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import { runReplay } from "../../tools/replay/main.ts";
import { createTestNet, removeStaleNamespaces, type TestNet } from "./netns.ts";
import { createPairKit } from "./pair-kit.ts";

/**
 * Two real agents in network namespaces, a client namespace that is also the gateway the
 * tiebreaker pings, a real VIP with gratuitous ARP, a real application and a real OCF agent.
 * Every packet to a test address is sent from inside a namespace.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const DUET = join(ROOT, "bin/duet.js");
const prefix = `pr${process.pid % 10000}`;
const subnet = `10.235.${process.pid % 200}`;
const vip = `${subnet}.100`;
let net: TestNet;
let dir: string;
let configFile: string;
let kit: ReturnType<typeof createPairKit>;
const startAgent = (host: string) => kit.startAgent(host);
const duet = (host: string, ...args: string[]) => kit.duet(host, ...args);
const until = <T,>(what: string, ms: number, probe: () => Promise<T | null | false | undefined>) => kit.until(what, ms, probe);
const servedBy = () => kit.servedBy();

const status = (host: string) => duet(host, "status") as Promise<{ peerStatus: string; jobs: { name: string; phase: string; active: string | null; lastDecision: { kind: string; code: string } | null }[]; alerts: { code: string }[] }>;
const job = async (host: string, name: string) => (await status(host)).jobs.find((j) => j.name === name)!;

beforeAll(async () => {
  if (!existsSync("/usr/lib/ocf/resource.d/heartbeat/Dummy")) throw new Error("resource-agents is missing: run bash .ci/run or apt-get install resource-agents");
  await removeStaleNamespaces(prefix);
  net = await createTestNet({ prefix, subnet, hosts: ["a", "b", "client"] });
  dir = await mkdtemp(join(tmpdir(), "duet-pair-"));
  const app = join(ROOT, "examples/demo-app.mjs");
  ({ configFile } = await initConfig({
    dir,
    cluster: "pair",
    nodes: [
      { name: "a", address: net.address("a"), dataDir: join(dir, "a") },
      { name: "b", address: net.address("b"), dataDir: join(dir, "b") },
    ],
    password: "pair-test-password",
    tiebreakerYaml: `  ping: { targets: [${net.address("client")}], mode: any }`,
    jobsYaml: `  - name: web
    policy: when-consistent
    restart: { max: 1, windowMs: 60000 }
    resources:
      - name: ip
        vip: { address: ${vip}/24, interface: eth0, arpCount: 2 }
        monitor: { intervalMs: 1000, timeoutMs: 2000 }
      - name: app
        process:
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, ${vip}, "8080", ${JSON.stringify(dir)}]
          health: { http: "http://${vip}:8080/" }
        monitor: { intervalMs: 500, timeoutMs: 1000 }
  - name: db
    policy: manual
    resources:
      - name: dummy
        ocf: { agent: heartbeat/Dummy }`,
  }));
  // Faster detection than the defaults keeps the suite short; the bench measures the defaults.
  const { readFile, writeFile } = await import("node:fs/promises");
  await writeFile(configFile, (await readFile(configFile, "utf8")).replace("intervalMs: 500", "intervalMs: 200").replace("deadtimeMs: 3000", "deadtimeMs: 1000"));
  kit = createPairKit(net, configFile, vip);
  startAgent("a");
  startAgent("b");
  await until("both agents connected", 20_000, async () => (await status("a")).peerStatus === "connected" && (await status("b")).peerStatus === "connected");
}, 60_000);

afterAll(async () => {
  for (const { child } of kit?.agents.values() ?? []) child.kill("SIGKILL");
  for (const host of ["a", "b"]) await run("sh", ["-c", `for p in $(ip netns pids ${prefix}${host}); do kill -9 $p; done`]).catch(() => undefined);
  await net?.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe("a real pair in network namespaces", () => {
  it("brings a job in: the VIP answers from node a, and b's journal knows where it runs", async () => {
    const outcome = await duet("a", "job", "bring-in", "web", "--on", "a");
    expect(outcome.outcome.ok).toBe(true);
    expect(await servedBy()).toBe("a");
    await until("b knows web runs on a", 5000, async () => (await job("b", "web")).active === "a");
  }, 30_000);

  it("gatherinfo from the running agent: a bundle replay can read", async () => {
    const { file } = await duet("a", "gatherinfo", "--out", join(dir, "bundles"));
    const { output, exitCode } = await runReplay([file]);
    expect(exitCode, output).toBe(0);
    expect(output).toMatch(/job web running on a/);
  }, 30_000);

  it("a second agent on the same data directory is refused with a clear error", async () => {
    const result = await net.probe("a", [process.execPath, DUET, "agent", "--config", configFile, "--node", "a"], 20_000);
    expect(result.code).not.toBe(0);
    expect(result.out).toMatch(/in use by another process/);
  }, 30_000);

  it("switches over a->b and back and to b again, asked on either node: the VIP and the app move, the client follows", async () => {
    for (const [asked, to, from] of [["a", "b", "a"], ["a", "a", "b"], ["b", "b", "a"]] as const) {
      const outcome = await duet(asked, "job", "switchover", "web", "--to", to);
      expect(outcome.outcome.ok, `switchover to ${to} asked on ${asked}`).toBe(true);
      expect(await until(`the client served by ${to}`, 10_000, async () => (await servedBy()) === to && to)).toBe(to);
      expect((await net.probe(from, ["ip", "-o", "addr", "show", "dev", "eth0"])).out).not.toContain(vip);
    }
    await duet("b", "job", "bring-in", "db", "--on", "b");
  }, 60_000);

  it("host b crashes: a takes web over (when-consistent) but not db (manual: an alert), and replay confirms both", async () => {
    for (const host of ["b"]) {
      await run("sh", ["-c", `for p in $(ip netns pids ${prefix}${host}); do kill -9 $p; done`]);
      await run("ip", ["-n", `${prefix}${host}`, "link", "set", "eth0", "down"]);
    }
    const crashedAt = Date.now();
    await until("the client served by a", 15_000, async () => (await servedBy()) === "a");
    const outageMs = Date.now() - crashedAt;
    expect(outageMs).toBeLessThan(10_000);
    const web = await until("a journals the takeover", 5000, async () => {
      const j = await job("a", "web");
      return j.active === "a" && j;
    });
    expect(web.lastDecision).toMatchObject({ kind: "takeover" });
    const db = await until("a declines db", 5000, async () => {
      const j = await job("a", "db");
      return j.lastDecision?.code === "policy-manual" && j;
    });
    expect(db.active).toBe("b");
    expect((await status("a")).alerts.map((a) => a.code)).toContain("policy-manual");
    // b comes back: its journal says it ran web and db; the hello exchange tells it a runs web now,
    // so it gives web up (stopping leftovers) and keeps db, which nobody took over.
    await run("ip", ["-n", `${prefix}b`, "link", "set", "eth0", "up"]);
    startAgent("b");
    await until("b rejoins and learns a runs web", 30_000, async () => (await job("b", "web")).active === "a");
    expect((await job("b", "db")).active).toBe("b");
    expect(await servedBy()).toBe("a");
    // Replay needs the journals closed. SIGTERM on a switches web over to the connected peer;
    // then b, alone, brings its jobs out.
    for (const host of ["a", "b"]) {
      kit.agents.get(host)!.child.kill("SIGTERM");
      await until(`agent ${host} stopped`, 30_000, async () => kit.agents.get(host)!.child.exitCode !== null);
    }
    const { output, exitCode } = await runReplay([join(dir, "a", "journal"), join(dir, "b", "journal")]);
    expect(output, output).toMatch(/why: takeover \(takeover\) of job web on a/);
    expect(output).toMatch(/why: decline \(policy-manual\) of job db on a/);
    expect(output).not.toMatch(/approximate|MISMATCH/);
    expect(output).toMatch(/agent a stopping on SIGTERM; its jobs: switch-over/);
    expect(output).toMatch(/job web running on b/);
    expect(output).toMatch(/agent b stopping on SIGTERM; its jobs: bring-out/);
    expect(exitCode, output).toBe(0);
    for (const host of ["a", "b"]) expect((await net.probe(host, ["ip", "-o", "addr", "show", "dev", "eth0"])).out).not.toContain(vip);
  }, 90_000);
});
