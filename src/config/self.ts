import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { ConfigError } from "./errors.ts";

export const DEFAULT_API_PORT = 7320;
export const DEFAULT_DATA_DIR = "/var/lib/duet";

/**
 * How the CLI reaches the local agent: its HTTP API, authenticated with the token the agent
 * writes into its data directory (mode 0600). Reading that file needs the same rights as
 * reading the journal, the same model as Pacemaker's local CIB access for root.
 */
export const localTokenFile = (dataDir: string) => join(dataDir, "cli.token");

/** What finding this node needs of a node: read by the CLI without loading the whole schema. */
export interface NodeAddress {
  name: string;
  address: string;
  dataDir: string;
}

/** This node: by name when given, else the one whose address is on a local interface. */
export function selfNode<N extends NodeAddress>(config: { nodes: readonly N[] }, name?: string): N {
  if (name !== undefined) {
    const node = config.nodes.find((n) => n.name === name);
    if (!node) throw new ConfigError("(node)", [{ path: "--node", message: `expected one of ${config.nodes.map((n) => n.name).join(", ")}, got "${name}"` }]);
    return node;
  }
  const local = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)));
  const mine = config.nodes.filter((n) => local.has(n.address));
  if (mine.length === 1) return mine[0]!;
  throw new ConfigError("(node)", [
    { path: "--node", message: mine.length === 0 ? `no node's address is on this host (${config.nodes.map((n) => `${n.name}=${n.address}`).join(", ")}); pass --node NAME` : "both nodes' addresses are on this host; pass --node NAME" },
  ]);
}

export function peerOf<N extends NodeAddress>(config: { nodes: readonly N[] }, self: string): N {
  const peer = config.nodes.find((n) => n.name !== self);
  if (!peer) throw new Error(`config: no peer for node ${self}`);
  return peer;
}
