import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);
const npm = (args: string[], cwd = ROOT) => run("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, timeout: 170_000, maxBuffer: 16 * 1024 * 1024 });
let dir: string;
let tarball: string;
let files: string[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "duet-pack-"));
  // dist/ is current (the suite's global setup built it): pack without building again.
  const { stdout } = await npm(["pack", "--json", "--ignore-scripts", "--pack-destination", dir]);
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, packed!.filename);
  files = packed!.files.map((f) => f.path);
}, 180_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("npm pack", () => {
  it("ships only what runs: the bin, the compiled code, the examples and the README; no tests, benches or sources", () => {
    expect(files).toContain("bin/duet.js");
    expect(files).toContain("dist/src/cli/main.js");
    expect(files).toContain("examples/demo-app.mjs");
    expect(files.filter((f) => /^(test|bench|src|tools|scripts)\//.test(f) || f.endsWith(".ts") || f.includes("tsbuildinfo"))).toEqual([]);
  });

  it("the tarball installed with npm i -g into a fresh prefix runs duet --version and --help from any directory", async () => {
    const prefix = join(dir, "prefix");
    await npm(["install", "--global", "--prefix", prefix, "--prefer-offline", tarball], dir);
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string };
    const duet = join(prefix, "bin", "duet");
    const version = await run(duet, ["--version"], { cwd: tmpdir() });
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = await run(duet, ["--help"], { cwd: "/" });
    expect(help.stdout).toMatch(/Usage: duet/);
    expect(help.stdout).toMatch(/agent/);
  }, 180_000);
});
