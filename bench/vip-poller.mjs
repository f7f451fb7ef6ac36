// Runs inside the client namespace: polls the VIP over HTTP and prints one line per attempt,
// "<epoch ms> ok <body>" or "<epoch ms> fail", so the bench can find when service came back.
import { request } from "node:http";

const [url, intervalMs = "50", timeoutMs = "250"] = process.argv.slice(2);
function poll() {
  const started = Date.now();
  const req = request(url, { timeout: Number(timeoutMs), agent: false }, (res) => {
    let body = "";
    res.on("data", (d) => (body += d));
    res.on("end", () => console.log(`${Date.now()} ok ${body.trim()}`));
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", () => console.log(`${Date.now()} fail`));
  req.end();
  setTimeout(poll, Math.max(0, Number(intervalMs) - (Date.now() - started)));
}
poll();
