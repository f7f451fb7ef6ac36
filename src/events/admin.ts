import { z } from "zod";
import { nodeId, user } from "./ids.ts";

export const adminEvents = {
  ConfigChanged: { v: 1, data: z.strictObject({ node: nodeId, configHash: z.string(), by: user }) },
  ConfigCleared: { v: 1, data: z.strictObject({ node: nodeId, by: user, archivedTo: z.string(), forced: z.boolean() }) },
  LoginSucceeded: { v: 1, data: z.strictObject({ user, role: z.enum(["admin", "monitor"]), from: z.string() }) },
  LoginFailed: { v: 1, data: z.strictObject({ user, from: z.string(), reason: z.enum(["bad-password", "unknown-user", "rate-limited"]) }) },
} as const;
