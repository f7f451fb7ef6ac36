// bench:api — GET /v1/jobs latency and SSE delivery lag with 200 live subscribers while the journal
// takes 1,000 events/s, against a baseline of the same GET with no subscribers and no appends.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApi } from "../src/api/app.ts";
import { ControlError, type ControlPort } from "../src/api/ports.ts";
import { startApiServer } from "../src/api/server.ts";
import { openJournal } from "../src/journal/journal.ts";
import { clusterProjection } from "../src/projections/cluster.ts";
import { systemClock } from "../src/world/clock.ts";

const SUBSCRIBERS = 200;
const EVENTS_PER_SECOND = 1000;
const LOAD_SECONDS = 20;
const BASELINE_REQUESTS = 2000;
const TOKEN = "bench-token";

const refuse = async (): Promise<never> => {
  throw new ControlError("not-available", 409, "bench");
};
const control: ControlPort = { bringIn: refuse, bringOut: refuse, switchover: refuse, deleteJob: refuse, verify: refuse, selectSource: refuse, clearConfig: refuse, gatherinfo: refuse };
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

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

  // Subscribers count every seq and the lag from the append (the time is in the event's message).
  const lags: number[] = [];
  const aborts: AbortController[] = [];
  const seen: number[][] = [];
  const from = journal.head();
  await Promise.all(
    Array.from({ length: SUBSCRIBERS }, async (_, i) => {
      const abort = new AbortController();
      aborts.push(abort);
      seen[i] = [];
      const response = await fetch(`${server.url}/v1/events/stream`, { headers: { ...headers, "last-event-id": String(from) }, signal: abort.signal });
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      void (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            text += decoder.decode(value, { stream: true });
            const frames = text.split("\n\n");
            text = frames.pop() ?? "";
            for (const frame of frames) {
              const data = /^data: (.*)$/m.exec(frame)?.[1];
              if (!data) continue;
              const event = JSON.parse(data) as { seq: number; data: { message: string } };
              seen[i]!.push(event.seq);
              if (lags.length < 5_000_000) lags.push(Date.now() - Number(event.data.message));
            }
          }
        } catch {
          // aborted at the end
        }
      })();
    }),
  );

  const loaded: number[] = [];
  let appended = 0;
  const end = Date.now() + LOAD_SECONDS * 1000;
  const appending = (async () => {
    while (Date.now() < end) {
      const batch = Array.from({ length: EVENTS_PER_SECOND / 100 }, () => ({ type: "AlertRaised" as const, data: { node: "a", code: "bench", message: String(Date.now()) } }));
      await journal.append(batch);
      appended += batch.length;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  while (Date.now() < end) loaded.push(await get());
  await appending;
  const deadline = Date.now() + 30_000;
  while (seen.some((s) => s.length < appended) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));

  const complete = seen.filter((s) => s.length === appended && s.every((seq, k) => seq === from + 1 + k)).length;
  console.log(`baseline (no subscribers, no appends): GET /v1/jobs p50 ${pct(baseline, 50).toFixed(2)} ms, p99 ${pct(baseline, 99).toFixed(2)} ms over ${baseline.length} requests`);
  console.log(`under load (${SUBSCRIBERS} SSE subscribers, ${(appended / LOAD_SECONDS).toFixed(0)} events/s for ${LOAD_SECONDS} s): GET /v1/jobs p50 ${pct(loaded, 50).toFixed(2)} ms, p99 ${pct(loaded, 99).toFixed(2)} ms over ${loaded.length} requests; p99 ratio to baseline ${(pct(loaded, 99) / pct(baseline, 99)).toFixed(2)}`);
  console.log(`SSE delivery lag (append to receipt): p50 ${pct(lags, 50)} ms, p99 ${pct(lags, 99)} ms, max ${Math.max(...lags)} ms over ${lags.length} deliveries`);
  console.log(`subscribers that received every one of the ${appended} events exactly once, in order: ${complete} of ${SUBSCRIBERS}`);
  for (const a of aborts) a.abort();
} finally {
  await server.close();
  await journal.close();
  await rm(dir, { recursive: true, force: true });
}
