import { z } from "zod";
import { resourceSpec, restartSpec } from "../resources/spec.ts";
import { takeoverPolicy } from "../events/job.ts";
import { passwordHashPattern } from "./secrets.ts";
import { DEFAULT_API_PORT, DEFAULT_DATA_DIR } from "./self.ts";
import { durationMs } from "./duration.ts";

/**
 * The config file of a two-node cluster, identical on both nodes. Lists, never maps keyed by
 * operator-chosen names: a name is a value that can be checked, not a key that can be "__proto__".
 */
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "expected a name of letters, digits, '_', '.' or '-' (at most 64, starting with a letter or digit)");
const address = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}$|^[0-9a-fA-F:]+$/, "expected an IP address like 10.0.0.1");
const port = z.number().int().min(1, "expected a port 1..65535").max(65535, "expected a port 1..65535");
const ms = durationMs(1);
/** An address pinged by ICMP (needs iputils' ping), or tcp:HOST:PORT, probed in-process (see TcpReach). */
const pingTarget = z.string().regex(/^(?!tcp:)(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.:-]+)$|^tcp:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected an address like 10.0.0.254 (ICMP) or tcp:10.0.0.254:53 (a TCP connect; a refusal counts as an answer)");
const absolutePath = z.string().regex(/^\//, "expected an absolute path like /var/lib/duet");

export const DEFAULT_PORTS = { api: DEFAULT_API_PORT, peer: 7330 } as const;
export const DEFAULT_HEARTBEAT = { intervalMs: 500, deadtimeMs: 3000, port: 7340 } as const;
export const DEFAULT_PING_TIMEOUT_MS = 500;
export const SNAPSHOTS_KEPT_DEFAULT = 64;

export const nodeSpec = z.strictObject({
  name,
  /** The peer channel and the API listen here; the peer dials it. */
  address,
  dataDir: absolutePath.default(DEFAULT_DATA_DIR),
});
export type NodeSpec = z.infer<typeof nodeSpec>;

export const linkSpec = z.strictObject({
  name,
  port,
  /** This link's address on each node, in the order of `nodes`. */
  addresses: z.tuple([address, address], { error: "expected two addresses, one per node in the order of nodes" }),
});

export const jobSpec = z.strictObject({
  name,
  nodes: z.array(name).length(2, "expected the two node names").optional(),
  policy: takeoverPolicy.default("manual"),
  reverseWhenConsistent: z.boolean().default(false),
  restart: restartSpec.default({ max: 3, windowMs: 300_000 }),
  resources: z.array(resourceSpec).default([]),
  mirrors: z.array(z.strictObject({ path: absolutePath })).default([]),
  /**
   * The most MiB per second a verification or resync sends (DRBD's resync-rate), so a first sync
   * leaves the link to the traffic it shares. Absent: as fast as it goes. Realtime batches are
   * never held back.
   */
  syncMaxMiBps: z.number().positive("expected MiB per second, more than 0").optional(),
  /**
   * A switchover stops the application, waits for the queue to drain, then starts the job on the
   * peer: it is refused while the queue would take longer than this to drain at the rate the peer
   * acknowledged writes over the last 10 s (with nothing acknowledged lately: while the oldest
   * write waiting is older than this). Absent: 5000 ms.
   */
  switchoverLagMaxMs: durationMs(100).optional(),
  snapshots: z
    .strictObject({
      intervalMs: durationMs(100).optional(),
      /** Local time of day the schedule starts from, like 02:00. */
      firstAt: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "expected a time of day like 02:00").optional(),
      keep: z.number().int().min(1).max(10_000).default(SNAPSHOTS_KEPT_DEFAULT),
    })
    .default({ keep: SNAPSHOTS_KEPT_DEFAULT }),
});

/** etcd's smallest lease (1.5 election timeouts, rounded up to a second): a shorter one is granted longer. */
export const WITNESS_LEASE_MIN_MS = 2000;
export const WITNESS_LEASE_DEFAULT_MS = 10_000;

/**
 * A third party for the pair: each job's holder key on an etcd lease (tiebreaker.witness). The
 * endpoints are etcd's client URLs; its v3 JSON gateway is what duet speaks.
 */
