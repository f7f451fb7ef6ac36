import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createApplier } from "../../src/replication/apply.ts";
import { createCapture, type CaptureOptions } from "../../src/replication/capture.ts";
import { createBatchQueue } from "../../src/replication/queue.ts";
import { systemTimers, type Timers } from "../../src/world/clock.ts";

/**
 * A source and a replica without agents: capture over DIR/data queues batches, `drain` applies
 * what is queued to DIR/replica as the peer would (and drops it as acknowledged). Capture is
 * opened and started by the test, which may change the tree in between.
 */
export async function captureRig(dir: string, options: { peerHasNothing?: boolean; fillDelayMs?: number; report?: CaptureOptions["report"]; timers?: Timers } = {}) {
  const [root, replica] = [join(dir, "data"), join(dir, "replica")];
  await mkdir(root, { recursive: true });
  await mkdir(replica, { recursive: true });
  const queue = createBatchQueue(join(dir, "queue"));
  await queue.open();
  const errors: Error[] = [];
  const capture = createCapture({
    job: "web", node: "a", roots: [root], stateDir: join(dir, "capture"), queue, lastCaptured: 0, peerHasNothing: options.peerHasNothing ?? true,
    generation: async () => "0000000000000001", report: options.report ?? (async () => undefined), onQueued: () => undefined,
    timers: options.timers ?? systemTimers, now: () => Date.now(), onError: (error) => errors.push(error), fillDelayMs: options.fillDelayMs ?? 0,
  });
  const applier = createApplier({ job: "web", node: "b", roots: [replica], stateDir: join(dir, "applier") });
  await applier.open();
  let applied = 0;
  return {
    root,
    replica,
    queue,
    capture,
    errors,
    async drain(): Promise<void> {
      for (const n of queue.numbers()) {
        if (n <= applied) continue;
        await applier.apply(Buffer.concat((await queue.get(n))!));
        applied = n;
        await queue.dropThrough(n, { acknowledged: true });
      }
    },
  };
}
