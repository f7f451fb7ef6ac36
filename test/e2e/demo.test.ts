import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);

describe("npm run demo", () => {
  it("runs two agents, survives a crash of the active one, explains the takeover and exits 0", async () => {
    const { stdout } = await run(process.execPath, [join(import.meta.dirname, "../../bin/duet.js"), "demo"], { timeout: 60_000 });
    expect(stdout).toMatch(/served by alpha/);
    expect(stdout).toMatch(/now served by beta/);
    expect(stdout).toMatch(/why: takeover \(takeover\) of job web on beta/);
    expect(stdout).toMatch(/re-checked: the policy reaches the same decision/);
    const { stdout: left } = await run("ps", ["-eo", "cmd"]);
    expect(left).not.toMatch(/duet-demo-/);
  }, 70_000);
});
