import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig, selfNode } from "../config/load.ts";
import { readClusterKey } from "../config/secrets.ts";
import { startAgent } from "../agent/agent.ts";
import { checkPrograms } from "../agent/preflight.ts";
import { clearConfig } from "./maintenance.ts";
import { createAgentLog, LOG_LEVELS, type LogLevel } from "../agent/log.ts";
import { CliError, exitCodes } from "./client.ts";
import { AGENT_STOP_TIMEOUT_MS } from "../config/systemd.ts";


/**
 * `duet agent --config FILE`: runs until SIGTERM/SIGINT, then does what the journal's
 * AgentStopping says (switch jobs over when allowed, else bring them out). A second signal, or
 * a stop that hangs past AGENT_STOP_TIMEOUT_MS, exits at once: an operator must always win.
 */
export async function runAgent(options: { config: string; node?: string }): Promise<void> {
  const loaded = await loadConfig(options.config);
  const me = selfNode(loaded.config, options.node);
  checkPrograms(loaded.config, me.name, options.config);
  const key = await readClusterKey(loaded.config.cluster.keyFile);
  await mkdir(me.dataDir, { recursive: true, mode: 0o700 });
  const level = process.env.DUET_LOG_LEVEL ?? loaded.config.log.level;
  if (!LOG_LEVELS.includes(level as LogLevel)) throw new CliError(`DUET_LOG_LEVEL: expected one of ${LOG_LEVELS.join(", ")}, got "${level}"`, exitCodes.usage, "usage");
  const log = createAgentLog(join(me.dataDir, "agent.log"), me.name, level as LogLevel);
  let agent;
  let clear: { by: string; force: boolean } | null = null;
  let stopFor: ((reason: string) => void) | null = null;
  try {
    agent = await startAgent({
      loaded,
      node: me.name,
      key,
      log,
      // `POST /v1/config/clear`: stop as for SIGTERM, then clear as `duet config clear` would.
      onClearRequested: (request) => {
        clear = request;
        stopFor?.("config-clear");
      },
    });
  } catch (error) {
    throw new CliError(`agent ${me.name}: ${(error as Error).message}`, exitCodes.failed);
  }
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        log.warn(`second ${signal}: exiting without waiting`);
        process.exit(exitCodes.failed);
      }
      log.info(`${signal}: stopping`);
      setTimeout(() => {
        log.error(`stop took longer than ${AGENT_STOP_TIMEOUT_MS} ms: exiting`);
        process.exit(exitCodes.failed);
      }, AGENT_STOP_TIMEOUT_MS).unref();
      void agent.stop(signal).then(resolve, (error: Error) => {
        log.error(`stop failed: ${error.message}`);
        resolve();
      });
    };
    stopFor = (reason) => onSignal(reason as NodeJS.Signals);
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  log.info("agent stopped");
  if (clear !== null) {
    const { by, force } = clear as { by: string; force: boolean };
    try {
      const { archivedTo } = await clearConfig({ config: options.config, node: me.name, force, by });
      log.info(`configuration cleared by ${by}; journal, config and key archived in ${archivedTo}`);
    } catch (error) {
      log.error(`config clear requested by ${by} failed: ${(error as Error).message}`);
    }
  }
  // Everything is closed and journaled; an idle keep-alive socket of a health check (fetch keeps
  // them for seconds) must not hold the exit an init system is waiting for.
  log.flush(() => process.exit(0));
}
