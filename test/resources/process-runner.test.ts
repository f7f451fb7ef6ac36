import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { DuetEvent } from "../../src/events/catalogue.ts";
import { createJobRunner, type JobRunner } from "../../src/resources/runner.ts";
import { resourceSpec, type ResourceSpec } from "../../src/resources/spec.ts";
import { createAgent } from "../../src/resources/agent.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { systemProcesses } from "../../src/world/process.ts";

const app = join(import.meta.dirname, "../../examples/demo-app.mjs");
const dirs: string[] = [];
const runners: JobRunner[] = [];
let port = 40000 + ((process.pid * 13) % 10000);
afterEach(async () => {
  for (const r of runners.splice(0)) await r.bringOut();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(resources: unknown[], restart = { max: 2, windowMs: 60_000 }) {
  const stateDir = await mkdtemp(join(tmpdir(), "duet-res-"));
  dirs.push(stateDir);
  const events: DuetEvent[] = [];
  const specs = resources.map((r) => resourceSpec.parse(r));
  const runner = createJobRunner({ job: "web", node: "a", resources: specs, restart, ctx: { stateDir, processes: systemProcesses, clock: systemClock }, timers: systemTimers, report: async (e) => void events.push(...e) });
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
    const p1 = port++;
    const p2 = port++;
    const { runner, events } = await setup([appResource("first", p1), appResource("second", p2, { tcp: `127.0.0.1:${p2}` })]);
    expect(await runner.bringIn()).toEqual({ ok: true });
    const body = (await (await fetch(`http://127.0.0.1:${p1}/`)).json()) as { servedBy: string };
    expect(body.servedBy).toBe("a");
    expect(await runner.bringOut()).toEqual({ ok: true, failed: [] });
    expect(summary(events)).toEqual(["ResourceStarted:first", "ResourceStarted:second", "ResourceStopped:second", "ResourceStopped:first"]);
    await expect(fetch(`http://127.0.0.1:${p1}/`)).rejects.toThrow();
  });

  it("a failing second resource rolls back the first and names the cause", async () => {
    const p1 = port++;
    const { runner, events } = await setup([appResource("first", p1), { name: "broken", process: { command: ["/bin/false"] }, startTimeoutMs: 2000 }]);
    const result = await runner.bringIn();
    expect(result).toMatchObject({ ok: false, resource: "broken" });
    expect(summary(events)).toEqual(["ResourceStarted:first", "ResourceStartFailed:broken", "ResourceStopped:first"]);
    await expect(fetch(`http://127.0.0.1:${p1}/`)).rejects.toThrow();
  });

  it("a crashed process is restarted up to the threshold, then left to the policy", async () => {
    const p1 = port++;
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
    const p1 = port++;
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
    const spec = resourceSpec.parse(appResource("app", port++)) as ResourceSpec;
    const { writeFile } = await import("node:fs/promises");
    await writeFile(join(stateDir, "app.pid"), JSON.stringify({ pid: process.pid, startTime: "1" }));
    const agent = createAgent(spec, { job: "web", node: "a", stateDir, processes: systemProcesses, clock: systemClock });
    expect(await agent.monitor()).toMatchObject({ ok: false, notRunning: true });
    await agent.stop(); // must not signal this test process
  });

  it("a process that never becomes healthy fails its start with its own log", async () => {
    const { runner } = await setup([{ name: "app", process: { command: ["/bin/sh", "-c", "echo listening nowhere; sleep 30"], health: { tcp: `127.0.0.1:${port++}` } }, startTimeoutMs: 600, stopTimeoutMs: 1000 }]);
    const result = await runner.bringIn();
    expect(result).toMatchObject({ ok: false, resource: "app" });
    expect((result as { error: string }).error).toMatch(/did not become healthy within 600 ms.*listening nowhere/s);
  });
});

