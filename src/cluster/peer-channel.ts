import { Packr } from "msgpackr";
import { z } from "zod";
import type { Hlc } from "../events/catalogue.ts";
import { lateTickGuard, type Clock, type TimerHandle, type Timers } from "../world/clock.ts";
import { firstIssue } from "../events/issue.ts";
import { tlsPskStreams, type PeerStream, type PeerStreams } from "../world/streams.ts";

export { derivePsk, PEER_CIPHERS, PEER_HANDSHAKE_TIMEOUT_MS } from "../world/streams.ts";

/** The largest frame either side accepts; a bigger length prefix closes the connection unread. */
export const PEER_FRAME_MAX_BYTES = 16 * 1024 * 1024;
/** Requests awaiting an answer, each way; more is a bug or a stuck peer, refused rather than queued. */
export const PEER_PENDING_REQUESTS_MAX = 1024;
/** Bytes written but not yet taken by the kernel; beyond this the peer is not reading and sends are refused. */
export const PEER_WRITE_BUFFER_MAX_BYTES = 64 * 1024 * 1024;
export const RECONNECT_MIN_MS = 100;
export const RECONNECT_MAX_MS = 5000;
export const NUDGE_MS = 1000;

// A peer that authenticated can still run another version or be buggy: a frame that is not one of
// these closes the connection with the reason, rather than reaching a handler half-formed.
/** The body key whose bytes travel after the frame's msgpack (see ATTACH_MIN_BYTES): a plain name, never "__proto__". */
const ATTACHED_KEY = /^[a-zA-Z]{1,32}$/;
const attachedKey = z.string().regex(ATTACHED_KEY).optional();
// Dispatched on `t` (then `ok`), not tried shape by shape: 0.2 instead of 0.7 us per frame.
/** The sender's hybrid clock as it sent the frame: the receiver's next records are stamped after it. */
const stamp = z.tuple([z.number().nonnegative(), z.number().int().nonnegative()]).optional();
const frameSchema = z.discriminatedUnion("t", [
  z.object({ t: z.literal("req"), id: z.number().int(), body: z.unknown(), a: attachedKey, h: stamp }),
  z.discriminatedUnion("ok", [
    z.object({ t: z.literal("res"), id: z.number().int(), ok: z.literal(true), body: z.unknown(), a: attachedKey, h: stamp }),
    z.object({ t: z.literal("res"), id: z.number().int(), ok: z.literal(false), error: z.string(), h: stamp }),
  ]),
  z.object({ t: z.literal("msg"), topic: z.string(), body: z.unknown(), a: attachedKey, h: stamp }),
  z.object({ t: z.literal("ping") }),
]);
type Frame = z.infer<typeof frameSchema>;

/**
 * A body's byte field at least this large (a write batch, a manifest page) is sent after the
 * frame's msgpack rather than inside it, and received as a view of the frame: msgpack would copy
 * it through a buffer four times its size, twice per batch.
 */
export const ATTACH_MIN_BYTES = 64 * 1024;

/**
 * A byte field given as several buffers (a batch's header and its data), written one after the
 * other and never joined on this side; always attached, and received as one Uint8Array.
 */
export class JoinedBytes {
  readonly length: number;
  constructor(readonly parts: readonly Uint8Array[]) {
    this.length = parts.reduce((sum, part) => sum + part.length, 0);
  }
}
/**
 * Request frames of 1 MiB to this size (write batches) are read into buffers used again once the
 * request is answered: fresh ones, each aging into the old generation before it dies, cost a full
 * collection per few dozen batches. A handler must not keep a request's attached bytes past its
 * answer (the mirror's staging copies what it keeps to disk).
 */
const FRAME_BUFFER_BYTES = 4 * 1024 * 1024 + 256 * 1024;
const FRAME_BUFFERS_FREE_MAX = 8;
const freeFrameBuffers: Buffer[] = [];

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;

export interface Endpoint {
  address: string;
  port: number;
}

