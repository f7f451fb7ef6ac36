import { execFile, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { createTestNet, removeStaleNamespaces, type TestNet } from "./netns.ts";

const run = promisify(execFile);

/**
 * Hosts a and b on a public network (eth0, with a client) and a private direct link between
 * them (eth1, PRIVATE.1 and PRIVATE.2), as a production pair is cabled.
 */
export async function createCabledNet(options: { prefix: string; subnet: string; privateNet: string }): Promise<TestNet> {
  await removeStaleNamespaces(options.prefix);
  const net = await createTestNet({ prefix: options.prefix, subnet: options.subnet, hosts: ["a", "b", "client"] });
  await run("ip", ["-n", net.ns("a"), "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", net.ns("b")]);
  for (const [host, n] of [["a", 1], ["b", 2]] as const) {
    await run("ip", ["-n", net.ns(host), "addr", "add", `${options.privateNet}.${n}/24`, "dev", "eth1"]);
    await run("ip", ["-n", net.ns(host), "link", "set", "eth1", "up"]);
  }
  return net;
}

/** Every process left in the nodes' namespaces (agents, their applications) is killed, then the network removed. */
export async function destroyCabledNet(net: TestNet | undefined, agents: Iterable<{ child: ChildProcess }>): Promise<void> {
  for (const { child } of agents) child.kill("SIGKILL");
  for (const host of ["a", "b"]) if (net) await run("sh", ["-c", `for p in $(ip netns pids ${net.ns(host)}); do kill -9 $p; done`]).catch(() => undefined);
  await net?.destroy();
}
