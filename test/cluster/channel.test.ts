import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { derivePsk, startPeerChannel, type PeerChannel } from "../../src/cluster/peer-channel.ts";
import { connect as tlsConnect } from "node:tls";
import { systemClock, systemTimers } from "../../src/world/clock.ts";

const key = randomBytes(32);
let portBase = 30000 + ((process.pid * 11) % 15000);
const open: PeerChannel[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

function pair(options: { keyB?: Buffer; nameA?: string; onRequestB?: (body: unknown) => Promise<unknown> } = {}) {
  const port = portBase++;
  const heard: string[] = [];
  const messages: unknown[] = [];
  const logs: string[] = [];
  const make = (self: string, peer: string, address: string, peerAddress: string, dial: boolean, k: Buffer, onRequest: (b: unknown) => Promise<unknown>) => {
    const channel = startPeerChannel({
      self, peer, cluster: "c", key: k,
      listen: { address, port }, connect: { address: peerAddress, port }, dial,
      keepaliveMs: 100, timers: systemTimers, clock: systemClock,
      onRequest, onMessage: (_t, body) => messages.push(body), onHeard: () => heard.push(self),
      log: (line) => logs.push(line),
    });
    open.push(channel);
    return channel;
  };
  const a = make(options.nameA ?? "a", "b", "127.0.0.1", "127.0.0.2", true, key, async (body) => ({ echoFromA: body }));
  const b = make("b", "a", "127.0.0.2", "127.0.0.1", false, options.keyB ?? key, options.onRequestB ?? (async (body) => ({ echoFromB: body })));
  return { a, b, port, messages, logs, heard };
}

const until = async (what: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("peer channel (TLS with the cluster key as pre-shared key)", () => {
  it("answers requests both ways and delivers messages in order", async () => {
    const { a, b, messages } = pair();
    await until(() => a.connected() && b.connected());
    expect(await a.request({ n: 1 }, 2000)).toEqual({ echoFromB: { n: 1 } });
    expect(await b.request("hi", 2000)).toEqual({ echoFromA: "hi" });
    for (let i = 0; i < 100; i++) void a.send("fact", i);
    await until(() => messages.length === 100);
    expect(messages).toEqual([...Array(100).keys()]);
  });

  it("an error in the handler answers with the error, not a hang", async () => {
    const { a } = pair({ onRequestB: async () => { throw new Error("job web: not configured"); } });
    await until(() => a.connected());
    await expect(a.request({}, 2000)).rejects.toThrow(/job web: not configured/);
  });

  it("a node with the wrong key never connects, and the refusal is counted", async () => {
    const { a, b, logs } = pair({ keyB: randomBytes(32) });
    await until(() => b.stats().handshakeFailures + a.stats().handshakeFailures >= 2);
    expect(a.connected() || b.connected()).toBe(false);
    expect(logs.join("\n")).toMatch(/refused a connection|connecting to/);
  });

  it("an unknown identity is refused", async () => {
    const { a, b } = pair({ nameA: "mallory" });
    await until(() => b.stats().handshakeFailures >= 1);
    expect(a.connected()).toBe(false);
  });

  it("an oversized length prefix closes the connection without reading it", async () => {
    const { b, port } = pair({ nameA: "a" });
    open[0]!.close();
    const psk = derivePsk(key, "c");
    const s = tlsConnect({ host: "127.0.0.2", port, pskCallback: () => ({ psk, identity: "a" }), ciphers: "ECDHE-PSK-CHACHA20-POLY1305", minVersion: "TLSv1.2", maxVersion: "TLSv1.2", checkServerIdentity: () => undefined });
    await new Promise<void>((r) => s.once("secureConnect", () => r()));
    await until(() => b.connected());
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xfffffff0);
    s.write(header);
    await until(() => b.stats().oversized === 1 && !b.connected());
    s.destroy();
  });

  it("reconnects after the accepting side restarts, failing requests that were in flight", async () => {
    let release: () => void = () => undefined;
    const { a, b, port } = pair({ onRequestB: () => new Promise((r) => { release = () => r("late"); }) });
    await until(() => a.connected());
    const inflight = a.request({}, 5000);
    await b.close();
    await expect(inflight).rejects.toThrow(/lost before it answered/);
    release();
    const again = startPeerChannel({ self: "b", peer: "a", cluster: "c", key, listen: { address: "127.0.0.2", port }, connect: { address: "127.0.0.1", port }, dial: false, keepaliveMs: 100, timers: systemTimers, clock: systemClock, onRequest: async () => "back" });
    open.push(again);
    await until(() => a.connected(), 8000);
    expect(await a.request({}, 2000)).toBe("back");
  });

  it("a request the peer does not answer in time is rejected with the timeout", async () => {
    const { a } = pair({ onRequestB: () => new Promise(() => undefined) });
    await until(() => a.connected());
    await expect(a.request({}, 200)).rejects.toThrow(/did not answer within 200 ms/);
  });

  it("carries 64 MiB in 64 KiB messages with backpressure, in order", async () => {
    const { a, messages } = pair();
    await until(() => a.connected());
    const chunk = randomBytes(64 * 1024);
    for (let i = 0; i < 1000; i++) await a.send("data", { i, chunk });
    await until(() => messages.length === 1000, 20_000);
    expect((messages as { i: number }[]).map((m) => m.i)).toEqual([...Array(1000).keys()]);
  });

  it("a plain TCP client that speaks no TLS is dropped", async () => {
    const { b, port } = pair();
    const s = connect(port, "127.0.0.2");
    s.on("error", () => undefined);
    s.write("GET / HTTP/1.0\r\n\r\n");
    await until(() => b.stats().handshakeFailures >= 1);
    s.destroy();
  });
});
