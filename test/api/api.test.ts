import { mkdtemp, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApi } from "../../src/api/app.ts";
import { Refusal, type ControlPort } from "../../src/api/ports.ts";
import { startApiServer } from "../../src/api/server.ts";
import { hashPassword } from "../../src/config/secrets.ts";
import type { DuetEvent, Recorded } from "../../src/events/catalogue.ts";
import { openJournal, type Journal } from "../../src/journal/journal.ts";
import { clusterProjection, type ClusterState } from "../../src/projections/cluster.ts";
import type { Clock } from "../../src/world/clock.ts";

let dir: string;
let journal: Journal<ClusterState>;
let url: string;
let close: () => Promise<void>;
let offsetMs = 0;
const logLines: string[] = [];
const SCRAPE_TOKEN = "a-long-lived-scrape-token-for-prometheus";
// Short, so the test can wait out a lockout; the agent's is a minute.
const LOGIN_WINDOW_MS = 1500;
const clock: Clock = { now: () => Date.now() + offsetMs, monotonic: () => performance.now() + offsetMs };

/** A real ControlPort for tests: it appends the request events an agent would, to the real journal. */
const control: ControlPort = {
  async bringIn(job, by, on) {
    if (!journal.state().jobs.has(job)) throw new Refusal("not-found", `job ${job}: no such job`);
    const [r] = await journal.append([{ type: "BringInRequested", data: { job, on: on ?? "a", by } }]);
    return { seq: r!.seq };
  },
  async bringOut(job, by) {
    const [r] = await journal.append([{ type: "BringOutRequested", data: { job, by } }]);
    return { seq: r!.seq };
  },
  async switchover(job, _by, to) {
    throw new Refusal("switchover-refused", `switchover of ${job} to ${to ?? "b"} refused: peer-connected`, [{ name: "peer-connected", ok: false }]);
  },
  async deleteJob(job, by) {
    const [r] = await journal.append([{ type: "JobDeleted", data: { job, by } }]);
    return { seq: r!.seq };
  },
  verify: async () => ({ seq: journal.head() }),
  selectSource: async () => ({ seq: journal.head() }),
  takeSnapshot: async (job) => ({ seq: journal.head(), snapshot: { name: "2026-11-25T00-00-00.000Z", job, node: "a", at: 0, generation: null, batch: 0, files: 0, bytes: 0, reason: "operator" } }),
  listSnapshots: async () => [],
  restoreSnapshot: async () => ({ seq: journal.head() }),
  clearConfig: async () => ({ archivedTo: "/tmp/x" }),
  applyConfig: async () => ({ applied: false, version: 2, hash: "0123456789abcdef", plan: { changes: [], allowed: true }, peer: "not-asked" }),
  gatherinfo: async () => {
    throw new Refusal("not-available", "not in this test");
  },
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "duet-api-"));
  journal = await openJournal({ dir, node: "a", clock, projection: clusterProjection("a") });
  await journal.append([
    { type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [{ name: "app", kind: "process" }], mirrors: [] } },
    { type: "JobCreated", data: { job: "old", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [], mirrors: [] } },
  ]);
  const users = [
    { name: "admin", role: "admin" as const, passwordHash: await hashPassword("admin-password") },
    { name: "watcher", role: "monitor" as const, passwordHash: await hashPassword("monitor-password") },
  ];
  const scrape = { allowFrom: ["127.0.0.3"], tokenSha256: createHash("sha256").update(SCRAPE_TOKEN).digest("hex") };
  const api = createApi({ journal, control, users, clock, self: "a", tokenTtlMs: 60_000, loginWindowMs: LOGIN_WINDOW_MS, loginReportMs: 500, scrape, log: (level, line) => logLines.push(`${level}: ${line}`), localTokens: [{ token: "local-cli-token", user: "local-cli", role: "admin" }] });
  const server = await startApiServer(api, { address: "127.0.0.1", port: 0 });
  url = server.url;
  close = server.close;
});
afterAll(async () => {
  await close?.();
  await journal?.close();
  await rm(dir, { recursive: true, force: true });
});

