import { randomBytes } from "node:crypto";
import { execFile, spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { promisify } from "node:util";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { Packr } from "msgpackr";
import { afterEach, describe, expect, it } from "vitest";
import { ATTACH_MIN_BYTES, derivePsk, JoinedBytes, startPeerChannel, type PeerChannel, type PeerChannelOptions } from "../../src/cluster/peer-channel.ts";
import { compareHlc } from "../../src/events/catalogue.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { createHlc } from "../../src/world/hlc.ts";
import { startPacedProxy } from "./paced-proxy.ts";

const execFileAsync = promisify(execFile);

// Node "a" dials from 127.0.0.1, node "b" accepts on 127.0.0.2; each test takes its own port.
const key = randomBytes(32);
let nextPort = 30000 + ((process.pid * 11) % 15000);
const open: PeerChannel[] = [];
const raw: TLSSocket[] = [];
afterEach(async () => {
  for (const s of raw.splice(0)) s.destroy();
  for (const c of open.splice(0)) await c.close();
});

type Side = Partial<PeerChannelOptions>;
function channel(self: string, peer: string, address: string, peerAddress: string, port: number, dial: boolean, extra: Side) {
  const c = startPeerChannel({
    self, peer, cluster: "c", key,
    listen: { address, port }, connect: { address: peerAddress, port }, dial,
    keepaliveMs: 100, timers: systemTimers, clock: systemClock,
    onRequest: async (body) => ({ echo: body, from: self }),
    ...extra,
  });
  open.push(c);
  return c;
}

function pair(options: { a?: Side; b?: Side; dialer?: boolean } = {}) {
  const port = nextPort++;
  const messages: unknown[] = [];
  const logs: string[] = [];
  const common = { onMessage: (_topic: string, body: unknown) => messages.push(body), log: (line: string) => logs.push(line) };
  const b = channel("b", "a", "127.0.0.2", "127.0.0.1", port, false, { ...common, ...options.b });
  const a = options.dialer === false ? null : channel("a", "b", "127.0.0.1", "127.0.0.2", port, true, { ...common, ...options.a });
  return { a: a!, b, port, messages, logs };
}

/** A hand-driven TLS-PSK client that claims to be node "a": sends what a real agent never would. */
async function rawClient(port: number, identity = "a"): Promise<TLSSocket> {
  const psk = derivePsk(key, "c");
  const s = tlsConnect({ host: "127.0.0.2", port, pskCallback: () => ({ psk, identity }), ciphers: "ECDHE-PSK-CHACHA20-POLY1305", minVersion: "TLSv1.2", maxVersion: "TLSv1.2", checkServerIdentity: () => undefined });
  raw.push(s);
  s.on("error", () => undefined);
  await new Promise<void>((resolve) => s.once("secureConnect", () => resolve()));
  return s;
}

/** A frame as the channel writes it: total length, msgpack length, msgpack, attached bytes. */
function framed(value: unknown, attached: Buffer = Buffer.alloc(0)): Buffer {
  const packed = new Packr({ useRecords: false }).pack(value);
  const header = Buffer.alloc(8);
  header.writeUInt32BE(4 + packed.length + attached.length, 0);
  header.writeUInt32BE(packed.length, 4);
  return Buffer.concat([header, packed, attached]);
}

const until = async (what: () => boolean | Promise<boolean>, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** Connections from here to HOST:PORT still waiting for the SYN's answer. */
async function synSent(host: string, port: number): Promise<number> {
  const { stdout } = await execFileAsync("ss", ["-Htn", "state", "syn-sent", "dst", `${host}:${port}`]);
  return stdout.split("\n").filter((line) => line.trim() !== "").length;
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(port, host, () => (probe.destroy(), resolve(true)));
    probe.on("error", () => resolve(false));
  });
}

/**
 * A listener whose process never accepts: once its queue is full the kernel drops every new SYN
 * to it, as a cut would (the connect hangs until the kernel's retries give up).
 */
async function unacceptingListener(host: string, port: number) {
  const script = `require("net").createServer().listen({host:"${host}",port:${port},backlog:1},()=>{console.log("up");
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,60000)})`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise((resolve) => child.stdout!.once("data", resolve));
  const fillers: Socket[] = [];
  // Fill the queue: connections complete until it is full, and the next one hangs.
  while ((await synSent(host, port)) === 0) {
    if (fillers.length >= 8) throw new Error(`the listener on ${host}:${port} kept accepting`);
    const filler = connect(port, host);
    filler.on("error", () => undefined);
    fillers.push(filler);
    await until(async () => !filler.connecting || (await synSent(host, port)) > 0);
  }
  return {
    fillersHanging: await synSent(host, port),
    kill(signal: NodeJS.Signals) {
      for (const filler of fillers) filler.destroy();
      child.kill(signal);
    },
  };
}

