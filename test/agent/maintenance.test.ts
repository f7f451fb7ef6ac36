import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initConfig } from "../../src/config/init.ts";
import { readClusterKey } from "../../src/config/secrets.ts";
import { openJournal } from "../../src/journal/journal.ts";
import { clusterProjection } from "../../src/projections/cluster.ts";
import { systemClock } from "../../src/world/clock.ts";
import { clearConfig, gatherinfo } from "../../src/cli/maintenance.ts";
import { loadJournal } from "../../tools/replay/load.ts";

let dir: string;
let configFile: string;
let keyFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "duet-maint-"));
  ({ configFile, keyFile } = await initConfig({
    dir,
    cluster: "maint",
    nodes: [
      { name: "a", address: "127.0.0.1", dataDir: join(dir, "a") },
      { name: "b", address: "127.0.0.2", dataDir: join(dir, "b") },
    ],
    password: "maintenance-password",
  }));
  const journal = await openJournal({ dir: join(dir, "a", "journal"), node: "a", clock: systemClock, projection: clusterProjection("a") });
  await journal.append([
    { type: "AgentStarted", data: { node: "a", version: "t", pid: 1, configHash: "h", heartbeatIntervalMs: 500, suspectMs: 1000, deadtimeMs: 3000, pingTimeoutMs: 500, selfFenceGraceMs: 1000, links: [] } },
    { type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors: [] } },
    { type: "JobBroughtIn", data: { job: "web", node: "a" } },
  ]);
  await journal.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("gatherinfo with the agent stopped", () => {
  it("bundles a verifiable journal export, the config without secrets, versions and network facts", async () => {
    const { file } = await gatherinfo({ config: configFile, node: "a", out: join(dir, "bundles") });
    expect(file).toMatch(/-a-\d{4}-\d\d-\d\dT[\d-]+\.zip$/);
    const zip = await readFile(file);
    const entries = unzipSync(new Uint8Array(zip));
    expect(Object.keys(entries).sort()).toEqual(expect.arrayContaining(["journal.duetj", "config-redacted.yaml", "agent.log", "versions.txt", "network/ip-addr.txt", "network/ip-route.txt"]));
    const config = new TextDecoder().decode(entries["config-redacted.yaml"]);
    const original = await readFile(configFile, "utf8");
    const hash = /passwordHash: "([^"]+)"/.exec(original)![1]!;
    expect(config).toContain("<redacted>");
    const key = await readClusterKey(keyFile);
    for (const [name, bytes] of Object.entries(entries)) {
      expect(Buffer.from(bytes).includes(Buffer.from(hash)), `${name} holds the password hash`).toBe(false);
      expect(Buffer.from(bytes).includes(key), `${name} holds the cluster key`).toBe(false);
    }
    const loaded = await loadJournal(file);
    expect(loaded.verified.ok).toBe(true);
    expect(loaded.records.map((r) => r.type)).toEqual(["AgentStarted", "JobCreated", "JobBroughtIn"]);
  });
});

describe("config clear", () => {
  it("is refused while the journal says a job runs here, and archives everything when forced", async () => {
    await expect(clearConfig({ config: configFile, node: "a", force: false, by: "root" })).rejects.toThrow(/web runs on a; bring it out first, or pass --force/);
    const { archivedTo } = await clearConfig({ config: configFile, node: "a", force: true, by: "root" });
    expect(existsSync(join(dir, "a", "journal"))).toBe(false);
    expect(existsSync(configFile)).toBe(false);
    expect(existsSync(join(archivedTo, "duet.yaml"))).toBe(true);
    expect(existsSync(join(archivedTo, "cluster.key"))).toBe(true);
    const archived = await loadJournal(join(archivedTo, "journal"));
    expect(archived.records.at(-1)).toMatchObject({ type: "ConfigCleared", data: { node: "a", by: "root", forced: true } });
  });
});

describe("bundles the agent writes into its data directory", () => {
  it("keep only the newest few: four calls leave three", async () => {
    const { writeGatherinfo, GATHERINFO_KEPT } = await import("../../src/agent/gatherinfo.ts");
    const { readdir } = await import("node:fs/promises");
    const journal = await openJournal({ dir: join(dir, "bundles-journal"), node: "a", clock: systemClock });
    await journal.append([{ type: "AlertRaised", data: { node: "a", code: "test", message: "one record" } }]);
    const outDir = join(dir, "agent-gatherinfo");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(outDir, { recursive: true });
    try {
      const written: string[] = [];
      for (let i = 0; i < 4; i++) written.push((await writeGatherinfo({ journal, configFile, logFile: join(dir, "none.log"), node: "a", version: "t", outDir, now: Date.UTC(2026, 0, 1, 0, 0, i), keep: GATHERINFO_KEPT })).file);
      const left = (await readdir(outDir)).filter((f) => f.endsWith(".zip")).sort();
      expect(left).toHaveLength(GATHERINFO_KEPT);
      expect(left.map((f) => join(outDir, f))).toEqual(written.slice(1));
    } finally {
      await journal.close();
    }
  }, 30_000);
});
