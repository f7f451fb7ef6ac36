import { loadConfig, selfNode } from "../config/load.ts";
import { localClient, type ApiClient } from "./client.ts";

export const DEFAULT_CONFIG = process.env.DUET_CONFIG ?? "/etc/duet/duet.yaml";

/** The local agent as the CLI reaches it: the config names this node's API and data directory. */
export async function localAgent(options: { config: string; node?: string }): Promise<ApiClient> {
  const { config } = await loadConfig(options.config);
  const me = selfNode(config, options.node);
  const host = me.address.includes(":") ? `[${me.address}]` : me.address;
  return localClient({ url: `http://${host}:${config.ports.api}`, dataDir: me.dataDir });
}
