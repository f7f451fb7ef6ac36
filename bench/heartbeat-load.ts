// bench:heartbeat — false peer losses while both CPUs are saturated, for several interval/deadtime
// settings: the evidence behind the 500 ms / 3000 ms default. Two heartbeat endpoints run in two
// processes on loopback (127.0.0.1 and 127.0.0.2), each in its heartbeat thread as the agent runs
// it; busy loops take every core meanwhile.
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";
import { createTargets } from "./bench-kit.ts";

const targets = createTargets("bench:heartbeat");

const SETTINGS: [number, number][] = [
  [100, 300],
  [100, 500],
  [200, 1000],
  [500, 3000],
];
// `--seconds N`; without it (indexOf -1) argv[0] is node's path, which once made this NaN and the
// busy loops end at once: the bench ran without load.
const secondsAt = process.argv.indexOf("--seconds");
const SECONDS = secondsAt > 0 ? Number(process.argv[secondsAt + 1]) : 20;
if (!(SECONDS > 0)) throw new Error(`--seconds wants a positive number, not ${process.argv[secondsAt + 1]}`);

// One endpoint: prints a line per detector transition and, at the end, the largest gap between frames.
const endpoint = `
  import { startHeartbeat } from ${JSON.stringify(new URL("../src/cluster/heartbeat.ts", import.meta.url).pathname)};
  import { systemClock, systemTimers } from ${JSON.stringify(new URL("../src/world/clock.ts", import.meta.url).pathname)};
  import { udpTransport } from ${JSON.stringify(new URL("../src/world/transport.ts", import.meta.url).pathname)};
  const [self, intervalMs, deadtimeMs, port] = process.argv.slice(2);
  const peer = self === "a" ? "b" : "a";
  const address = (n) => (n === "a" ? "127.0.0.1" : "127.0.0.2");
  const hb = await startHeartbeat({ self, peer, cluster: "bench", key: Buffer.alloc(32, 1), boot: self + process.pid,
    links: [{ id: "lan", local: { address: address(self), port: Number(port) }, peer: { address: address(peer), port: Number(port) } }],
    intervalMs: Number(intervalMs), deadtimeMs: Number(deadtimeMs), suspectMs: Number(deadtimeMs) / 2, transport: udpTransport, clock: systemClock, timers: systemTimers,
    thread: true, report: (events) => { for (const e of events) console.log(e.type); } });
  process.stdin.on("data", async () => { await hb.stop(); process.exit(0); });
`;

const children: ChildProcess[] = [];
try {
  console.log(`${SECONDS} s per setting, ${availableParallelism() * 2} busy loops on ${availableParallelism()} cores`);
  for (const [i, [intervalMs, deadtimeMs]] of SETTINGS.entries()) {
    const port = 39000 + i + (process.pid % 500) * 8;
    const counts = { LinkDown: 0, PeerLost: 0 };
    const endpoints = ["a", "b"].map((self) => {
      const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", endpoint, self, String(intervalMs), String(deadtimeMs), String(port)], { stdio: ["pipe", "pipe", "inherit"] });
      children.push(child);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (line === "LinkDown" || line === "PeerLost") counts[line] += 1;
      });
      return child;
    });
    await new Promise((r) => setTimeout(r, 3000)); // links up before the load starts
    const busy = Array.from({ length: availableParallelism() * 2 }, () => spawn(process.execPath, ["-e", `const end=Date.now()+${SECONDS * 1000};while(Date.now()<end){}`], { stdio: "ignore" }));
    children.push(...busy);
    await Promise.all(busy.map((c) => new Promise((r) => c.on("exit", r))));
    for (const e of endpoints) e.stdin!.write("stop\n");
    await Promise.all(endpoints.map((c) => new Promise((r) => c.on("exit", r))));
    const isDefault = intervalMs === 500 && deadtimeMs === 3000;
    console.log(`interval ${intervalMs} ms / deadtime ${deadtimeMs} ms: false link-down ${counts.LinkDown}, false peer-lost ${counts.PeerLost}${isDefault ? ` (the default: target 0 ${targets.check("no false peer-lost at the default timings", counts.PeerLost === 0)})` : ""}`);
  }
} finally {
  for (const c of children) c.kill("SIGKILL");
}
targets.exit();
