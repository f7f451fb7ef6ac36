import { randomBytes } from "node:crypto";
import { verifyPassword, hashPassword } from "../config/secrets.ts";
import type { Clock } from "../world/clock.ts";
import type { ApiUser, Role } from "./ports.ts";

export const TOKEN_TTL_MS_DEFAULT = 8 * 60 * 60 * 1000;
/** Live tokens held in memory; the oldest is dropped past this, so logins cannot grow memory. */
export const TOKENS_MAX = 10_000;
/** Failed logins allowed per user and per address within the window before 429. */
export const LOGIN_FAILURES_MAX = 5;
export const LOGIN_WINDOW_MS = 60_000;
const FAILURE_KEYS_MAX = 10_000;

export interface Session {
  user: string;
  role: Role;
  expiresAt: number;
}

export type LoginOutcome =
  | { ok: true; token: string; session: Session }
  | { ok: false; reason: "bad-password" | "unknown-user" | "rate-limited"; retryAfterMs?: number };

/**
 * Users, passwords (scrypt) and bearer tokens with expiry. An unknown user costs the same scrypt
 * as a known one, so timing does not say which names exist; failures are limited per name and
 * per address.
 */
export function createAuth(options: { users: ApiUser[]; clock: Clock; tokenTtlMs?: number; localTokens?: { token: string; user: string; role: Role }[] }) {
  const { clock } = options;
  const ttl = options.tokenTtlMs ?? TOKEN_TTL_MS_DEFAULT;
  const tokens = new Map<string, Session>();
  const failures = new Map<string, number[]>();
  const decoy = hashPassword("decoy-password-for-unknown-users");
  const local = new Map((options.localTokens ?? []).map((t) => [t.token, { user: t.user, role: t.role }]));

  const recent = (key: string, now: number) => (failures.get(key) ?? []).filter((t) => now - t < LOGIN_WINDOW_MS);
  const fail = (keys: string[], now: number) => {
    for (const key of keys) {
      failures.set(key, [...recent(key, now), now].slice(-LOGIN_FAILURES_MAX - 1));
      if (failures.size > FAILURE_KEYS_MAX) failures.delete(failures.keys().next().value!);
    }
  };

  return {
    async login(user: string, password: string, from: string): Promise<LoginOutcome> {
      const now = clock.now();
      const keys = [`user:${user}`, `addr:${from}`];
      const limited = keys.map((k) => recent(k, now)).find((list) => list.length >= LOGIN_FAILURES_MAX);
      if (limited) return { ok: false, reason: "rate-limited", retryAfterMs: LOGIN_WINDOW_MS - (now - limited[0]!) };
      const account = options.users.find((u) => u.name === user);
      const valid = await verifyPassword(password, account?.passwordHash ?? (await decoy));
      if (!account || !valid) {
        fail(keys, now);
        return { ok: false, reason: account ? "bad-password" : "unknown-user" };
      }
      const token = randomBytes(32).toString("base64url");
      const session = { user: account.name, role: account.role, expiresAt: now + ttl };
      for (const [t, s] of tokens) if (now - s.expiresAt > ttl) tokens.delete(t);
      tokens.set(token, session);
      if (tokens.size > TOKENS_MAX) tokens.delete(tokens.keys().next().value!);
      return { ok: true, token, session };
    },
    /** The session of a bearer token, or why there is none. */
    check(token: string | undefined): { ok: true; session: Omit<Session, "expiresAt"> } | { ok: false; code: "unauthorized" | "token-expired" } {
      if (!token) return { ok: false, code: "unauthorized" };
      const fixed = local.get(token);
      if (fixed) return { ok: true, session: fixed };
      const session = tokens.get(token);
      if (!session) return { ok: false, code: "unauthorized" };
      // Kept until swept, so every call with it says "expired" rather than "unknown".
      if (clock.now() >= session.expiresAt) return { ok: false, code: "token-expired" };
      return { ok: true, session };
    },
  };
}
export type Auth = ReturnType<typeof createAuth>;
