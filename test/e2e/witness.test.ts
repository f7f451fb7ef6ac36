import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import { startEtcd, type EtcdCluster } from "../cluster/etcd-server.ts";
import type { TestNet } from "./netns.ts";
import { createCabledNet, destroyCabledNet } from "./cabled-net.ts";
import { createPairKit, demoResourcesYaml } from "./pair-kit.ts";

/**
 * A real pair with a witness: etcd runs in the client's namespace on the public network (beside
 * the ping target), the nodes on a public bridge and a private veth. A split that drops every
 * frame between a and b, ARP included, while both still reach the gateway and etcd is the case a
 * ping tiebreaker cannot judge: with the witness exactly one node holds the job all along.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const prefix = `wt${process.pid % 10000}`;
const subnet = `10.237.${process.pid % 200}`;
const privateNet = `192.168.${(process.pid % 200) + 1}`;
const vip = `${subnet}.100`;
const LEASE_MS = 3000;
let net: TestNet;
let etcd: EtcdCluster;
let dir: string;
let kit: ReturnType<typeof createPairKit>;
const duet = (host: string, ...args: string[]) => kit.duet(host, ...args);
const until = <T,>(what: string, ms: number, probe: () => Promise<T | null | false | undefined>) => kit.until(what, ms, probe);
const ns = (host: string) => `${prefix}${host}`;

type Job = { name: string; phase: string; active: string | null; lastDecision: { kind: string; code: string } | null };
const web = async (host: string) => ((await duet(host, "status")) as { jobs: Job[] }).jobs.find((j) => j.name === "web")!;
const metrics = async (host: string) =>
  net.exec(host, [process.execPath, "-e", `
    const fs=require("fs");const t=fs.readFileSync(${JSON.stringify(join(dir, host, "cli.token"))},"utf8").trim();
    fetch("http://${privateNet}.${host === "a" ? 1 : 2}:7320/metrics",{headers:{authorization:"Bearer "+t}}).then(r=>r.text()).then(t=>console.log(t))`]);
const events = async (host: string, type: string) => {
  const out = await net.exec(host, [process.execPath, "-e", `
    const fs=require("fs");const t=fs.readFileSync(${JSON.stringify(join(dir, host, "cli.token"))},"utf8").trim();
    fetch("http://${privateNet}.${host === "a" ? 1 : 2}:7320/v1/events?type=${type}&limit=1000",{headers:{authorization:"Bearer "+t}}).then(r=>r.json()).then(j=>console.log(JSON.stringify(j.events)))`]);
  return JSON.parse(out) as { at: number; data: Record<string, unknown> }[];
};

/** Samples both namespaces' addresses, one `ip` each per round, until stopped: who held the VIP in each round. */
function sampleVip() {
  const rounds: { at: number; a: boolean; b: boolean }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const [a, b] = await Promise.all([kit.hasVip("a"), kit.hasVip("b")]);
      rounds.push({ at: Date.now(), a, b });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return async () => {
    running = false;
    await loop;
    return rounds;
  };
}

/** Every frame between a and b is dropped at the public bridge (ARP too), and the private link is down; both still reach the client. */
async function splitDroppingArp(): Promise<() => Promise<void>> {
  const [va, vb] = [`${prefix}v1`, `${prefix}v2`];
  const rules = `table bridge duet_split {
    chain forward_cut {
      type filter hook forward priority 0;
      iifname "${va}" oifname "${vb}" drop
      iifname "${vb}" oifname "${va}" drop
    }
  }\n`;
  await nftIn(`${prefix}sw`, rules);
  await run("ip", ["-n", ns("a"), "link", "set", "eth1", "down"]);
  return async () => {
    await run("ip", ["netns", "exec", `${prefix}sw`, "nft", "delete", "table", "bridge", "duet_split"]);
    await run("ip", ["-n", ns("a"), "link", "set", "eth1", "up"]);
  };
}

async function nftIn(namespace: string, rules: string): Promise<void> {
  const child = execFile("ip", ["netns", "exec", namespace, "nft", "-f", "-"]);
  const done = new Promise<void>((ok, fail) => child.once("exit", (code) => (code === 0 ? ok() : fail(new Error(`nft in ${namespace} exited ${code}`)))));
  child.stdin!.end(rules);
  await done;
}

