import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgent, type AgentContext } from "../../src/resources/agent.ts";
import { ocfMetadata } from "../../src/resources/ocf.ts";
import { resourceSpec } from "../../src/resources/spec.ts";
import { macvlanName } from "../../src/resources/vip.ts";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { createJobRunner } from "../../src/resources/runner.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { inNamespace } from "../../src/world/netns-runner.ts";
import { systemProcesses } from "../../src/world/process.ts";
import { createTestNet, type TestNet } from "../e2e/netns.ts";

const DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy";
let stateDir: string;
let net: TestNet;
const subnet = `10.234.${process.pid % 200}`;
beforeAll(async () => {
  if (!existsSync(DUMMY)) throw new Error(`${DUMMY} is missing: install Debian's resource-agents (apt-get install resource-agents, or run bash .ci/run)`);
  stateDir = await mkdtemp(join(tmpdir(), "duet-agents-"));
  net = await createTestNet({ prefix: `rs${process.pid % 10000}`, subnet, hosts: ["a", "b", "client"] });
});
afterAll(async () => {
  await net?.destroy();
  await rm(stateDir, { recursive: true, force: true });
});
/** Polls the outside world until it agrees, within a bounded deadline. */
const until = async (what: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const ctx = (over: Partial<AgentContext> = {}): AgentContext => ({ job: "web", node: "a", stateDir, processes: systemProcesses, clock: systemClock, timers: systemTimers, ...over });
const agentFor = (spec: unknown, over: Partial<AgentContext> = {}) => createAgent(resourceSpec.parse(spec), ctx(over));

describe("ocf resource agents (Debian's resource-agents)", () => {
  it("Dummy: monitor before start says not running (7), then start, monitor, stop", async () => {
    const dummy = agentFor({ name: "dummy", ocf: { agent: "heartbeat/Dummy" } });
    expect(await dummy.monitor()).toMatchObject({ ok: false, notRunning: true });
    await dummy.start();
    expect(await dummy.monitor()).toEqual({ ok: true });
    await dummy.stop();
    expect(await dummy.monitor()).toMatchObject({ ok: false, notRunning: true });
    await dummy.stop(); // stopping a stopped resource succeeds (OCF 7 on stop is success)
  });

  it("two nodes on one machine keep separate state (HA_RSCTMP per node)", async () => {
    const onA = agentFor({ name: "dummy2", ocf: { agent: "heartbeat/Dummy" } }, { stateDir: join(stateDir, "a") });
    const onB = agentFor({ name: "dummy2", ocf: { agent: "heartbeat/Dummy" } }, { stateDir: join(stateDir, "b") });
    await onA.start();
    expect((await onB.monitor()).ok).toBe(false);
    await onA.stop();
  });

  it("an error code is named: a missing agent is 'not installed', a bad parameter is explained", async () => {
    const missing = agentFor({ name: "x", ocf: { agent: "heartbeat/NoSuchAgent" } });
    await expect(missing.start()).rejects.toThrow(/ocf:heartbeat\/NoSuchAgent start/);
    const unconfigured = agentFor({ name: "ip", ocf: { agent: "heartbeat/IPaddr2" } });
    await expect(unconfigured.start()).rejects.toThrow(/returned 6 \(not configured \(it will not work on the other node either\)\).*the ip parameter\) is mandatory/);
  });

  it("anything runs a command as a resource", async () => {
    const any = agentFor({ name: "sleeper", ocf: { agent: "heartbeat/anything", params: { binfile: "/bin/sleep", cmdline_options: "60", pidfile: join(stateDir, "sleeper.pid") } } });
    await any.start();
    expect(await any.monitor()).toEqual({ ok: true });
    await any.stop();
    expect((await any.monitor()).ok).toBe(false);
  });

  it("meta-data describes the agent's parameters", async () => {
    const spec = resourceSpec.parse({ name: "d", ocf: { agent: "heartbeat/Dummy" } });
    expect(await ocfMetadata(spec as never, ctx())).toMatch(/<resource-agent name="Dummy"/);
  });
});

