import { hkdfSync } from "node:crypto";
import { connect, createServer, type TLSSocket } from "node:tls";
import { Packr } from "msgpackr";
import type { Clock, TimerHandle, Timers } from "../world/clock.ts";

/** The largest frame either side accepts; a bigger length prefix closes the connection unread. */
export const PEER_FRAME_MAX_BYTES = 16 * 1024 * 1024;
/** Requests awaiting an answer; more is a bug or a stuck peer, refused rather than queued. */
export const PEER_PENDING_REQUESTS_MAX = 1024;
export const RECONNECT_MIN_MS = 100;
export const RECONNECT_MAX_MS = 5000;
// TLS 1.2 with a pre-shared key derived from the cluster key: no certificates to manage, and a
// forward-secret key exchange (ECDHE/DHE) so a stolen cluster key does not open recorded traffic.
export const PEER_CIPHERS = "ECDHE-PSK-CHACHA20-POLY1305:DHE-PSK-AES256-GCM-SHA384:DHE-PSK-CHACHA20-POLY1305";

type Frame =
  | { t: "req"; id: number; body: unknown }
  | { t: "res"; id: number; ok: true; body: unknown }
  | { t: "res"; id: number; ok: false; error: string }
  | { t: "msg"; topic: string; body: unknown }
  | { t: "ping" };

export interface PeerChannelOptions {
  self: string;
  peer: string;
  cluster: string;
  key: Buffer;
  listen: { address: string; port: number };
  connect: { address: string; port: number };
  /** The lower-named node dials, the other accepts: one connection, no race between two. */
  dial: boolean;
  keepaliveMs: number;
  timers: Timers;
  clock: Clock;
  onRequest: (body: unknown) => Promise<unknown>;
  onMessage?: (topic: string, body: unknown) => void;
  onUp?: () => void;
  onDown?: (reason: string) => void;
  /** Any frame from the peer: the failure detector's tcp link. */
  onHeard?: (at: number) => void;
  log?: (line: string) => void;
  random?: () => number;
}

export function derivePsk(key: Buffer, cluster: string): Buffer {
  return Buffer.from(hkdfSync("sha256", key, Buffer.from(cluster), Buffer.from("duet peer channel"), 32));
}