beforeAll(async () => {
  net = await createCabledNet({ prefix, subnet, privateNet });
  etcd = await startEtcd({ host: net.address("client"), netns: ns("client") });
  dir = await mkdtemp(join(tmpdir(), "duet-witness-"));
  const { configFile } = await initConfig({
    dir,
    cluster: "witness",
    nodes: [
      { name: "a", address: `${privateNet}.1`, dataDir: join(dir, "a") },
      { name: "b", address: `${privateNet}.2`, dataDir: join(dir, "b") },
    ],
    password: "witness-test-password",
    tiebreakerYaml: `  ping: { targets: [${net.address("client")}], mode: any }
  witness: { etcd: { endpoints: [${etcd.endpoints[0]}], prefix: /duet-e2e }, leaseMs: ${LEASE_MS} }`,
    jobsYaml: `  - name: web
    policy: unconditional
    resources:
${demoResourcesYaml(vip, dir)}`,
  });
  const text = (await readFile(configFile, "utf8"))
    .replace("intervalMs: 500", "intervalMs: 200")
    .replace("deadtimeMs: 3000", "deadtimeMs: 1000\n  suspectMs: 400\n  links:\n    - { name: private, port: 7340, addresses: [" + `${privateNet}.1, ${privateNet}.2` + "] }\n    - { name: public, port: 7350, addresses: [" + `${net.address("a")}, ${net.address("b")}` + "] }");
  await writeFile(configFile, text);
  kit = createPairKit(net, configFile, vip);
  kit.startAgent("a");
  kit.startAgent("b");
  await until("both agents connected", 20_000, async () => (await duet("a", "status")).peerStatus === "connected" && (await duet("b", "status")).peerStatus === "connected");
  expect((await duet("a", "job", "bring-in", "web", "--on", "a")).outcome.ok).toBe(true);
  expect(await kit.servedBy()).toBe("a");
}, 90_000);

