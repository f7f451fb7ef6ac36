import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { initConfig } from "../src/config/init.ts";
import type { TestNet } from "../test/e2e/netns.ts";
import { crashHost } from "./keepalived-pair.ts";
import { startVipClient } from "./vip-client.ts";

const ROOT = resolve(import.meta.dirname, "..");
/** A second process resource appending RATE lines a second to the job's mirrored directory. */
function writerYaml(dir: string, rate: number): string {
  const writer = join(ROOT, "bench/steady-writer.mjs");
  return `
      - name: writer
        process: { command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(writer)}, ${JSON.stringify(join(dir, "{node}"))}, "${rate}"] }
    mirrors:
      - path: ${join(dir, "{node}", "data")}`;
}

/** The demo app answers JSON: match its servedBy field, not any "a" or "b" in the body. */
const served = (host: string) => `"servedBy":"${host}"`;
const DUET = join(ROOT, "bin/duet.js");

/**
 * A duet pair in the bench's namespaces with the default timings (heartbeat 500 ms, suspicion
 * 1000 ms, deadtime 3000 ms, ping 500 ms, no self-fence grace), a VIP and an HTTP app, and a client
 * polling the VIP.
 */
export async function startDuetPair(net: TestNet, options: { vip: string; writesPerS?: number; witness?: { endpoint: string; leaseMs: number } }) {
  const witness = options.witness ? `\n  witness: { etcd: { endpoints: [${options.witness.endpoint}], prefix: /duet-bench-${process.pid} }, leaseMs: ${options.witness.leaseMs} }` : "";
  const dir = mkdtempSync(join(tmpdir(), "duet-bench-pair-"));
  const app = join(ROOT, "examples/demo-app.mjs");
  const { configFile } = await initConfig({
    dir,
    cluster: "bench",
    nodes: [
      { name: "a", address: net.address("a"), dataDir: join(dir, "a") },
      { name: "b", address: net.address("b"), dataDir: join(dir, "b") },
    ],
    password: "bench-password-1234",
    tiebreakerYaml: `  ping: { targets: [${net.address("client")}], mode: any }${witness}`,
    jobsYaml: `  - name: web
    policy: unconditional
    restart: { max: 0, windowMs: 60000 }
    resources:
      - name: ip
        vip: { address: ${options.vip}/24, interface: eth0, arpCount: 2 }
      - name: app
        process:
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, ${options.vip}, "8080", ${JSON.stringify(join(dir, "a"))}]
          health: { http: "http://${options.vip}:8080/" }
        monitor: { intervalMs: 1000, timeoutMs: 1000 }${options.writesPerS ? writerYaml(dir, options.writesPerS) : ""}`,
  });
  if (options.writesPerS) for (const host of ["a", "b"]) mkdirSync(join(dir, host, "data"), { recursive: true });
  const agents = new Map<string, ChildProcess>();
  const start = (host: string) => {
    const child = net.spawn(host, [process.execPath, DUET, "agent", "--config", configFile, "--node", host]);
    child.stdout?.resume();
    child.stderr?.on("data", (d: Buffer) => appendFileSync(join(dir, `${host}.stderr`), d));
    agents.set(host, child);
  };
  const cli = async (host: string, ...args: string[]) => JSON.parse(await net.exec(host, [process.execPath, DUET, ...args, "--config", configFile, "--node", host, "--json"], 60_000));
  const until = async (what: string, ms: number, probe: () => Promise<boolean>) => {
    const deadline = Date.now() + ms;
    while (!(await probe().catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const connected = () => until("pair connected", 30_000, async () => (await cli("a", "status")).peerStatus === "connected" && (await cli("b", "status")).peerStatus === "connected");
  const activeOf = async (host: string) => ((await cli(host, "status")).jobs as { active: string | null }[])[0]?.active ?? null;
  start("a");
  start("b");
  await connected();
  await cli("a", "job", "bring-in", "web", "--on", "a");
  const client = startVipClient(net, "client", `http://${options.vip}:8080/`);
  await client.servedBy(served("a"), Date.now(), 30_000);

  return {
    client,
    cli,
    dir,
    /**
     * A switchover of the job that writes steadily: the outage (the client's last answer from the
     * old node to its first from the new one), and whether every line written on the old node was
     * on the new one before its application wrote.
     */
    async switchover(): Promise<{ outageMs: number; lines: number; allArrived: boolean }> {
      const from = (await activeOf("a")) ?? "a";
      const to = from === "a" ? "b" : "a";
      await until("the data link green", 60_000, async () => ((await cli(from, "status")).jobs as { replication: { colour: string; verification: { state: string } | null } }[])[0]?.replication.colour === "green");
      const askedAt = Date.now();
      const outcome = await cli(from, "job", "switchover", "web", "--to", to);
      if (!outcome.outcome?.ok) throw new Error(`switchover to ${to}: ${JSON.stringify(outcome)}`);
      const servedAt = await client.servedBy(served(to), askedAt, 60_000);
      const lastOld = client.samples.filter((x) => x.at >= askedAt && x.at < servedAt && x.ok && x.body.includes(served(from))).at(-1)?.at ?? askedAt;
      const written = Number(readFileSync(join(dir, from, "written"), "utf8"));
      // The writer numbers its lines on from the copy it found: the new node's copy holds line WRITTEN, by the old node, and every one before it.
      const copy = readFileSync(join(dir, to, "data", "log.txt"), "utf8").split("\n").filter(Boolean).map((l) => l.split(" "));
      const upTo = copy.slice(0, written);
      const allArrived = upTo.length === written && upTo.every(([n], i) => Number(n) === i + 1) && upTo.at(-1)?.[1] === from;
      return { outageMs: servedAt - lastOld, lines: written, allArrived };
    },
    /** Crashes the active node, returns fault → served-by-the-other, then brings the node back as standby. */
    async hostCrash(): Promise<number> {
      const active = (await activeOf("a")) ?? "a";
      const other = active === "a" ? "b" : "a";
      const faultAt = Date.now();
      await crashHost(net, active);
      const servedAt = await client.servedBy(served(other), faultAt, 60_000);
      await net.probe(active, ["ip", "addr", "del", `${options.vip}/24`, "dev", "eth0"]);
      await net.exec(active, ["ip", "link", "set", "eth0", "up"]);
      start(active);
      await connected();
      await until("the restarted node knows where the job runs", 30_000, async () => (await activeOf(active)) === other);
      return servedAt - faultAt;
    },
    /** Kills the application on the active node (restart.max 0: the first failure fails over). */
    async appCrash(): Promise<number> {
      const active = (await activeOf("a")) ?? "a";
      const other = active === "a" ? "b" : "a";
      const pid = (JSON.parse(readFileSync(join(dir, active, "jobs", "web", "app.pid"), "utf8")) as { pid: number }).pid;
      const faultAt = Date.now();
      process.kill(-pid, "SIGKILL");
      const servedAt = await client.servedBy(served(other), faultAt, 60_000);
      await until("the failover settled", 30_000, async () => (await activeOf(active)) === other && (await activeOf(other)) === other);
      return servedAt - faultAt;
    },
    /** How many facts of this type both journals hold. */
    async eventCount(type: string): Promise<number> {
      let count = 0;
      for (const host of ["a", "b"]) {
        const token = readFileSync(join(dir, host, "cli.token"), "utf8").trim();
        const out = await net.exec(host, [process.execPath, "-e", `fetch("http://${net.address(host)}:7320/v1/events?type=${type}&limit=1000",{headers:{authorization:"Bearer ${token}"}}).then(r=>r.json()).then(j=>console.log(j.events.length))`]);
        count += Number(out.trim());
      }
      return count;
    },
    async stop() {
      client.stop();
      for (const child of agents.values()) child.kill("SIGKILL");
      for (const host of ["a", "b"]) {
        const pids = (await net.probe(host, ["true"]), await new Promise<string>((r) => spawn("ip", ["netns", "pids", net.ns(host)]).stdout.on("data", (d) => r(String(d))).on("close", () => r(""))));
        for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
      }
      if (!process.env.DUET_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}
