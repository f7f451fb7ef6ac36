// bench:api — GET /v1/jobs latency and SSE delivery lag with 200 live subscribers while the journal
// takes 1,000 events/s, against a baseline of the same GET with no subscribers and no appends.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApi } from "../src/api/app.ts";
import { Refusal, type ControlPort } from "../src/api/ports.ts";
import { startApiServer } from "../src/api/server.ts";
import { openJournal } from "../src/journal/journal.ts";
import { clusterProjection } from "../src/projections/cluster.ts";
import { systemClock } from "../src/world/clock.ts";
import { createTargets } from "./bench-kit.ts";

const targets = createTargets("bench:api");

const SUBSCRIBERS = 200;
const EVENTS_PER_SECOND = 1000;
const LOAD_SECONDS = 20;
const BASELINE_REQUESTS = 2000;
const TOKEN = "bench-token";

const refuse = async (): Promise<never> => {
  throw new Refusal("not-available", "bench");
};
const control: ControlPort = { bringIn: refuse, bringOut: refuse, switchover: refuse, deleteJob: refuse, verify: refuse, selectSource: refuse, takeSnapshot: refuse, listSnapshots: refuse, restoreSnapshot: refuse, clearConfig: refuse, applyConfig: refuse, gatherinfo: refuse };
/** Percentile of an ascending array. */
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const ascending = (xs: number[]) => Float64Array.from(xs).sort() as unknown as number[];

const dir = await mkdtemp(join(tmpdir(), "duet-bench-api-"));
const journal = await openJournal({ dir, node: "a", clock: systemClock, projection: clusterProjection("a") });
await journal.append([{ type: "JobCreated", data: { job: "web", nodes: ["a", "b"], policy: "manual", reverseWhenConsistent: false, restartMax: 3, resources: [{ name: "app", kind: "process" }], mirrors: [] } }]);
const api = createApi({ journal, control, users: [], clock: systemClock, self: "a", localTokens: [{ token: TOKEN, user: "bench", role: "admin" }] });
const server = await startApiServer(api, { address: "127.0.0.1", port: 0 });
const headers = { authorization: `Bearer ${TOKEN}` };
const get = async () => {
  const t = performance.now();
  await (await fetch(`${server.url}/v1/jobs`, { headers })).text();
  return performance.now() - t;
};

try {
  const baseline: number[] = [];
  for (let i = 0; i < BASELINE_REQUESTS; i++) baseline.push(await get());

  // The subscribers run in their own process, as real clients would: this one is the agent's side.
  const from = journal.head();
  const subscribers = spawn(process.execPath, [join(import.meta.dirname, "api-subscribers.mjs"), server.url, TOKEN, String(SUBSCRIBERS), String(from), String(EVENTS_PER_SECOND * LOAD_SECONDS)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: subscribers.stdout! })[Symbol.asyncIterator]();
  if ((await lines.next()).value !== "ready") throw new Error("subscribers did not start");
  const loaded: number[] = [];
  let appended = 0;
  const end = Date.now() + LOAD_SECONDS * 1000;
  const started = Date.now();
  // Paced by the clock, not by sleeps: each tick appends what the target rate owes so far.
  const appending = (async () => {
    while (appended < EVENTS_PER_SECOND * LOAD_SECONDS) {
      const owed = Math.min(EVENTS_PER_SECOND * LOAD_SECONDS, Math.floor(((Date.now() - started) / 1000) * EVENTS_PER_SECOND)) - appended;
      if (owed > 0) {
        await journal.append(Array.from({ length: owed }, () => ({ type: "AlertRaised" as const, data: { node: "a", code: "bench", message: String(Date.now()) } })));
        appended += owed;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  while (Date.now() < end) loaded.push(await get());
  await appending;
  await new Promise((r) => setTimeout(r, 2000)); // let the last events reach every subscriber
  subscribers.stdin!.write("done\n");
  const result = JSON.parse((await lines.next()).value as string) as { p50: number; p99: number; max: number; deliveries: number; complete: number };
  const [b, l] = [ascending(baseline), ascending(loaded)];
  console.log(`baseline (no subscribers, no appends): GET /v1/jobs p50 ${pct(b, 50).toFixed(2)} ms, p99 ${pct(b, 99).toFixed(2)} ms over ${baseline.length} requests`);
  console.log(`under load (${SUBSCRIBERS} SSE subscribers, ${(appended / ((Date.now() - started - 2000) / 1000)).toFixed(0)} events/s for ${LOAD_SECONDS} s): GET /v1/jobs p50 ${pct(l, 50).toFixed(2)} ms, p99 ${pct(l, 99).toFixed(2)} ms over ${loaded.length} requests; p99 ratio to baseline ${(pct(l, 99) / pct(b, 99)).toFixed(2)}`);
  console.log(`SSE delivery lag (append to receipt): p50 ${result.p50} ms, p99 ${result.p99} ms, max ${result.max} ms over ${result.deliveries} deliveries`);
  console.log(`subscribers that received every one of the ${appended} events exactly once, in order: ${result.complete} of ${SUBSCRIBERS} (target all ${targets.check("every subscriber got every event once, in order", result.complete === SUBSCRIBERS)})`);
} finally {
  await server.close();
  await journal.close();
  await rm(dir, { recursive: true, force: true });
}
targets.exit();
