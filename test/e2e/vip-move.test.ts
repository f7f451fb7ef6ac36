import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import { createTestNet, removeStaleNamespaces, type TestNet } from "./netns.ts";
import { createPairKit } from "./pair-kit.ts";

/**
 * A job's address changed on the running pair with `duet config apply`, and a VIP with a fixed
 * MAC through a host crash: real agents in network namespaces, the client in its own.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const prefix = `vm${process.pid % 10000}`;
const subnet = `10.238.${process.pid % 200}`;
const [vip1, vip2] = [`${subnet}.100`, `${subnet}.101`];
const mac = "02:00:5e:20:00:01";
let net: TestNet;
let dir: string;
let configFile: string;
let kit: ReturnType<typeof createPairKit>;

/** Who answers on ADDRESS, asked from the client namespace; "-" for no answer. */
const servedAt = async (address: string) => {
  const script = `fetch("http://${address}:8080/",{signal:AbortSignal.timeout(500)}).then(r=>r.json()).then(j=>console.log(j.servedBy),()=>console.log("-"))`;
  const answer = (await net.probe("client", [process.execPath, "-e", script], 5000)).out.trim();
  return /^[ab]$/.test(answer) ? answer : "-";
};
const neighbour = async (address: string) => (await net.exec("client", ["ip", "neigh", "show", address])).trim();
const appPid = async (host: string) => (JSON.parse(await readFile(join(dir, host, "jobs", "web", "app.pid"), "utf8")) as { pid: number }).pid;

beforeAll(async () => {
  await removeStaleNamespaces(prefix);
  net = await createTestNet({ prefix, subnet, hosts: ["a", "b", "client"] });
  dir = await mkdtemp(join(tmpdir(), "duet-vip-move-"));
  const app = join(ROOT, "examples/demo-app.mjs");
  ({ configFile } = await initConfig({
    dir,
    cluster: "vipmove",
    nodes: [
      { name: "a", address: net.address("a"), dataDir: join(dir, "a") },
      { name: "b", address: net.address("b"), dataDir: join(dir, "b") },
    ],
    password: "vip-move-test-password",
    tiebreakerYaml: `  ping: { targets: [${net.address("client")}], mode: any }`,
    jobsYaml: `  - name: web
    policy: unconditional
    resources:
      - name: ip
        vip: { address: ${vip1}/24, interface: eth0, arpCount: 3, arpIntervalMs: 200, mac: "${mac}" }
      - name: app
        process:
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, 0.0.0.0, "8080", ${JSON.stringify(dir)}]
          health: { tcp: "127.0.0.1:8080" }
        monitor: { intervalMs: 500, timeoutMs: 1000 }`,
  }));
  await writeFile(configFile, (await readFile(configFile, "utf8")).replace("intervalMs: 500", "intervalMs: 200").replace("deadtimeMs: 3000", "deadtimeMs: 1000"));
  kit = createPairKit(net, configFile, vip1);
  kit.startAgent("a");
  kit.startAgent("b");
  await kit.until("both agents connected", 20_000, async () => (await kit.duet("a", "status")).peerStatus === "connected" && (await kit.duet("b", "status")).peerStatus === "connected");
  expect((await kit.duet("a", "job", "bring-in", "web", "--on", "a")).outcome.ok).toBe(true);
}, 60_000);

afterAll(async () => {
  for (const { child } of kit?.agents.values() ?? []) child.kill("SIGKILL");
  for (const host of ["a", "b"]) await run("sh", ["-c", `for p in $(ip netns pids ${prefix}${host}); do kill -9 $p; done`]).catch(() => undefined);
  await net?.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe("moving a running job's address, and a fixed MAC", () => {
  it("the VIP is answered from its fixed MAC", async () => {
    expect(await kit.until("served by a", 10_000, async () => (await servedAt(vip1)) === "a")).toBe(true);
    expect(await neighbour(vip1)).toContain(`lladdr ${mac}`);
  }, 30_000);

  it("a new address applied online: only the VIP blinks, the application keeps running, and the client follows", async () => {
    const pid = await appPid("a");
    const next = join(dir, "next.yaml");
    await writeFile(next, (await readFile(configFile, "utf8")).replace(`${vip1}/24`, `${vip2}/24`));
    const applied = await kit.duet("a", "config", "apply", next);
    expect(applied.applied).toBe(true);
    expect(applied.plan.changes).toEqual([expect.objectContaining({ item: "resources.ip", effect: "on a: the old address removed, the new one added with gratuitous ARP; only this resource blinks" })]);
    const startedAt = Date.now();
    await kit.until("the client served by a at the new address", 5000, async () => (await servedAt(vip2)) === "a");
    console.log(`address moved: the client was served at the new one ${Date.now() - startedAt} ms after the apply returned`);
    expect(await servedAt(vip1)).toBe("-");
    expect(await appPid("a"), "the application was not restarted").toBe(pid);
    expect((await kit.duet("b", "status")).config.version).toBe(2);
  }, 30_000);

  it("a client that pins the address to the MAC is served by b after a's host crashes", async () => {
    await net.exec("client", ["ip", "neigh", "replace", vip2, "lladdr", mac, "dev", "eth0", "nud", "permanent"]);
    await run("sh", ["-c", `for p in $(ip netns pids ${prefix}a); do kill -9 $p; done`]);
    await run("ip", ["-n", `${prefix}a`, "link", "set", "eth0", "down"]);
    const crashedAt = Date.now();
    await kit.until("the client served by b", 15_000, async () => (await servedAt(vip2)) === "b");
    console.log(`host crash -> served by b through the pinned MAC: ${Date.now() - crashedAt} ms`);
    expect(await neighbour(vip2)).toContain(`lladdr ${mac} PERMANENT`);
    expect((await net.exec("b", ["ip", "-o", "addr", "show"])).split("\n").find((l) => l.includes(`${vip2}/`))).toContain("dv02005e200001");
  }, 30_000);
});
