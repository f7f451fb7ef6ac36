import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigApplied } from "../../src/api/ports.ts";
import type { CliError } from "../../src/cli/client.ts";
import { startProcessPair, type PairNode } from "./process-pair.ts";

/**
 * `duet config apply` on a running pair of real agents, each reading its own copy of the config
 * as two hosts would: the plan, an online policy change that restarts nothing, the peer away
 * (refused, then forced, then adopted on reconnect) and a deleted job that stays deleted.
 */
const run = promisify(execFile);
const DUET = join(resolve(import.meta.dirname, "../.."), "bin/duet.js");
const A = "127.0.0.71";
const B = "127.0.0.72";
const base = 23000 + ((process.pid * 7) % 2000);
const worker = (name: string) => `      - name: ${name}
        process: { command: [${JSON.stringify(process.execPath)}, "-e", "setInterval(() => {}, 1000)"] }`;
const jobsYaml = `  - name: web
    policy: manual
    resources:
${worker("app")}
  - name: batch
    resources:
${worker("worker")}`;

let pair: Awaited<ReturnType<typeof startProcessPair>>;
let text: string;

const apply = async (node: PairNode, next: string, options: { dryRun?: boolean; force?: boolean } = {}) => (await pair.client(node)).post<ConfigApplied>("/v1/config", { text: next, dryRun: false, force: false, ...options });
const refusal = (promise: Promise<unknown>) => promise.then(() => null, (e: CliError) => ({ code: e.code, message: e.message }));
const config = async (node: PairNode) => (await pair.cluster(node)).config;
const starts = async (node: PairNode) => (await pair.events(node)).filter((e) => e.type === "ResourceStarted" && e.data.node === node).length;
const jobOn = async (node: PairNode, name: string) => (await pair.cluster(node)).jobs.find((j) => j.name === name);

beforeAll(async () => {
  pair = await startProcessPair({ name: "config-apply", addresses: { a: A, b: B }, ports: { api: base, peer: base + 1, heartbeat: base + 2 }, jobsYaml, configPerNode: true });
  text = await readFile(pair.configFile("a"), "utf8");
  pair.start("a");
  pair.start("b");
  await pair.until("the pair connected", 20_000, async () => (await pair.cluster("a")).peerStatus === "connected" && (await pair.cluster("b")).peerStatus === "connected");
  await (await pair.client("a")).post("/v1/jobs/web/bring-in", { on: "a" });
  await pair.until("web in on a", 20_000, async () => (await jobOn("a", "web"))?.phase === "in");
}, 60_000);
afterAll(async () => {
  await pair?.close();
});

