// Runs in its own process for bench:api: N SSE subscribers from Last-Event-ID, each checking it gets
// every seq once and in order, and the delay from append (the event's message is its append time).
// Prints one JSON line with the results when it receives SIGTERM... or after `expected` events each.
const [url, token, count, from, expected] = process.argv.slice(2);
const subscribers = Number(count);
const lags = [];
const seen = Array.from({ length: subscribers }, () => []);
const aborts = [];
await Promise.all(
  seen.map(async (list) => {
    const abort = new AbortController();
    aborts.push(abort);
    const response = await fetch(`${url}/v1/events/stream`, { headers: { authorization: `Bearer ${token}`, "last-event-id": from }, signal: abort.signal });
    const reader = response.body.getReader();
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
            const event = JSON.parse(data);
            list.push(event.seq);
            lags.push(Date.now() - Number(event.data.message));
          }
        }
      } catch {
        // aborted
      }
    })();
  }),
);
console.log("ready");
process.stdin.on("data", () => {
  const total = Number(expected || 0);
  const complete = seen.filter((s) => s.length === total && s.every((seq, k) => seq === Number(from) + 1 + k)).length;
  const sorted = Float64Array.from(lags).sort();
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  console.log(JSON.stringify({ p50: pct(50), p99: pct(99), max: sorted[sorted.length - 1], deliveries: lags.length, complete, received: seen.map((s) => s.length) }));
  for (const a of aborts) a.abort();
  process.exit(0);
});
