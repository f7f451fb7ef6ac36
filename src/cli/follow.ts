import type { Recorded } from "../events/catalogue.ts";
import { describe } from "../../tools/replay/explain.ts";
import { CliError, exitCodes, type ApiClient } from "./client.ts";

/** Reconnects of `events tail` before it gives up; each resumes from the last seq seen. */
export const FOLLOW_RECONNECTS_MAX = 100;

/** Reads the agent's SSE stream from `after`+1, calling `onEvent` until it returns true or the stream ends. */
async function readStream(client: ApiClient, after: number | null, onEvent: (e: Recorded) => boolean, signal?: AbortSignal): Promise<{ last: number | null; stopped: boolean }> {
  const response = await client.stream("/v1/events/stream", after === null ? {} : { "last-event-id": String(after) });
  if (!response.ok || !response.body) throw new CliError(`event stream: HTTP ${response.status}`, exitCodes.failed);
  const reader = response.body.getReader();
  signal?.addEventListener("abort", () => void reader.cancel());
  const decoder = new TextDecoder();
  let text = "";
  let last = after;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { last, stopped: false };
      text += decoder.decode(value, { stream: true });
      const frames = text.split("\n\n");
      text = frames.pop() ?? "";
      for (const frame of frames) {
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data || /^event: overflow$/m.test(frame)) continue;
        const event = JSON.parse(data) as Recorded;
        last = event.seq;
        if (onEvent(event)) return { last, stopped: true };
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** `duet events tail`: every event once, in order, across reconnects. */
export async function followEvents(client: ApiClient, from: number | null, json: boolean): Promise<void> {
  let after = from === null ? null : from - 1;
  for (let attempt = 0; attempt < FOLLOW_RECONNECTS_MAX; attempt++) {
    try {
      const result = await readStream(client, after, (e) => {
        console.log(json ? JSON.stringify(e) : `${new Date(e.at).toISOString()} #${e.seq} [${e.node}] ${e.type}: ${describe(e) ?? JSON.stringify(e.data)}`);
        return false;
      });
      after = result.last;
    } catch (error) {
      if (attempt === FOLLOW_RECONNECTS_MAX - 1) throw error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Waits for the fact that ends an operation the CLI requested (the journal tells; nothing is guessed). */
export async function waitForOutcome(
  client: ApiClient,
  job: string,
  seq: number,
  action: string,
  timeoutMs: number,
  onProgress?: (done: number, total: number) => void,
): Promise<{ ok: boolean; text: string; seq?: number }> {
  let outcome: { ok: boolean; text: string; seq?: number } | null = null;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    await readStream(
      client,
      seq,
      (e) => {
        const d = e.data as { job?: string; node?: string };
        if (d.job !== job) return false;
        const done = (ok: boolean) => ((outcome = { ok, text: describe(e) ?? e.type, seq: e.seq }), true);
        if (e.type === "JobStartFailed") return done(false);
        if (e.type === "AlertRaised" && /failed|not-connected/.test(e.data.code)) return done(false);
        if (action === "bring-in" || action === "switchover") return e.type === "JobBroughtIn" && done(true);
        if (action === "bring-out") return e.type === "JobBroughtOut" && done(true);
        if (action === "delete") return e.type === "JobDeleted" && done(true);
        if (action === "verify" || action === "source") {
          if (e.type === "VerificationProgress") onProgress?.(e.data.doneBytes, e.data.totalBytes);
          if (e.type === "DivergenceDetected" || e.type === "OpRefused") return done(false);
          return (e.type === "VerificationCompleted" || e.type === "ResyncCompleted") && done(true);
        }
        return false;
      },
      abort.signal,
    ).catch((error: Error) => {
      if (!abort.signal.aborted) throw error;
    });
  } finally {
    clearTimeout(timer);
  }
  return outcome ?? { ok: false, text: `no outcome within ${timeoutMs} ms; the request is journaled at seq ${seq} (duet events tail --from ${seq})` };
}
