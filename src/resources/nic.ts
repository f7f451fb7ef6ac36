import { readFile } from "node:fs/promises";
import type { ResourceAgent } from "./agent.ts";
import { checkOnly } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";

/** The public NIC: nothing to start, but a job must not run on a host whose NIC has no carrier. */
export function createNic(spec: Extract<ResourceSpec, { nic: unknown }>): ResourceAgent {
  const dev = spec.nic.interface;
  const check = async () => {
    const read = (name: string) => readFile(`/sys/class/net/${dev}/${name}`, "utf8").then((s) => s.trim(), () => null);
    const [operstate, carrier] = [await read("operstate"), await read("carrier")];
    if (operstate === null) return { ok: false as const, error: `${spec.name}: no interface ${dev}` };
    // "unknown" is what loopback and some virtual NICs report while working.
    if (carrier !== "1" || (operstate !== "up" && operstate !== "unknown")) return { ok: false as const, error: `${spec.name}: ${dev} is ${operstate}, carrier ${carrier ?? "unknown"}` };
    return { ok: true as const };
  };
  return checkOnly(check);
}
