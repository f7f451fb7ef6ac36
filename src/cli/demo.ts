import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initConfig } from "../config/init.ts";
import { PACKAGE_ROOT } from "../agent/package-info.ts";
import { loadConfig } from "../config/load.ts";
import { runReplay } from "../../tools/replay/main.ts";
import { localClient, type ApiClient } from "./client.ts";
import { CliError, exitCodes } from "./client.ts";
import type { clusterView } from "../api/views.ts";

/** The whole demo must end well inside a minute; each wait has its own bound below that. */
export const DEMO_DEADLINE_MS = 50_000;
// Ports away from duet's defaults, so the demo runs beside a real agent. Two loopback addresses
// stand for the two hosts; a third stands for the job's virtual IP, served by whichever is active.
const PORTS = { api: 27320, peer: 27330, heartbeat: 27340 };
const NODES = [
  { name: "alpha", address: "127.0.0.1" },
  { name: "beta", address: "127.0.0.2" },
] as const;
const SERVICE = { address: "127.0.0.3", port: 28080 };

const say = (line = "") => console.log(line);
const step = (text: string) => say(`\n== ${text}`);

async function until<T>(what: string, ms: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch((error: unknown) => {
      if (error instanceof CliError) throw error;
      return null;
    });
    if (value !== null) return value;
    if (Date.now() > deadline) throw new CliError(`demo: ${what} did not happen within ${ms} ms`, exitCodes.failed);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function servedBy(): Promise<string | null> {
  const response = await fetch(`http://${SERVICE.address}:${SERVICE.port}/`, { signal: AbortSignal.timeout(500) });
  return ((await response.json()) as { servedBy: string }).servedBy;
}

/** A takeover beta declined (a tiebreaker that cannot run, say) ends the demo at once, with beta's own words. */
async function failOnDecline(beta: ApiClient, after: number): Promise<void> {
  const { events } = await beta.get<{ events: { type: string; data: { code?: string; message?: string } }[] }>(`/v1/events?from=${after + 1}&type=AlertRaised`);
  const declined = events.find((e) => e.data.code !== undefined && e.data.code !== "both-active");
  if (declined) throw new CliError(`demo: beta did not take over: ${declined.data.message ?? declined.data.code}`, exitCodes.failed);
}

/**
 * `npm run demo`: two agents on this machine (loopback addresses, a temporary directory), a sample
 * job, a crash of the active node, the takeover and the replay explaining it. Leaves nothing running.
 */
export async function runDemo(options: { keep: boolean }): Promise<void> {
  const started = Date.now();
  const dir = await mkdtemp(join(tmpdir(), "duet-demo-"));
  const agents = new Map<string, ChildProcess>();
  const guard = setTimeout(() => {
    console.error("demo: over its deadline; stopping");
    for (const child of agents.values()) child.kill("SIGKILL");
    process.exit(exitCodes.failed);
  }, DEMO_DEADLINE_MS + 8000);
  guard.unref();
  try {
    say("duet demo: two agents on this machine keep a small web service available through a crash.");
    say(`  nodes alpha (127.0.0.1) and beta (127.0.0.2); the service address ${SERVICE.address}:${SERVICE.port} plays the virtual IP.`);
    say(`  everything lives in ${dir}; traffic stays on loopback.`);
    const app = join(PACKAGE_ROOT, "examples/demo-app.mjs");
    const { configFile } = await initConfig({
      dir,
      cluster: "demo",
      nodes: [
        { ...NODES[0], dataDir: join(dir, "alpha") },
        { ...NODES[1], dataDir: join(dir, "beta") },
      ],
      password: "demo-password-not-for-production",
      ports: PORTS,
      // A TCP connect needs no ping binary (a refusal is an answer); on real hosts: the gateway.
      tiebreakerYaml: "  ping: { targets: [\"tcp:127.0.0.1:9\"], mode: any, timeoutMs: 500 }   # on real hosts: the gateway, e.g. 10.0.0.254",
      jobsYaml: `  - name: web
    policy: unconditional      # for the demo: take over as soon as the tiebreaker confirms (the default is manual)
    resources:
      - name: app
        process:
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, ${SERVICE.address}, "${SERVICE.port}", ${JSON.stringify(join(dir, "{node}", "data"))}]
          health: { http: "http://${SERVICE.address}:${SERVICE.port}/" }
        monitor: { intervalMs: 1000, timeoutMs: 2000 }
        startTimeoutMs: 10000
    mirrors:
      - path: ${join(dir, "{node}", "data")}   # on real hosts the same path on both; here each node has its own copy`,
    });

    step("starting both agents");
    for (const node of NODES) {
      const log = openSync(join(dir, `${node.name}.stderr`), "a");
      const child = spawn(process.execPath, [join(PACKAGE_ROOT, "bin/duet.js"), "agent", "--config", configFile, "--node", node.name], { stdio: ["ignore", "ignore", log], detached: true });
      closeSync(log);
      agents.set(node.name, child);
      child.once("exit", (code, signal) => agents.get(node.name) === child && say(`  (agent ${node.name} exited: ${signal ?? code})`));
    }
    const clients = new Map<string, ApiClient>();
    for (const node of NODES) {
      const client = await until(`agent ${node.name} answering`, 15_000, async () => {
        if (agents.get(node.name)?.exitCode !== null) throw new CliError(`demo: agent ${node.name} exited; its log: ${join(dir, `${node.name}.stderr`)}\n${await readFile(join(dir, `${node.name}.stderr`), "utf8").catch(() => "")}`, exitCodes.failed);
        try {
          const c = await localClient({ url: `http://${node.address}:${PORTS.api}`, dataDir: join(dir, node.name) });
          await c.get("/v1/cluster");
          return c;
        } catch {
          return null; // not up yet
        }
      });
      clients.set(node.name, client);
    }
    const alpha = clients.get("alpha")!;
    const beta = clients.get("beta")!;
    await until("the two agents seeing each other", 10_000, async () => {
      const views = await Promise.all([alpha, beta].map((c) => c.get<ReturnType<typeof clusterView>>("/v1/cluster")));
      return views.every((v) => v.peerStatus === "connected" && v.links.filter((l) => l.up).length === 2) ? true : null;
    });
    say(`  alpha and beta connected on both links (an authenticated UDP heartbeat and the TLS peer channel) after ${Date.now() - started} ms`);

    step("bringing job web in on alpha");
    await alpha.post("/v1/jobs/web/bring-in", { on: "alpha" });
    // Both journals must say where the job runs before the crash: beta takes over only what it knows alpha ran.
    await until("both nodes recording web in on alpha", 15_000, async () => {
      const views = await Promise.all([alpha, beta].map((c) => c.get<ReturnType<typeof clusterView>>("/v1/cluster")));
      return views.every((v) => v.jobs.find((j) => j.name === "web")?.active === "alpha") ? true : null;
    });
    const first = await until("the service answering", 15_000, servedBy);
    say(`  GET http://${SERVICE.address}:${SERVICE.port}/ -> served by ${first}; both journals record it`);

    step("the application's data: written on alpha, mirrored to beta in real time");
    const orders = "order 1001: 3 x espresso\norder 1002: 1 x croissant\n";
    const wroteAt = Date.now();
    await writeFile(join(dir, "alpha", "data", "orders.txt"), orders);
    await until("orders.txt on beta", 10_000, async () => ((await readFile(join(dir, "beta", "data", "orders.txt"), "utf8").catch(() => "")) === orders ? true : null));
    const link = await until("the data link green", 10_000, async () => {
      const job = (await alpha.get<ReturnType<typeof clusterView>>("/v1/cluster")).jobs[0];
      return job?.replication.colour === "green" && job.replication.queue?.batches === 0 ? job : null;
    });
    say(`  alpha wrote orders.txt; beta's copy had it ${Date.now() - wroteAt} ms later (data link ${link.replication.colour}, queue empty, verified)`);
    say(`  generation ${link.lineage?.local.generation}: both nodes on the same line of history`);

    step("crash: alpha's agent and its application are killed with SIGKILL (as if the host died)");
    const appPid = (JSON.parse(await readFile(join(dir, "alpha", "jobs", "web", "app.pid"), "utf8")) as { pid: number }).pid;
    const crashedAt = Date.now();
    agents.get("alpha")!.kill("SIGKILL");
    process.kill(-appPid, "SIGKILL");
    agents.delete("alpha");
    let down = false;
    const betaHead = (await beta.get<{ head: number }>("/v1/events?limit=1")).head;
    const second = await until("beta taking over", 20_000, async () => {
      await failOnDecline(beta, betaHead);
      const by = await servedBy().catch(() => {
        down = true;
        return null;
      });
      return by === "beta" ? by : null;
    });
    say(`  the service was ${down ? "down" : "slow"} for ${Date.now() - crashedAt} ms; now served by ${second}`);
    const { heartbeat, tiebreaker } = (await loadConfig(configFile)).config;
    say(`  (beta waits the ${heartbeat.deadtimeMs} ms deadtime before it calls alpha lost and asks its ping tiebreaker. Had alpha only`);
    say(`   been cut off, it would have noticed after ${heartbeat.suspectMs} ms of silence, failed its own ${tiebreaker.ping?.timeoutMs} ms ping and`);
    say(`   brought the job out by then: so beta takes over at once, and the job never runs on two nodes)`);
    const view = await until("beta journaling the takeover", 10_000, async () => {
      const v = await beta.get<ReturnType<typeof clusterView>>("/v1/cluster");
      return v.jobs[0]?.active === "beta" ? v : null;
    });
    say(`  beta sees: peer ${view.peer} ${view.peerStatus}; job web ${view.jobs[0]?.phase} on ${view.jobs[0]?.active}`);
    const served = (await (await fetch(`http://${SERVICE.address}:${SERVICE.port}/`, { signal: AbortSignal.timeout(1000) })).json()) as { files: { name: string; text: string }[] };
    say(`  beta serves orders.txt from its replica: ${JSON.stringify(served.files.find((f) => f.name === "orders.txt")?.text ?? "(missing!)")}`);

    step("stopping beta (SIGTERM: with no peer to switch over to, it brings the job out)");
    const betaAgent = agents.get("beta")!;
    const exited = new Promise((r) => betaAgent.once("exit", r));
    betaAgent.kill("SIGTERM");
    let stopTimer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (stopTimer = setTimeout(r, 20_000)))]);
    clearTimeout(stopTimer);
    agents.delete("beta");

    step("replay: both journals merged, the takeover explained and re-checked against the policy");
    const { output, exitCode } = await runReplay([join(dir, "alpha", "journal"), join(dir, "beta", "journal")]);
    const explanation = output.slice(output.indexOf("why:"));
    say(explanation.includes("why:") ? explanation : output);
    say(`\nThe same from the command line: duet replay ${join(dir, "alpha", "journal")} ${join(dir, "beta", "journal")}${options.keep ? "" : " (run with --keep to keep them)"}`);
    say("");
    say("What happened: beta heard nothing from alpha on any link for the deadtime, called it lost, confirmed with its");
    say("tiebreaker that it was not itself the one cut off, and, as the job's policy allowed, started the job. Every step");
    say("is a fact in beta's journal, and replay re-ran the policy on that journal to confirm the decision.");
    say(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (exitCode !== 0) throw new CliError("demo: the replay did not confirm every decision", exitCodes.failed);
  } finally {
    clearTimeout(guard);
    for (const child of agents.values()) child.kill("SIGKILL");
    // A killed agent leaves its application running: stop whatever pid files remain.
    for (const node of NODES) {
      const pidFile = join(dir, node.name, "jobs", "web", "app.pid");
      const record = await readFile(pidFile, "utf8").catch(() => null);
      if (record) {
        try {
          process.kill(-(JSON.parse(record) as { pid: number }).pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    if (!options.keep) await rm(dir, { recursive: true, force: true });
  }
}

