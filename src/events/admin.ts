import { z } from "zod";
import { nodeId, user } from "./ids.ts";

export const adminEvents = {
  /**
   * This node now runs configuration VERSION (the file's hash), applied by BY ("file": found
   * edited when the agent started; "peer": adopted from the peer, which applied it first). Versions
   * are ordered across the pair: the node with the higher one has the newer file. changes: the
   * plan, one line each.
   */
  ConfigChanged: {
    v: 2,
    data: z.strictObject({
      node: nodeId,
      version: z.number().int().positive(),
      configHash: z.string().max(64),
      previousHash: z.string().max(64).nullable(),
      by: user,
      changes: z.array(z.string().max(400)).max(500),
    }),
  },
  ConfigCleared: { v: 1, data: z.strictObject({ node: nodeId, by: user, archivedTo: z.string(), forced: z.boolean() }) },
  LoginSucceeded: { v: 1, data: z.strictObject({ user, role: z.enum(["admin", "monitor"]), from: z.string() }) },
  /** Written by agents before failed logins were aggregated; still read from old journals. */
  LoginFailed: { v: 1, data: z.strictObject({ user, from: z.string(), reason: z.enum(["bad-password", "unknown-user", "rate-limited"]) }) },
  /**
   * Failed logins of one period, aggregated like rejected frames: a flood writes one record a
   * minute. No user names (a typed name may be a password, and which names exist is nobody's
   * business) and no reasons; the agent's log has the addresses for fail2ban.
   */
  LoginsFailed: {
    v: 1,
    data: z.strictObject({
      node: nodeId,
      count: z.number().int().positive(),
      sinceAt: z.number().int().nonnegative(),
      from: z.array(z.strictObject({ address: z.string().max(64), count: z.number().int().positive() })).max(20),
      otherAddresses: z.number().int().nonnegative(),
    }),
  },
} as const;
