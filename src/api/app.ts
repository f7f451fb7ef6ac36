import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { isEventType, type Recorded } from "../events/catalogue.ts";
import { BlockList, isIPv6 } from "node:net";
import { createHash, timingSafeEqual } from "node:crypto";
import { systemTimers, type Clock, type Timers } from "../world/clock.ts";
import { createAuth } from "./auth.ts";
import { createLoginFailureReport } from "./login-failures.ts";
import { createMetrics, type MetricsLive } from "./metrics.ts";
import { Refusal, type ApiJournal, type ApiUser, type ControlPort, type Role } from "./ports.ts";
import { clusterView, jobView } from "./views.ts";
import { firstIssue } from "../events/issue.ts";

export const API_BODY_MAX_BYTES = 64 * 1024;
export const EVENTS_PAGE_DEFAULT = 100;
export const EVENTS_PAGE_MAX = 1000;
/** Events an SSE subscriber may fall behind by before it is told to reconnect from its last id. */
export const SSE_BUFFER_MAX = 10_000;
export const SSE_HEARTBEAT_MS = 15_000;
/** Events written to one subscriber in one chunk. */
export const SSE_WRITE_BATCH_MAX = 500;
/**
 * Live event streams, at most, in all and per user: each replays history and holds a buffer, and
 * a flood of them (even a read-only user's) must never take the agent's loop from failure
 * detection. Beyond them: 503 with Retry-After.
 */
export const SSE_SUBSCRIBERS_MAX = 64;
export const SSE_SUBSCRIBERS_PER_USER_MAX = 8;
export const SSE_RETRY_AFTER_S = 10;
/** Serialized frames kept for other subscribers of the same events (JSON has no newlines to escape). */
export const SSE_FRAME_CACHE_MAX = 20_000;

type Env = { Variables: { user: string; role: Role } };

function errorBody(code: string, message: string, field?: string, details?: unknown) {
  return { error: { code, message, ...(field ? { field } : {}), ...(details !== undefined ? { details } : {}) } };
}

/** Parses a JSON body with a schema; a bad body is a 400 naming the field and what was expected. */
async function body<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  const text = await c.req.text();
  let raw: unknown = {};
  if (text.trim()) {
    try {
      raw = JSON.parse(text);
    } catch {
      throw new Refusal("bad-request", "body: expected JSON");
    }
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const { field, text } = firstIssue(parsed.error, "body");
    throw new Refusal("bad-request", text, { field });
  }
  return parsed.data;
}

/** The HTTP status of a refusal: the request itself was wrong, named what is not there, or could not be done now. */
export function statusOf(code: string): 400 | 404 | 409 | 422 | 503 {
  if (code === "bad-request") return 400;
  if (code === "not-found") return 404;
  if (code === "bad-config") return 422;
  if (code === "peer-not-connected") return 503;
  return 409;
}

export interface ApiOptions {
  journal: ApiJournal;
  control: ControlPort;
  users: ApiUser[];
  clock: Clock;
  self: string;
  tokenTtlMs?: number;
  /** Fixed tokens (the local CLI's, from a 0600 file in the data directory). */
  localTokens?: { token: string; user: string; role: Role }[];
  timers?: Timers;
  /** How long failed logins of one user from one address are counted (tests shorten it). */
  loginWindowMs?: number;
  /** Failed logins are journaled at most once per this (LOGIN_FAILURES_REPORT_MS; tests shorten it). */
  loginReportMs?: number;
  /** Prometheus without a login: addresses (or CIDRs) allowed /metrics, or a long-lived scrape token's sha256. */
  scrape?: { allowFrom: string[]; tokenSha256?: string };
  /** Live figures the journal does not hold (heartbeat ages), for /metrics. */
  live?: MetricsLive;
  /** Lines for the agent's log: failed logins with the remote address, for fail2ban. */
  log?: (level: "info" | "warn", message: string) => void;
}

