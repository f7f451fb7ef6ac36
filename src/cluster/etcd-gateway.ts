import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { WitnessSpec } from "../config/schema.ts";
import type { WitnessStore } from "./witness.ts";

/**
 * The witness on a real etcd, through its v3 JSON gateway (the same gRPC services, as HTTP/1.1
 * POSTs). Chosen over the gRPC client (npm's etcd3) because each call here is one request with
 * its own deadline, so the lease's renewals are timed from when each one was sent, and a hung
 * etcd costs a renewal its deadline, never more; and it adds no gRPC stack to the agent.
 * A failed call moves on to the next endpoint for the next call (a 3-member etcd loses one).
 */
export function etcdGateway(spec: WitnessSpec["etcd"]): WitnessStore {
  const endpoints = spec.endpoints.map((e) => new URL(e));
  const tls = spec.tls ? { ca: read(spec.tls.ca), cert: read(spec.tls.cert), key: read(spec.tls.key) } : {};
  let current = 0;
  let token: string | null = null;

  /**
   * One call within TIMEOUT_MS: a member that does not answer (refused, reset, silent) is left
   * for the next one at once, while time remains; an answer of etcd's own (an error it states) is
   * final. The member that answered is asked first next time.
   */
  async function call(path: string, body: unknown, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let lastError: Error | null = null;
    for (let tried = 0; tried < endpoints.length && Date.now() < deadline; tried++) {
      const url = endpoints[current % endpoints.length]!;
      const left = Math.max(1, deadline - Date.now());
      // A single member gets the whole time; with several, a silent one costs at most its share.
      const budget = endpoints.length === 1 ? left : Math.max(1, Math.min(left, Math.ceil(timeoutMs / 2)));
      let answer: Record<string, unknown>;
      try {
        if (spec.auth && token === null) token = await authenticate(url, budget);
        answer = await post(url, path, body, budget, token, tls);
      } catch (error) {
        lastError = error as Error;
        current++; // not answered: the next member
        continue;
      }
      if (typeof answer.error === "string" && /auth token|token is invalid/i.test(answer.error)) token = null;
      if (typeof answer.error === "string") throw new Error(`etcd ${url.host}${path}: ${answer.error}`);
      return answer;
    }
    throw lastError ?? new Error(`etcd${path}: no answer within ${timeoutMs} ms`);
  }

  async function authenticate(url: URL, timeoutMs: number): Promise<string> {
    const answer = await post(url, "/v3/auth/authenticate", { name: spec.auth!.user, password: spec.auth!.password }, timeoutMs, null, tls);
    if (typeof answer.token !== "string") throw new Error(`etcd ${url.host}: authentication as ${spec.auth!.user} failed: ${String(answer.error ?? "no token")}`);
    return answer.token;
  }

  return {
    async grant(ttlMs, timeoutMs) {
      const answer = await call("/v3/lease/grant", { TTL: String(Math.ceil(ttlMs / 1000)) }, timeoutMs);
      return { leaseId: String(answer.ID), ttlMs: Number(answer.TTL) * 1000, revision: revisionOf(answer) };
    },
    async keepAlive(leaseId, timeoutMs) {
      const answer = await call("/v3/lease/keepalive", { ID: leaseId }, timeoutMs);
      // A lease etcd no longer has comes back without a TTL.
      const result = (answer.result ?? {}) as { TTL?: string };
      return { ttlMs: Number(result.TTL ?? 0) * 1000 };
    },
    async claim(key, value, leaseId, timeoutMs) {
      const k = b64(key);
      const put = { request_put: { key: k, value: b64(value), lease: leaseId } };
      const range = { request_range: { key: k } };
      // Created only if absent (Patroni's leader key), or put again on this lease while it is ours.
      const absent = await call("/v3/kv/txn", { compare: [{ key: k, target: "CREATE", result: "EQUAL", create_revision: "0" }], success: [put], failure: [range] }, timeoutMs);
      if (absent.succeeded === true) return { won: true, holder: value, revision: revisionOf(absent) };
      const ours = await call("/v3/kv/txn", { compare: [{ key: k, target: "VALUE", result: "EQUAL", value: b64(value) }], success: [put], failure: [range] }, timeoutMs);
      if (ours.succeeded === true) return { won: true, holder: value, revision: revisionOf(ours) };
      const kv = firstKv(ours);
      if (kv === null) return { won: false, holder: null, revision: revisionOf(ours) }; // gone in between: asked again
      const holderTtlMs = kv.lease ? await leaseTtlMs(kv.lease, timeoutMs) : undefined;
      return { won: false, holder: kv.value, revision: revisionOf(ours), ...(holderTtlMs === undefined ? {} : { holderTtlMs }) };
    },
    async release(key, value, timeoutMs) {
      const k = b64(key);
      const answer = await call("/v3/kv/txn", { compare: [{ key: k, target: "VALUE", result: "EQUAL", value: b64(value) }], success: [{ request_delete_range: { key: k } }], failure: [] }, timeoutMs);
      return { released: answer.succeeded === true, revision: revisionOf(answer) };
    },
    async holder(key, timeoutMs) {
      const answer = await call("/v3/kv/range", { key: b64(key) }, timeoutMs);
      const kvs = (answer.kvs ?? []) as { value?: string }[];
      return kvs[0]?.value === undefined ? null : unb64(kvs[0].value);
    },
  };

  async function leaseTtlMs(lease: string, timeoutMs: number): Promise<number> {
    const answer = await call("/v3/lease/timetolive", { ID: lease }, timeoutMs);
    return Math.max(0, Number(answer.TTL ?? 0) * 1000);
  }
}

function post(url: URL, path: string, body: unknown, timeoutMs: number, token: string | null, tls: object): Promise<Record<string, unknown>> {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = send(
      { host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port, path, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), ...(token ? { authorization: token } : {}) }, ...tls },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            resolve(JSON.parse(text.split("\n")[0] || "{}") as Record<string, unknown>);
          } catch {
            reject(new Error(`etcd ${url.host}${path}: not JSON (HTTP ${res.statusCode}): ${text.slice(0, 200)}`));
          }
        });
        res.on("error", reject);
      },
    );
    // The deadline covers the whole call, not only the socket's idle time.
    const deadline = setTimeout(() => req.destroy(new Error(`etcd ${url.host}${path}: no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on("close", () => clearTimeout(deadline));
    req.on("error", reject);
    req.end(payload);
  });
}

function firstKv(answer: Record<string, unknown>): { value: string; lease: string | null } | null {
  const responses = (answer.responses ?? []) as { response_range?: { kvs?: { value?: string; lease?: string }[] } }[];
  const kv = responses[0]?.response_range?.kvs?.[0];
  return kv ? { value: unb64(kv.value ?? ""), lease: kv.lease && kv.lease !== "0" ? kv.lease : null } : null;
}

function revisionOf(answer: Record<string, unknown>): number {
  return Number((answer.header as { revision?: string } | undefined)?.revision ?? 0);
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: string) => Buffer.from(s, "base64").toString("utf8");
const read = (path: string | undefined) => (path === undefined ? undefined : readFileSync(path));
