import { closeSync, existsSync, fstatSync, openSync, statSync, truncateSync } from "node:fs";
import { pino } from "pino";

export type Logger = pino.Logger;
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The agent's own log file is capped: it is for gatherinfo's recent history, the journal keeps the facts. */
export const AGENT_LOG_MAX_BYTES = 16 * 1024 * 1024;

// pino's numeric levels and the syslog priority journald reads from a "<N>" prefix.
const NAMES: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const SYSLOG: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };
const OMITTED = new Set(["level", "time", "msg", "pid", "hostname", "node"]);

/** One log record as a line a person reads: message first, then its fields as key=value. */
export function textLine(record: Record<string, unknown>, syslogPrefix: boolean): string {
  const level = Number(record.level);
  const fields = Object.entries(record)
    .filter(([key]) => !OMITTED.has(key))
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  const text = [`${NAMES[level] ?? level}: ${String(record.msg ?? "")}`, ...fields].join(" ");
  return syslogPrefix ? `<${SYSLOG[level] ?? 6}>${text}\n` : `${String(record.time ?? "")} ${text}\n`;
}

/**
 * Where stderr goes decides its form: under systemd (JOURNAL_STREAM names stderr's own socket)
 * plain text with a syslog priority, so journalctl shows and filters it by level; on a terminal
 * plain text with the time; into a file or pipe JSON, as before.
 */
function stderrForm(): "journal" | "text" | "json" {
  const journalStream = process.env.JOURNAL_STREAM;
  if (journalStream) {
    const [device, inode] = journalStream.split(":").map(Number);
    const stat = fstatSync(2);
    if (stat.dev === device && stat.ino === inode) return "journal";
  }
  return process.stderr.isTTY ? "text" : "json";
}

/** Logs to stderr (for systemd's journal) and to FILE, as JSON, which gatherinfo collects. */
export function createAgentLog(file: string, node: string, level: LogLevel = "info"): Logger {
  if (existsSync(file) && statSync(file).size > AGENT_LOG_MAX_BYTES) truncateSync(file, 0);
  closeSync(openSync(file, "a", 0o600));
  const form = stderrForm();
  const stderr = form === "json" ? process.stderr : { write: (line: string) => void process.stderr.write(textLine(JSON.parse(line) as Record<string, unknown>, form === "journal")) };
  // The logger's own level filters (a configuration change may lower it): the streams take all.
  const streams = pino.multistream([
    { level: "debug", stream: stderr },
    { level: "debug", stream: pino.destination({ dest: file, sync: false }) },
  ]);
  return pino({ level, base: { node }, timestamp: pino.stdTimeFunctions.isoTime }, streams);
}
