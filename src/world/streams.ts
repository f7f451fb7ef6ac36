import { hkdfSync } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { connect, createServer, type TLSSocket } from "node:tls";
import type { Timers } from "./clock.ts";

/**
 * One authenticated, ordered byte stream between the two agents: what the peer channel writes
 * its frames to and reads them from. A TLS socket in production; an in-memory pipe on virtual
 * time in the simulator (sim.ts).
 */
export interface PeerStream {
  write(chunk: Uint8Array): boolean;
  /** Writes until uncork() go out together. */
  cork(): void;
  uncork(): void;
  /** Bytes written but not yet taken by the network. */
  readonly writableLength: number;
  readonly destroyed: boolean;
  destroy(error?: Error): void;
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  on(event: "drain" | "close", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
}

export interface StreamEndpoint {
  address: string;
  port: number;
}

export interface ListenHandlers {
  connected(stream: PeerStream, from: string): void;
  /** A connection that did not authenticate (wrong key, not the peer, not TLS at all). */
  refused(from: string, error: Error): void;
}

export interface DialHandlers {
  /** A target answered and the handshake over it began: the dial can no longer be abandoned. */
  handshaking?(target: string): void;
  connected(stream: PeerStream, target: string): void;
  /** No target answered, or the one that did failed to authenticate (`handshake` true: worth a log line). */
  failed(error: Error | null, handshake: boolean): void;
}

/** How the peer channel reaches its peer: listen on this node's addresses, dial the peer's. */
export interface PeerStreams {
  listen(at: StreamEndpoint, handlers: ListenHandlers): { close(): Promise<void> };
  /** Every target at once; the first to connect carries the stream, the others close unspoken. */
  dial(targets: readonly StreamEndpoint[], handlers: DialHandlers): { abandon(): void };
}

/** A TCP connection that has not finished its TLS handshake by then is dropped (and redialled). */
export const PEER_HANDSHAKE_TIMEOUT_MS = 5000;
/** A listen address not there yet (boot order) is tried again at this pace. */
export const LISTEN_RETRY_MS = 5000;
// TLS 1.2 with a pre-shared key derived from the cluster key: no certificates to manage. Only the
// forward-secret (ECDHE/DHE) AEAD suites, so a stolen cluster key does not open recorded traffic;
// OpenSSL 3.0 has no ECDHE-PSK-GCM suite, hence DHE for AES-GCM.
export const PEER_CIPHERS = "ECDHE-PSK-CHACHA20-POLY1305:DHE-PSK-AES256-GCM-SHA384:DHE-PSK-CHACHA20-POLY1305";
const TLS_VERSIONS = { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" } as const;
/** Requests and answers wait on each other: no Nagle delay behind an unacknowledged segment. */
const SOCKET_OPTIONS = { ...TLS_VERSIONS, noDelay: true } as const;
/** Errors of a network that is down or a peer not listening: retried quietly. */
const NETWORK_ERRORS = /ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET/;

export function derivePsk(key: Buffer, cluster: string): Buffer {
  return Buffer.from(hkdfSync("sha256", key, Buffer.from(cluster), Buffer.from("duet peer channel"), 32));
}

export interface TlsPskOptions {
  self: string;
  peer: string;
  cluster: string;
  /** The 32-byte cluster key. */
  key: Buffer;
  timers: Timers;
  log: (line: string) => void;
}

/** TLS 1.2 with a pre-shared key, over TCP: each side proves it holds the cluster key, and names itself. */
export function tlsPskStreams(options: TlsPskOptions): PeerStreams {
  const { timers, peer, log } = options;
  const psk = derivePsk(options.key, options.cluster);
  const stream = (s: TLSSocket): PeerStream => s as unknown as PeerStream;

  function listen(address: StreamEndpoint, handlers: ListenHandlers): { close(): Promise<void> } {
    let closed = false;
    let retry: { cancel(): void } | null = null;
    const server = createServer({
      ...SOCKET_OPTIONS,
      ciphers: PEER_CIPHERS,
      handshakeTimeout: PEER_HANDSHAKE_TIMEOUT_MS,
      pskCallback: (_socket, identity) => (identity === peer ? psk : null),
      pskIdentityHint: options.cluster,
    });
    server.on("secureConnection", (s) => (closed ? s.destroy() : handlers.connected(stream(s), `${s.remoteAddress}:${s.remotePort}`)));
    server.on("tlsClientError", (error, s) => {
      // The dialer opens a TCP connection on each address and keeps the first: the others close unspoken.
      if (/ECONNRESET|socket disconnected|socket hang up/i.test(error.message)) return;
      handlers.refused(`${s.remoteAddress}:${s.remotePort}`, error);
    });
    // The listen address may not be configured yet (boot order): keep trying at the slowest pace.
    const start = () => void (!closed && server.listen(address.port, address.address));
    server.on("error", (error) => {
      log(`peer channel: cannot listen on ${address.address}:${address.port}: ${error.message}; retrying in ${LISTEN_RETRY_MS} ms`);
      if (!closed) retry = timers.after(LISTEN_RETRY_MS, start);
    });
    start();
    return {
      close: () => {
        closed = true;
        retry?.cancel();
        return new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  function dial(targets: readonly StreamEndpoint[], handlers: DialHandlers): { abandon(): void } {
    let won = false;
    let failed = 0;
    const attempts = targets.map((target) => {
      const raw = netConnect({ host: target.address, port: target.port });
      raw.once("connect", () => {
        if (won) return raw.destroy();
        won = true;
        giveUp.cancel();
        for (const other of attempts) if (other !== raw) other.destroy();
        handlers.handshaking?.(`${target.address}:${target.port}`);
        handshake(raw, `${target.address}:${target.port}`, handlers);
      });
      raw.once("error", () => {
        raw.destroy();
        failed += 1;
        if (failed === attempts.length && !won) {
          giveUp.cancel();
          handlers.failed(null, false);
        }
      });
      return raw;
    });
    const giveUp = timers.after(PEER_HANDSHAKE_TIMEOUT_MS, () => {
      if (won) return;
      won = true;
      for (const raw of attempts) raw.destroy();
      handlers.failed(null, false);
    });
    return {
      abandon() {
        if (won) return; // a handshake under way runs on (its own timeout bounds it)
        won = true; // no late answer of these attempts is used
        giveUp.cancel();
        for (const raw of attempts) raw.destroy();
      },
    };
  }

  function handshake(raw: Socket, target: string, handlers: DialHandlers): void {
    raw.setNoDelay(true);
    const s = connect({ ...TLS_VERSIONS, socket: raw, ciphers: PEER_CIPHERS, pskCallback: () => ({ psk, identity: options.self }), checkServerIdentity: () => undefined });
    const handshakeTimer = timers.after(PEER_HANDSHAKE_TIMEOUT_MS, () => s.destroy(new Error(`no TLS handshake within ${PEER_HANDSHAKE_TIMEOUT_MS} ms`)));
    s.once("error", (error) => {
      handshakeTimer.cancel();
      s.destroy();
      handlers.failed(new Error(`connecting to ${target}: ${error.message}`), !NETWORK_ERRORS.test(error.message));
    });
    s.once("secureConnect", () => {
      handshakeTimer.cancel();
      s.removeAllListeners("error");
      handlers.connected(stream(s), target);
    });
  }

  return { listen, dial };
}