/** The address a request came from, as the socket saw it. */
function remoteAddress(c: Context): string {
  return (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress ?? "unknown";
}

/** Who may read /metrics without logging in: an allowed address, or the scrape token. */
function scrapeAccess(scrape: ApiOptions["scrape"]) {
  const allowed = new BlockList();
  for (const entry of scrape?.allowFrom ?? []) {
    const [address, prefix] = entry.split("/") as [string, string | undefined];
    const type = isIPv6(address) ? "ipv6" : "ipv4";
    if (prefix === undefined) allowed.addAddress(address, type);
    else allowed.addSubnet(address, Number(prefix), type);
  }
  const want = scrape?.tokenSha256 ? Buffer.from(scrape.tokenSha256, "hex") : null;
  return (from: string, token: string | undefined): boolean => {
    const plain = from.replace(/^::ffff:/, "");
    if (plain !== "unknown" && allowed.check(plain, isIPv6(plain) ? "ipv6" : "ipv4")) return true;
    if (!want || !token) return false;
    return timingSafeEqual(createHash("sha256").update(token).digest(), want);
  };
}

/** The HTTP API under /v1: read the state, act through the agent, follow the journal live. */
export function createApi(options: ApiOptions) {
  const { journal, control, clock } = options;
  const auth = createAuth({ users: options.users, clock, tokenTtlMs: options.tokenTtlMs, loginWindowMs: options.loginWindowMs, localTokens: options.localTokens });
  const log = options.log ?? (() => undefined);
  const loginFailures = createLoginFailureReport({ node: options.self, clock, timers: options.timers ?? systemTimers, periodMs: options.loginReportMs, record: (events) => journal.append(events).catch((error: Error) => log("warn", `journaling failed logins: ${error.message}`)) });
  const metrics = createMetrics(journal, { ...options.live, loginsFailed: () => loginFailures.total() });
  let mayScrape = scrapeAccess(options.scrape);
  let users = options.users;
  const streams = new Set<() => void>();
  const frames = new Map<number, string>();
  const sseFrame = (event: Recorded): string => {
    let frame = frames.get(event.seq);
    if (frame === undefined) {
      frame = `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
      frames.set(event.seq, frame);
      if (frames.size > SSE_FRAME_CACHE_MAX) frames.delete(frames.keys().next().value!);
    }
    return frame;
  };
  const app = new Hono<Env>();

  app.onError((error, c) => {
    if (error instanceof Refusal) {
      const field = (error.details as { field?: string } | undefined)?.field;
      return c.json(errorBody(error.code, error.message, field, field ? undefined : error.details), statusOf(error.code));
    }
    return c.json(errorBody("internal", error.message), 500);
  });
  app.notFound((c) => c.json(errorBody("not-found", `no route ${c.req.method} ${c.req.path}`), 404));
  app.use(bodyLimit({ maxSize: API_BODY_MAX_BYTES, onError: (c) => c.json(errorBody("body-too-large", `body: expected at most ${API_BODY_MAX_BYTES} bytes`), 413) }));

  // For load balancers and monitoring: no token, nothing secret.
  app.get("/v1/health", (c) => c.json({ ok: true, node: options.self }));
  app.get("/v1/health/jobs/:job/active", (c) => {
    const job = journal.state().jobs.get(c.req.param("job"));
    const active = job?.active === options.self && job.phase === "in";
    return c.json({ job: c.req.param("job"), node: options.self, active }, active ? 200 : 503);
  });

  app.post("/v1/login", async (c) => {
    const { user, password } = await body(c, z.strictObject({ user: z.string().min(1).max(64), password: z.string().min(1).max(1024) }));
    const from = remoteAddress(c);
    const outcome = await auth.login(user, password, from);
    if (outcome.ok) {
      await journal.append([{ type: "LoginSucceeded", data: { user, role: outcome.session.role, from } }]);
      log("info", `login of ${user} (${outcome.session.role}) from ${from}`);
      return c.json({ token: outcome.token, role: outcome.session.role, expiresAt: outcome.session.expiresAt });
    }
    loginFailures.failed(from);
    // A typed name that is no user may be a password typed in the wrong field: never written down.
    const known = users.some((u) => u.name === user);
    log("warn", `authentication failure for ${known ? `user ${user}` : "an unknown user"} from ${from}${outcome.reason === "rate-limited" ? " (rate-limited)" : ""}`);
    if (outcome.reason === "rate-limited") {
      c.header("Retry-After", String(Math.ceil((outcome.retryAfterMs ?? 60_000) / 1000)));
      return c.json(errorBody("rate-limited", "too many failed logins; try again later"), 429);
    }
    return c.json(errorBody("unauthorized", "user or password is wrong"), 401);
  });

  const authenticate = async (c: Context<Env>, next: () => Promise<void>) => {
    const header = c.req.header("authorization");
    const token = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
    const checked = auth.check(token);
    if (!checked.ok) return c.json(errorBody(checked.code, checked.code === "token-expired" ? "the token has expired; log in again" : "a bearer token is required (POST /v1/login)"), 401);
    c.set("user", checked.session.user);
    c.set("role", checked.session.role);
    if (c.req.method !== "GET" && checked.session.role !== "admin") return c.json(errorBody("forbidden", `role ${checked.session.role} may only read; this needs admin`), 403);
    await next();
  };
  app.use("/v1/*", authenticate);
  app.use("/metrics", async (c, next) => {
    const header = c.req.header("authorization");
    if (mayScrape(remoteAddress(c), header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined)) return next();
    return authenticate(c, next);
  });
  // An unknown job is "not found" for every job route alike (scripts read one exit code for it).
  const knownJob = async (c: Context<Env>, next: () => Promise<void>) => {
    const name = c.req.param("job");
    if (name !== undefined && !journal.state().jobs.has(name)) throw new Refusal("not-found", `job ${name}: no such job (duet status lists the jobs)`);
    await next();
  };
  app.use("/v1/jobs/:job", knownJob);
  app.use("/v1/jobs/:job/*", knownJob);

  app.get("/metrics", async (c) => c.text(await metrics.metrics(), 200, { "content-type": metrics.contentType }));
  app.get("/v1/cluster", (c) => c.json(clusterView(journal.state())));
  app.get("/v1/nodes", (c) => {
    const v = clusterView(journal.state());
    return c.json({ nodes: [{ name: v.node, self: true, links: v.links, linksState: v.linksState }, { name: v.peer, self: false, status: v.peerStatus, since: v.peerSince }] });
  });
  app.get("/v1/jobs", (c) => c.json({ jobs: clusterView(journal.state()).jobs }));
  app.get("/v1/jobs/:job", (c) => {
    const state = journal.state();
    const job = state.jobs.get(c.req.param("job"));
    if (!job) throw new Refusal("not-found", `job ${c.req.param("job")}: no such job`);
    return c.json(jobView(state, job));
  });
  app.get("/v1/replication", (c) => c.json({ jobs: clusterView(journal.state()).jobs.map((j) => ({ job: j.name, ...j.replication })) }));

  const eventsQuery = z.strictObject({
    from: z.coerce.number().int().positive().optional(),
    to: z.coerce.number().int().positive().optional(),
    type: z.string().refine(isEventType, "expected an event type like TakeoverDecided").optional(),
    job: z.string().optional(),
    since: z.coerce.number().int().nonnegative().optional(),
    until: z.coerce.number().int().nonnegative().optional(),
    limit: z.coerce.number().int().min(1).max(EVENTS_PAGE_MAX, `expected at most ${EVENTS_PAGE_MAX}`).default(EVENTS_PAGE_DEFAULT),
  });
  app.get("/v1/events", async (c) => {
    const parsed = eventsQuery.safeParse(c.req.query());
    if (!parsed.success) {
      const { field, text } = firstIssue(parsed.error, "query");
      throw new Refusal("bad-request", text, { field });
    }
    const q = parsed.data;
    const events: Recorded[] = [];
    let scanned = 0;
    for await (const e of journal.read(q.from ?? 1, q.to)) {
      scanned += 1;
      if (q.until !== undefined && e.at > q.until) break;
      if ((q.type && e.type !== q.type) || (q.since !== undefined && e.at < q.since) || (q.job && (e.data as { job?: string }).job !== q.job)) continue;
      events.push(e);
      if (events.length >= q.limit) break;
    }
    return c.json({ events, head: journal.head(), scanned });
  });

  // Server-sent events: history from Last-Event-ID (or ?from) and then live, every seq once.
  const subscribersOf = new Map<string, number>();
  let streamsOpen = 0;
  app.get("/v1/events/stream", (c) => {
    const who = c.get("user");
    const mine = subscribersOf.get(who) ?? 0;
    if (streamsOpen >= SSE_SUBSCRIBERS_MAX || mine >= SSE_SUBSCRIBERS_PER_USER_MAX) {
      c.header("Retry-After", String(SSE_RETRY_AFTER_S));
      const limit = streamsOpen >= SSE_SUBSCRIBERS_MAX ? `${SSE_SUBSCRIBERS_MAX} event streams are open` : `${who} has ${SSE_SUBSCRIBERS_PER_USER_MAX} event streams open`;
      return c.json(errorBody("too-many-streams", `${limit}; close one or retry later`), 503);
    }
    subscribersOf.set(who, mine + 1);
    streamsOpen += 1;
    const lastId = Number(c.req.header("last-event-id") ?? Number.NaN);
    const fromQuery = Number(c.req.query("from") ?? Number.NaN);
    const from = Number.isSafeInteger(lastId) && lastId >= 0 ? lastId + 1 : Number.isSafeInteger(fromQuery) && fromQuery > 0 ? fromQuery : journal.head() + 1;
    return streamSSE(c, async (stream) => {
      const queue: Recorded[] = [];
      let wake: (() => void) | null = null;
      let done = false;
      let overflow = false;
      const finish = () => {
        done = true;
        wake?.();
      };
      const subscription = journal.tail(from).subscribe({
        next: (e) => {
          if (queue.length >= SSE_BUFFER_MAX) {
            overflow = true;
            finish();
            return;
          }
          queue.push(e);
          wake?.();
        },
        complete: finish,
        error: finish,
      });
      streams.add(finish);
      stream.onAbort(finish);
      const beat = setInterval(() => void stream.write(": keepalive\n\n").catch(finish), SSE_HEARTBEAT_MS);
      try {
        while (!done || queue.length > 0) {
          if (queue.length > 0) {
            // Everything queued goes out in one write, each event serialized once for all subscribers.
            const batch = queue.splice(0, SSE_WRITE_BATCH_MAX);
            await stream.write(batch.map(sseFrame).join(""));
            continue;
          }
          if (done) break;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
        if (overflow) await stream.writeSSE({ event: "overflow", data: JSON.stringify({ message: `fell ${SSE_BUFFER_MAX} events behind; reconnect with Last-Event-ID` }) });
      } finally {
        clearInterval(beat);
        subscription.unsubscribe();
        streams.delete(finish);
        streamsOpen -= 1;
        const left = (subscribersOf.get(who) ?? 1) - 1;
        if (left > 0) subscribersOf.set(who, left);
        else subscribersOf.delete(who);
      }
    });
  });

  const jobParam = (c: Context) => c.req.param("job") as string;
  const user = (c: Context<Env>) => c.get("user");
  app.post("/v1/jobs/:job/bring-in", async (c) => {
    const { on, force } = await body(c, z.strictObject({ on: z.string().min(1).optional(), force: z.boolean().default(false) }));
    return c.json(await control.bringIn(jobParam(c), user(c), on, force), 202);
  });
  app.post("/v1/jobs/:job/bring-out", async (c) => {
    await body(c, z.strictObject({}));
    return c.json(await control.bringOut(jobParam(c), user(c)), 202);
  });
  app.post("/v1/jobs/:job/switchover", async (c) => {
    const { to } = await body(c, z.strictObject({ to: z.string().min(1).optional() }));
    return c.json(await control.switchover(jobParam(c), user(c), to), 202);
  });
  app.delete("/v1/jobs/:job", async (c) => c.json(await control.deleteJob(jobParam(c), user(c)), 202));
  app.post("/v1/jobs/:job/verify", async (c) => {
    await body(c, z.strictObject({}));
    return c.json(await control.verify(jobParam(c), user(c)), 202);
  });
  app.post("/v1/jobs/:job/source", async (c) => {
    const { from, force } = await body(c, z.strictObject({ from: z.string().min(1), force: z.boolean().default(false) }));
    return c.json(await control.selectSource(jobParam(c), from, user(c), force), 202);
  });
  app.get("/v1/jobs/:job/snapshots", async (c) => c.json({ snapshots: await control.listSnapshots(jobParam(c)) }));
  app.post("/v1/jobs/:job/snapshots", async (c) => {
    await body(c, z.strictObject({}));
    return c.json(await control.takeSnapshot(jobParam(c), user(c)), 201);
  });
  app.post("/v1/jobs/:job/snapshots/:name/restore", async (c) => {
    const { to } = await body(c, z.strictObject({ to: z.string().regex(/^\//, "expected an absolute directory").optional() }));
    return c.json(await control.restoreSnapshot(jobParam(c), c.req.param("name"), to, user(c)), 202);
  });
  app.post("/v1/config/clear", async (c) => {
    const { force } = await body(c, z.strictObject({ force: z.boolean().default(false) }));
    return c.json(await control.clearConfig(user(c), force), 200);
  });
  app.post("/v1/config", async (c) => {
    const request = z.strictObject({ text: z.string().min(1, "expected the configuration document").max(API_BODY_MAX_BYTES), dryRun: z.boolean().default(false), force: z.boolean().default(false) });
    const { text, dryRun, force } = await body(c, request);
    return c.json(await control.applyConfig(text, user(c), { dryRun, force }), 200);
  });
  app.get("/v1/gatherinfo", async (c) => {
    if (c.get("role") !== "admin") return c.json(errorBody("forbidden", "gatherinfo holds logs and network facts: admin only"), 403);
    const { file } = await control.gatherinfo();
    const { readFile } = await import("node:fs/promises");
    return c.body(new Uint8Array(await readFile(file)), 200, { "content-type": "application/zip", "content-disposition": `attachment; filename="${file.split("/").pop()}"` });
  });

  return {
    app,
    metrics,
    /** A configuration change of the users or of who may scrape /metrics, in force at once. */
    reconfigure(next: { users: ApiUser[]; scrape?: ApiOptions["scrape"] }): void {
      auth.setUsers(next.users);
      users = next.users;
      mayScrape = scrapeAccess(next.scrape);
    },
    /** Ends every live stream (the agent is stopping). */
    close(): void {
      for (const finish of streams) finish();
      void loginFailures.close();
    },
  };
}
export type Api = ReturnType<typeof createApi>;
