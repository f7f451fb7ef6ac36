import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * A test network of namespaces on one bridge, after FACTS.md: the bridge lives in a namespace
 * of its own, so the root namespace gets no address and no route toward the test addresses,
 * and every packet to a test address is sent from inside a namespace.
 */
export interface TestNet {
  prefix: string;
  subnet: string; // e.g. "10.231.7" -> hosts are .1, .2, ...
  hosts: Map<string, { ns: string; address: string }>;
  ns(host: string): string;
  address(host: string): string;
  /** Runs a command inside a host's namespace; resolves with stdout, rejects with stderr named. */
  exec(host: string, argv: string[], timeoutMs?: number): Promise<string>;
  /** Like exec but never rejects: the exit code and output, for probes that may fail. */
  probe(host: string, argv: string[], timeoutMs?: number): Promise<{ code: number; out: string }>;
  spawn(host: string, argv: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  partition(host: string, from: string): Promise<void>;
  isolate(host: string): Promise<void>;
  heal(host: string): Promise<void>;
  destroy(): Promise<void>;
}

async function ip(...args: string[]) {
  await run("ip", args, { timeout: 10_000 });
}

export async function createTestNet(options: { prefix: string; subnet: string; hosts: string[] }): Promise<TestNet> {
  const { prefix, subnet } = options;
  const sw = `${prefix}sw`;
  const hosts = new Map<string, { ns: string; address: string }>();
  const made: string[] = [];
  const net: TestNet = {
    prefix,
    subnet,
    hosts,
    ns: (host) => must(host).ns,
    address: (host) => must(host).address,
    async exec(host, argv, timeoutMs = 15_000) {
      try {
        const { stdout } = await run("ip", ["netns", "exec", must(host).ns, ...argv], { timeout: timeoutMs });
        return stdout;
      } catch (error) {
        const e = error as { stderr?: string; message: string };
        throw new Error(`in ${host}: ${argv.join(" ")}: ${e.stderr?.trim() || e.message}`);
      }
    },
    async probe(host, argv, timeoutMs = 15_000) {
      try {
        const { stdout } = await run("ip", ["netns", "exec", must(host).ns, ...argv], { timeout: timeoutMs });
        return { code: 0, out: stdout };
      } catch (error) {
        const e = error as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === "number" ? e.code : 1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
      }
    },
    spawn(host, argv, env) {
      return spawn("ip", ["netns", "exec", must(host).ns, ...argv], { env: env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    },
    async partition(host, from) {
      const peer = must(from).address;
      await nft(must(host).ns, `table inet duet_partition_${from} {
        chain in { type filter hook input priority 0; ip saddr ${peer} drop; }
        chain out { type filter hook output priority 0; ip daddr ${peer} drop; }
      }`);
    },
    async isolate(host) {
      await nft(must(host).ns, `table inet duet_isolate {
        chain in { type filter hook input priority 0; iifname "eth0" drop; }
        chain out { type filter hook output priority 0; oifname "eth0" drop; }
      }`);
    },
    async heal(host) {
      const { stdout } = await run("ip", ["netns", "exec", must(host).ns, "nft", "list", "tables"]);
      for (const line of stdout.split("\n")) {
        const table = line.match(/^table inet (duet_\w+)/)?.[1];
        if (table) await run("ip", ["netns", "exec", must(host).ns, "nft", "delete", "table", "inet", table]);
      }
    },
    async destroy() {
      for (const ns of made.reverse()) await run("ip", ["netns", "del", ns]).catch(() => undefined);
    },
  };
  function must(host: string) {
    const h = hosts.get(host);
    if (!h) throw new Error(`test net ${prefix}: no host named ${host}`);
    return h;
  }
  try {
    await ip("netns", "add", sw);
    made.push(sw);
    await ip("-n", sw, "link", "add", "br0", "type", "bridge");
    await ip("-n", sw, "link", "set", "br0", "up");
    let index = 1;
    for (const host of options.hosts) {
      const ns = `${prefix}${host}`;
      const veth = `${prefix}v${index}`.slice(0, 15);
      await ip("netns", "add", ns);
      made.push(ns);
      await ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns);
      await ip("link", "set", veth, "netns", sw);
      await ip("-n", sw, "link", "set", veth, "master", "br0", "up");
      await ip("-n", ns, "link", "set", "lo", "up");
      await ip("-n", ns, "link", "set", "eth0", "up");
      const address = `${subnet}.${index}`;
      await ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
      hosts.set(host, { ns, address });
      index += 1;
    }
  } catch (error) {
    await net.destroy();
    throw error;
  }
  return net;
}

async function nft(ns: string, rules: string) {
  await new Promise<void>((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", ns, "nft", "-f", "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`nft in ${ns}: ${err.trim()}`))));
    child.stdin.end(rules);
  });
}

/** Namespaces left by an earlier run that died before its cleanup. */
export async function removeStaleNamespaces(prefix: string) {
  const { stdout } = await run("ip", ["netns", "list"]);
  for (const line of stdout.split("\n")) {
    const name = line.split(" ")[0];
    if (name?.startsWith(prefix)) await run("ip", ["netns", "del", name]).catch(() => undefined);
  }
}