async function login(user: string, password: string) {
  const response = await fetch(`${url}/v1/login`, { method: "POST", body: JSON.stringify({ user, password }) });
  return { status: response.status, body: (await response.json()) as { token?: string; error?: { code: string } } };
}
/** A request sent from a given loopback address (node:http binds it; fetch cannot). */
function from(localAddress: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, localAddress, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
const call = (method: string, path: string, token?: string, body?: unknown) =>
  fetch(`${url}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {}, body: body === undefined ? undefined : JSON.stringify(body) });

describe("API auth matrix", () => {
  const reads = ["/v1/cluster", "/v1/nodes", "/v1/jobs", "/v1/jobs/web", "/v1/replication", "/v1/jobs/web/snapshots", "/v1/events", "/metrics"];
  const acts: [string, string, unknown][] = [
    ["POST", "/v1/jobs/web/bring-out", {}],
    ["POST", "/v1/jobs/web/verify", {}],
    ["POST", "/v1/jobs/web/source", { from: "b" }],
    ["POST", "/v1/jobs/web/snapshots", {}],
    ["POST", "/v1/jobs/web/snapshots/2026-11-25T00-00-00.000Z/restore", { to: "/tmp/elsewhere" }],
    ["POST", "/v1/config/clear", {}],
    ["DELETE", "/v1/jobs/old", undefined],
    ["POST", "/v1/config", { text: "cluster: {}", dryRun: true }],
  ];

  it("every read: admin and monitor 200; no token, garbage and expired tokens 401", async () => {
    const admin = (await login("admin", "admin-password")).body.token!;
    const monitor = (await login("watcher", "monitor-password")).body.token!;
    for (const path of reads) {
      expect((await call("GET", path, admin)).status, `admin ${path}`).toBe(200);
      expect((await call("GET", path, monitor)).status, `monitor ${path}`).toBe(200);
      expect((await call("GET", path)).status, `none ${path}`).toBe(401);
      expect((await call("GET", path, "garbage")).status, `garbage ${path}`).toBe(401);
    }
    offsetMs += 61_000;
    try {
      for (const path of reads) {
        const response = await call("GET", path, monitor);
        expect(response.status).toBe(401);
        expect(((await response.json()) as { error: { code: string } }).error.code).toBe("token-expired");
      }
    } finally {
      offsetMs -= 61_000;
    }
  });

  it("every act: admin allowed, monitor 403, no token 401, expired 401", async () => {
    const monitor = (await login("watcher", "monitor-password")).body.token!;
    for (const [method, path, body] of acts) {
      expect((await call(method, path, monitor, body)).status, `monitor ${path}`).toBe(403);
      expect((await call(method, path, undefined, body)).status, `none ${path}`).toBe(401);
    }
    const admin = (await login("admin", "admin-password")).body.token!;
    offsetMs += 61_000;
    try {
      for (const [method, path, body] of acts) expect((await call(method, path, admin, body)).status, `expired ${path}`).toBe(401);
    } finally {
      offsetMs -= 61_000;
    }
    const fresh = (await login("admin", "admin-password")).body.token!;
    for (const [method, path, body] of acts) expect([200, 201, 202], `admin ${path}`).toContain((await call(method, path, fresh, body)).status);
  });

  it("the local CLI token acts as admin", async () => {
    expect((await call("POST", "/v1/jobs/web/bring-in", "local-cli-token", {})).status).toBe(202);
  });

  it("health endpoints need no token and reveal only whether this node is active", async () => {
    expect(await (await call("GET", "/v1/health")).json()).toEqual({ ok: true, node: "a" });
    expect((await call("GET", "/v1/health/jobs/web/active")).status).toBe(503);
    await journal.append([{ type: "JobBroughtIn", data: { job: "web", node: "a" } }]);
    expect((await call("GET", "/v1/health/jobs/web/active")).status).toBe(200);
  });
});

describe("API errors", () => {
  it("wrong types, unknown jobs, bad JSON and oversized bodies get JSON errors naming the field", async () => {
    const t = "local-cli-token";
    const wrong = await call("POST", "/v1/jobs/web/source", t, { from: 7 });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: { code: "bad-request", field: "from" } });
    const extra = await call("POST", "/v1/jobs/web/bring-in", t, { onn: "a" });
    expect(extra.status).toBe(400);
    const unknown = await call("POST", "/v1/jobs/nosuch/bring-in", t, {});
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "not-found" } });
    const notJson = await fetch(`${url}/v1/jobs/web/bring-in`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{nope" });
    expect(await notJson.json()).toMatchObject({ error: { code: "bad-request", message: "body: expected JSON" } });
    const huge = await call("POST", "/v1/jobs/web/bring-in", t, { on: "x".repeat(70_000) });
    expect(huge.status).toBe(413);
    expect(await huge.json()).toMatchObject({ error: { code: "body-too-large" } });
    const refused = await call("POST", "/v1/jobs/web/switchover", t, {});
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ error: { code: "switchover-refused", details: [{ name: "peer-connected", ok: false }] } });
    const badConfig = await call("POST", "/v1/config", t, { text: 7 });
    expect(await badConfig.json()).toMatchObject({ error: { code: "bad-request", field: "text" } });
    const badQuery = await call("GET", "/v1/events?limit=5000", t);
    expect(await badQuery.json()).toMatchObject({ error: { code: "bad-request", field: "limit" } });
    expect((await call("GET", "/v1/nowhere", t)).status).toBe(404);
  });

  it("failed logins lock out one user from one address only: a correct login from elsewhere still works", async () => {
    for (let i = 0; i < 5; i++) expect((await from("127.0.0.1", "POST", "/v1/login", { user: "admin", password: `wrong-${i}` })).status).toBe(401);
    const limited = await from("127.0.0.1", "POST", "/v1/login", { user: "admin", password: "admin-password" });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    // The attacker's address does not lock the operator out, nor other users out of that address.
    expect((await from("127.0.0.2", "POST", "/v1/login", { user: "admin", password: "admin-password" })).status).toBe(200);
    expect((await from("127.0.0.1", "POST", "/v1/login", { user: "watcher", password: "monitor-password" })).status).toBe(200);
    // The lockout ends with its window (the limiter's own time, as Retry-After says).
    await new Promise((r) => setTimeout(r, Number(limited.headers["retry-after"]) * 1000 + 100));
    expect((await from("127.0.0.1", "POST", "/v1/login", { user: "admin", password: "admin-password" })).status).toBe(200);
  });

  it("a flood of failed logins is a few journal records with counts, no user names and no reasons; the log names the address", async () => {
    // Each login costs a scrypt hash (tens of ms): 300 show the aggregation as well as 600 did,
    // in half the time (600 took 27 s beside busy loops, then 30 s beside three: the timeout).
    const FLOOD = 300;
    const head = journal.head();
    const names = ["admin", "p4ssw0rd-typed-as-a-name", "nosuchuser"];
    const began = Date.now();
    for (let i = 0; i < FLOOD; i++) await from("127.0.0.4", "POST", "/v1/login", { user: names[i % 3], password: `wrong-${i}` });
    const floodMs = Date.now() - began;
    const failed: Recorded[] = [];
    const counted = () => failed.reduce((sum, e) => sum + (e.data as { count: number }).count, 0);
    // Every failure is counted in a record of its period: wait for the count, not for a time.
    for (const deadline = Date.now() + 10_000; counted() < FLOOD && Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      failed.length = 0;
      for await (const e of journal.read(head + 1)) if (e.type === "LoginsFailed" || e.type === "LoginFailed") failed.push(e);
    }
    expect(counted()).toBe(FLOOD);
    // One record per 500 ms period at most, however long the flood took (beside busy loops, 10 s).
    expect(failed.length).toBeLessThanOrEqual(Math.ceil(floodMs / 500) + 2);
    expect(failed.length, "far fewer records than failures").toBeLessThan(FLOOD / 2);
    expect(failed.every((e) => e.type === "LoginsFailed")).toBe(true);
    const text = JSON.stringify(failed);
    for (const name of names) expect(text).not.toContain(name);
    expect(text).not.toMatch(/unknown-user|bad-password/);
    expect(failed[0]!.data).toMatchObject({ from: [{ address: "127.0.0.4" }] });
    expect(logLines).toContain("warn: authentication failure for user admin from 127.0.0.4");
    expect(logLines).toContain("warn: authentication failure for an unknown user from 127.0.0.4");
    expect(logLines.join("\n")).not.toContain("p4ssw0rd-typed-as-a-name");
  }, 90_000);

  it("metrics are Prometheus text that promtool accepts: counters named _total, process_* and build info", async () => {
    const text = await (await call("GET", "/metrics", "local-cli-token")).text();
    for (const name of ["duet_peer_connected", "duet_job_active", "duet_job_phase", "duet_journal_head_seq", "duet_build_info"]) expect(text).toContain(`# TYPE ${name} gauge`);
    for (const name of ["duet_takeovers_total", "duet_logins_failed_total", "duet_monitor_failures_total", "duet_frames_rejected_total"]) expect(text).toContain(`# TYPE ${name} counter`);
    expect(text).toMatch(/duet_job_active\{job="web",node="a"\} 1/);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    const checked = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = execFile("promtool", ["check", "metrics"], (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, out: stdout + stderr }));
      child.stdin!.end(text);
    });
    expect(checked).toEqual({ code: 0, out: "" });
  });

  it("Prometheus scrapes without a person logging in: from an allowed address, or with the scrape token, and only /metrics", async () => {
    expect((await from("127.0.0.3", "GET", "/metrics")).status).toBe(200);
    expect((await from("127.0.0.5", "GET", "/metrics")).status).toBe(401);
    expect((await from("127.0.0.5", "GET", "/metrics", undefined, SCRAPE_TOKEN)).status).toBe(200);
    expect((await from("127.0.0.5", "GET", "/v1/cluster", undefined, SCRAPE_TOKEN)).status).toBe(401);
    expect((await from("127.0.0.3", "GET", "/v1/cluster")).status).toBe(401);
  });
});

