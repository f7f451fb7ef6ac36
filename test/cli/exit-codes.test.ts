import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProcessPair } from "../e2e/process-pair.ts";

const DUET = join(resolve(import.meta.dirname, "../.."), "bin/duet.js");
const execFileAsync = promisify(execFile);
let pair: Awaited<ReturnType<typeof startProcessPair>>;
let configFile: string;
let home: string;

/** `duet ARGS`: its exit code, stdout and stderr, whatever the outcome. */
async function duet(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, XDG_CONFIG_HOME: home };
  const child = execFileAsync(process.execPath, [DUET, ...args], { env, timeout: 30_000 });
  if (input !== undefined) child.child.stdin?.end(input);
  return child.then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const base = 21000 + ((process.pid * 13) % 2000); // below the ephemeral range, clear of the demo (27320...)
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "duet-cli-home-"));
  pair = await startProcessPair({ name: "cli", addresses: { a: "127.0.0.1", b: "127.0.0.2" }, ports: { api: base, peer: base + 1, heartbeat: base + 2 } });
  configFile = join(pair.dir, "duet.yaml");
  pair.start("a");
  await pair.client("a");
}, 60_000);
afterAll(async () => {
  await pair?.close();
  await rm(home, { recursive: true, force: true });
});

describe("the CLI: one exit code per meaning, and JSON errors with --json", () => {
  const at = () => ["--config", configFile, "--node", "a"];
  // [what, exit code, error code on stdout with --json, arguments]
  const table: [string, number, string, () => string[]][] = [
    ["unknown job, bring-in", 4, "not-found", () => ["job", "bring-in", "nope", ...at()]],
    ["unknown job, verify", 4, "not-found", () => ["job", "verify", "nope", ...at()]],
    ["unknown job, snapshot list", 4, "not-found", () => ["snapshot", "list", "nope", ...at()]],
    ["unknown snapshot, restore", 4, "not-found", () => ["snapshot", "restore", "data", "no-such-snapshot", "--to", join(pair.dir, "restored"), ...at()]],
    ["restore into the live mirror", 2, "bad-request", () => ["snapshot", "restore", "data", "any", "--to", join(pair.dir, "a", "data", "x"), ...at()]],
    ["restore into the snapshots themselves", 2, "bad-request", () => ["snapshot", "restore", "data", "any", "--to", join(pair.dir, "a", "data.duet-snapshots", "x", "..", "y"), ...at()]],
    ["switchover of a job not brought in", 3, "switchover-refused", () => ["job", "switchover", "data", ...at()]],
    ["bring-in on a node the job does not have", 2, "bad-request", () => ["job", "bring-in", "data", "--on", "zeta", ...at()]],
    ["a missing argument", 2, "usage", () => ["job", "bring-in", ...at()]],
    ["an unknown option", 2, "usage", () => ["status", "--colour", ...at()]],
    ["a config that does not exist", 2, "bad-config", () => ["status", "--config", join(pair.dir, "missing.yaml")]],
    ["the agent not running", 5, "unreachable", () => ["status", "--config", configFile, "--node", "b"]],
    ["a remote agent not logged in to", 6, "unauthorized", () => ["status", "--url", "http://127.0.0.1:" + base]],
  ];
  it.each(table)("%s: exit %i, error %s", async (_what, exit, code, args) => {
    const result = await duet([...args(), "--json"]);
    expect(result.code, result.stderr).toBe(exit);
    const parsed = JSON.parse(result.stdout) as { error: { code: string; message: string } };
    expect(parsed.error.code).toBe(code);
    expect(parsed.error.message.length).toBeGreaterThan(5);
  });

  it("without --json an error is one line on stderr and nothing on stdout", async () => {
    const result = await duet(["job", "switchover", "data", ...at()]);
    expect(result).toMatchObject({ code: 3, stdout: "" });
    expect(result.stderr).toMatch(/^duet: switchover of data to b refused: /);
  });

  it("duet login --url keeps a token (mode 0600) that later commands with --url use; a wrong password is exit 6", async () => {
    const url = `http://127.0.0.1:${base}`;
    const wrong = await duet(["login", "--url", url, "--user", "admin", "--password-stdin", "--json"], "not-the-password\n");
    expect(wrong.code).toBe(6);
    const ok = await duet(["login", "--url", url, "--user", "admin", "--password-stdin", "--json"], "test-password-long-enough\n");
    expect(ok.code, ok.stderr).toBe(0);
    const file = (JSON.parse(ok.stdout) as { file: string }).file;
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const status = await duet(["status", "--url", url, "--json"]);
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as { node: string }).node).toBe("a");
  });

  it("duet passwd adds a monitor user to the config, keeping its comments, and the result loads", async () => {
    const copy = join(pair.dir, "passwd.yaml");
    await writeFile(copy, await readFile(configFile, "utf8"));
    const result = await duet(["passwd", "ops", "--config", copy, "--password-stdin", "--json"], "a-long-monitor-password\n");
    expect(result.code, result.stderr).toBe(0);
    const text = await readFile(copy, "utf8");
    expect(text).toContain("# duet config written by `duet init`");
    expect(text).toMatch(/name: ops\s+role: monitor\s+passwordHash: scrypt\$/);
    expect((await duet(["passwd", "ops", "--config", copy, "--password-stdin"], "short\n")).code).toBe(1);
  });

  it("duet --version prints the package's version", async () => {
    const pkg = JSON.parse(await readFile(join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string };
    expect((await duet(["--version"])).stdout.trim()).toBe(pkg.version);
  });
});
