import { connect, createServer, type Socket } from "node:net";

/** Pacing granularity: each slice sends its share of the rate. */
const SLICE_MS = 10;
/** Bytes held before the sending side is paused: the proxy is a slow link, not a big buffer. */
const HELD_MAX_BYTES = 256 * 1024;

/**
 * A TCP proxy on loopback that forwards to `target`, passing the client's bytes on at most
 * `bytesPerSecond` (a slow or busy link) and the answers back at full speed.
 */
export async function startPacedProxy(options: { listen: { address: string; port: number }; target: { address: string; port: number }; bytesPerSecond: number }) {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect({ host: options.target.address, port: options.target.port });
    sockets.add(client).add(upstream);
    const held: Buffer[] = [];
    let heldBytes = 0;
    client.on("data", (chunk) => {
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes > HELD_MAX_BYTES) client.pause();
    });
    const pace = setInterval(() => {
      let budget = Math.floor((options.bytesPerSecond * SLICE_MS) / 1000);
      while (budget > 0 && held.length > 0) {
        const chunk = held[0]!;
        const part = chunk.length <= budget ? chunk : chunk.subarray(0, budget);
        upstream.write(part);
        budget -= part.length;
        heldBytes -= part.length;
        if (part.length === chunk.length) held.shift();
        else held[0] = chunk.subarray(part.length);
      }
      if (heldBytes <= HELD_MAX_BYTES) client.resume();
    }, SLICE_MS);
    upstream.pipe(client);
    const close = () => {
      clearInterval(pace);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  await new Promise<void>((resolve) => server.listen(options.listen.port, options.listen.address, resolve));
  return {
    async close(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