describe("live event stream", () => {
  async function readStream(lastEventId: number | null, count: number): Promise<number[]> {
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/events/stream`, { headers: { authorization: "Bearer local-cli-token", ...(lastEventId !== null ? { "last-event-id": String(lastEventId) } : {}) }, signal: controller.signal });
    const reader = response.body!.getReader();
    const seqs: number[] = [];
    let text = "";
    while (seqs.length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      const frames = text.split("\n\n");
      text = frames.pop()!;
      for (const frame of frames) {
        const id = /^id: (\d+)$/m.exec(frame);
        if (id) seqs.push(Number(id[1]));
      }
    }
    controller.abort();
    return seqs.slice(0, count);
  }

  it("resumes from Last-Event-ID across reconnects while events are appended, without gap or duplicate", async () => {
    const start = journal.head();
    const total = 600;
    const filler: DuetEvent = { type: "AlertRaised", data: { node: "a", code: "test", message: "x" } };
    const appending = (async () => {
      for (let i = 0; i < total; i++) await journal.append([filler]);
    })();
    const seen: number[] = [];
    let last = start;
    while (seen.length < total) {
      const chunk = await readStream(last, Math.min(97, total - seen.length));
      seen.push(...chunk);
      last = chunk.at(-1) ?? last;
    }
    await appending;
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => start + 1 + i));
  });
});
