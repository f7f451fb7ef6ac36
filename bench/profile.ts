// profile:replication / profile:api — agent a (PROFILE_NODE=b: b) under clinic (flame), writing clinic's HTML report:
//   replication: the initial sync of a generated tree (BENCH_TREE_MIB, default 256) to agent b;
//   api: 200 SSE subscribers replaying the journal from 0 plus GET /v1/cluster in a loop.
// Without a terminal clinic needs NO_INSIGHT=1 (set here). The report's path is printed at the end.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { startProcessPair } from "../test/e2e/process-pair.ts";

const mode = process.argv[2];
if (mode !== "replication" && mode !== "api") throw new Error(`usage: profile.ts replication|api, got ${mode}`);
const TREE_MIB = Number(process.env.BENCH_TREE_MIB ?? 256);
const OUT = resolve(process.env.PROFILE_OUT ?? ".tmp/profile");
const CLINIC = join(import.meta.dirname, "../node_modules/.bin/clinic");
/** PROFILE_NODE=b profiles the replica's side instead of the source's. */
const NODE = (process.env.PROFILE_NODE ?? "a") as "a" | "b";
if (NODE !== "a" && NODE !== "b") throw new Error(`PROFILE_NODE: expected a or b, got ${NODE}`);
process.env.NO_INSIGHT = "1";

async function writeTree(root: string): Promise<void> {
  for (let i = 0; i < (TREE_MIB * 1024) / 256; i++) {
    const dir = join(root, String(Math.floor(i / 256)).padStart(3, "0"));
    await mkdir(dir, { recursive: true });
    const handle = await open(join(dir, `f-${i}.bin`), "w");
    await handle.write(randomBytes(256 * 1024));
    await handle.close();
  }
}

type Frame = { name: string; type: string };

/**
 * The samples clinic keeps beside its report, summed per nearest duet function of each busy stack
 * (the idle epoll wait left out): where the agent's main thread spends its time, as text.
 */
async function summarize(dir: string): Promise<void> {
  const file = (await readdir(dir)).find((f) => f.endsWith("-samples"));
  if (!file) return;
  const stacks = JSON.parse(await readFile(join(dir, file), "utf8")) as Frame[][];
  const owners = new Map<string, number>();
  let busy = 0;
  for (const stack of stacks) {
    const leaf = stack.at(-1);
    if (!leaf || /epoll_pwait/.test(leaf.name)) continue;
    busy += 1;
    const owner = stack.findLast((f) => f.type === "JS" && /dist\/(src|tools)\//.test(f.name));
    const name = owner ? owner.name.replace(/file:\/\/.*?dist\//, "").trim() : "(node, V8 and libraries only)";
    owners.set(name, (owners.get(name) ?? 0) + 1);
  }
  console.log(`main thread busy in ${busy} of ${stacks.length} samples; by nearest duet function:`);
  for (const [name, count] of [...owners].sort((x, y) => y[1] - x[1]).slice(0, 15)) console.log(`  ${((100 * count) / busy).toFixed(1).padStart(5)}%  ${name}`);
}

const pair = await startProcessPair({ name: `profile-${mode}`, addresses: { a: "127.0.0.51", b: "127.0.0.52" }, ports: { api: 27720, peer: 27721, heartbeat: 27722 } });
try {
  await mkdir(OUT, { recursive: true });
  if (mode === "replication") {
    console.log(`writing ${TREE_MIB} MiB into ${pair.data("a")}`);
    await writeTree(pair.data("a"));
  }
  const clinic = [CLINIC, "flame", "--dest", OUT, "--"];
  pair.start("a", NODE === "a" ? clinic : []);
  pair.start("b", NODE === "b" ? clinic : []);
  const profiled = pair.child(NODE)!;
  await pair.until("peers connected", 60_000, async () => (await pair.cluster("a")).peerStatus === "connected");
  const client = await pair.client("a");
  const started = performance.now();
  if (mode === "replication") {
    await client.post("/v1/jobs/data/bring-in", { on: "a" });
    await pair.until("initial sync done", 1_800_000, async () => (await pair.job("a")).replication.colour === "green", 100);
    console.log(`initial sync of ${TREE_MIB} MiB under the profiler: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } else {
    const head = (await client.get<{ head: number }>("/v1/events?limit=1")).head;
    const subscribers = spawn(process.execPath, [join(import.meta.dirname, "api-subscribers.mjs"), client.url, (await import("node:fs")).readFileSync(join(pair.dir, "a", "cli.token"), "utf8").trim(), "200", "0", String(head)], { stdio: ["pipe", "ignore", "inherit"] });
    for (let i = 0; i < 2000; i++) await client.get("/v1/cluster");
    subscribers.kill();
    console.log(`2000 GET /v1/cluster beside 200 subscribers replaying ${head} events: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  // clinic writes its report once the profiled agent exits. As a Ctrl-C at a terminal would, SIGINT
  // goes to the agent itself (clinic's child), which stops as an operator's signal makes it.
  const exited = new Promise((r) => profiled.once("exit", r));
  const agentPids = execFileSync("pgrep", ["-f", `bin/duet.js agent --config ${join(pair.dir, "duet.yaml")} --node ${NODE}`], { encoding: "utf8" }).split(/\s+/).filter(Boolean);
  for (const pid of agentPids) process.kill(Number(pid), "SIGINT");
  await exited;
  const reports = (await readdir(OUT)).filter((f) => f.endsWith(".html"));
  console.log(`clinic flame report: ${reports.map((f) => join(OUT, f)).join(", ") || "(none written; see the agent log)"}`);
  for (const report of reports) await summarize(join(OUT, report.replace(/\.html$/, "")));
} finally {
  await pair.close();
}
