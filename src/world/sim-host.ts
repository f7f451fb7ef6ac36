import type { Timers } from "./clock.ts";
import type { ProcessRunner, RunResult } from "./process.ts";
import type { TcpReach } from "./reach.ts";

/**
 * The hosts of a simulated pair, as the agents' commands see them: addresses added and removed
 * with `ip`, duplicate-address probes and ARP that answer from whichever host holds an address
 * and can be reached, a gateway that answers pings, and the job's application as a script
 * (`app start|stop|status NAME`). Fakes for the simulator only; production runs the real ones.
 */
export interface SimHosts {
  /** The commands of host NODE. */
  processes(node: string): ProcessRunner;
  reach(node: string): TcpReach;
  /** Addresses held on each host now (its own address excluded): the invariant "one VIP holder" reads it. */
  holders(address: string): string[];
  /** Applications running on each host now. */
  running(app: string): string[];
  /** The application dies on NODE (its monitor then says not running). */
  crashApp(node: string, app: string): void;
}

export interface SimHostOptions {
  timers: Timers;
  /** Each host's own public address, by node name. */
  addresses: Record<string, string>;
  /** The public network's gateway (the ping tiebreaker's target). */
  gateway: string;
  /** Whether what FROM sends reaches TO now (the simulated network's cuts). */
  open(from: string, to: string): boolean;
  /** How long a command takes, in virtual ms. */
  commandMs?: number;
}

const ok = (stdout = ""): RunResult => ({ code: 0, signal: null, stdout, stderr: "", timedOut: false });
const fail = (code: number, stderr: string, stdout = ""): RunResult => ({ code, signal: null, stdout, stderr, timedOut: false });

export function createSimHosts(options: SimHostOptions): SimHosts {
  const held = new Map<string, Map<string, string>>(); // node -> address -> "cidr dev"
  const apps = new Map<string, Set<string>>(); // node -> running applications
  const nodes = Object.keys(options.addresses);
  for (const node of nodes) {
    held.set(node, new Map());
    apps.set(node, new Set());
  }
  const own = (node: string) => options.addresses[node]!;
  const both = (a: string, b: string) => options.open(a, b) && options.open(b, a);
  /** The other hosts that would answer an ARP probe for ADDRESS from NODE. */
  const answering = (node: string, address: string) => nodes.filter((n) => n !== node && (held.get(n)!.has(address) || own(n) === address) && both(own(node), own(n)));

  function command(node: string, argv: readonly string[]): RunResult {
    const [name, ...args] = argv;
    if (name === "timeout") return command(node, args.slice(3)); // timeout -s INT N <command>
    if (name === "ip") return ip(node, args);
    if (name === "arping") {
      const address = args.at(-1)!;
      if (args.includes("-U")) return ok("Sent 1 probes (1 broadcast(s))\nReceived 0 response(s)\n");
      const answers = answering(node, address).length;
      const out = `Sent 1 probes (1 broadcast(s))\nReceived ${answers} response(s)\n`;
      // -D: exit 1 when the address is in use; otherwise exit 1 when nobody answered.
      return args.includes("-D") ? (answers > 0 ? fail(1, "", out) : ok(out)) : answers > 0 ? ok(out) : fail(1, "", out);
    }
    if (name === "ping") {
      const target = args.at(-1)!;
      const reached = target === options.gateway ? both(own(node), options.gateway) : answering(node, target).length > 0;
      return reached ? ok(`1 packets transmitted, 1 received\n`) : fail(1, "", "1 packets transmitted, 0 received\n");
    }
    if (name === "app") {
      const [verb, app] = args as [string, string];
      const running = apps.get(node)!;
      if (verb === "start") running.add(app);
      else if (verb === "stop") running.delete(app);
      else return running.has(app) ? ok() : fail(7, `${app} is not running`);
      return ok();
    }
    return fail(127, `${name}: not simulated`);
  }

  function ip(node: string, args: readonly string[]): RunResult {
    const mine = held.get(node)!;
    const dev = args.at(-1)!;
    if (args[0] === "-o" && args[1] === "addr") {
      const lines = [...mine.entries()].filter(([, where]) => where.endsWith(` ${dev}`)).map(([, where], i) => `${i + 2}: ${dev}    inet ${where.split(" ")[0]} scope global ${dev}`);
      return ok(lines.join("\n") + (lines.length ? "\n" : ""));
    }
    if (args[0] === "link") return ok();
    if (args[0] === "addr" && (args[1] === "add" || args[1] === "del")) {
      const cidr = args[2]!;
      const address = cidr.split("/")[0]!;
      if (args[1] === "add") {
        if (mine.has(address)) return fail(2, "RTNETLINK answers: File exists");
        mine.set(address, `${cidr} ${dev}`);
      } else {
        if (!mine.has(address)) return fail(2, "RTNETLINK answers: Cannot assign requested address");
        mine.delete(address);
      }
      return ok();
    }
    return fail(1, `ip ${args.join(" ")}: not simulated`);
  }

  return {
    processes: (node) => ({
      run: (argv) => new Promise((resolve) => options.timers.after(options.commandMs ?? 1, () => resolve(command(node, argv)))),
    }),
    reach: (node) => ({
      reach: (address) =>
        new Promise((resolve) =>
          options.timers.after(options.commandMs ?? 1, () => {
            const answered = address === options.gateway ? both(own(node), address) : answering(node, address).length > 0;
            resolve({ answered, detail: answered ? "connected" : "timeout" });
          }),
        ),
    }),
    holders: (address) => nodes.filter((n) => held.get(n)!.has(address)),
    running: (app) => nodes.filter((n) => apps.get(n)!.has(app)),
    crashApp: (node, app) => void apps.get(node)!.delete(app),
  };
}