describe("script resources", () => {
  it("monitor exit 0 is healthy, 7 is cleanly not running, anything else is an error with its output", async () => {
    const flag = join(stateDir, "script-state");
    const monitor = ["/bin/sh", "-c", `test -e ${flag} || exit 7; grep -q broken ${flag} && { echo disk full >&2; exit 1; }; exit 0`];
    const script = agentFor({ name: "svc", script: { start: ["/bin/sh", "-c", `echo fine > ${flag}`], stop: ["/bin/rm", "-f", flag], monitor } });
    expect(await script.monitor()).toEqual({ ok: false, error: "svc: monitor says not running", notRunning: true });
    await script.start();
    expect(await script.monitor()).toEqual({ ok: true });
    await writeFile(flag, "broken\n");
    expect(await script.monitor()).toEqual({ ok: false, error: "svc: monitor failed: disk full", notRunning: false });
    await script.stop();
    expect((await script.monitor()).ok).toBe(false);
  });

  it("a failing start names the resource, the exit code and the command's complaint", async () => {
    const script = agentFor({ name: "svc", script: { start: ["/bin/sh", "-c", "echo cannot bind port 80 >&2; exit 3"], stop: ["/bin/true"], monitor: ["/bin/true"] } });
    await expect(script.start()).rejects.toMatchObject({ name: "ResourceError", exitCode: 3, message: "svc: start failed (exit 3): cannot bind port 80" });
  });
});

const run = promisify(execFile);

