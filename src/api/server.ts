import { serve } from "@hono/node-server";
import type { Api } from "./app.ts";

/** Serves the API; resolves once listening, with the URL to reach it. */
export function startApiServer(api: Api, options: { address: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: api.app.fetch, hostname: options.address, port: options.port }, (info) => {
      const host = info.address.includes(":") ? `[${info.address}]` : info.address;
      resolve({
        url: `http://${host}:${info.port}`,
        close: () =>
          new Promise<void>((done) => {
            api.close();
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
    server.once("error", (error) => reject(new Error(`API on ${options.address}:${options.port}: ${error.message}`)));
  });
}
