import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import type { TestNet } from "./netns.ts";
import { createCabledNet, destroyCabledNet } from "./cabled-net.ts";
import { createPairKit, demoResourcesYaml } from "./pair-kit.ts";

/**
 * The pair as the outside test cabled it: the node addresses (and so the peer channel) on the
 * public network eth0, with the VIP, the client and a `nic` resource; a private direct link eth1
 * carries a second heartbeat link. Losing eth0 must not cut the control path.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const prefix = `nf${process.pid % 10000}`;
const subnet = `10.237.${process.pid % 200}`;
const privateNet = `192.169.${process.pid % 200}`;
const vip = `${subnet}.100`;
let net: TestNet;
let dir: string;
let kit: ReturnType<typeof createPairKit>;
const ns = (host: string) => `${prefix}${host}`;
type Job = { name: string; phase: string; active: string | null };
const web = async (host: string) => ((await kit.duet(host, "status")) as { jobs: Job[] }).jobs.find((j) => j.name === "web")!;

beforeAll(async () => {
  net = await createCabledNet({ prefix, subnet, privateNet });
  dir = await mkdtemp(join(tmpdir(), "duet-nic-"));
  const { configFile } = await initConfig({
    dir,
    cluster: "nic",
    nodes: [
      { name: "a", address: net.address("a"), dataDir: join(dir, "a") },
      { name: "b", address: net.address("b"), dataDir: join(dir, "b") },
    ],
    password: "nic-test-password",
    tiebreakerYaml: `  ping: { targets: [${net.address("client")}], mode: any }`,
    jobsYaml: `  - name: web
    policy: when-consistent
    resources:
      - name: public
        nic: { interface: eth0 }
        monitor: { intervalMs: 300, timeoutMs: 1000 }
${demoResourcesYaml(vip, dir)}`,
  });
  const text = (await readFile(configFile, "utf8"))
    .replace("intervalMs: 500", "intervalMs: 200")
    .replace("deadtimeMs: 3000", `deadtimeMs: 1000\n  links:\n    - { name: public, port: 7340, addresses: [${net.address("a")}, ${net.address("b")}] }\n    - { name: private, port: 7350, addresses: [${privateNet}.1, ${privateNet}.2] }`);
  await writeFile(configFile, text);
  kit = createPairKit(net, configFile, vip);
  kit.startAgent("a");
  kit.startAgent("b");
  await kit.until("both agents connected", 20_000, async () => (await kit.duet("a", "status")).peerStatus === "connected" && (await kit.duet("b", "status")).peerStatus === "connected");
  expect((await kit.duet("a", "job", "bring-in", "web", "--on", "a")).outcome.ok).toBe(true);
  expect(await kit.servedBy()).toBe("a");
}, 60_000);

afterAll(async () => {
  await destroyCabledNet(net, kit?.agents.values() ?? []);
  await rm(dir, { recursive: true, force: true });
});

describe("the active node's public NIC fails, and the peer channel ran over it", () => {
  it("the job moves to the peer over the private link, and the client is served there; the NIC's return leaves it there", async () => {
    const downAt = Date.now();
    await run("ip", ["-n", ns("a"), "link", "set", "eth0", "down"]);
    try {
      await kit.until("the client served by b", 20_000, async () => (await kit.servedBy()) === "b");
      const outageMs = Date.now() - downAt;
      console.log(`public NIC down on the active node to the client served by the peer: ${outageMs} ms`);
      expect((await web("b")).active).toBe("b");
    } finally {
      await run("ip", ["-n", ns("a"), "link", "set", "eth0", "up"]);
    }
    await kit.until("a sees b running web", 15_000, async () => (await web("a")).active === "b");
    expect(await kit.servedBy()).toBe("b");
    expect((await web("b")).phase).toBe("in");
  }, 60_000);
});
