import { randomBytes } from "node:crypto";
import { verifyPassword, hashPassword } from "../config/secrets.ts";
import type { Clock } from "../world/clock.ts";
import type { ApiUser, Role } from "./ports.ts";

import { RateLimiterMemory, type RateLimiterRes } from "rate-limiter-flexible";

export const TOKEN_TTL_MS_DEFAULT = 8 * 60 * 60 * 1000;
/** Live tokens held in memory; the oldest is dropped past this, so logins cannot grow memory. */
export const TOKENS_MAX = 10_000;
/** Failed logins allowed per user from one address within the window before that pair gets 429. */
export const LOGIN_FAILURES_MAX = 5;
/** Failed logins from one address, whatever the user, before that address gets 429 (password spraying). */
export const LOGIN_FAILURES_PER_ADDRESS_MAX = 100;
export const LOGIN_WINDOW_MS = 60_000;

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
 * as a known one, so timing does not say which names exist. Failures are limited per user and
 * address together, so an attacker elsewhere can never lock the operator out, and per address
 * at a higher bound; the limiter forgets keys when their window ends.
 */
export function createAuth(options: { users: ApiUser[]; clock: Clock; tokenTtlMs?: number; loginWindowMs?: number; localTokens?: { token: string; user: string; role: Role }[] }) {
  const { clock } = options;
  let users = options.users;
  const ttl = options.tokenTtlMs ?? TOKEN_TTL_MS_DEFAULT;
  const tokens = new Map<string, Session>();
  const windowS = (options.loginWindowMs ?? LOGIN_WINDOW_MS) / 1000;
  const perUser = new RateLimiterMemory({ points: LOGIN_FAILURES_MAX, duration: windowS, blockDuration: windowS });
  const perAddress = new RateLimiterMemory({ points: LOGIN_FAILURES_PER_ADDRESS_MAX, duration: windowS, blockDuration: windowS });
  const decoy = hashPassword("decoy-password-for-unknown-users");
  const local = new Map((options.localTokens ?? []).map((t) => [t.token, { user: t.user, role: t.role }]));
  const blockedFor = (res: RateLimiterRes | null, points: number) => (res && res.consumedPoints >= points ? res.msBeforeNext : 0);

  return {
    /** A configuration change: sessions of a removed user, or one whose role or password changed, end. */
    setUsers(next: ApiUser[]): void {
      const unchanged = (name: string) => {
        const [old, now] = [users.find((u) => u.name === name), next.find((u) => u.name === name)];
        return old !== undefined && now !== undefined && old.role === now.role && old.passwordHash === now.passwordHash;
      };
      for (const [token, session] of tokens) if (!unchanged(session.user)) tokens.delete(token);
      users = next;
    },
    async login(user: string, password: string, from: string): Promise<LoginOutcome> {
      const now = clock.now();
      const pair = `${from}\u0000${user}`;
      const retryAfterMs = Math.max(blockedFor(await perUser.get(pair), LOGIN_FAILURES_MAX), blockedFor(await perAddress.get(from), LOGIN_FAILURES_PER_ADDRESS_MAX));
      if (retryAfterMs > 0) return { ok: false, reason: "rate-limited", retryAfterMs };
      const account = users.find((u) => u.name === user);
      const valid = await verifyPassword(password, account?.passwordHash ?? (await decoy));
      if (!account || !valid) {
        await Promise.all([perUser.penalty(pair), perAddress.penalty(from)]);
        return { ok: false, reason: account ? "bad-password" : "unknown-user" };
      }
      await perUser.delete(pair);
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
