import { readFile } from "node:fs/promises";
import { DEFAULT_API_PORT, DEFAULT_DATA_DIR, selfNode, type NodeAddress } from "../config/self.ts";
import { localClient, type ApiClient } from "./client.ts";
import { remoteClient } from "./login.ts";

/**
 * The agent a command talks to: with --url, a remote one and the token `duet login` stored for
 * it; otherwise the local one, whose API and data directory (its CLI token) the config names.
 */
export async function localAgent(options: { config: string; node?: string; url?: string }): Promise<ApiClient> {
  if (options.url) return remoteClient(options.url);
  const { nodes, apiPort } = await agentAddresses(options.config);
  const me = selfNode({ nodes }, options.node);
  const host = me.address.includes(":") ? `[${me.address}]` : me.address;
  return localClient({ url: `http://${host}:${apiPort}`, dataDir: me.dataDir });
}

/**
 * Only what reaching the agent needs, read from the YAML without the whole schema (which costs a
 * CLI start ~100 ms); a file this cannot read is loaded in full, for its precise errors.
 */
async function agentAddresses(file: string): Promise<{ nodes: NodeAddress[]; apiPort: number }> {
  const text = await readFile(file, "utf8").catch(() => null);
  const { parse } = await import("yaml");
  let raw: unknown = null;
  try {
    raw = text === null ? null : parse(text, { maxAliasCount: 100 });
  } catch {
    // loadConfig below says what is wrong, with the line
  }
  const config = raw as { nodes?: { name?: unknown; address?: unknown; dataDir?: unknown }[]; ports?: { api?: unknown } } | null;
  const nodes = Array.isArray(config?.nodes) ? config.nodes : [];
  const apiPort = config?.ports?.api ?? DEFAULT_API_PORT;
  const readable = nodes.length === 2 && nodes.every((n) => typeof n?.name === "string" && typeof n.address === "string" && (n.dataDir === undefined || typeof n.dataDir === "string")) && Number.isInteger(apiPort);
  if (readable) return { nodes: nodes.map((n) => ({ name: n.name as string, address: n.address as string, dataDir: (n.dataDir as string | undefined) ?? DEFAULT_DATA_DIR })), apiPort: apiPort as number };
  const { loadConfig } = await import("../config/load.ts");
  const { config: full } = await loadConfig(file);
  return { nodes: full.nodes, apiPort: full.ports.api };
}
