import type { Reason } from "../events/ids.ts";

/** A decision of the policy, with every input it used: journaled before it is carried out. */
export interface Decision {
  kind: "takeover" | "decline" | "self-fence" | "failover" | "resume" | "recover" | "recovery-declined";
  job: string;
  code: string;
  /** For takeover and failover: the node the job goes to. */
  to?: string;
  reasons: Reason[];
}

/** A condition the decision checked, with the value it saw. */
export function check(name: string, ok: boolean, value?: unknown): Reason {
  return value === undefined ? { name, ok } : { name, ok, value };
}

export function input(name: string, value: unknown): Reason {
  return { name, value };
}