describe("duet config apply on a running pair", () => {
  it("both nodes start at version 1 of the same file", async () => {
    const [a, b] = [await config("a"), await config("b")];
    expect(a).toMatchObject({ version: 1, peerVersion: 1 });
    expect(b.hash).toBe(a.hash);
  });

  it("a dry run prints the plan, and a change that cannot be made online is refused with the reason", async () => {
    const next = text.replace("policy: manual", "policy: when-consistent").replace("deadtimeMs: 3000", "deadtimeMs: 4000");
    const file = join(pair.dir, "next.yaml");
    await writeFile(file, next);
    const dry = await run(process.execPath, [DUET, "config", "apply", file, "--dry-run", "--config", pair.configFile("a"), "--node", "a"]).then(
      () => null,
      (e: { code: number; stdout: string }) => e,
    );
    expect(dry?.code).toBe(3); // refused
    expect(dry?.stdout).toMatch(/job web\s+policy\s+changed\s+manual -> when-consistent\s+nothing: the takeover policy decides with it from now on/);
    expect(dry?.stdout).toMatch(/cluster\s+heartbeat\s+changed .*REFUSED: heartbeat links and timings are fixed when the agents start/);
    expect(dry?.stdout).toMatch(/dry run: this configuration would be refused/);
    expect(await refusal(apply("a", next))).toMatchObject({ code: "config-refused" });
    const broken = text.replace("policy: manual", "policy: sometimes");
    expect(await refusal(apply("a", broken))).toMatchObject({ code: "bad-config", message: expect.stringMatching(/jobs\[0\]\.policy: .*manual.*\(line \d+\)/) });
    expect((await config("a")).version).toBe(1);
  });

  it("a policy change reaches both nodes, journaled, with no resource restarted", async () => {
    const startsBefore = await starts("a");
    const next = text.replace("policy: manual", "policy: when-consistent");
    const applied = await apply("a", next);
    expect(applied).toMatchObject({ applied: true, version: 2, peer: "applied" });
    for (const node of ["a", "b"] as const) {
      expect(await readFile(pair.configFile(node), "utf8")).toBe(next);
      expect((await jobOn(node, "web"))?.policy).toBe("when-consistent");
      const changed = (await pair.events(node)).filter((e) => e.type === "ConfigChanged" && e.data.node === node).at(-1);
      expect(changed?.data).toMatchObject({ version: 2, configHash: applied.hash, previousHash: expect.any(String) });
      expect((changed?.data as { changes: string[] }).changes).toEqual([expect.stringMatching(/^job web: policy changed \(manual -> when-consistent\)/)]);
    }
    expect(await readFile(`${pair.configFile("a")}.prev`, "utf8")).toBe(text);
    expect(await jobOn("a", "web")).toMatchObject({ phase: "in", active: "a" });
    expect(await starts("a")).toBe(startsBefore);
    text = next;
  });

  it("a process added to the running job starts in its place, alone; removed, only it stops", async () => {
    const count = async (type: string, resource: string) => (await pair.events("a")).filter((e) => e.type === type && (e.data as { node?: string; resource?: string }).node === "a" && (e.data as { resource?: string }).resource === resource).length;
    const appStarts = await count("ResourceStarted", "app");
    const next = text.replace(`${worker("app")}\n`, `${worker("app")}\n${worker("extra")}\n`);
    expect((await apply("a", next)).plan.changes.map((c) => c.effect)).toEqual(["started on a in its place in the order; the others keep running"]);
    expect(await count("ResourceStarted", "extra")).toBe(1);
    await pair.until("b knows web's new resource", 10_000, async () => (await jobOn("b", "web"))?.resources.some((r) => r.name === "extra"));
    await apply("a", text);
    expect(await count("ResourceStopped", "extra")).toBe(1);
    expect(await count("ResourceStarted", "app")).toBe(appStarts);
    expect(await count("ResourceStopped", "app")).toBe(0);
    expect(await jobOn("a", "web")).toMatchObject({ phase: "in", active: "a" });
  });

  it("both nodes applying different files at once: never each the other's; both end on one file", async () => {
    const onA = text.replace("  - name: batch\n", "  - name: batch\n    policy: when-consistent\n");
    const onB = text.replace("  - name: batch\n", "  - name: batch\n    policy: unconditional\n");
    const outcomes = await Promise.all([apply("a", onA).catch((e: CliError) => e.code), apply("b", onB).catch((e: CliError) => e.code)]);
    console.log(`two applies at once: ${outcomes.map((o, i) => `${"ab"[i]}: ${typeof o === "string" ? `refused (${o})` : `applied version ${o.version}`}`).join(", ")}`);
    expect(outcomes.filter((o) => typeof o !== "string").length, JSON.stringify(outcomes)).toBeLessThanOrEqual(1);
    for (const o of outcomes) if (typeof o === "string") expect(o).toBe("config-busy");
    await pair.until("both on one file", 10_000, async () => (await config("a")).hash === (await config("b")).hash && (await config("a")).peerHash === (await config("a")).hash);
    const now = await readFile(pair.configFile("a"), "utf8");
    expect(await readFile(pair.configFile("b"), "utf8")).toBe(now);
    expect([text, onA, onB]).toContain(now);
    if (now !== text) expect(await apply("a", text)).toMatchObject({ applied: true });
  });

  it("with the peer away it is refused, forced, then adopted when the peer is back", async () => {
    const forced = (await config("a")).version + 1;
    await pair.stop("b");
    await pair.until("a sees b gone", 20_000, async () => (await pair.cluster("a")).peerStatus !== "connected");
    const next = text.replace("  - name: batch\n", "  - name: batch\n    restart: { max: 5, windowMs: 60000 }\n");
    expect(await refusal(apply("a", next))).toMatchObject({ code: "peer-unreachable", message: expect.stringMatching(new RegExp(`b cannot be reached.*pass force.*adopts version ${forced}`)) });
    expect(await apply("a", next, { force: true })).toMatchObject({ applied: true, version: forced, peer: "not-reached" });
    expect(await readFile(pair.configFile("b"), "utf8")).toBe(text);
    pair.start("b");
    await pair.until(`b adopted version ${forced}`, 30_000, async () => (await config("b")).version === forced);
    expect(await readFile(pair.configFile("b"), "utf8")).toBe(next);
    const adopted = (await pair.events("b")).filter((e) => e.type === "ConfigChanged").at(-1);
    expect(adopted?.data).toMatchObject({ node: "b", version: forced, by: "peer" });
    await pair.until(`a hears b's version ${forced}`, 20_000, async () => (await config("a")).peerVersion === forced);
    text = next;
  });

  it("a deleted job leaves both files, and stays deleted when an agent restarts", async () => {
    const client = await pair.client("a");
    const deleted = (await config("a")).version + 1;
    await client.delete("/v1/jobs/batch");
    for (const node of ["a", "b"] as const) {
      expect(await readFile(pair.configFile(node), "utf8")).not.toMatch(/name: batch/);
      await pair.until(`batch gone on ${node}`, 10_000, async () => (await jobOn(node, "batch")) === undefined);
    }
    await pair.stop("b");
    pair.start("b");
    await pair.until("b back", 30_000, async () => (await pair.cluster("b")).peerStatus === "connected");
    expect(await jobOn("b", "batch")).toBeUndefined();
    expect((await config("b")).version).toBe(deleted);
    expect(existsSync(`${pair.configFile("b")}.prev`)).toBe(true);
    text = await readFile(pair.configFile("a"), "utf8");
  });

  it("a file edited by hand while its agent was stopped: a new version naming what changed, which the peer adopts", async () => {
    await pair.stop("b");
    const edited = text.replace("policy: when-consistent", "policy: unconditional");
    await writeFile(pair.configFile("b"), edited);
    const before = (await config("a")).version;
    pair.start("b");
    await pair.until("b back", 30_000, async () => (await pair.cluster("b")).peerStatus === "connected");
    const found = (await pair.events("b")).filter((e) => e.type === "ConfigChanged").at(-1);
    expect(found?.data).toMatchObject({ version: before + 1, by: "file", changes: [expect.stringMatching(/^job web: policy changed \(when-consistent -> unconditional\): nothing/)] });
    await pair.until("a adopted b's edit", 20_000, async () => (await config("a")).version === before + 1);
    expect(await readFile(pair.configFile("a"), "utf8")).toBe(edited);
    // The version is journaled before the change comes into force (its JobCreated follows).
    await pair.until("a's policy follows", 10_000, async () => (await jobOn("a", "web"))?.policy === "unconditional");
    expect((await jobOn("a", "web"))?.policy).toBe("unconditional");
    text = edited;
  });

  it("a new job with a mirror added online: its first bring-in ships what was there, then every write follows", async () => {
    const logs = (node: PairNode) => join(pair.dir, node, "logs");
    await mkdir(logs("a"), { recursive: true });
    await writeFile(join(logs("a"), "before.log"), "written before the job existed\n");
    const next = text.replace("  - name: web\n", `  - name: logs\n    resources:\n${worker("tail")}\n    mirrors:\n      - path: ${join(pair.dir, "{node}", "logs")}\n  - name: web\n`);
    const applied = await apply("a", next);
    expect(applied).toMatchObject({ applied: true, peer: "applied" });
    expect(applied.plan.changes).toEqual([expect.objectContaining({ scope: "job logs", change: "added", effect: expect.stringMatching(/first bring-in verifies its 1 mirrored path/) })]);
    await pair.until("b knows job logs", 10_000, async () => (await jobOn("b", "logs"))?.mirrors.length === 1);
    await (await pair.client("a")).post("/v1/jobs/logs/bring-in", { on: "a" });
    await pair.until("logs in on a", 20_000, async () => (await jobOn("a", "logs"))?.phase === "in");
    const onB = (name: string) => readFile(join(logs("b"), name), "utf8").catch(() => null);
    await pair.until("the file written before reached b", 20_000, async () => (await onB("before.log")) === "written before the job existed\n");
    await writeFile(join(logs("a"), "after.log"), "written while the job runs\n");
    await pair.until("the write reached b", 20_000, async () => (await onB("after.log")) === "written while the job runs\n");
    const verified = (await pair.events("a")).filter((e) => e.type === "VerificationCompleted" && e.data.job === "logs");
    expect(verified).toHaveLength(1);
    text = next;
  });

  it("a mirror path added to the running job is verified alone: b's copy made a's, the first path streaming on", async () => {
    const dirOf = (node: PairNode, name: string) => join(pair.dir, node, name);
    const of = (node: PairNode, type: string) => pair.events(node).then((events) => events.filter((e) => e.type === type && (e.data as { job?: string }).job === "logs"));
    await mkdir(join(dirOf("a", "extra"), "sub"), { recursive: true });
    await mkdir(dirOf("b", "extra"), { recursive: true });
    await writeFile(join(dirOf("a", "extra"), "kept.txt"), "a's copy\n");
    const deep = Buffer.alloc(300_000, 7);
    await writeFile(join(dirOf("a", "extra"), "sub", "deep.bin"), deep);
    await writeFile(join(dirOf("b", "extra"), "kept.txt"), "a stale copy on b\n");
    await writeFile(join(dirOf("b", "extra"), "stale.txt"), "only on b\n");
    const before = { verifications: (await of("a", "VerificationStarted")).length, resyncs: (await of("a", "ResyncStarted")).length, starts: await starts("a") };

    const logsMirror = `      - path: ${join(pair.dir, "{node}", "logs")}\n`;
    const next = text.replace(logsMirror, `${logsMirror}      - path: ${join(pair.dir, "{node}", "extra")}\n`);
    const applied = await apply("a", next);
    expect(applied).toMatchObject({ applied: true, peer: "applied" });
    expect(applied.plan.changes).toEqual([expect.objectContaining({ scope: "job logs", item: "mirrors", effect: expect.stringMatching(/added path\(s\) verified against the other node on a now, shipping only what differs/) })]);
    // The first path streams on meanwhile.
    await writeFile(join(dirOf("a", "logs"), "during.log"), "written as the path was added\n");
    await pair.until("a verified the added path", 30_000, async () => (await of("a", "MirrorPathVerified")).length === 1);
    const onB = (name: string) => readFile(join(dirOf("b", "extra"), name)).catch(() => null);
    expect((await onB("kept.txt"))?.toString()).toBe("a's copy\n");
    expect((await onB("sub/deep.bin"))?.equals(deep)).toBe(true);
    expect(await onB("stale.txt")).toBeNull();
    expect(await readFile(join(dirOf("b", "logs"), "during.log"), "utf8")).toBe("written as the path was added\n");
    const started = (await of("a", "MirrorPathVerificationStarted"))[0]?.data as { reasons: { name: string; ok?: boolean }[] };
    expect(started.reasons).toContainEqual(expect.objectContaining({ name: "replica-never-ran-job-since-added", ok: true }));
    // b's journal holds the outcome too, and the added path streams like the first from now on.
    await pair.until("b heard it", 10_000, async () => (await of("b", "MirrorPathVerified")).length === 1);
    await writeFile(join(dirOf("a", "extra"), "after.txt"), "written once verified\n");
    await pair.until("the write reached b", 20_000, async () => (await onB("after.txt"))?.toString() === "written once verified\n");
    // Only that path was verified: no verification or resync of the job, no resource restarted.
    expect((await of("a", "VerificationStarted")).length).toBe(before.verifications);
    expect((await of("a", "ResyncStarted")).length).toBe(before.resyncs);
    expect(await starts("a")).toBe(before.starts);
    expect(await jobOn("a", "logs")).toMatchObject({ phase: "in", active: "a" });
    text = next;
  });
});
