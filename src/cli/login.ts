import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { apiClient, CliError, exitCodes, type ApiClient } from "./client.ts";

/** Tokens of remote agents, by API URL: one file, mode 0600, in the user's config directory. */
export function tokenStoreFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config"), "duet", "tokens.json");
}

interface StoredToken {
  token: string;
  user: string;
  role: string;
  expiresAt: number;
}

async function readStore(file: string): Promise<Record<string, StoredToken>> {
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? "{}" : Promise.reject(error)));
  try {
    return JSON.parse(text) as Record<string, StoredToken>;
  } catch {
    throw new CliError(`${file}: not a token store (JSON); delete it and log in again`, exitCodes.failed, "bad-token-store");
  }
}

export const normalizeUrl = (url: string) => url.replace(/\/+$/, "");

/** `duet login --url URL`: POST /v1/login, then the token is kept for later commands with --url. */
export async function login(url: string, user: string, password: string, file = tokenStoreFile()) {
  const base = normalizeUrl(url);
  const answer = await apiClient(base, "").post<{ token: string; role: string; expiresAt: number }>("/v1/login", { user, password });
  const store = await readStore(file);
  store[base] = { token: answer.token, user, role: answer.role, expiresAt: answer.expiresAt };
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(store, null, 2)}\n`, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, file);
  return { url: base, user, role: answer.role, expiresAt: answer.expiresAt, file };
}

/** A client of a remote agent, with the token `duet login` stored for its URL. */
export async function remoteClient(url: string, file = tokenStoreFile()): Promise<ApiClient> {
  const base = normalizeUrl(url);
  const stored = (await readStore(file))[base];
  if (!stored) throw new CliError(`not logged in to ${base}: run duet login --url ${base}`, exitCodes.unauthorized, "unauthorized");
  if (stored.expiresAt <= Date.now()) throw new CliError(`the token for ${base} expired at ${new Date(stored.expiresAt).toISOString()}: run duet login --url ${base}`, exitCodes.unauthorized, "token-expired");
  return apiClient(base, stored.token);
}
