import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestNet } from "../test/e2e/netns.ts";
import { startVipClient } from "./vip-client.ts";

/**
 * The side-by-side baseline: a keepalived VRRP pair in the same namespaces, unicast, with its
 * advert interval chosen so that its master-down time (3 x advert + skew) matches duet's deadtime.
 */
export async function measureKeepalivedHostCrash(net: TestNet, options: { vip: string; deadtimeMs: number; runs: number }) {
  const dir = mkdtempSync(join(tmpdir(), "duet-keepalived-"));
  const advertS = Math.max(0.1, options.deadtimeMs / 3000);
  const daemons = new Map<string, ChildProcess>();
  const apps: ChildProcess[] = [];
  const conf = (self: string, peer: string, priority: number) => `
vrrp_instance duet_bench {
  state BACKUP
  interface eth0
  virtual_router_id 77
  priority ${priority}
  advert_int ${advertS.toFixed(2)}
  unicast_src_ip ${net.address(self)}
  unicast_peer { ${net.address(peer)} }
  virtual_ipaddress { ${options.vip}/24 dev eth0 }
}`;
  const start = (host: string) => {
    // A SIGKILLed keepalived leaves its pid files; if the pid is reused, a restart would think it
    // still runs and exit at once.
    for (const ext of ["pid", "vpid", "cpid"]) rmSync(join(dir, `${host}.${ext}`), { force: true });
    const child = net.spawn(host, ["keepalived", "-n", "-l", "-D", "-f", join(dir, `${host}.conf`), `--pid=${join(dir, `${host}.pid`)}`, `--vrrp_pid=${join(dir, `${host}.vpid`)}`, `--checkers_pid=${join(dir, `${host}.cpid`)}`]);
    child.stdout?.resume();
    child.stderr?.resume();
    daemons.set(host, child);
  };
  writeFileSync(join(dir, "a.conf"), conf("a", "b", 150));
  writeFileSync(join(dir, "b.conf"), conf("b", "a", 100));
  const startApp = (host: string) => apps.push(net.spawn(host, [process.execPath, "-e", `require("http").createServer((q,r)=>r.end("${host}")).listen(8080)`]));
  startApp("a");
  startApp("b");
  const client = startVipClient(net, "client", `http://${options.vip}:8080/`);
  const takeovers: number[] = [];
  try {
    for (let run = 0; run < options.runs; run++) {
      start("a");
      if (!daemons.has("b")) start("b");
      await client.servedBy("a", Date.now(), 30_000);
      // Host crash of a: its daemon dies without a goodbye and its NIC goes dark.
      const faultAt = Date.now();
      await crashHost(net, "a");
      const servedAt = await client.servedBy("b", faultAt, 30_000);
      takeovers.push(servedAt - faultAt);
      // Bring a back clean for the next run: NIC up, its stale VIP removed.
      await net.probe("a", ["ip", "addr", "del", `${options.vip}/24`, "dev", "eth0"]);
      await net.exec("a", ["ip", "link", "set", "eth0", "up"]);
      startApp("a");
    }
  } finally {
    client.stop();
    for (const d of daemons.values()) d.kill("SIGKILL");
    for (const app of apps) app.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  return { takeovers, advertS };
}

/** A host crash as FACTS.md makes it: every process of the node SIGKILLed, its NIC down. */
export async function crashHost(net: TestNet, host: string) {
  const pids = (await net.exec(host, ["true"]).then(() => listPids(net.ns(host)))).filter((pid) => pid !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await net.exec(host, ["ip", "link", "set", "eth0", "down"]);
}

async function listPids(ns: string): Promise<number[]> {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve) => {
    execFile("ip", ["netns", "pids", ns], (_error, stdout) => resolve(stdout.split(/\s+/).filter(Boolean).map(Number)));
  });
}
