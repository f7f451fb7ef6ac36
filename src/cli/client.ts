import { readFile } from "node:fs/promises";
import { localTokenFile } from "../config/self.ts";

/** A CLI request the agent has not answered by then is reported as unreachable. */
const API_TIMEOUT_MS = 30_000;

export const DEFAULT_CONFIG = process.env.DUET_CONFIG ?? "/etc/duet/duet.yaml";

/** Exit codes scripts can rely on, one per kind of outcome. */
export const exitCodes = {
  ok: 0,
  failed: 1, // the agent answered with an error not listed below
  usage: 2, // bad command line or bad input
  refused: 3, // the policy refused (e.g. switchover gating)
  notFound: 4, // unknown job, snapshot or node
  unreachable: 5, // no agent answered
  unauthorized: 6,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code = "error",
  ) {
    super(message);
  }
}

export interface ApiClient {
  url: string;
  get<T = unknown>(path: string): Promise<T>;
  post<T = unknown>(path: string, body?: unknown): Promise<T>;
  delete<T = unknown>(path: string): Promise<T>;
  stream(path: string, headers?: Record<string, string>): Promise<Response>;
}

export async function localClient(options: { url: string; dataDir: string; token?: string }): Promise<ApiClient> {
  let token = options.token;
  if (!token) {
    try {
      token = (await readFile(localTokenFile(options.dataDir), "utf8")).trim();
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "the agent is not running (no token file)" : (error as Error).message;
      throw new CliError(`cannot reach the local agent: ${localTokenFile(options.dataDir)}: ${reason}`, exitCodes.unreachable, "unreachable");
    }
  }
  return apiClient(options.url, token);
}

export function apiClient(url: string, token: string): ApiClient {
  const headers = { authorization: `Bearer ${token}` };
  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const { status, text } = await httpCall(method, `${url}${path}`, headers, body);
    const parsed = text ? safeJson(text) : undefined;
    if (status >= 200 && status < 300) return parsed as T;
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    const code = error?.code ?? `http-${status}`;
    const message = error?.message ?? (text || `HTTP ${status}`);
    throw new CliError(message, exitCodeFor(status, code), code);
  }
  return {
    url,
    get: (path) => call("GET", path),
    post: (path, body) => call("POST", path, body ?? {}),
    delete: (path) => call("DELETE", path),
    async stream(path, extra = {}) {
      try {
        return await fetch(`${url}${path}`, { headers: { ...headers, ...extra, accept: "text/event-stream" } });
      } catch (error) {
        throw new CliError(`cannot reach the agent at ${url}: ${(error as Error).message}`, exitCodes.unreachable, "unreachable");
      }
    },
  };
}

/** One request through node:http: a CLI start does not load fetch's HTTP stack (~50 ms) for it. */
async function httpCall(method: string, target: string, headers: Record<string, string>, body: unknown): Promise<{ status: number; text: string }> {
  const { request } = await import("node:http");
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const unreachable = (error: Error) => reject(new CliError(`cannot reach the agent at ${new URL(target).origin}: ${error.message}`, exitCodes.unreachable, "unreachable"));
    const req = request(target, { method, headers: payload === undefined ? headers : { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(payload) }, timeout: API_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", unreachable);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${API_TIMEOUT_MS} ms`)));
    req.on("error", unreachable);
    req.end(payload);
  });
}

/** One exit code per meaning, whichever command met it (README's table). */
export function exitCodeFor(status: number, code: string): number {
  if (status === 401 || status === 403 || status === 429) return exitCodes.unauthorized;
  if (status === 404 || code === "not-found") return exitCodes.notFound;
  if (status === 409 || status === 422 || status === 503 || code === "refused") return exitCodes.refused;
  if (status === 400 || status === 413) return exitCodes.usage;
  return exitCodes.failed;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { error: { message: text } };
  }
}