export const witnessSpec = z.strictObject({
  etcd: z.strictObject({
    endpoints: z.array(z.string().regex(/^https?:\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected an etcd client URL like http://10.0.0.9:2379")).min(1, "expected at least one etcd endpoint"),
    prefix: z.string().regex(/^\/[A-Za-z0-9_./-]*$/, "expected a key prefix like /duet").default("/duet"),
    auth: z.strictObject({ user: z.string().min(1), password: z.string().min(1) }).optional(),
    tls: z.strictObject({ ca: absolutePath.optional(), cert: absolutePath.optional(), key: absolutePath.optional() }).optional(),
  }),
  leaseMs: durationMs(WITNESS_LEASE_MIN_MS)
    .refine((ms) => ms % 1000 === 0, "expected a whole number of seconds in milliseconds, like 10000 (etcd's leases count seconds)")
    .default(WITNESS_LEASE_DEFAULT_MS),
  /** When the active cannot renew: self-fence before the lease can have expired; keep-running only while the peer is heard (Patroni's failsafe). */
  unreachable: z.enum(["self-fence", "keep-running"]).default("self-fence"),
});
export type WitnessSpec = z.infer<typeof witnessSpec>;

export const userSpec = z.strictObject({
  name,
  role: z.enum(["admin", "monitor"]),
  passwordHash: z.string().regex(passwordHashPattern, "expected a scrypt hash written by `duet init` or `duet passwd`"),
});

export const configSchema = z.strictObject({
  cluster: z.strictObject({ name, keyFile: absolutePath }),
  nodes: z.tuple([nodeSpec, nodeSpec], { error: "expected exactly two nodes" }),
  ports: z.strictObject({ api: port.default(DEFAULT_PORTS.api), peer: port.default(DEFAULT_PORTS.peer) }).default(DEFAULT_PORTS),
  heartbeat: z
    .strictObject({
      intervalMs: durationMs(50).default(DEFAULT_HEARTBEAT.intervalMs),
      deadtimeMs: durationMs(150).default(DEFAULT_HEARTBEAT.deadtimeMs),
      /** Silence after which an active node checks it is not the one cut off. Absent: as late as still lets it fence itself by the deadtime (see defaultSuspectMs). */
      suspectMs: ms.optional(),
      /** Absent: one link "lan" on port 7340 over the node addresses. */
      links: z.array(linkSpec).min(1, "expected at least one heartbeat link").optional(),
    })
    .default({ intervalMs: DEFAULT_HEARTBEAT.intervalMs, deadtimeMs: DEFAULT_HEARTBEAT.deadtimeMs }),
  tiebreaker: z
    .strictObject({
      ping: z.strictObject({ targets: z.array(pingTarget).min(1, "expected at least one ping target"), mode: z.enum(["any", "all"]).default("any"), timeoutMs: durationMs(50).default(DEFAULT_PING_TIMEOUT_MS) }).optional(),
      fence: z.strictObject({ command: z.array(z.string().min(1)).min(1, "expected a command as a list"), timeoutMs: durationMs(100).default(30_000) }).optional(),
      selfFenceGraceMs: durationMs(0).default(0),
      witness: witnessSpec.optional(),
    })
    .default({ selfFenceGraceMs: 0 }),
  jobs: z.array(jobSpec).default([]),
  users: z.array(userSpec).default([]),
  /** Prometheus scrapes /metrics without a login: from these addresses, or with a token whose sha256 is given. */
  metrics: z
    .strictObject({
      allowFrom: z.array(z.string().regex(/^((\d{1,3}\.){3}\d{1,3}|[0-9a-fA-F:]+)(\/\d{1,3})?$/, "expected an address or CIDR like 10.0.0.5 or 10.0.0.0/24")).default([]),
      scrapeTokenSha256: z.string().regex(/^[0-9a-f]{64}$/, "expected the token's sha256 as 64 hex digits (sha256sum)").optional(),
    })
    .default({ allowFrom: [] }),
  log: z.strictObject({ level: z.enum(["debug", "info", "warn", "error"]).default("info") }).default({ level: "info" }),
});

type Parsed = z.infer<typeof configSchema>;
/** The config after defaults are filled in: every job names its nodes, every cluster has links. */
export type Config = Omit<Parsed, "jobs" | "heartbeat"> & {
  heartbeat: Omit<Parsed["heartbeat"], "links" | "suspectMs"> & { links: z.infer<typeof linkSpec>[]; suspectMs: number };
  jobs: (Omit<Parsed["jobs"][number], "nodes"> & { nodes: [string, string] })[];
};
export type JobSpec = Config["jobs"][number];
export type UserSpec = z.infer<typeof userSpec>;
