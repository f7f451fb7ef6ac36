import type { ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import type { TestNet } from "./netns.ts";

const DUET = join(resolve(import.meta.dirname, "../.."), "bin/duet.js");

/**
 * Real agents in test namespaces, driven through the real CLI run inside the namespaces (the root
 * namespace never talks to a test address), with their logs kept for a failing wait to show.
 */
export function createPairKit(net: TestNet, configFile: string, vip: string) {
  const agents = new Map<string, { child: ChildProcess; log: string[] }>();
  const kit = {
    agents,
    startAgent(host: string): ChildProcess {
      const child = net.spawn(host, [process.execPath, DUET, "agent", "--config", configFile, "--node", host]);
      const log: string[] = [];
      child.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
      child.stdout!.on("data", (d: Buffer) => log.push(d.toString()));
      agents.set(host, { child, log });
      return child;
    },
    /** `duet ARGS --json` on a node, parsed. */
    async duet(host: string, ...args: string[]) {
      return JSON.parse(await net.exec(host, [process.execPath, DUET, ...args, "--config", configFile, "--node", host, "--json"], 60_000));
    },
    /** Polls until the probe gives a truthy value; on timeout the error carries both agents' recent logs. */
    async until<T>(what: string, ms: number, probe: () => Promise<T | null | false | undefined>): Promise<T> {
      const deadline = Date.now() + ms;
      for (;;) {
        const value = await probe().catch(() => null);
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${[...agents].map(([h, a]) => `--- ${h}\n${a.log.join("").slice(-2500)}`).join("\n")}`);
        await new Promise((r) => setTimeout(r, 150));
      }
    },
    /** Who answers on the VIP, asked from the client namespace. */
    async servedBy(): Promise<string> {
      const body = await net.exec("client", [process.execPath, "-e", `fetch("http://${vip}:8080/",{signal:AbortSignal.timeout(500)}).then(r=>r.text()).then(t=>console.log(t))`], 5000);
      return (JSON.parse(body) as { servedBy: string }).servedBy;
    },
    /**
     * A client asking the VIP every 20 ms from its namespace, a new connection each time (as a
     * new client would), until stopped: each answer's time and who served it ("-" for none).
     * Bounded: it ends by itself after maxMs.
     */
    watchClient(maxMs = 60_000) {
      const script = `const http=require("http");const end=Date.now()+${maxMs};
const ask=()=>new Promise((ok)=>{const r=http.get({host:"${vip}",port:8080,path:"/",agent:false,timeout:200},(res)=>{let b="";
res.on("data",(d)=>b+=d);res.on("end",()=>{try{ok(JSON.parse(b).servedBy)}catch{ok("-")}})});
r.on("timeout",()=>r.destroy());r.on("error",()=>ok("-"))});
(async()=>{while(Date.now()<end){const t=Date.now();const by=await ask();console.log(t+" "+by);
await new Promise((r)=>setTimeout(r,20))}})();`;
      const child = net.spawn("client", [process.execPath, "-e", script]);
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => child.once("exit", r));
      return {
        answers: (): { at: number; by: string }[] =>
          out
            .split("\n")
            .filter((line) => /^\d+ \S+$/.test(line))
            .map((line) => ({ at: Number(line.split(" ")[0]), by: line.split(" ")[1]! })),
        async stop(): Promise<void> {
          child.kill("SIGTERM");
          await exited;
        },
      };
    },
    async hasVip(host: string): Promise<boolean> {
      return (await net.probe(host, ["ip", "-o", "addr", "show"])).out.includes(`${vip}/`);
    },
    async stopAgent(host: string): Promise<void> {
      agents.get(host)!.child.kill("SIGTERM");
      await kit.until(`agent ${host} stopped`, 30_000, async () => agents.get(host)!.child.exitCode !== null);
    },
  };
  return kit;
}

/** The job's VIP and the demo HTTP application answering on it, as resources (6 spaces in). */
export function demoResourcesYaml(vip: string, dir: string): string {
  const app = join(resolve(import.meta.dirname, "../.."), "examples/demo-app.mjs");
  return `      - name: ip
        vip: { address: ${vip}/24, interface: eth0, arpCount: 2 }
        startTimeoutMs: 6000
      - name: app
        process:
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, ${vip}, "8080", ${JSON.stringify(dir)}]
          health: { http: "http://${vip}:8080/" }
        monitor: { intervalMs: 300, timeoutMs: 1000 }`;
}
