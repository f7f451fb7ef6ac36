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
  /**
   * NODE's agent dies (kill -9): commands it started and that have not finished are lost with it.
   * With `host`, the whole host goes: its addresses and applications too, and it answers nothing
   * until `boot`.
   */
  crash(node: string, options: { host: boolean }): void;
  /** NODE's host is up again (after a crash) with nothing running. */
  boot(node: string): void;
  /** NODE's public NIC loses (false) or regains its carrier, as its `nic` resource reads it. */
  setNic(node: string, up: boolean): void;
}

export interface SimHostOptions {
  timers: Timers;
  /** Each host's own public address, by node name. */
  addresses: Record<string, string>;
  /** Each host's other addresses (a Linux host answers ARP for any of them on any interface). */
  aliases?: Record<string, readonly string[]>;
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
  /** Bumped when a node's agent dies: a command begun in an earlier epoch never completes. */
  const epochs = new Map(nodes.map((n) => [n, 0]));
  const hostDown = new Set<string>();
  const nicDown = new Set<string>();
  const own = (node: string) => options.addresses[node]!;
  const both = (a: string, b: string) => options.open(a, b) && options.open(b, a);
  /** The other hosts that would answer an ARP probe for ADDRESS from NODE. */
  /** A host's addresses: eth0 holds its own, eth1... the aliases (one /24 network each). */
  const addressesOf = (node: string) => [own(node), ...(options.aliases?.[node] ?? [])];
  const netOf = (address: string) => address.split(".").slice(0, 3).join(".");
  /** The other hosts that would answer an ARP probe for ADDRESS sent from NODE's interface DEV (default eth0). */
  const answering = (node: string, address: string, dev = "eth0") => {
    const from = addressesOf(node)[Number(dev.slice(3))];
    if (from === undefined) return [];
    return nodes.filter((n) => {
      const there = addressesOf(n).find((a) => netOf(a) === netOf(from));
      return n !== node && !hostDown.has(n) && (held.get(n)!.has(address) || addressesOf(n).includes(address)) && there !== undefined && both(from, there);
    });
  };

  function command(node: string, argv: readonly string[]): RunResult {
    const [name, ...args] = argv;
    if (name === "timeout") return command(node, args.slice(3)); // timeout -s INT N <command>
    if (name === "ip") return ip(node, args);
    if (name === "cat" && args[0]?.startsWith("/sys/class/net/")) {
      // The nic resource reads operstate and carrier; carrier is unreadable while the link is down.
      return nicDown.has(node) ? fail(1, "cat: carrier: Invalid argument", "down\n") : ok("up\n1\n");
    }
    if (name === "arping") {
      const address = args.at(-1)!;
      if (args.includes("-U")) return ok("Sent 1 probes (1 broadcast(s))\nReceived 0 response(s)\n");
      const answers = answering(node, address, args[args.indexOf("-I") + 1]).length;
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
    if (args[0] === "-o" && args[1] === "route" && args[2] === "get") {
      const target = args[3]!;
      const dev = addressesOf(node).findIndex((a) => netOf(a) === netOf(target));
      return ok(dev < 0 ? `${target} via ${options.gateway} dev eth0 src ${own(node)}\n` : `${target} dev eth${dev} src ${addressesOf(node)[dev]}\n`);
    }
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
      run: (argv) => {
        const epoch = epochs.get(node);
        return new Promise((resolve) =>
          options.timers.after(options.commandMs ?? 1, () => {
            if (epochs.get(node) === epoch) resolve(command(node, argv));
          }),
        );
      },
    }),
    reach: (node) => ({
      reach: (address) => {
        const epoch = epochs.get(node);
        return new Promise((resolve) =>
          options.timers.after(options.commandMs ?? 1, () => {
            if (epochs.get(node) !== epoch) return;
            const answered = address === options.gateway ? both(own(node), address) : answering(node, address).length > 0;
            resolve({ answered, detail: answered ? "connected" : "timeout" });
          }),
        );
      },
    }),
    holders: (address) => nodes.filter((n) => held.get(n)!.has(address)),
    running: (app) => nodes.filter((n) => apps.get(n)!.has(app)),
    crashApp: (node, app) => void apps.get(node)!.delete(app),
    crash(node, { host }) {
      epochs.set(node, epochs.get(node)! + 1);
      if (!host) return;
      hostDown.add(node);
      held.get(node)!.clear();
      apps.get(node)!.clear();
    },
    boot: (node) => void hostDown.delete(node),
    setNic: (node, up) => void (up ? nicDown.delete(node) : nicDown.add(node)),
  };
}
