// The heartbeat links in a worker thread of their own (started by heartbeat.ts): frames go out and
// are read on time while the agent's own loop is busy, for as long as the agent renews its lease.
import { parentPort, workerData } from "node:worker_threads";
import { systemTimers, type Clock } from "../world/clock.ts";
import { udpTransport } from "../world/transport.ts";
import { openWire, type WireOptions } from "./beat-wire.ts";
import { hrMs, micros, SLOT, type AgentMessage, type ThreadMessage } from "./beat-shared.ts";

const { options, shared, originMs } = workerData as { options: WireOptions; shared: SharedArrayBuffer; originMs: number };
const slots = new BigInt64Array(shared);
// The agent's monotonic clock (its performance.now()), read from this thread.
const clock: Clock = { now: () => Date.now(), monotonic: () => hrMs() - originMs };
const post = (message: ThreadMessage) => parentPort!.postMessage(message);

try {
  const wire = await openWire(
    { ...options, key: Buffer.from(options.key) },
    { transport: udpTransport, clock, timers: systemTimers },
    {
      heard(index, at, holds) {
        Atomics.store(slots, SLOT.heardAt + index, micros(at));
        Atomics.add(slots, SLOT.received, 1n);
        post({ kind: "heard", at, holds });
      },
      rejected: (index, reason) => post({ kind: "rejected", index, reason }),
    },
    () => micros(clock.monotonic()) <= Atomics.load(slots, SLOT.leaseUntil),
    () => Atomics.add(slots, SLOT.sent, 1n),
  );
  parentPort!.on("message", (message: AgentMessage) => {
    if (message.kind === "holds") return wire.setHolds(message.jobs);
    wire.close();
    post({ kind: "closed" });
    parentPort!.close();
  });
  post({ kind: "ready" });
} catch (error) {
  post({ kind: "failed", message: (error as Error).message });
}
