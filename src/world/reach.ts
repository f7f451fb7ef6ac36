import { connect } from "node:net";

/** What a TCP probe learned: the host answered (accepted or refused the connection), or not. */
export interface ReachResult {
  answered: boolean;
  /** connected, refused, or why nothing answered (timeout, unreachable). */
  detail: string;
}

/**
 * The injected world: whether a host answers on TCP. A refused connection is an answer (the
 * host's kernel sent a reset), so a gateway with no open port still proves the path to it works;
 * only silence or an unreachable route is not. Needs no binary and no privilege, unlike ICMP.
 */
export interface TcpReach {
  reach(address: string, port: number, timeoutMs: number): Promise<ReachResult>;
}

export const systemReach: TcpReach = {
  reach(address, port, timeoutMs) {
    return new Promise((resolve) => {
      const socket = connect({ host: address, port, timeout: timeoutMs });
      const done = (result: ReachResult) => {
        socket.destroy();
        resolve(result);
      };
      socket.once("connect", () => done({ answered: true, detail: "connected" }));
      socket.once("timeout", () => done({ answered: false, detail: `no answer within ${timeoutMs} ms` }));
      socket.once("error", (error: NodeJS.ErrnoException) =>
        done(error.code === "ECONNREFUSED" ? { answered: true, detail: "refused (the host answered)" } : { answered: false, detail: error.code ?? error.message }),
      );
    });
  },
};
