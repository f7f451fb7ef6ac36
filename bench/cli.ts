// bench:cli — how long `duet --help`, `duet --version` and `duet status` (against a running agent)
// take as whole processes, beside the machine's own `node -e 0` measured in the same run.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { initConfig } from "../src/config/init.ts";
import { localClient } from "../src/cli/client.ts";
import { createTargets } from "./bench-kit.ts";

const RUNS = 15;
const TARGETS_MS = { help: 300, status: 500 };
const ROOT = resolve(import.meta.dirname, "..");
const DUET = join(ROOT, "bin/duet.js");
const run = promisify(execFile);

async function time(argv: string[]): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await run(process.execPath, argv, { timeout: 30_000 });
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}
const summary = (xs: number[]) => `min ${xs[0]!.toFixed(0)}  median ${xs[Math.floor(xs.length / 2)]!.toFixed(0)}  max ${xs.at(-1)!.toFixed(0)} ms`;
const median = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;

const dir = await mkdtemp(join(tmpdir(), "duet-bench-cli-"));
const ports = { api: 26320, peer: 26330, heartbeat: 26340 };
const { configFile } = await initConfig({
  dir,
  cluster: "bench",
  nodes: [
    { name: "a", address: "127.0.0.1", dataDir: join(dir, "a") },
    { name: "b", address: "127.0.0.2", dataDir: join(dir, "b") },
  ],
  password: "bench-password-long-enough",
  ports,
});
const agent = spawn(process.execPath, [DUET, "agent", "--config", configFile, "--node", "a"], { stdio: "ignore" });
const targets = createTargets("bench:cli");
try {
  console.log(`bench:cli — ${RUNS} runs each, whole processes (node ${process.version})`);
  for (let i = 0; ; i++) {
    const client = await localClient({ url: `http://127.0.0.1:${ports.api}`, dataDir: join(dir, "a") }).catch(() => null);
    if (client && (await client.get("/v1/health").then(() => true, () => false))) break;
    if (i > 300) throw new Error("the agent did not answer within 30 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  const baseline = await time(["-e", "0"]);
  console.log(`  baseline node -e 0       ${summary(baseline)}`);
  const results = {
    help: await time([DUET, "--help"]),
    version: await time([DUET, "--version"]),
    status: await time([DUET, "status", "--config", configFile, "--node", "a"]),
  };
  for (const [name, xs] of Object.entries(results)) {
    const target = TARGETS_MS[name as keyof typeof TARGETS_MS];
    const verdict = target === undefined ? "" : `  target ${target} ms ${targets.check(`duet ${name} median <= ${target} ms`, median(xs) <= target)}`;
    console.log(`  duet ${name.padEnd(18)} ${summary(xs)}  (${(median(xs) / median(baseline)).toFixed(1)}x node -e 0)${verdict}`);
  }
} finally {
  agent.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
}
targets.exit();
