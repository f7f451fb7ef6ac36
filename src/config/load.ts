import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { LineCounter, parseDocument, isNode, isPair, isScalar, visit, type Document } from "yaml";
import type { z } from "zod";
import { selfFenceSlackMs } from "../projections/membership.ts";
import { configSchema, DEFAULT_HEARTBEAT, DEFAULT_PING_TIMEOUT_MS, type Config } from "./schema.ts";
import { ConfigError, type ConfigIssue } from "./errors.ts";

export { ConfigError, type ConfigIssue } from "./errors.ts";
export { peerOf, selfNode } from "./self.ts";

export interface LoadedConfig {
  config: Config;
  /** First 16 hex digits of the file's sha256: AgentStarted records it, so replay knows which config decided. */
  hash: string;
  file: string;
  /** The document as read: what the peer is sent when it adopts this configuration. */
  text: string;
}

export async function loadConfig(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError(file, [{ path: "(file)", message: (error as NodeJS.ErrnoException).code === "ENOENT" ? "not found (duet init writes one)" : (error as Error).message }]);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, source: string): LoadedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ConfigError(source, doc.errors.map((e) => {
      const at = lines.linePos(e.pos[0]);
      return { path: "(yaml)", message: `${e.message.split("\n")[0]} (line ${at.line}, column ${at.col})` };
    }));
  const odd = oddKeys(doc, lines);
  if (odd.length > 0) throw new ConfigError(source, odd);
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(source, parsed.error.issues.map((issue) => describeIssue(issue, raw, doc, lines)));
  const config = withDefaults(parsed.data);
  const problems = crossChecks(config);
  if (problems.length > 0) throw new ConfigError(source, problems.map((p) => ({ ...p, message: p.message + lineOf(doc, lines, pathParts(p.path)) })));
  return { config, hash: createHash("sha256").update(text).digest("hex").slice(0, 16), file: source, text };
}

/** "__proto__" as a key would vanish into an object's prototype when parsed: refuse it by name. */
function oddKeys(doc: Document, lines: LineCounter): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  visit(doc, {
    Pair(_key, pair, path) {
      if (isScalar(pair.key) && pair.key.value === "__proto__") {
        const parts = path.filter(isPair).map((p) => String(isScalar(p.key) ? p.key.value : "?"));
        const line = pair.key.range ? ` (line ${lines.linePos(pair.key.range[0]).line})` : "";
        issues.push({ path: [...parts, "__proto__"].join("."), message: `"__proto__" is not allowed as a key${line}` });
      }
    },
  });
  return issues;
}

function withDefaults(parsed: z.infer<typeof configSchema>): Config {
  const nodeNames = [parsed.nodes[0].name, parsed.nodes[1].name] as [string, string];
  return {
    ...parsed,
    heartbeat: {
      ...parsed.heartbeat,
      suspectMs: parsed.heartbeat.suspectMs ?? defaultSuspectMs(parsed),
      links: parsed.heartbeat.links ?? [{ name: "lan", port: DEFAULT_HEARTBEAT.port, addresses: [parsed.nodes[0].address, parsed.nodes[1].address] }],
    },
    jobs: parsed.jobs.map((job) => ({ ...job, nodes: (job.nodes as [string, string] | undefined) ?? nodeNames })),
  };
}

/**
 * As late as an active node can suspect its peer and still have fenced itself (ping timeout,
 * grace, skew) by the deadtime, when the standby may first take over: the standby then never waits
 * beyond the loss itself, and a blip of the active's whole network shorter than this never brings
 * its jobs out. Never so short that one late frame raises suspicion, nor past the deadtime.
 * 1500 ms with the defaults (interval 500, deadtime 3000, ping timeout 500, grace 0).
 */
function defaultSuspectMs(parsed: z.infer<typeof configSchema>): number {
  const { intervalMs, deadtimeMs } = parsed.heartbeat;
  const slackMs = selfFenceSlackMs({ pingTimeoutMs: parsed.tiebreaker.ping?.timeoutMs ?? DEFAULT_PING_TIMEOUT_MS, selfFenceGraceMs: parsed.tiebreaker.selfFenceGraceMs, heartbeatIntervalMs: intervalMs });
  return Math.min(deadtimeMs, Math.max(2 * intervalMs, deadtimeMs - slackMs));
}