afterAll(async () => {
  await destroyCabledNet(net, kit?.agents.values() ?? []);
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("a pair with a witness on etcd", () => {
  it("a split that drops ARP while both reach the gateway and etcd: exactly one node holds the VIP in every sample", async () => {
    const stopSampling = sampleVip();
    const heal = await splitDroppingArp();
    try {
      await until("b lost a", 10_000, async () => (await duet("b", "status")).peerStatus === "lost");
      // Three lease lengths: b asks for the key and is refused while a renews.
      await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
    } finally {
      await heal();
    }
    const rounds = await stopSampling();
    expect(rounds.length).toBeGreaterThan(100);
    expect(rounds.filter((r) => r.a && r.b)).toEqual([]);
    expect(rounds.filter((r) => !r.a)).toEqual([]);
    const declined = await events("b", "TakeoverDeclined");
    expect(declined.map((d) => d.data.code)).toContain("witness-held-by-peer");
    await until("the pair connected again", 15_000, async () => (await duet("b", "status")).peerStatus === "connected");
    expect(await kit.servedBy()).toBe("a");
  }, 60_000);

  it("a one-way cut (b hears nothing from a, ARP included; a hears b) while both reach etcd: a keeps the VIP in every sample", async () => {
    const declinedBefore = (await events("b", "TakeoverDeclined")).length;
    const stopSampling = sampleVip();
    const [va, vb] = [`${prefix}v1`, `${prefix}v2`];
    await nftIn(`${prefix}sw`, `table bridge duet_oneway {\n chain forward_cut {\n type filter hook forward priority 0;\n iifname "${va}" oifname "${vb}" drop\n }\n}\n`);
    // On the interconnect, a's output to b (arping reads replies off a packet socket, before b's filters).
    await nftIn(ns("a"), `table inet duet_oneway {\n chain out {\n type filter hook output priority 0;\n ip daddr ${privateNet}.2 drop\n }\n}\ntable arp duet_oneway_arp {\n chain out {\n type filter hook output priority 0;\n arp daddr ip ${privateNet}.2 drop\n }\n}\n`);
    try {
      await until("b lost a", 10_000, async () => (await duet("b", "status")).peerStatus === "lost");
      await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
    } finally {
      await run("ip", ["netns", "exec", `${prefix}sw`, "nft", "delete", "table", "bridge", "duet_oneway"]);
      await run("ip", ["netns", "exec", ns("a"), "nft", "delete", "table", "inet", "duet_oneway"]);
      await run("ip", ["netns", "exec", ns("a"), "nft", "delete", "table", "arp", "duet_oneway_arp"]);
    }
    const rounds = await stopSampling();
    expect(rounds.length).toBeGreaterThan(100);
    expect(rounds.filter((r) => !r.a || r.b)).toEqual([]);
    const declined = (await events("b", "TakeoverDeclined")).slice(declinedBefore);
    expect(declined.map((d) => d.data.code), JSON.stringify(declined.map((d) => d.data.reasons))).toContain("witness-held-by-peer");
    await until("the pair connected again", 15_000, async () => (await duet("b", "status")).peerStatus === "connected");
  }, 60_000);

  it("status and /metrics show the lease and who holds the job's key", async () => {
    const a = await duet("a", "status");
    expect(a.witness).toMatchObject({ state: "held", ttlMs: LEASE_MS, unreachable: "self-fence" });
    expect(a.jobs[0].witnessKey).toMatchObject({ won: true, holder: "a", givenBack: false });
    const b = await duet("b", "status");
    expect(b.jobs[0].witnessKey).toMatchObject({ won: false, holder: "a" });
    const human = await net.exec("a", [process.execPath, join(ROOT, "bin/duet.js"), "status", "--config", join(dir, "duet.yaml"), "--node", "a"]);
    expect(human).toMatch(/witness: lease \d+ held, 3 s, renewed \(when it cannot renew: self-fence\)/);
    expect(human).toMatch(/witness key: held by a \(revision \d+/);
    const text = await metrics("a");
    expect(text).toMatch(/^duet_witness_lease_held 1$/m);
    expect(text).toMatch(/^duet_witness_key_held\{job="web"\} 1$/m);
    const remaining = Number(/^duet_witness_lease_remaining_seconds (\S+)$/m.exec(text)?.[1]);
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(LEASE_MS / 1000);
  }, 30_000);

  it("the active's host dies: the standby wins the key once the lease has expired, never before, and serves", async () => {
    const crashedAt = Date.now();
    // The host goes: its agent and application killed, its VIP gone with its power, its interfaces down.
    await run("sh", ["-c", `for p in $(ip netns pids ${ns("a")}); do kill -9 $p; done`]);
    await run("ip", ["-n", ns("a"), "addr", "del", `${vip}/24`, "dev", "eth0"]);
    await run("ip", ["-n", ns("a"), "link", "set", "eth0", "down"]);
    await run("ip", ["-n", ns("a"), "link", "set", "eth1", "down"]);
    const servedAt = await until("served by b", 20_000, async () => (await kit.servedBy()) === "b" && Date.now());
    const [won] = (await events("b", "WitnessClaimed")).filter((e) => e.data.won === true && e.data.purpose === "takeover");
    expect(won).toBeDefined();
    // a renewed at most a renewal period (a quarter of the lease) before it died: its lease ran at
    // least that much less than a TTL past the crash, and b could not win the key before.
    expect(won!.at).toBeGreaterThanOrEqual(crashedAt + LEASE_MS - LEASE_MS / 4 - 100);
    expect(servedAt - crashedAt).toBeLessThan(LEASE_MS + 5000);
    await run("ip", ["-n", ns("a"), "link", "set", "eth0", "up"]);
    await run("ip", ["-n", ns("a"), "link", "set", "eth1", "up"]);
    kit.startAgent("a");
    await until("a back and connected", 20_000, async () => (await duet("a", "status")).peerStatus === "connected");
    expect((await web("a")).active).toBe("b");
  }, 60_000);

  it("etcd unreachable from the active only: the job moves to the peer before the lease can expire (unreachable: self-fence)", async () => {
    // b runs the job now; it loses etcd (and only etcd: the client still answers its pings).
    const port = new URL(etcd.endpoints[0]!).port;
    await nftIn(ns("b"), `table inet duet_noetcd {\n chain out {\n type filter hook output priority 0;\n ip daddr ${net.address("client")} tcp dport ${port} drop\n }\n}\n`);
    try {
      await until("served by a", 20_000, async () => (await kit.servedBy()) === "a");
      const [moved] = await events("b", "FailoverDecided");
      expect(moved!.data).toMatchObject({ from: "b", to: "a", cause: "witness-lost" });
    } finally {
      await run("ip", ["netns", "exec", ns("b"), "nft", "delete", "table", "inet", "duet_noetcd"]);
    }
  }, 40_000);

  it("etcd down for both: the job stops before the active's lease could expire, and neither node runs it without a key", async () => {
    const killedAt = Date.now();
    etcd.kill(0);
    const stoppedAt = await until("web out on a", 20_000, async () => (await web("a")).phase !== "in" && !(await kit.hasVip("a")) && Date.now());
    expect(stoppedAt - killedAt).toBeLessThan(LEASE_MS);
    // The move to b is tried (b may reach etcd) and refused there for want of the key.
    const [moved] = (await events("a", "FailoverDecided")).filter((e) => e.at >= killedAt);
    expect(moved!.data).toMatchObject({ from: "a", cause: "witness-lost" });
    await until("b refused it for want of the key", 10_000, async () => (await events("b", "JobStartFailed")).some((e) => e.at >= killedAt && e.data.resource === "witness"));
    await new Promise((r) => setTimeout(r, LEASE_MS));
    expect(await kit.hasVip("a")).toBe(false);
    expect(await kit.hasVip("b")).toBe(false);
  }, 40_000);
});
