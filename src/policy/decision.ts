import type { Reason } from "../events/ids.ts";
import type { ReplicaBehind } from "../events/job.ts";
import type { MembershipState } from "../projections/membership.ts";

/** A decision of the policy, with every input it used: journaled before it is carried out. */
export interface Decision {
  kind: "takeover" | "decline" | "self-fence" | "failover" | "failover-declined" | "resume" | "recover" | "recovery-declined" | "abandon-start";
  job: string;
  code: string;
  /** For takeover and failover: the node the job goes to. */
  to?: string;
  /** For a takeover (or its decline) of a mirrored job: what the replica may lack, as the lost node last reported it. */
  behind?: ReplicaBehind | null;
  reasons: Reason[];
}

/** A condition the decision checked, with the value it saw. */
export function check(name: string, ok: boolean, value?: unknown): Reason {
  return value === undefined ? { name, ok } : { name, ok, value };
}

export function input(name: string, value: unknown): Reason {
  return { name, value };
}

type Verdict = NonNullable<MembershipState["tiebreaker"]>;

/**
 * What a lost peer's tiebreaker verdict must show before this node starts a job the peer may run
 * (a takeover, a restart's recovery): the reasons to journal, and the refusal, if any: this node
 * isolated, the tiebreaker broken or unconfirmed, or the peer still answering on the public
 * network (its agent hung, or a cut that drops IP but not ARP: it may still serve the job).
 */
export function peerGoneChecks(verdict: Verdict): { reasons: Reason[]; refusal: string | null } {
  const reasons: Reason[] = [check("tiebreaker-confirmed", verdict.verdict === "confirmed", { verdict: verdict.verdict, method: verdict.method, at: verdict.at, ...(verdict.why ? { why: verdict.why } : {}) })];
  if (verdict.verdict === "isolated") return { reasons, refusal: "i-am-isolated" };
  if (verdict.verdict === "failed") return { reasons, refusal: "tiebreaker-failed" };
  if (verdict.verdict !== "confirmed") return { reasons, refusal: "tiebreaker-not-confirmed" };
  if (verdict.peerOnNetwork) {
    const answered = verdict.peerOnNetwork.filter((p) => p.answered);
    reasons.push(check("peer-silent-on-public-network", answered.length === 0, { asked: verdict.peerOnNetwork.map((p) => `${p.address}@${p.interface}`), answered: answered.map((p) => `${p.address}@${p.interface}`) }));
    if (answered.length > 0) return { reasons, refusal: "peer-alive-on-public-network" };
  }
  return { reasons, refusal: null };
}
