import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { validateEvent, type DuetEvent } from "../../src/events/catalogue.ts";
import { createJobRunner, type JobRunner } from "../../src/resources/runner.ts";
import { resourceSpec, type ResourceSpec } from "../../src/resources/spec.ts";
import { createAgent } from "../../src/resources/agent.ts";
import { PROCESS_LOG_MAX_BYTES } from "../../src/resources/process.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { systemProcesses } from "../../src/world/process.ts";

const app = join(import.meta.dirname, "../../examples/demo-app.mjs");
const dirs: string[] = [];
const runners: JobRunner[] = [];
/**
 * A port no socket holds now, chosen by the kernel: a fixed range inside the ephemeral one
 * (32768-60999) collided with outgoing connections under load (EADDRINUSE).
 */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
afterEach(async () => {
  for (const r of runners.splice(0)) await r.bringOut();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(resources: unknown[], restart = { max: 2, windowMs: 60_000 }) {
  const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
  dirs.push(stateDir);
  return setupWith(resources.map((r) => resourceSpec.parse(r)), restart, stateDir);
}
async function setupWith(specs: ResourceSpec[], restart: { max: number; windowMs: number }, stateDir: string) {
  const events: DuetEvent[] = [];
  const runner = createJobRunner({ job: "web", node: "a", resources: specs, restart, ctx: { stateDir, processes: systemProcesses, clock: systemClock }, timers: systemTimers, report: async (e) => void events.push(...e.map((fact) => validateEvent(fact.type, fact.data))) });
  runners.push(runner);
  return { runner, events, stateDir, specs };
}
const appResource = (name: string, p: number, health: unknown = { http: `http://127.0.0.1:${p}/` }, stateDir = "/tmp") => ({
  name,
  process: { command: [process.execPath, app, "127.0.0.1", String(p), stateDir], health },
  monitor: { intervalMs: 100, timeoutMs: 1000 },
  startTimeoutMs: 5000,
  stopTimeoutMs: 2000,
});
const until = async (what: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
};
const summary = (events: DuetEvent[]) => events.map((e) => `${e.type}:${(e.data as { resource?: string }).resource ?? ""}`);

describe("process resource and job runner", () => {
  it("starts resources in order, serves, and stops them in reverse", async () => {
    const p1 = await freePort();
    const p2 = await freePort();
    const { runner, events } = await setup([appResource("first", p1), appResource("second", p2, { tcp: `127.0.0.1:${p2}` })]);
    expect(await runner.bringIn()).toEqual({ ok: true });
    const body = (await (await fetch(`http://127.0.0.1:${p1}/`)).json()) as { servedBy: string };
    expect(body.servedBy).toBe("a");
    expect(await runner.bringOut()).toEqual({ ok: true, failed: [] });
    expect(summary(events)).toEqual(["ResourceStarted:first", "ResourceStarted:second", "ResourceStopped:second", "ResourceStopped:first"]);
    await expect(fetch(`http://127.0.0.1:${p1}/`)).rejects.toThrow();
  });

  it("a failing second resource rolls back the first and names the cause", async () => {
    const p1 = await freePort();
    const { runner, events } = await setup([appResource("first", p1), { name: "broken", process: { command: ["/bin/false"] }, startTimeoutMs: 2000 }]);
    const result = await runner.bringIn();
    expect(result).toMatchObject({ ok: false, resource: "broken" });
    expect(summary(events)).toEqual(["ResourceStarted:first", "ResourceStartFailed:broken", "ResourceStopped:first"]);
    await expect(fetch(`http://127.0.0.1:${p1}/`)).rejects.toThrow();
  });

  it("a crashed process is restarted up to the threshold, then left to the policy", async () => {
    const p1 = await freePort();
    const { runner, events, stateDir } = await setup([appResource("app", p1)], { max: 2, windowMs: 60_000 });
    expect((await runner.bringIn()).ok).toBe(true);
    for (let crash = 1; crash <= 3; crash++) {
      const { pid } = JSON.parse(await readFile(join(stateDir, "app.pid"), "utf8")) as { pid: number };
      process.kill(-pid, "SIGKILL");
      await until(() => events.filter((e) => e.type === "MonitorFailed").length === crash);
      if (crash <= 2) await until(() => events.filter((e) => e.type === "ResourceRestarted").length === crash);
    }
    const failed = events.filter((e) => e.type === "MonitorFailed").map((e) => (e.data as { failures: number }).failures);
    expect(failed).toEqual([1, 2, 3]);
    expect(events.filter((e) => e.type === "ResourceRestarted")).toHaveLength(2);
  });

  it("an agent restarted after a crash finds the process by its pid file and stops it", async () => {
    const p1 = await freePort();
    const first = await setup([appResource("app", p1)]);
    expect((await first.runner.bringIn()).ok).toBe(true);
    await first.runner.close(); // the agent "crashes": monitors gone, the process lives on
    runners.splice(runners.indexOf(first.runner), 1);
    const again = createJobRunner({ job: "web", node: "a", resources: first.specs, restart: { max: 2, windowMs: 1000 }, ctx: { stateDir: first.stateDir, processes: systemProcesses, clock: systemClock }, timers: systemTimers, report: async () => undefined });
    expect(await again.probe()).toEqual([{ resource: "app", running: true }]);
    await again.bringOut();
    expect(existsSync(join(first.stateDir, "app.pid"))).toBe(false);
    await expect(fetch(`http://127.0.0.1:${p1}/`)).rejects.toThrow();
  });

  it("a pid file naming someone else's process is not ours", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
    dirs.push(stateDir);
    const spec = resourceSpec.parse(appResource("app", (await freePort()))) as ResourceSpec;
    await writeFile(join(stateDir, "app.pid"), JSON.stringify({ pid: process.pid, startTime: "1" }));
    const agent = createAgent(spec, { job: "web", node: "a", stateDir, processes: systemProcesses, clock: systemClock, timers: systemTimers });
    expect(await agent.monitor()).toMatchObject({ ok: false, notRunning: true });
    await agent.stop(); // must not signal this test process
  });

  it("a process that never becomes healthy fails its start with its own log", async () => {
    const { runner } = await setup([{ name: "app", process: { command: ["/bin/sh", "-c", "echo listening nowhere; sleep 30"], health: { tcp: `127.0.0.1:${(await freePort())}` } }, startTimeoutMs: 600, stopTimeoutMs: 1000 }]);
    const result = await runner.bringIn();
    expect(result).toMatchObject({ ok: false, resource: "app" });
    expect((result as { error: string }).error).toMatch(/did not become healthy within 600 ms.*listening nowhere/s);
  });

  it("a process whose child ignores SIGTERM is killed, child and all, after its stop timeout", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
    dirs.push(stateDir);
    // The leader dies of SIGTERM; its child ignores it (an ignored signal stays ignored across exec)
    // and would keep the port if the stop only waited for the leader.
    const spec = resourceSpec.parse({ name: "stubborn", process: { command: ["/bin/sh", "-c", "(trap '' TERM; exec sleep 60) & exec sleep 60"] }, startTimeoutMs: 3000, stopTimeoutMs: 500 });
    const agent = createAgent(spec, { job: "web", node: "a", stateDir, processes: systemProcesses, clock: systemClock, timers: systemTimers });
    await agent.start();
    const { pid } = JSON.parse(await readFile(join(stateDir, "stubborn.pid"), "utf8")) as { pid: number };
    const began = Date.now();
    await agent.stop();
    expect(Date.now() - began).toBeGreaterThanOrEqual(500);
    expect(await liveMembers(pid), "the whole process group is gone, the background sleep too").toEqual([]);
    expect(await agent.monitor()).toMatchObject({ ok: false, notRunning: true });
  });

  it("an urgent stop (a fence) kills the whole group at once instead of waiting out the stop timeout", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
    dirs.push(stateDir);
    const spec = resourceSpec.parse({ name: "stubborn", process: { command: ["/bin/sh", "-c", "(trap '' TERM; exec sleep 60) & exec sleep 60"] }, startTimeoutMs: 3000, stopTimeoutMs: 20_000 });
    const agent = createAgent(spec, { job: "web", node: "a", stateDir, processes: systemProcesses, clock: systemClock, timers: systemTimers });
    await agent.start();
    const { pid } = JSON.parse(await readFile(join(stateDir, "stubborn.pid"), "utf8")) as { pid: number };
    const began = Date.now();
    await agent.stop({ urgent: true });
    // Far below the 20 s a graceful stop would wait for the child that ignores SIGTERM.
    expect(Date.now() - began).toBeLessThan(10_000);
    expect(await liveMembers(pid)).toEqual([]);
  });

  it("a chatty process's log stays bounded while it runs", async () => {
    // 32 lines of 1 KiB every 10 ms (about 3 MB/s), each line numbered so the test sees how much was written.
    const writer = "let n = 0; setInterval(() => { let s = ''; for (let i = 0; i < 32; i++) s += String(++n).padStart(8, '0').padEnd(1023, '.') + '\\n'; process.stdout.write(s); }, 10);";
    const { runner, stateDir } = await setup([{ name: "chatty", process: { command: [process.execPath, "-e", writer] }, monitor: { intervalMs: 100, timeoutMs: 1000 }, startTimeoutMs: 3000 }]);
    expect((await runner.bringIn()).ok).toBe(true);
    const log = join(stateDir, "chatty.log");
    const lastLine = async () => Number((await readFile(log, "utf8").catch(() => "")).trimEnd().split("\n").at(-1)?.slice(0, 8) || 0);
    const deadline = Date.now() + 15_000;
    while ((await lastLine()) * 1024 < 6 * PROCESS_LOG_MAX_BYTES) {
      if (Date.now() > deadline) throw new Error("the chatty process did not write 6 MiB within 15 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    const size = async (f: string) => (await stat(f)).size;
    expect(await size(log)).toBeLessThan(3 * PROCESS_LOG_MAX_BYTES);
    expect(await size(`${log}.1`)).toBeLessThan(3 * PROCESS_LOG_MAX_BYTES);
  });

  it("runs the command as the configured user; an unknown user fails the start by name", async () => {
    const { runner, stateDir } = await setup([{ name: "asnobody", process: { command: ["/bin/sh", "-c", "echo uid=$(id -u); exec sleep 60"], user: "nobody" } }]);
    expect((await runner.bringIn()).ok).toBe(true);
    const expected = (await systemProcesses.run(["id", "-u", "nobody"])).stdout.trim();
    expect(await readFile(join(stateDir, "asnobody.log"), "utf8")).toContain(`uid=${expected}`);
    const other = await setup([{ name: "ghost", process: { command: ["/bin/sleep", "60"], user: "no-such-user-here" } }]);
    expect(await other.runner.bringIn()).toMatchObject({ ok: false, resource: "ghost", error: expect.stringMatching(/^ghost: user no-such-user-here: no such user on this host/) });
  });
});

describe("job runner start failures", () => {
  it("a failed start is reported with the command's exit code, for the policy and the operator", async () => {
    const { runner, events } = await setup([{ name: "db", script: { start: ["/bin/sh", "-c", "echo no config file >&2; exit 6"], stop: ["/bin/true"], monitor: ["/bin/false"] } }]);
    expect(await runner.bringIn()).toEqual({ ok: false, resource: "db", error: "db: start failed (exit 6): no config file" });
    expect(events).toEqual([{ type: "ResourceStartFailed", data: { job: "web", node: "a", resource: "db", error: "db: start failed (exit 6): no config file", exitCode: 6 } }]);
  });
});

describe("job runner monitor loops", () => {
  for (const urgent of [false, true]) it(`a ${urgent ? "fence" : "bring-out"} during a restart in place waits for it, and leaves the resource stopped`, async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
    dirs.push(stateDir);
    const flag = join(stateDir, "up");
    const restarting = join(stateDir, "restarting");
    // The start takes a while; markers say when the restart's start began and when it ended.
    const start = ["/bin/sh", "-c", `test -e ${flag}.started && touch ${restarting}; sleep 0.5; touch ${flag} ${flag}.started; test -e ${restarting} && touch ${restarting}.done; true`];
    const spec = resourceSpec.parse({ name: "svc", script: { start, stop: ["/bin/rm", "-f", flag], monitor: ["/usr/bin/test", "-e", flag] }, monitor: { intervalMs: 50, timeoutMs: 1000 } });
    const { runner, events } = await setupWith([spec], { max: 3, windowMs: 60_000 }, stateDir);
    expect((await runner.bringIn()).ok).toBe(true);
    await rm(flag);
    await until(() => existsSync(restarting));
    expect(await runner.bringOut({ urgent })).toEqual({ ok: true, failed: [] });
    await until(() => existsSync(`${restarting}.done`));
    expect(existsSync(flag), "nothing started the resource again behind the bring-out").toBe(false);
    expect(runner.monitoring()).toBe(false);
    expect(summary(events)).toEqual(["ResourceStarted:svc", "MonitorFailed:svc", "ResourceStopped:svc"]);
  });

  it("a fence does not wait for a monitor run under way: everything is stopped at once, and the fence is done before the run ends", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
    dirs.push(stateDir);
    const flag = join(stateDir, "up");
    const checking = join(stateDir, "checking");
    // Each monitor run takes 3 s (a health check to an address just removed waits its timeout).
    const monitor = ["/bin/sh", "-c", `touch ${checking}; sleep 3; test -e ${flag}`];
    const spec = resourceSpec.parse({ name: "svc", script: { start: ["/usr/bin/touch", flag], stop: ["/bin/rm", "-f", flag], monitor }, monitor: { intervalMs: 50, timeoutMs: 5000 } });
    const { runner, events } = await setupWith([spec], { max: 3, windowMs: 60_000 }, stateDir);
    expect((await runner.bringIn()).ok).toBe(true);
    await until(() => existsSync(checking));
    const began = Date.now();
    const fenced = runner.bringOut({ urgent: true });
    await until(() => !existsSync(flag), 2000);
    const stoppedMs = Date.now() - began;
    console.log(`fence stopped the resource ${stoppedMs} ms after it began, with a monitor run under way`);
    expect(stoppedMs, "stopped before the 3 s monitor run ended").toBeLessThan(2000);
    expect(await fenced).toEqual({ ok: true, failed: [] });
    // The job counts as stopped (JobBroughtOut) when the fence returns, and the peer may be
    // counting on it: before, the fence waited out the monitor run (3 s here).
    expect(Date.now() - began, "the fence returned before the 3 s monitor run ended").toBeLessThan(2000);
    expect(existsSync(flag)).toBe(false);
    expect(runner.monitoring()).toBe(false);
    expect(summary(events)).toEqual(["ResourceStarted:svc", "ResourceStopped:svc"]);
  });

  it("a journal that refuses a report does not stop the monitoring: the error is handed over and the loop goes on", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
    dirs.push(stateDir);
    const flag = join(stateDir, "up");
    const spec = resourceSpec.parse({ name: "svc", script: { start: ["/usr/bin/touch", flag], stop: ["/bin/rm", "-f", flag], monitor: ["/usr/bin/test", "-e", flag] }, monitor: { intervalMs: 50, timeoutMs: 1000 } });
    const events: DuetEvent[] = [];
    const loopErrors: string[] = [];
    let refuse = false;
    const runner = createJobRunner({
      job: "web",
      node: "a",
      resources: [spec],
      restart: { max: 0, windowMs: 60_000 },
      ctx: { stateDir, processes: systemProcesses, clock: systemClock },
      timers: systemTimers,
      report: async (e) => {
        if (refuse) throw new Error("journal full");
        events.push(...e);
      },
      onLoopError: (error) => loopErrors.push(error.message),
    });
    runners.push(runner);
    expect((await runner.bringIn()).ok).toBe(true);
    refuse = true;
    await rm(flag);
    await until(() => loopErrors.length > 0);
    expect(loopErrors[0]).toBe("journal full");
    refuse = false;
    await writeFile(flag, "");
    await until(() => events.some((e) => e.type === "MonitorRecovered"));
    expect(runner.monitoring()).toBe(true);
  });
});

/** Processes of a group that have not exited (an orphan's zombie waits for init to reap it). */
async function liveMembers(pgid: number): Promise<string[]> {
  const { stdout } = await systemProcesses.run(["ps", "-eo", "pgid=,stat=,args="]);
  return stdout.split("\n").filter((line) => line.trim().split(/\s+/)[0] === String(pgid) && !/^\s*\d+\s+Z/.test(line));
}
