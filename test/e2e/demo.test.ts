import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);

describe("npm run demo", () => {
  // A new machine has Node and npm only: no ping, arping, ip or resource-agents.
  it("on a PATH with nothing but node, runs two agents, survives a crash of the active one, explains the takeover and exits 0", async () => {
    const bare = await mkdtemp(join(tmpdir(), "duet-bare-path-"));
    await symlink(process.execPath, join(bare, "node"));
    const { stdout } = await run(process.execPath, [join(import.meta.dirname, "../../bin/duet.js"), "demo"], { timeout: 60_000, env: { PATH: bare } }).finally(() => rm(bare, { recursive: true }));
    expect(stdout).toMatch(/served by alpha/);
    expect(stdout).toMatch(/now served by beta/);
    expect(stdout).toMatch(/why: takeover \(takeover\) of job web on beta/);
    expect(stdout).toMatch(/re-checked: the policy reaches the same decision/);
    const { stdout: left } = await run("ps", ["-eo", "cmd"]);
    expect(left).not.toMatch(/duet-demo-/);
  }, 70_000);
});