describe("peer channel (TLS 1.2 with the cluster key as pre-shared key)", () => {
  it("answers requests both ways and delivers messages in order", async () => {
    const { a, b, messages } = pair();
    await until(() => a.connected() && b.connected());
    expect(await a.request({ n: 1 }, 2000)).toEqual({ echo: { n: 1 }, from: "b" });
    expect(await b.request("hi", 2000)).toEqual({ echo: "hi", from: "a" });
    await Promise.all([...Array(100).keys()].map((i) => a.send("fact", i)));
    await until(() => messages.length === 100);
    expect(messages).toEqual([...Array(100).keys()]);
  });

  it("requests, answers and messages carry the hybrid clock: a node whose clock is behind stamps after what it heard; a stamp a minute ahead is not merged", async () => {
    const skewed = (ms: number) => ({ now: () => Date.now() + ms, monotonic: () => systemClock.monotonic() });
    const aClock = createHlc(skewed(5000));
    const bClock = createHlc(systemClock);
    const { a, b } = pair({ a: { hlc: aClock, clock: skewed(5000) }, b: { hlc: bClock } });
    await until(() => a.connected() && b.connected());
    const sent = aClock.tick(); // a journals a record 5 s "ahead" of b's clock, then asks b
    await a.request("after", 2000);
    // b's next record is stamped after a's, although b's own clock reads 5 s earlier
    expect(compareHlc(bClock.tick(), sent)).toBeGreaterThan(0);

    const far = createHlc(skewed(120_000));
    const logs: string[] = [];
    const cClock = createHlc(systemClock);
    const { a: c, b: d } = pair({ a: { hlc: far, clock: skewed(120_000) }, b: { hlc: cClock, log: (line) => logs.push(line) } });
    await until(() => c.connected() && d.connected());
    const ahead = far.tick();
    await c.request("from the future", 2000);
    expect(compareHlc(cClock.tick(), ahead)).toBeLessThan(0);
    expect(d.stats().clockAhead).toBeGreaterThan(0);
    expect(logs.join("\n")).toMatch(/a's clock is \d+ ms ahead of this node's; its stamps are not merged/);
  });

  it("a dialer waiting out its backoff connects at once when told the peer is heard again", async () => {
    const port = nextPort++;
    // The dialer's timers never fire: its retry after the refused first dial would wait for ever.
    let scheduled = 0;
    const frozen = { after: () => (scheduled++, { cancel: () => undefined }), every: () => ({ cancel: () => undefined }) };
    const a = channel("a", "b", "127.0.0.1", "127.0.0.2", port, true, { timers: frozen });
    await until(() => scheduled >= 2); // the handshake timer, then the retry after ECONNREFUSED
    const b = channel("b", "a", "127.0.0.2", "127.0.0.1", port, false, {});
    await until(() => tcpAccepts("127.0.0.2", port)); // b listens
    expect(a.connected()).toBe(false);
    a.redial();
    await until(() => a.connected() && b.connected());
  });

  it("a connection that had lived drops: the dialer dials again at once; one that dropped young waits out the backoff", async () => {
    // Only zero-delay timers fire (a backoff never ends), and the dialer's clock is moved by hand.
    const onlyNow = { after: (ms: number, fn: () => void) => (ms === 0 && setImmediate(fn), { cancel: () => undefined }), every: () => ({ cancel: () => undefined }) };
    let offset = 0;
    const clock = { now: () => Date.now() + offset, monotonic: () => performance.now() + offset };
    const [first, second] = [nextPort++, nextPort++];
    const b1 = channel("b", "a", "127.0.0.2", "127.0.0.1", first, false, {});
    const a = startPeerChannel({
      self: "a", peer: "b", cluster: "c", key, dial: true, keepaliveMs: 100, timers: onlyNow, clock,
      listen: { address: "127.0.0.1", port: nextPort++ },
      connect: [{ address: "127.0.0.2", port: first }, { address: "127.0.0.3", port: second }],
      onRequest: async () => null,
    });
    open.push(a);
    await until(() => a.connected() && b1.connected());
    // Young: dropped at once after it was made, the redial waits for a backoff that never ends.
    const b2 = channel("b", "a", "127.0.0.3", "127.0.0.1", second, false, {});
    await b1.close();
    await until(() => !a.connected());
    await new Promise((r) => setImmediate(r));
    expect(a.connected(), "a young connection's drop is not redialled at once").toBe(false);
    a.redial();
    await until(() => a.connected() && b2.connected());
    // Lived through three keepalives: redialled at once (before: after 50-100 ms of backoff, the
    // whole of a woken node's reconnect to the peer that had dropped it).
    offset += 1000;
    const b3 = channel("b", "a", "127.0.0.2", "127.0.0.1", first, false, {});
    await b2.close();
    await until(() => a.connected() && b3.connected());
  });

  it("a dial whose connect hangs (its SYN dropped, as by a cut) is begun again when told the peer is heard", async () => {
    const [blocked, open2] = [nextPort++, nextPort++];
    const blocker = await unacceptingListener("127.0.0.2", blocked);
    try {
      // Timers never fire: only a new dial can connect. One address hangs, one is refused.
      const frozen = { after: () => ({ cancel: () => undefined }), every: () => ({ cancel: () => undefined }) };
      const a = startPeerChannel({
        self: "a", peer: "b", cluster: "c", key, dial: true, keepaliveMs: 100, timers: frozen, clock: systemClock,
        listen: { address: "127.0.0.1", port: open2 },
        connect: [{ address: "127.0.0.2", port: blocked }, { address: "127.0.0.3", port: open2 }],
        onRequest: async () => null,
      });
      open.push(a);
      // The first connect waits for an answer that never comes; the second was refused.
      await until(async () => (await synSent("127.0.0.2", blocked)) > blocker.fillersHanging && (await synSent("127.0.0.3", open2)) === 0);
      const b = channel("b", "a", "127.0.0.3", "127.0.0.1", open2, false, {});
      await until(() => tcpAccepts("127.0.0.3", open2));
      expect(a.connected()).toBe(false);
      a.redial();
      await until(() => a.connected() && b.connected());
    } finally {
      blocker.kill("SIGKILL");
    }
  });

  it("large byte fields travel after the message, both ways, and arrive whole", async () => {
    const { a } = pair({ b: { onRequest: async (body) => ({ got: (body as { batch: Uint8Array }).batch.length, page: randomBytes(70_000), note: "x" }) } });
    await until(() => a.connected());
    const batch = randomBytes(ATTACH_MIN_BYTES * 3);
    const answer = (await a.request({ kind: "mirror-batch", batch, small: Buffer.from("kept inline") }, 2000)) as { got: number; page: Uint8Array; note: string };
    expect(answer.got).toBe(batch.length);
    expect(answer.page.length).toBe(70_000);
    expect(answer.note).toBe("x");
  });

  it("large requests one after another each arrive whole, though they are read into the same buffer", async () => {
    const { createHash } = await import("node:crypto");
    const sum = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
    const { a } = pair({ b: { onRequest: async (body) => ({ sum: sum((body as { batch: Uint8Array }).batch) }) } });
    await until(() => a.connected());
    for (const size of [2 << 20, 3 << 20, 1 << 20]) {
      const batch = randomBytes(size);
      const answer = (await a.request({ kind: "mirror-batch", batch: new JoinedBytes([Buffer.from("head"), batch]) }, 5000)) as { sum: string };
      expect(answer.sum).toBe(sum(Buffer.concat([Buffer.from("head"), batch])));
    }
  });

  it("a byte field given in parts (a batch's header and data) arrives as the one buffer they make", async () => {
    const { a } = pair({ b: { onRequest: async (body) => ({ echo: Buffer.from((body as { batch: Uint8Array }).batch).toString("hex") }) } });
    await until(() => a.connected());
    const parts = [Buffer.from("head"), Buffer.alloc(0), randomBytes(100)];
    const answer = (await a.request({ kind: "mirror-batch", batch: new JoinedBytes(parts) }, 2000)) as { echo: string };
    expect(answer.echo).toBe(Buffer.concat(parts).toString("hex"));
  });

  it("attached bytes that belong to no field, or to a body that is not an object, close the connection", async () => {
    for (const [frame, attached] of [
      [{ t: "msg", topic: "fact", body: 1 }, Buffer.from("stray")],
      [{ t: "msg", topic: "fact", body: 1, a: "batch" }, Buffer.from("to a number")],
      [{ t: "msg", topic: "fact", body: {}, a: "__proto__" }, Buffer.from("a key that is not a plain name")],
    ] as const) {
      const downs: string[] = [];
      const { b, port, messages } = pair({ dialer: false, b: { onDown: (reason) => downs.push(reason) } });
      const s = await rawClient(port);
      await until(() => b.connected());
      s.write(framed(frame, attached));
      await until(() => !b.connected());
      expect(messages).toEqual([]);
      expect(downs[0]).toMatch(/malformed frame from a/);
    }
  });

  it("a handler that throws, even synchronously, answers with its error instead of hanging", async () => {
    const { a } = pair({ b: { onRequest: (body) => {
      if (body === "sync") throw new Error("job web: not configured (sync)");
      return Promise.reject(new Error("job web: not configured"));
    } } });
    await until(() => a.connected());
    await expect(a.request("async", 2000)).rejects.toThrow("peer b: job web: not configured");
    await expect(a.request("sync", 2000)).rejects.toThrow("peer b: job web: not configured (sync)");
  });

  it("a node with the wrong key never connects; the refusal is counted and logged with the remote address", async () => {
    const { a, b, logs, messages } = pair({ b: { key: randomBytes(32) } });
    await until(() => b.stats().handshakeFailures >= 1 && a.stats().handshakeFailures >= 1);
    expect(a.connected() || b.connected()).toBe(false);
    await expect(a.send("fact", 1)).rejects.toThrow("peer b is not connected");
    expect(messages).toEqual([]);
    expect(logs.join("\n")).toMatch(/refused a connection from 127\.0\.0\.1:\d+/);
  });

  it("an identity other than the configured peer is refused", async () => {
    const { a, b } = pair({ a: { self: "mallory" } });
    await until(() => b.stats().handshakeFailures >= 1);
    expect(a.connected() || b.connected()).toBe(false);
  });

  it("a plain TCP client that speaks no TLS is dropped and counted", async () => {
    const { b, port } = pair({ dialer: false });
    const s = connect(port, "127.0.0.2");
    try {
      s.on("error", () => undefined);
      s.write("GET / HTTP/1.0\r\n\r\n");
      await until(() => b.stats().handshakeFailures >= 1);
    } finally {
      s.destroy();
    }
  });

  it("an oversized length prefix closes the connection without reading or allocating it", async () => {
    const downs: string[] = [];
    const { b, port } = pair({ dialer: false, b: { onDown: (reason) => downs.push(reason) } });
    const s = await rawClient(port);
    await until(() => b.connected());
    const before = process.memoryUsage().arrayBuffers;
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xfffffff0);
    s.write(header);
    await until(() => !b.connected());
    expect(b.stats().oversized).toBe(1);
    expect(downs[0]).toMatch(/frame of 4294967280 bytes, more than 16777216/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it("a frame that is not a known message closes the connection with the reason", async () => {
    const downs: string[] = [];
    const { b, port, messages } = pair({ dialer: false, b: { onDown: (reason) => downs.push(reason) } });
    const s = await rawClient(port);
    await until(() => b.connected());
    s.write(framed({ t: "msg", topic: "fact", body: 1 }));
    s.write(framed({ t: "launch", body: "missiles" }));
    await until(() => !b.connected());
    expect(messages).toEqual([1]);
    expect(b.stats().malformed).toBe(1);
    expect(downs[0]).toMatch(/malformed frame from a/);
  });

  it("a peer that goes silent is dropped after three keepalive intervals", async () => {
    const downs: string[] = [];
    const { b, port } = pair({ dialer: false, b: { onDown: (reason) => downs.push(reason) } });
    await rawClient(port); // completes the handshake, then never sends a frame
    await until(() => b.connected());
    const since = Date.now();
    await until(() => !b.connected(), 2000);
    expect(Date.now() - since).toBeGreaterThanOrEqual(250);
    expect(downs[0]).toMatch(/nothing heard from a for \d+ ms/);
  });

  it("a newer connection from the peer replaces the old one, failing what the old one carried", async () => {
    const { b, port } = pair({ dialer: false });
    await rawClient(port);
    await until(() => b.connected());
    const unanswered = b.request("are you there", 5000).catch((e: Error) => e.message);
    const second = await rawClient(port);
    expect(await unanswered).toMatch(/lost before it answered: replaced by a newer connection/);
    expect(b.connected()).toBe(true);
    const received: Buffer[] = [];
    second.on("data", (d: Buffer) => received.push(d));
    await b.send("fact", "on the new one");
    await until(() => Buffer.concat(received).includes(Buffer.from("on the new one")));
  });

  it("reconnects after the accepting side restarts, failing requests that were in flight", async () => {
    let received = false;
    const { a, b, port } = pair({ b: { onRequest: () => ((received = true), new Promise(() => undefined)) } });
    await until(() => a.connected());
    const inflight = a.request({}, 5000).catch((e: Error) => e.message);
    await until(() => received);
    await b.close();
    expect(await inflight).toMatch(/lost before it answered/);
    expect(a.connected()).toBe(false);
    channel("b", "a", "127.0.0.2", "127.0.0.1", port, false, { onRequest: async () => "back" });
    await until(() => a.connected(), 8000);
    expect(await a.request({}, 2000)).toBe("back");
  });

  it("a request the peer does not answer in time is rejected with the timeout", async () => {
    const { a } = pair({ b: { onRequest: () => new Promise(() => undefined) } });
    await until(() => a.connected());
    await expect(a.request({}, 200)).rejects.toThrow("peer b did not answer within 200 ms");
  });

  it("a request while not connected fails at once, saying so", async () => {
    const { b } = pair({ dialer: false });
    await expect(b.request({}, 2000)).rejects.toThrow("peer a is not connected");
  });

  it("carries 1000 messages of 64 KiB with backpressure, in order", async () => {
    const { a, messages } = pair();
    await until(() => a.connected());
    const chunk = randomBytes(64 * 1024);
    for (let i = 0; i < 1000; i++) await a.send("data", { i, chunk });
    await until(() => messages.length === 1000, 20_000);
    expect((messages as { i: number; chunk: Uint8Array }[]).map((m) => m.i)).toEqual([...Array(1000).keys()]);
    expect(Buffer.from((messages[999] as { chunk: Uint8Array }).chunk).equals(chunk)).toBe(true);
  });

  it("a message just under the 16 MiB frame limit arrives whole; one over it is refused before sending", async () => {
    const { a, messages } = pair();
    await until(() => a.connected());
    const big = randomBytes(16 * 1024 * 1024 - 1024);
    await a.send("snapshot", big);
    await until(() => messages.length === 1, 10_000);
    expect(Buffer.from(messages[0] as Uint8Array).equals(big)).toBe(true);
    await expect(a.send("snapshot", randomBytes(16 * 1024 * 1024))).rejects.toThrow(/exceeds the limit of 16777216 bytes/);
    expect(a.connected()).toBe(true);
  });

  it("a large frame on a slow link is not taken for silence: bytes arriving are hearing the peer", async () => {
    // 8 MiB at 4 MiB/s take 2 s; the pings behind the frame wait as long, far past 3 keepalives (300 ms).
    const port = nextPort++;
    const proxy = await startPacedProxy({ listen: { address: "127.0.0.3", port }, target: { address: "127.0.0.2", port }, bytesPerSecond: 4 * 1024 * 1024 });
    try {
      const messages: unknown[] = [];
      const logs: string[] = [];
      const log = (line: string) => logs.push(line);
      const b = channel("b", "a", "127.0.0.2", "127.0.0.1", port, false, { onMessage: (_t, body) => messages.push(body), log });
      const a = channel("a", "b", "127.0.0.1", "127.0.0.3", port, true, { log });
      await until(() => a.connected() && b.connected());
      const big = randomBytes(8 * 1024 * 1024);
      const sentAt = Date.now();
      await a.send("snapshot", big);
      await until(() => messages.length === 1, 20_000);
      expect(Date.now() - sentAt).toBeGreaterThan(1500); // the link really was slow
      expect(Buffer.from(messages[0] as Uint8Array).equals(big)).toBe(true);
      expect(logs.filter((l) => /nothing heard/.test(l))).toEqual([]);
      expect([a.stats().connections, b.stats().connections]).toEqual([1, 1]);
    } finally {
      await proxy.close();
    }
  });

  it("a stall of this process is not the peer's silence: the connection stays through a blocked loop", async () => {
    const { a, b, logs } = pair();
    await until(() => a.connected() && b.connected());
    const end = Date.now() + 1000; // ten keepalives
    while (Date.now() < end);
    await new Promise((r) => setTimeout(r, 300));
    expect(logs.filter((l) => /nothing heard/.test(l))).toEqual([]);
    expect([a.stats().connections, b.stats().connections, a.connected()]).toEqual([1, 1, true]);
  });

  it("a send waiting on a peer that stopped reading fails when the connection drops, instead of hanging", async () => {
    const { b, port } = pair({ dialer: false });
    const s = await rawClient(port);
    s.pause(); // the kernel buffers fill, then the channel's socket reports backpressure
    await until(() => b.connected());
    const chunk = randomBytes(64 * 1024);
    let waiting: Promise<string> | null = null;
    for (let i = 0; i < 500 && !waiting; i++) {
      const send = b.send("data", { i, chunk }).then(() => "sent", (e: Error) => e.message);
      const still = new Promise<null>((r) => setTimeout(() => r(null), 200));
      if ((await Promise.race([send, still])) === null) waiting = send;
    }
    expect(waiting).not.toBeNull();
    s.destroy();
    expect(await waiting).toMatch(/connection to a lost before the frame was sent/);
  });
});
