import { z } from "zod";
import { resourceName } from "../events/ids.ts";
import { durationMs } from "../config/duration.ts";

/**
 * How a job's resources are written in the config. Defined once here, so the config loader
 * validates exactly what the resource agents run; the types are inferred from the schemas.
 */

/** Names of environment variables and OCF parameters: never "__proto__" or other odd keys. */
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected a variable name like OCF_RESKEY_ip or PORT")
  .refine((name) => name !== "__proto__", "expected a variable name, not __proto__");
const stringMap = z.record(envName, z.string());
const argv = z.array(z.string().min(1)).min(1, "expected a command as a list like [/usr/bin/app, --flag]");
const cidr = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$|^[0-9a-fA-F:]+\/\d{1,3}$/, "expected CIDR like 10.0.0.10/24");
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected host:port like 127.0.0.1:8080");
const interfaceName = z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, "expected an interface name like eth0");
const ms = durationMs(10);

/** A unicast MAC (the first octet's low bit clear); 02:... is locally administered, as a virtual one should be. */
const unicastMac = z
  .string()
  .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, "expected a MAC like 02:00:5e:00:01:01")
  .refine((mac) => (parseInt(mac.slice(0, 2), 16) & 1) === 0 && !/^00(:00){5}$/.test(mac), "expected a unicast MAC (the first octet even, like 02), not a multicast or all-zero one")
  .transform((mac) => mac.toLowerCase());

export const vipSpec = z.strictObject({
  address: cidr,
  interface: interfaceName,
  /** Gratuitous ARP repeats after the address is added, so clients follow at once. */
  arpCount: z.number().int().min(0).max(20).default(3),
  /** Between two of them: a switch or router that missed the first sees a later one (keepalived's garp_interval). */
  arpIntervalMs: durationMs(10).default(1000),
  /**
   * A fixed MAC for the address: it lives on a macvlan interface of `interface` with this MAC,
   * created with the job and removed with it, so a network that pins the IP to one MAC (a router's
   * static ARP entry) keeps working after a move. On `interface` the node then answers ARP only for
   * its own addresses and asks with them (arp_ignore=1, arp_announce=2): the VIP has this MAC alone.
   */
  mac: unicastMac.optional(),
});

export const healthSpec = z.union([
  z.strictObject({ pid: z.literal(true) }),
  z.strictObject({ tcp: hostPort }),
  z.strictObject({ http: z.url() }),
  z.strictObject({ command: argv }),
]);

export const processSpec = z.strictObject({
  command: argv,
  cwd: z.string().optional(),
  env: stringMap.default({}),
  user: z.string().optional(),
  health: healthSpec.default({ pid: true }),
});

export const ocfSpec = z.strictObject({
  /** provider/type as Pacemaker writes it, e.g. heartbeat/IPaddr2 or heartbeat/Dummy. */
  agent: z.string().regex(/^[A-Za-z0-9_-]+\/[A-Za-z0-9_.-]+$/, "expected provider/type like heartbeat/Dummy"),
  params: stringMap.default({}),
  root: z.string().default("/usr/lib/ocf"),
});

export const scriptSpec = z.strictObject({ start: argv, stop: argv, monitor: argv });
export const nicSpec = z.strictObject({ interface: interfaceName });
export const pingSpec = z.strictObject({ target: z.string().min(1), count: z.number().int().min(1).max(10).default(1) });

const common = {
  name: resourceName,
  startTimeoutMs: ms.default(20_000),
  stopTimeoutMs: ms.default(20_000),
  monitor: z.strictObject({ intervalMs: durationMs(20).default(5_000), timeoutMs: ms.default(10_000) }).default({ intervalMs: 5_000, timeoutMs: 10_000 }),
};

/** Exactly one kind key per resource, like `- name: web\n  process: {...}`. */
export const resourceSpec = z.union([
  z.strictObject({ ...common, vip: vipSpec }),
  z.strictObject({ ...common, process: processSpec }),
  z.strictObject({ ...common, ocf: ocfSpec }),
  z.strictObject({ ...common, script: scriptSpec }),
  z.strictObject({ ...common, nic: nicSpec }),
  z.strictObject({ ...common, ping: pingSpec }),
]);
export type ResourceSpec = z.infer<typeof resourceSpec>;

export const RESOURCE_KINDS = ["vip", "process", "ocf", "script", "nic", "ping"] as const;
export type ResourceKindName = (typeof RESOURCE_KINDS)[number];

export function kindOf(spec: ResourceSpec): ResourceKindName {
  for (const kind of RESOURCE_KINDS) if (kind in spec) return kind;
  throw new Error(`resource ${spec.name}: no kind key (expected one of ${RESOURCE_KINDS.join(", ")})`);
}

/** Restarts in place before the job fails over: at most `max` monitor failures inside `windowMs`. */
export const restartSpec = z.strictObject({ max: z.number().int().min(0).max(100).default(3), windowMs: durationMs(1000).default(300_000) });
export type RestartSpec = z.infer<typeof restartSpec>;

/**
 * How a resource's definition changed: "same"; "timings" (monitor interval, timeouts: it keeps
 * running and its monitor follows); or "action" (what it starts changed: stop, start again).
 */
export function resourceChange(before: ResourceSpec, after: ResourceSpec): "same" | "timings" | "action" {
  const action = (r: ResourceSpec) => {
    const { startTimeoutMs: _s, stopTimeoutMs: _t, monitor: _m, ...rest } = r;
    return JSON.stringify(rest);
  };
  if (action(before) !== action(after)) return "action";
  return JSON.stringify(before) === JSON.stringify(after) ? "same" : "timings";
}