export interface PeerChannelOptions {
  self: string;
  peer: string;
  cluster: string;
  /** The 32-byte cluster key. */
  key: Buffer;
  /** Every address this node has on a link (the first is its own node address); one is enough. */
  listen: Endpoint | Endpoint[];
  /** Every address of the peer, tried at once; the first to answer carries the channel. */
  connect: Endpoint | Endpoint[];
  /** The lower-named node dials, the other accepts: one connection, no race between two. */
  dial: boolean;
  keepaliveMs: number;
  timers: Timers;
  clock: Clock;
  onRequest: (body: unknown) => Promise<unknown>;
  onMessage?: (topic: string, body: unknown) => void;
  onUp?: () => void;
  onDown?: (reason: string) => void;
  /** Any frame from the peer, with clock.now(): the failure detector's tcp link. */
  onHeard?: (at: number) => void;
  log?: (line: string) => void;
  /** How the channel reaches the peer: TLS with the cluster key over TCP unless a simulation gives its own. */
  streams?: PeerStreams;
  /** Jitter for the reconnect backoff; injectable so a simulation replays. */
  random?: () => number;
  /**
   * The node's hybrid clock (the journal's): every request, answer and message carries it and
   * every one received merges into it, so a record journaled after hearing the peer is stamped
   * after what the peer had journaled when it spoke. Merged journals then keep cause before effect.
   */
  hlc?: { peek(): Hlc; receive(remote: Hlc): Hlc };
}

/**
 * A peer stamp further ahead of this node's clock than this is not merged: one host with a wrong
 * clock must not drag the other's journal stamps into its future (Kulkarni et al. bound it too).
 */
export const HLC_AHEAD_MAX_MS = 60_000;

export interface PeerChannelStats {
  /** Handshakes that failed: wrong key, unknown identity, not TLS at all. */
  handshakeFailures: number;
  connections: number;
  /** Connections closed for announcing a frame above PEER_FRAME_MAX_BYTES. */
  oversized: number;
  /** Connections closed for a frame that did not decode or was not a known message. */
  malformed: number;
  /** Frames whose hybrid-clock stamp was too far ahead to merge (HLC_AHEAD_MAX_MS). */
  clockAhead: number;
}

/** One TLS connection and what waits on it; a replaced or dropped connection fails only its own waiters. */
interface Connection {
  socket: PeerStream;
  drainWaiters: { resolve: () => void; reject: (error: Error) => void }[];
  reason: string | null;
  lastHeard: number;
  /** When it was attached (monotonic): a connection that had lived is dialled again at once when it drops. */
  since: number;
}

