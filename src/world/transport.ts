import { createSocket } from "node:dgram";

/** The injected world: datagrams, for heartbeat links. The simulator passes its own network. */
export interface DatagramSocket {
  send(bytes: Uint8Array, address: string, port: number): void;
  onMessage(handler: (bytes: Buffer, from: { address: string; port: number }) => void): void;
  close(): void;
}

export interface DatagramTransport {
  bind(address: string, port: number): Promise<DatagramSocket>;
}

export const udpTransport: DatagramTransport = {
  bind(address, port) {
    return new Promise((resolve, reject) => {
      const socket = createSocket({ type: address.includes(":") ? "udp6" : "udp4", reuseAddr: false });
      const handlers: ((bytes: Buffer, from: { address: string; port: number }) => void)[] = [];
      socket.on("message", (bytes, rinfo) => {
        for (const h of handlers) h(bytes, { address: rinfo.address, port: rinfo.port });
      });
      // A send to a peer that is down gives ICMP errors: expected, never fatal.
      socket.on("error", (error) => {
        if (!bound) reject(new Error(`udp ${address}:${port}: ${error.message}`));
      });
      let bound = false;
      socket.bind(port, address, () => {
        bound = true;
        resolve({
          send: (bytes, to, toPort) => socket.send(bytes, toPort, to, () => undefined),
          onMessage: (handler) => handlers.push(handler),
          close: () => socket.close(),
        });
      });
    });
  },
};