describe("vip, nic and ping in test namespaces", () => {
  const vip = `${subnet}.100`;
  const vipSpec = { name: "ip", vip: { address: `${vip}/24`, interface: "eth0", arpCount: 2 }, startTimeoutMs: 5000 };

  it("a stopped address is announced no more: the gratuitous ARP under way ends with the stop", async () => {
    // Before: arping went on sending (one a second) after the address was gone, and the client
    // turned back to the node that had let go of it (seen after a both-active resolution).
    const onA = agentFor({ ...vipSpec, vip: { ...vipSpec.vip, arpCount: 5 } }, { processes: inNamespace(net.ns("a"), systemProcesses) });
    const arpings = async () => {
      const pids = (await run("ip", ["netns", "pids", net.ns("a")])).stdout.split("\n").filter(Boolean);
      const lines = await Promise.all(pids.map((pid) => readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")));
      return lines.filter((line) => line.startsWith("arping\0")).length;
    };
    await onA.start();
    // `ip netns exec` becomes arping a moment after the start returns (longer on a loaded machine).
    const under = Date.now() + 2000;
    while ((await arpings()) === 0 && Date.now() < under) await new Promise((r) => setTimeout(r, 10));
    expect(await arpings(), "an announcement under way after the start").toBe(1);
    await onA.stop();
    const deadline = Date.now() + 2000;
    while ((await arpings()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await arpings(), "arping left announcing an address this node let go of").toBe(0);
  });

  it("the address moves with gratuitous ARP: the client learns the new MAC at once", async () => {
    const onA = agentFor(vipSpec, { processes: inNamespace(net.ns("a"), systemProcesses) });
    const onB = agentFor(vipSpec, { processes: inNamespace(net.ns("b"), systemProcesses) });
    await onA.start();
    expect(await onA.monitor()).toEqual({ ok: true });
    await net.exec("client", ["ping", "-c", "1", "-W", "1", vip]);
    const macOf = async (host: string) => (await net.exec(host, ["cat", "/sys/class/net/eth0/address"])).trim();
    const neighbour = async () => (await net.exec("client", ["ip", "neigh", "show", vip])).trim();
    expect(await neighbour()).toContain(await macOf("a"));
    await expect(onB.start(), "b must refuse while a holds the address").rejects.toThrow(/still answers on the network after 5000 ms/);
    await onA.stop();
    expect((await onA.monitor()).ok).toBe(false);
    await onB.start();
    // The gratuitous ARP runs in the background: the client's table follows within a moment.
    const macB = await macOf("b");
    const deadline = Date.now() + 2000;
    while (!(await neighbour()).includes(macB) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await neighbour()).toContain(macB);
    await onB.stop();
  });

  it("a fixed MAC moves with the address: a client that pins the IP to that MAC is answered by whichever node holds it", async () => {
    const mac = "02:00:5e:10:00:01";
    const spec = { ...vipSpec, vip: { ...vipSpec.vip, mac, arpIntervalMs: 200 } };
    const onA = agentFor(spec, { processes: inNamespace(net.ns("a"), systemProcesses) });
    const onB = agentFor(spec, { processes: inNamespace(net.ns("b"), systemProcesses) });
    const neighbour = async () => (await net.exec("client", ["ip", "neigh", "show", vip])).trim();
    const links = async (host: string) => (await net.exec(host, ["ip", "-o", "link", "show"])).split("\n").filter((l) => l.includes(macvlanName(mac))).length;
    await onA.start();
    await net.exec("client", ["ip", "neigh", "flush", "dev", "eth0"]);
    await net.exec("client", ["ping", "-c", "1", "-W", "1", vip]);
    expect(await neighbour(), "the VIP answered from its fixed MAC, not a's own").toContain(`lladdr ${mac}`);
    await net.exec("client", ["ip", "neigh", "replace", vip, "lladdr", mac, "dev", "eth0", "nud", "permanent"]);
    await onA.stop();
    expect(await links("a"), "the macvlan goes with the address").toBe(0);
    await onB.start();
    expect(await links("b")).toBe(1);
    await net.exec("client", ["ping", "-c", "1", "-W", "2", vip]); // pinned: only the same MAC on b can answer
    expect(await neighbour()).toContain(`lladdr ${mac}`);
    await onB.stop();
    await net.exec("client", ["ip", "neigh", "del", vip, "dev", "eth0"]);
  });

  it("gratuitous ARP goes out arpCount times, arpIntervalMs apart", async () => {
    const onA = agentFor({ ...vipSpec, vip: { ...vipSpec.vip, arpCount: 3, arpIntervalMs: 300 } }, { processes: inNamespace(net.ns("a"), systemProcesses) });
    // Each announcement is one arping process: when each was first seen, sampled every 10 ms.
    const seen = new Map<string, number>();
    const sample = async () => {
      const pids = (await run("ip", ["netns", "pids", net.ns("a")])).stdout.split("\n").filter(Boolean);
      for (const pid of pids) if (!seen.has(pid) && (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).startsWith("arping\0-U")) seen.set(pid, Date.now());
    };
    await onA.start();
    const deadline = Date.now() + 3000;
    while (seen.size < 3 && Date.now() < deadline) await Promise.all([sample(), new Promise((r) => setTimeout(r, 10))]);
    const times = [...seen.values()].sort((x, y) => x - y);
    expect(times.length).toBe(3);
    expect(times[2]! - times[0]!, "three announcements 300 ms apart").toBeGreaterThanOrEqual(500);
    await onA.stop();
  });

  it("a start refused while the address answers elsewhere is abandoned at once when its signal fires, and leaves nothing here", async () => {
    const onA = agentFor(vipSpec, { processes: inNamespace(net.ns("a"), systemProcesses) });
    const onB = agentFor(vipSpec, { processes: inNamespace(net.ns("b"), systemProcesses) });
    await onA.start();
    const abandon = new AbortController();
    const started = Date.now();
    // The stimulus: the peer is heard again a moment into b's duplicate-address probing.
    const timer = setTimeout(() => abandon.abort("a runs web"), 400);
    try {
      await expect(onB.start({ signal: abandon.signal })).rejects.toThrow(/ip: start abandoned: a runs web/);
    } finally {
      clearTimeout(timer);
    }
    const tookMs = Date.now() - started;
    console.log(`VIP start abandoned ${tookMs - 400} ms after its signal`);
    // Well inside the 5000 ms start timeout it would otherwise have probed for.
    expect(tookMs).toBeLessThan(3000);
    expect((await onB.monitor()).ok).toBe(false);
    await onA.stop();
  });

  it("an urgent bring-out (self-fence) releases the VIP before anything else stops", async () => {
    const processes = inNamespace(net.ns("a"), systemProcesses);
    const seen = join(stateDir, "vip-at-stop");
    // The script's stop records whether the VIP is still on the NIC when it runs.
    const probe = `ip -o addr show dev eth0 | grep -q ' ${vip}/' && echo present >> ${seen} || echo absent >> ${seen}`;
    const specs = [vipSpec, { name: "app", script: { start: ["/bin/true"], stop: ["/bin/sh", "-c", probe], monitor: ["/bin/true"] } }].map((s) => resourceSpec.parse(s));
    const runner = createJobRunner({ job: "web", node: "a", resources: specs, restart: { max: 1, windowMs: 1000 }, ctx: { stateDir, processes, clock: systemClock }, timers: systemTimers, report: async () => undefined });
    expect((await runner.bringIn()).ok).toBe(true);
    await runner.bringOut();
    expect((await runner.bringIn()).ok).toBe(true);
    await runner.bringOut({ urgent: true });
    const { readFile } = await import("node:fs/promises");
    expect((await readFile(seen, "utf8")).trim().split("\n")).toEqual(["present", "absent"]);
  });

  it("nic: up with carrier is healthy, a downed NIC fails its start and its monitor", async () => {
    const processes = inNamespace(net.ns("b"), systemProcesses);
    const nic = agentFor({ name: "nic", nic: { interface: "eth0" } }, { processes });
    await nic.start();
    expect(await nic.monitor()).toEqual({ ok: true });
    await net.exec("b", ["ip", "link", "set", "eth0", "down"]);
    try {
      expect(await nic.monitor()).toEqual({ ok: false, error: "nic: eth0 is down, carrier unknown" });
      await expect(nic.start()).rejects.toThrow(/nic: eth0 is down/);
    } finally {
      await net.exec("b", ["ip", "link", "set", "eth0", "up"]);
    }
    await until(async () => (await nic.monitor()).ok);
    await expect(agentFor({ name: "nic", nic: { interface: "nosuch0" } }, { processes }).start()).rejects.toThrow(/no interface nosuch0/);
  });

  it("nic in a job: never restarted; every fall from up to down is reported, also after a recovery", async () => {
    const processes = inNamespace(net.ns("b"), systemProcesses);
    const events: DuetEvent[] = [];
    const runner = createJobRunner({
      job: "web",
      node: "b",
      resources: [resourceSpec.parse({ name: "nic", nic: { interface: "eth0" }, monitor: { intervalMs: 50, timeoutMs: 1000 } })],
      restart: { max: 3, windowMs: 60_000 },
      ctx: { stateDir, processes, clock: systemClock },
      timers: systemTimers,
      report: async (e) => void events.push(...e),
    });
    const count = (type: string) => events.filter((e) => e.type === type).length;
    const link = (state: "up" | "down") => net.exec("b", ["ip", "link", "set", "eth0", state]);
    try {
      expect(await runner.bringIn()).toEqual({ ok: true });
      await link("down");
      await until(() => count("MonitorFailed") === 1);
      await link("up");
      await until(() => count("MonitorRecovered") === 1);
      await link("down");
      await until(() => count("MonitorFailed") === 2);
      await link("up");
      await until(() => count("MonitorRecovered") === 2);
    } finally {
      await link("up");
      await runner.bringOut();
    }
    expect(events.map((e) => e.type)).toEqual(["ResourceStarted", "MonitorFailed", "MonitorRecovered", "MonitorFailed", "MonitorRecovered", "ResourceStopped"]);
    expect(events.filter((e) => e.type === "MonitorFailed").map((e) => (e.data as { failures: number }).failures)).toEqual([1, 2]);
  });

  it("ping: a reachable target is healthy, an unreachable one fails", async () => {
    const processes = inNamespace(net.ns("a"), systemProcesses);
    expect(await agentFor({ name: "gw", ping: { target: net.address("client") } }, { processes }).monitor()).toEqual({ ok: true });
    await net.isolate("a");
    try {
      expect((await agentFor({ name: "gw", ping: { target: net.address("client") } }, { processes }).monitor()).ok).toBe(false);
    } finally {
      await net.heal("a");
    }
  });
});