/** The authenticated, encrypted TCP channel between the two agents: requests, answers and one-way messages. */
export function startPeerChannel(options: PeerChannelOptions) {
  const { timers, clock, peer } = options;
  const log = options.log ?? (() => undefined);
  const random = options.random ?? Math.random;
  const streams = options.streams ?? tlsPskStreams({ self: options.self, peer, cluster: options.cluster, key: options.key, timers, log });
  const listenAddresses = [options.listen].flat();
  const connectAddresses = [options.connect].flat();
  const packr = new Packr({ useRecords: false, moreTypes: false });
  let current: Connection | null = null;
  let closed = false;
  let nextId = 1;
  let answering = 0;
  let backoffMs = RECONNECT_MIN_MS;
  let retryTimer: TimerHandle | null = null;
  /** When the last dial began (monotonic): nudge() paces itself by it. */
  let lastDialAt = -Infinity;
  /** A dial's TCP connects not yet answered: a SYN lost to a cut is only retried by the kernel after 1 s, then 3 s. */
  let dialing: { abandon(): void } | null = null;
  const pending = new Map<number, { conn: Connection; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: TimerHandle }>();
  const stats: PeerChannelStats = { handshakeFailures: 0, connections: 0, oversized: 0, malformed: 0, clockAhead: 0 };

  /**
   * A frame on the wire: its length, the length of its msgpack part, the msgpack, then the bytes
   * of an attached body field if any. Returns the head (lengths and msgpack, copied out of packr's
   * shared buffer) and the attachment's parts, written after it as they are.
   */
  function encode(frame: Frame): [Buffer, readonly Uint8Array[]] {
    let attachment: readonly Uint8Array[] = [];
    if ("body" in frame && isPlainObject(frame.body)) {
      const body = frame.body;
      const key = Object.keys(body).find((k) => (body[k] instanceof JoinedBytes || (body[k] instanceof Uint8Array && body[k].length >= ATTACH_MIN_BYTES)) && ATTACHED_KEY.test(k));
      if (key !== undefined) {
        const field = body[key] as Uint8Array | JoinedBytes;
        attachment = field instanceof JoinedBytes ? field.parts : [field];
        frame = { ...frame, body: { ...body, [key]: null }, a: key };
      }
    }
    const packed = packr.pack(frame);
    const length = 4 + packed.length + attachment.reduce((sum, part) => sum + part.length, 0);
    if (length > PEER_FRAME_MAX_BYTES) throw new Error(`a peer frame of ${length} bytes exceeds the limit of ${PEER_FRAME_MAX_BYTES} bytes`);
    const head = Buffer.allocUnsafe(8 + packed.length);
    head.writeUInt32BE(length, 0);
    head.writeUInt32BE(packed.length, 4);
    head.set(packed, 8);
    return [head, attachment];
  }

  /** Resolves once the frame is taken by the socket (waiting for 'drain' when its buffer is full). */
  function write(conn: Connection | null, frame: Frame): Promise<void> {
    if (!conn) return Promise.reject(new Error(`peer ${peer} is not connected`));
    if (options.hlc && frame.t !== "ping") frame = { ...frame, h: [...options.hlc.peek()] };
    let head: Buffer;
    let attachment: readonly Uint8Array[];
    try {
      [head, attachment] = encode(frame);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const s = conn.socket;
    // A socket already gone would never drain: its waiters were failed when it closed.
    if (s.destroyed) return Promise.reject(new Error(`connection to ${peer} lost before the frame was sent: ${conn.reason ?? "closed"}`));
    const size = head.length + attachment.reduce((sum, part) => sum + part.length, 0);
    if (s.writableLength > 0 && s.writableLength + size > PEER_WRITE_BUFFER_MAX_BYTES)
      return Promise.reject(new Error(`peer ${peer} is not reading: ${s.writableLength} bytes already wait to be sent`));
    return new Promise((resolve, reject) => {
      // One frame, one flush: its parts are corked together rather than sent as segments of their own.
      s.cork();
      let taken = s.write(head);
      for (const part of attachment) if (part.length > 0) taken = s.write(part);
      s.uncork();
      if (taken) resolve();
      else conn.drainWaiters.push({ resolve, reject });
    });
  }

  function drop(conn: Connection, reason: string): void {
    conn.reason ??= reason;
    conn.socket.destroy();
  }

  function attach(s: PeerStream): void {
    if (current) drop(current, "replaced by a newer connection from the peer");
    const conn: Connection = { socket: s, drainWaiters: [], reason: null, lastHeard: clock.monotonic(), since: clock.monotonic() };
    current = conn;
    stats.connections += 1;
    backoffMs = RECONNECT_MIN_MS;
    // Each frame is read into a buffer of its announced length as its chunks arrive (or used in
    // place when one chunk holds it whole): a 16 MiB frame in 16 KiB reads is copied once, and no
    // chunk outlives its 'data' event (kept chunks age into the old generation, and only a full
    // collection frees them).
    const prefix = Buffer.alloc(4);
    let prefixFilled = 0;
    let frame: Buffer | null = null;
    let filled = 0;
    let pooled = false;
    /** `reusable`: the frame was read into one of the frame buffers, given back once a request is answered. */
    const deliver = (body: Buffer, reusable = false): boolean => {
      const decoded = decode(body);
      if (typeof decoded === "string") {
        stats.malformed += 1;
        drop(conn, decoded);
        return false;
      }
      const reuse = () => void (freeFrameBuffers.length < FRAME_BUFFERS_FREE_MAX && freeFrameBuffers.push(Buffer.from(body.buffer, 0, FRAME_BUFFER_BYTES)));
      handle(conn, decoded, reusable ? reuse : undefined);
      return true;
    };
    s.on("data", (chunk: Buffer) => {
      // Bytes are hearing the peer, not only whole frames: a 16 MiB frame takes over a second on a
      // 100 Mbit/s link, and every ping behind it waits. TLS has authenticated each chunk already.
      conn.lastHeard = clock.monotonic();
      options.onHeard?.(clock.now());
      let at = 0;
      while (at < chunk.length && !s.destroyed) {
        if (frame === null) {
          const take = Math.min(4 - prefixFilled, chunk.length - at);
          chunk.copy(prefix, prefixFilled, at, at + take);
          prefixFilled += take;
          at += take;
          if (prefixFilled < 4) return;
          prefixFilled = 0;
          const length = prefix.readUInt32BE(0);
          if (length > PEER_FRAME_MAX_BYTES) {
            stats.oversized += 1;
            return drop(conn, `the peer announced a frame of ${length} bytes, more than ${PEER_FRAME_MAX_BYTES}`);
          }
          if (chunk.length - at >= length) {
            if (!deliver(chunk.subarray(at, at + length))) return;
            at += length;
            continue;
          }
          pooled = length >= 1024 * 1024 && length <= FRAME_BUFFER_BYTES;
          frame = pooled ? (freeFrameBuffers.pop() ?? Buffer.allocUnsafeSlow(FRAME_BUFFER_BYTES)).subarray(0, length) : Buffer.allocUnsafe(length);
          filled = 0;
        }
        const take = Math.min(frame.length - filled, chunk.length - at);
        chunk.copy(frame, filled, at, at + take);
        filled += take;
        at += take;
        if (filled === frame.length) {
          const whole = frame;
          frame = null;
          if (!deliver(whole, pooled)) return;
        }
      }
    });
    s.on("drain", () => {
      for (const waiter of conn.drainWaiters.splice(0)) waiter.resolve();
    });
    s.on("error", (error) => {
      conn.reason ??= error.message;
    });
    s.on("close", () => {
      const reason = conn.reason ?? "the peer closed the connection";
      for (const waiter of conn.drainWaiters.splice(0)) waiter.reject(new Error(`connection to ${peer} lost before the frame was sent: ${reason}`));
      for (const [id, p] of pending) {
        if (p.conn !== conn) continue;
        pending.delete(id);
        p.timer.cancel();
        p.reject(new Error(`connection to ${peer} lost before it answered: ${reason}`));
      }
      if (current !== conn) return;
      current = null;
      log(`peer channel to ${peer} down: ${reason}`);
      if (!closed) options.onDown?.(reason);
      // A connection that had lived through keepalives was a working one: dial again at once (a
      // node waking from a stall finds the peer dropped it, and asks the peer before anything
      // else). One that dropped soon after it was made waits out the backoff, so a peer that
      // accepts and drops at once is not dialled in a loop.
      scheduleDial(clock.monotonic() - conn.since >= 3 * options.keepaliveMs);
    });
    options.onUp?.();
  }

  /** A frame after its length prefix: the msgpack part's length, the msgpack, an attached field's bytes. */
  function decode(bytes: Buffer): Frame | string {
    const packedLength = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
    if (packedLength < 0 || 4 + packedLength > bytes.length) return `malformed frame from ${peer}: its message part overruns the frame`;
    let value: unknown;
    try {
      value = packr.unpack(bytes.subarray(4, 4 + packedLength));
    } catch (error) {
      return `undecodable frame from ${peer}: ${(error as Error).message}`;
    }
    const parsed = frameSchema.safeParse(value);
    if (!parsed.success) return `malformed frame from ${peer}: expected req, res, msg or ping (${firstIssue(parsed.error, "frame").text})`;
    const frame = parsed.data;
    const attachment = bytes.subarray(4 + packedLength);
    const key = "a" in frame ? frame.a : undefined;
    if (key === undefined) return attachment.length === 0 ? frame : `malformed frame from ${peer}: ${attachment.length} bytes after the message belong to no field`;
    if (!("body" in frame) || !isPlainObject(frame.body)) return `malformed frame from ${peer}: bytes attached as ${key} to a body that is not an object`;
    frame.body[key] = attachment;
    return frame;
  }

  /** `answered`: for a request in a frame buffer, gives the buffer back once the answer is written. */
  function handle(conn: Connection, frame: Frame, answered?: () => void): void {
    if ("h" in frame && frame.h) mergeStamp(frame.h);
    switch (frame.t) {
      case "ping":
        return;
      case "msg":
        try {
          options.onMessage?.(frame.topic, frame.body);
        } catch (error) {
          log(`peer channel: handling message ${frame.topic} from ${peer}: ${(error as Error).message}`);
        }
        return;
      case "res": {
        const p = pending.get(frame.id);
        if (!p) return; // answered after its timeout: the requester already gave up
        pending.delete(frame.id);
        p.timer.cancel();
        if (frame.ok) p.resolve(frame.body);
        else p.reject(new Error(`peer ${peer}: ${frame.error}`));
        return;
      }
      case "req":
        return answer(conn, frame.id, frame.body, answered);
    }
  }

  function mergeStamp(remote: Hlc): void {
    if (!options.hlc) return;
    const aheadMs = remote[0] - clock.now();
    if (aheadMs <= HLC_AHEAD_MAX_MS) {
      options.hlc.receive(remote);
      return;
    }
    stats.clockAhead += 1;
    if (stats.clockAhead === 1) log(`peer channel: ${peer}'s clock is ${aheadMs} ms ahead of this node's; its stamps are not merged (check NTP on both)`);
  }

  function answer(conn: Connection, id: number, body: unknown, answered?: () => void): void {
    if (answering >= PEER_PENDING_REQUESTS_MAX) {
      write(conn, { t: "res", id, ok: false, error: `${PEER_PENDING_REQUESTS_MAX} requests from ${options.self}'s peer already being answered` }).then(answered, () => undefined);
      return;
    }
    answering += 1;
    // The async wrapper turns a synchronous throw in onRequest into an answer too.
    (async () => options.onRequest(body))()
      .then(
        (result) => write(conn, { t: "res", id, ok: true, body: result }),
        (error: unknown) => write(conn, { t: "res", id, ok: false, error: error instanceof Error ? error.message : String(error) }),
      )
      .then(answered, (error: Error) => log(`peer channel: answering request ${id} from ${peer}: ${error.message}`))
      .finally(() => (answering -= 1));
  }

  // One listener per address this node has on any link: the channel must outlive the loss of any
  // one network, so the peer can reach this node over whichever still works.
  const listeners = options.dial
    ? []
    : listenAddresses.map((address) =>
        streams.listen(address, {
          connected(s, from) {
            if (closed) return s.destroy();
            log(`peer ${peer} connected from ${from}`);
            attach(s);
          },
          refused(from, error) {
            stats.handshakeFailures += 1;
            log(`peer channel: refused a connection from ${from}: ${error.message}`);
          },
        }),
      );

  /**
   * A connection to every address of the peer at once (streams.dial); the first that answers
   * carries the channel, so an address on a network that is down does not delay the rest.
   */
  function dial(): void {
    retryTimer = null;
    if (closed || current) return;
    lastDialAt = clock.monotonic();
    dialing = streams.dial(connectAddresses, {
      // As before the streams were injected: once a TCP connect is answered, the TLS handshake
      // over it is not abandoned by a redial (its own timeout bounds it).
      handshaking: () => (dialing = null),
      connected(s, target) {
        dialing = null;
        if (closed) return s.destroy();
        log(`peer channel connected to ${peer} at ${target}`);
        attach(s);
      },
      failed(error, handshake) {
        dialing = null;
        if (handshake && error) {
          stats.handshakeFailures += 1;
          log(`peer channel: ${error.message}`);
        }
        scheduleDial();
      },
    });
  }

  function scheduleDial(now = false): void {
    if (closed || !options.dial || retryTimer) return;
    const delay = now ? 0 : backoffMs / 2 + random() * (backoffMs / 2);
    backoffMs = Math.min(RECONNECT_MAX_MS, backoffMs * 2);
    retryTimer = timers.after(delay, dial);
  }

  // Both sides ping, so each hears something every keepaliveMs even when idle.
  const late = lateTickGuard(clock, options.keepaliveMs);
  const keepalive = timers.every(options.keepaliveMs, () => {
    const stalledMs = late();
    if (!current) return;
    const silentMs = clock.monotonic() - current.lastHeard;
    if (silentMs > 3 * options.keepaliveMs && stalledMs === null) return drop(current, `nothing heard from ${peer} for ${Math.round(silentMs)} ms`);
    write(current, { t: "ping" }).catch(() => undefined);
  });
  if (options.dial) dial();

  return {
    connected: (): boolean => current !== null,
    stats: (): PeerChannelStats => ({ ...stats }),
    /** Rejects with a clear error when not connected, on timeout, or when the connection drops first. */
    request(body: unknown, timeoutMs: number): Promise<unknown> {
      const conn = current;
      if (!conn) return Promise.reject(new Error(`peer ${peer} is not connected`));
      if (pending.size >= PEER_PENDING_REQUESTS_MAX) return Promise.reject(new Error(`${PEER_PENDING_REQUESTS_MAX} requests to ${peer} already wait for an answer`));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = timers.after(timeoutMs, () => {
          pending.delete(id);
          reject(new Error(`peer ${peer} did not answer within ${timeoutMs} ms`));
        });
        pending.set(id, { conn, resolve, reject, timer });
        write(conn, { t: "req", id, body }).catch((error: Error) => {
          if (!pending.delete(id)) return;
          timer.cancel();
          reject(error);
        });
      });
    },
    /**
     * The peer is heard again on a heartbeat link while this side waits to dial: dial now rather
     * than wait out a backoff grown while the peer was away (up to RECONNECT_MAX_MS), or a connect
     * whose SYN a cut dropped (the kernel retries it only after 1 s, then 3 s). Nothing when
     * connected, during a TLS handshake, or when this side only listens.
     */
    redial(): void {
      if (closed || !options.dial || current || (retryTimer === null && dialing === null)) return;
      retryTimer?.cancel();
      dialing?.abandon();
      dialing = null;
      backoffMs = RECONNECT_MIN_MS;
      dial();
    },
    /**
     * The peer is heard on a heartbeat link but the channel is down: redial, at most once per
     * NUDGE_MS. A cut that lost only this node's packets never made the peer "seen again" here,
     * and a SYN lost to it is retried by the kernel only after seconds (simulator seed 241: the
     * pair ran the job twice 5 s after the heal, until the next dial).
     */
    nudge(): void {
      if (clock.monotonic() - lastDialAt >= NUDGE_MS) this.redial();
    },
    /** Resolves when the message is handed to the socket; waits for 'drain' when the socket is backed up. */
    send(topic: string, body: unknown): Promise<void> {
      return write(current, { t: "msg", topic, body });
    },
    async close(): Promise<void> {
      closed = true;
      keepalive.cancel();
      retryTimer?.cancel();
      dialing?.abandon();
      if (current) drop(current, "the channel was closed");
      current = null;
      for (const [id, p] of pending) {
        pending.delete(id);
        p.timer.cancel();
        p.reject(new Error(`peer channel to ${peer} closed before it answered`));
      }
      await Promise.all(listeners.map((listener) => listener.close()));
    },
  };
}
export type PeerChannel = ReturnType<typeof startPeerChannel>;
