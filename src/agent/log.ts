import { closeSync, existsSync, openSync, statSync, truncateSync } from "node:fs";
import { pino } from "pino";

export type Logger = pino.Logger;

/** The agent's own log file is capped: it is for gatherinfo's recent history, the journal keeps the facts. */
export const AGENT_LOG_MAX_BYTES = 16 * 1024 * 1024;

/** Logs to stderr (for systemd's journal) and to FILE, which gatherinfo collects. */
export function createAgentLog(file: string, node: string): Logger {
  if (existsSync(file) && statSync(file).size > AGENT_LOG_MAX_BYTES) truncateSync(file, 0);
  closeSync(openSync(file, "a", 0o600));
  const streams = pino.multistream([{ stream: process.stderr }, { stream: pino.destination({ dest: file, sync: false }) }]);
  return pino({ base: { node }, timestamp: pino.stdTimeFunctions.isoTime }, streams);
}