/** Rules that span keys: names unique, jobs on cluster nodes, timings that make sense together. */
function crossChecks(config: Config): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const unique = (items: { name: string }[], path: string, what: string) => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (seen.has(item.name)) issues.push({ path: `${path}[${i}].name`, message: `${what} "${item.name}" is defined twice; names must be unique` });
      seen.add(item.name);
    });
  };
  unique(config.nodes, "nodes", "node");
  unique(config.jobs, "jobs", "job");
  unique(config.users, "users", "user");
  unique(config.heartbeat.links, "heartbeat.links", "link");
  const ports = new Map<number, string>([[config.ports.api, "ports.api"], [config.ports.peer, "ports.peer"]]);
  if (config.ports.api === config.ports.peer) issues.push({ path: "ports.peer", message: `port ${config.ports.peer} is also ports.api; expected different ports` });
  config.heartbeat.links.forEach((link, i) => {
    const clash = ports.get(link.port);
    if (clash) issues.push({ path: `heartbeat.links[${i}].port`, message: `port ${link.port} is also used by ${clash}; expected a port of its own` });
    ports.set(link.port, `heartbeat.links[${i}]`);
  });
  const { intervalMs, deadtimeMs } = config.heartbeat;
  if (deadtimeMs < 3 * intervalMs)
    issues.push({ path: "heartbeat.deadtimeMs", message: `expected at least 3 × intervalMs (${3 * intervalMs}), got ${deadtimeMs}: one late frame must not lose the peer` });
  const { suspectMs } = config.heartbeat;
  if (suspectMs < deadtimeMs && suspectMs < 2 * intervalMs)
    issues.push({ path: "heartbeat.suspectMs", message: `expected at least 2 × intervalMs (${2 * intervalMs}), got ${suspectMs}: one late frame must not make a node doubt its network` });
  const nodeNames = config.nodes.map((n) => n.name);
  if (config.nodes[0].address === config.nodes[1].address) issues.push({ path: "nodes[1].address", message: `both nodes have address ${config.nodes[1].address}; expected one address per node` });
  if (config.nodes[0].dataDir === config.nodes[1].dataDir && config.nodes.every((n) => n.address.startsWith("127.")))
    issues.push({ path: "nodes[1].dataDir", message: "two nodes on one machine need different dataDir values" });
  const macs = new Map<string, string>();
  config.jobs.forEach((job, j) => {
    job.nodes.forEach((node, n) => {
      if (!nodeNames.includes(node)) issues.push({ path: `jobs[${j}].nodes[${n}]`, message: `expected one of the cluster's nodes (${nodeNames.join(", ")}), got "${node}"` });
    });
    if (job.nodes[0] === job.nodes[1]) issues.push({ path: `jobs[${j}].nodes`, message: "expected two different nodes" });
    unique(job.resources, `jobs[${j}].resources`, "resource");
    const vips = new Set<string>();
    job.resources.forEach((r, i) => {
      if ("vip" in r) {
        if (vips.has(r.vip.address)) issues.push({ path: `jobs[${j}].resources[${i}].vip.address`, message: `address ${r.vip.address} appears twice in this job` });
        vips.add(r.vip.address);
        const mac = r.vip.mac;
        if (mac && macs.has(mac)) issues.push({ path: `jobs[${j}].resources[${i}].vip.mac`, message: `MAC ${mac} is also ${macs.get(mac)}; expected one fixed MAC per address` });
        if (mac) macs.set(mac, `jobs[${j}].resources[${i}].vip.mac`);
      }
    });
    const paths = job.mirrors.map((m) => m.path.replace(/\/+$/, ""));
    paths.forEach((p, i) => {
      paths.forEach((q, k) => {
        if (i < k && (p === q || p.startsWith(`${q}/`) || q.startsWith(`${p}/`)))
          issues.push({ path: `jobs[${j}].mirrors[${k}].path`, message: `${q} overlaps mirrors[${i}] (${p}); expected separate directories` });
      });
    });
  });
  return issues;
}

type Issue = z.core.$ZodIssue;

function describeIssue(issue: Issue, raw: unknown, doc: Document, lines: LineCounter): ConfigIssue {
  const parts = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p));
  const found = valueAt(raw, parts);
  let message = issue.message;
  if (issue.code === "unrecognized_keys") {
    message = `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")} (a typo?)`;
  } else if (issue.code === "invalid_union") {
    message = unionMessage(issue, found);
  } else if (found === undefined && issue.code === "invalid_type") {
    message = `missing; ${issue.message.replace(/, received undefined$/, "").replace(/^Invalid input: /, "")}`;
  } else if (found !== undefined && !/got /.test(message)) {
    message = `${message.replace(/^Invalid input: /, "")}, got ${JSON.stringify(found)}`;
  }
  return { path: formatPath(parts) || "(top)", message: message + lineOf(doc, lines, parts) };
}

/** A resource is a union of one shape per kind: name the kind keys rather than every branch's complaint. */
function unionMessage(issue: Extract<Issue, { code: "invalid_union" }>, found: unknown): string {
  if (found && typeof found === "object" && !Array.isArray(found) && "name" in found) {
    const kinds = ["vip", "process", "ocf", "script", "nic", "ping"];
    const present = Object.keys(found).filter((k) => kinds.includes(k));
    if (present.length !== 1) return `expected exactly one resource kind key (${kinds.join(", ")}), found ${present.length === 0 ? "none" : present.join(" and ")}`;
    const branch = issue.errors.find((errors) => errors.every((e) => e.path[0] === present[0] || e.code !== "unrecognized_keys"));
    const inner = branch?.[0];
    if (inner) return `${inner.path.join(".")}: ${inner.message}`;
  }
  return `expected one of the allowed forms, got ${JSON.stringify(found)}`;
}

function valueAt(raw: unknown, parts: (string | number)[]): unknown {
  let value = raw;
  for (const part of parts) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string | number, unknown>)[part];
  }
  return value;
}

export function formatPath(parts: (string | number)[]): string {
  return parts.reduce<string>((out, part) => (typeof part === "number" ? `${out}[${part}]` : out ? `${out}.${part}` : part), "");
}

function pathParts(path: string): (string | number)[] {
  return path.split(/\.|\[|\]/).filter(Boolean).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

function lineOf(doc: Document, lines: LineCounter, parts: (string | number)[]): string {
  for (let n = parts.length; n >= 0; n--) {
    const node = doc.getIn(parts.slice(0, n), true);
    if (isNode(node) && node.range) return ` (line ${lines.linePos(node.range[0]).line})`;
  }
  return "";
}

