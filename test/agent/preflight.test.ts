import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingPrograms, requiredPrograms } from "../../src/agent/preflight.ts";
import { initConfig } from "../../src/config/init.ts";
import { loadConfig } from "../../src/config/load.ts";

const run = promisify(execFile);
const DUET = join(import.meta.dirname, "../../bin/duet.js");
let dir: string;
let bare: string;
let configFile: string;

/** A config whose job needs ip, arping, ping and an OCF agent that no machine has. */
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "duet-preflight-"));
  bare = join(dir, "bin");
  await mkdir(bare);
  await symlink(process.execPath, join(bare, "node"));
  ({ configFile } = await initConfig({
    dir,
    cluster: "pf",
    nodes: [
      { name: "a", address: "127.0.0.1", dataDir: join(dir, "a") },
      { name: "b", address: "127.0.0.2", dataDir: join(dir, "b") },
    ],
    password: "test-password-long-enough",
    ports: { api: 29320, peer: 29330, heartbeat: 29340 },
    tiebreakerYaml: "  ping: { targets: [10.0.0.254, \"tcp:127.0.0.1:9\"] }",
    jobsYaml: `  - name: web
    resources:
      - name: ip
        vip: { address: 10.0.0.100/24, interface: eth0 }
      - name: db
        ocf: { agent: heartbeat/NoSuchAgent }`,
  }));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("the agent's start-up check of the programs its configuration needs", () => {
  it("lists each program with the config key that asks for it; a tcp: ping target needs none", async () => {
    const { config } = await loadConfig(configFile);
    const needs = requiredPrograms(config, "a").map((n) => `${n.key} ${n.program}`);
    expect(needs).toEqual([
      "tiebreaker.ping.targets[0] ping",
      "jobs[0].resources[0].vip ip",
      "jobs[0].resources[0].vip arping",
      "jobs[0].resources[0].vip timeout",
      "jobs[0].resources[1].ocf.agent /usr/lib/ocf/resource.d/heartbeat/NoSuchAgent",
    ]);
  });

  it("names the key, the missing program and the Debian package to install", async () => {
    const { config } = await loadConfig(configFile);
    const issues = missingPrograms(requiredPrograms(config, "a"), bare);
    expect(issues).toEqual([
      { path: "tiebreaker.ping.targets[0]", message: "ping: not installed (apt-get install iputils-ping)" },
      { path: "jobs[0].resources[0].vip", message: "ip: not installed (apt-get install iproute2)" },
      { path: "jobs[0].resources[0].vip", message: "arping: not installed (apt-get install iputils-arping)" },
      { path: "jobs[0].resources[0].vip", message: "timeout: not installed (apt-get install coreutils)" },
      { path: "jobs[0].resources[1].ocf.agent", message: "OCF agent heartbeat/NoSuchAgent: no executable /usr/lib/ocf/resource.d/heartbeat/NoSuchAgent (apt-get install resource-agents)" },
    ]);
    expect(missingPrograms(requiredPrograms(config, "a"), dirname(process.execPath)).length).toBeGreaterThan(0);
  });

  it("duet agent refuses to start within a second, exit code 2, the whole list on stderr", async () => {
    const started = Date.now();
    const failure = await run(process.execPath, [DUET, "agent", "--config", configFile, "--node", "a"], { env: { PATH: bare }, timeout: 20_000 }).then(
      () => null,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain("tiebreaker.ping.targets[0]: ping: not installed (apt-get install iputils-ping)");
    expect(failure?.stderr).toContain("jobs[0].resources[1].ocf.agent: OCF agent heartbeat/NoSuchAgent");
    // The check runs before the journal opens: nothing was started or written.
    await expect(run("ls", [join(dir, "a", "journal")])).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