/** The authenticated, encrypted TCP channel between the two agents: requests, answers and one-way messages. */
export function startPeerChannel(options: PeerChannelOptions) {
  const { timers, clock } = options;
  const log = options.log ?? (() => undefined);
  const random = options.random ?? Math.random;
  const psk = derivePsk(options.key, options.cluster);
  const packr = new Packr({ useRecords: false, moreTypes: false });
  let socket: TLSSocket | null = null;
  let closed = false;
  let nextId = 1;
  let backoffMs = RECONNECT_MIN_MS;
  let reconnectTimer: TimerHandle | null = null;
  let lastHeard = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: TimerHandle }>();
  const stats = { handshakeFailures: 0, connections: 0, oversized: 0 };

  const tlsOptions = { ciphers: PEER_CIPHERS, minVersion: "TLSv1.2" as const, maxVersion: "TLSv1.2" as const };

  function write(frame: Frame): Promise<void> {
    const s = socket;
    if (!s) return Promise.reject(new Error(`peer ${options.peer} is not connected`));
    const body = packr.pack(frame);
    if (body.length > PEER_FRAME_MAX_BYTES) return Promise.reject(new Error(`peer frame of ${body.length} bytes exceeds ${PEER_FRAME_MAX_BYTES}`));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length);
    return new Promise((resolve, reject) => {
      const flushed = s.write(Buffer.concat([header, body]), (error) => (error ? reject(error) : undefined));
      if (flushed) resolve();
      else s.once("drain", resolve);
    });
  }

  function attach(s: TLSSocket): void {
    if (socket && socket !== s) socket.destroy(); // the newest connection wins: the old one is stale
    socket = s;
    stats.connections += 1;
    backoffMs = RECONNECT_MIN_MS;
    lastHeard = clock.monotonic();
    let buffered: Buffer = Buffer.alloc(0);
    s.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4) {
        const length = buffered.readUInt32BE(0);
        if (length > PEER_FRAME_MAX_BYTES) {
          stats.oversized += 1;
          s.destroy(new Error(`frame of ${length} bytes announced, more than ${PEER_FRAME_MAX_BYTES}`));
          return;
        }
        if (buffered.length < 4 + length) break;
        const body = buffered.subarray(4, 4 + length);
        buffered = buffered.subarray(4 + length);
        let frame: Frame;
        try {
          frame = packr.unpack(body) as Frame;
        } catch (error) {
          s.destroy(new Error(`undecodable frame: ${(error as Error).message}`));
          return;
        }
        lastHeard = clock.monotonic();
        options.onHeard?.(clock.now());
        handle(frame);
      }
    });
    s.on("close", () => {
      if (socket !== s) return;
      socket = null;
      for (const [id, p] of pending) {
        p.timer.cancel();
        p.reject(new Error(`connection to ${options.peer} lost before it answered`));
        pending.delete(id);
      }
      options.onDown?.("connection closed");
      scheduleReconnect();
    });
    s.on("error", (error) => log(`peer channel ${options.peer}: ${error.message}`));
    options.onUp?.();
  }

  function handle(frame: Frame): void {
    if (!frame || typeof frame !== "object") return;
    if (frame.t === "ping") return;
    if (frame.t === "msg") return options.onMessage?.(frame.topic, frame.body);
    if (frame.t === "res") {
      const p = pending.get(frame.id);
      if (!p) return;
      pending.delete(frame.id);
      p.timer.cancel();
      if (frame.ok) p.resolve(frame.body);
      else p.reject(new Error(`peer ${options.peer}: ${frame.error}`));
      return;
    }
    if (frame.t === "req") {
      const id = frame.id;
      options
        .onRequest(frame.body)
        .then(
          (body) => write({ t: "res", id, ok: true, body }),
          (error: Error) => write({ t: "res", id, ok: false, error: error.message }),
        )
        .catch((error: Error) => log(`answering ${options.peer}: ${error.message}`));
    }
  }

  const server = options.dial
    ? null
    : createServer({
        ...tlsOptions,
        pskCallback: (_socket, identity) => (identity === options.peer ? psk : null),
        pskIdentityHint: options.cluster,
      });
  if (server) {
    server.on("secureConnection", (s) => {
      if (closed) return s.destroy();
      log(`peer ${options.peer} connected from ${s.remoteAddress}`);
      attach(s);
    });
    server.on("tlsClientError", (error, s) => {
      stats.handshakeFailures += 1;
      log(`peer channel: refused a connection from ${s.remoteAddress}: ${error.message}`);
    });
    server.on("error", (error) => log(`peer channel listen ${options.listen.address}:${options.listen.port}: ${error.message}`));
    server.listen(options.listen.port, options.listen.address);
  }

  function dial(): void {
    if (closed || socket) return;
    const s = connect({
      ...tlsOptions,
      host: options.connect.address,
      port: options.connect.port,
      pskCallback: () => ({ psk, identity: options.self }),
      checkServerIdentity: () => undefined,
    });
    s.once("secureConnect", () => {
      if (closed) return s.destroy();
      attach(s);
    });
    s.once("error", (error) => {
      if (socket === s) return;
      if (!/ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ECONNRESET/.test(error.message)) {
        stats.handshakeFailures += 1;
        log(`peer channel: connecting to ${options.connect.address}:${options.connect.port}: ${error.message}`);
      }
      s.destroy();
      scheduleReconnect();
    });
  }

  function scheduleReconnect(): void {
    if (closed || !options.dial || reconnectTimer) return;
    const delay = backoffMs / 2 + random() * (backoffMs / 2);
    backoffMs = Math.min(RECONNECT_MAX_MS, backoffMs * 2);
    reconnectTimer = timers.after(delay, () => {
      reconnectTimer = null;
      dial();
    });
  }

  const keepalive = timers.every(options.keepaliveMs, () => {
    if (!socket) return;
    if (clock.monotonic() - lastHeard > 3 * options.keepaliveMs) {
      socket.destroy(new Error("peer silent"));
      return;
    }
    write({ t: "ping" }).catch(() => undefined);
  });
  if (options.dial) dial();

  return {
    connected: () => socket !== null,
    stats: () => ({ ...stats }),
    request(body: unknown, timeoutMs: number): Promise<unknown> {
      if (!socket) return Promise.reject(new Error(`peer ${options.peer} is not connected`));
      if (pending.size >= PEER_PENDING_REQUESTS_MAX) return Promise.reject(new Error(`${PEER_PENDING_REQUESTS_MAX} requests to ${options.peer} already pending`));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = timers.after(timeoutMs, () => {
          pending.delete(id);
          reject(new Error(`peer ${options.peer} did not answer within ${timeoutMs} ms`));
        });
        pending.set(id, { resolve, reject, timer });
        write({ t: "req", id, body }).catch((error: Error) => {
          pending.delete(id);
          timer.cancel();
          reject(error);
        });
      });
    },
    send(topic: string, body: unknown): Promise<void> {
      return write({ t: "msg", topic, body });
    },
    async close(): Promise<void> {
      closed = true;
      keepalive.cancel();
      reconnectTimer?.cancel();
      socket?.destroy();
      socket = null;
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
export type PeerChannel = ReturnType<typeof startPeerChannel>;
