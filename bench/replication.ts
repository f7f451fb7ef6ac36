// bench:replication — duet's mirroring between two real agents on loopback, each figure next to a
// baseline measured in the same run on this machine:
//   bulk:        initial sync (verification) of a generated ~1 GiB tree vs a raw Node TCP stream of
//                the same files written to disk, and vs `rsync -a`;
//   incremental: 1% of the blocks changed in place while the standby was away: duet's resync vs
//                `rsync --inplace --no-whole-file`, and bytes shipped vs bytes changed;
//   small writes: capture-to-acknowledgement latency at 200 small writes/s, and peak memory.
// BENCH_TREE_MIB scales the tree (default 1024).
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import { createServer, connect } from "node:net";
import { once } from "node:events";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { startProcessPair } from "../test/e2e/process-pair.ts";
import { createTargets, needFreeDisk, needPrograms, needRoot, progress } from "./bench-kit.ts";

const TREE_MIB = Number(process.env.BENCH_TREE_MIB ?? 1024);
const SMALL_WRITES_PER_S = 200;
const SMALL_WRITES_S = 10;
const mib = (bytes: number) => bytes / 1048576;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const seconds = (ms: number) => (ms / 1000).toFixed(2);
const dropCaches = () => spawnSync("sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], { stdio: "ignore" });

/** A tree of mixed sizes: a few large files, some medium, many small (scaled from 1 GiB). */
async function generateTree(root: string): Promise<{ files: string[]; bytes: number }> {
  const scale = TREE_MIB / 1024;
  const plan: [string, number, number][] = [
    ["large", Math.max(1, Math.round(3 * scale)), 256 * 1048576],
    ["medium", Math.max(1, Math.round(192 * scale)), 1048576],
    ["small", Math.max(1, Math.round(4096 * scale)), 16 * 1024],
  ];
  const files: string[] = [];
  let bytes = 0;
  for (const [kind, count, size] of plan) {
    for (let i = 0; i < count; i++) {
      const rel = `${kind}/${String(Math.floor(i / 256)).padStart(3, "0")}/${kind}-${i}.bin`;
      await mkdir(join(root, kind, String(Math.floor(i / 256)).padStart(3, "0")), { recursive: true });
      const handle = await open(join(root, rel), "w");
      for (let at = 0; at < size; at += 8 * 1048576) await handle.write(randomBytes(Math.min(8 * 1048576, size - at)));
      await handle.close();
      files.push(rel);
      bytes += size;
    }
  }
  return { files, bytes };
}

/** Baseline: every file streamed over a loopback TCP socket and written to disk by the receiver. */
async function rawTcpCopy(source: string, files: string[], target: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const received = new Promise<void>((resolve, reject) => {
    server.once("connection", async (socket) => {
      try {
        let index = 0;
        let out: ReturnType<typeof createWriteStream> | null = null;
        let left = 0;
        for await (const chunk of socket as AsyncIterable<Buffer>) {
          let rest = chunk;
          while (rest.length > 0 && index < files.length) {
            if (out === null) {
              const rel = files[index]!;
              left = (await stat(join(source, rel))).size;
              await mkdir(join(target, rel, ".."), { recursive: true });
              out = createWriteStream(join(target, rel));
            }
            const take = rest.subarray(0, left);
            left -= take.length;
            rest = rest.subarray(take.length);
            if (!out.write(take)) await once(out, "drain");
            if (left === 0) {
              await new Promise<void>((done) => out!.end(() => done()));
              out = null;
              index++;
            }
          }
          if (index === files.length) break;
        }
        resolve();
      } catch (error) {
        reject(error as Error);
      }
    });
  });
  const started = performance.now();
  const socket = connect(port, "127.0.0.1");
  for (const rel of files)
    for await (const chunk of createReadStream(join(source, rel)) as AsyncIterable<Buffer>) if (!socket.write(chunk)) await once(socket, "drain");
  await received;
  socket.end();
  server.close();
  spawnSync("sync");
  return performance.now() - started;
}

function timed(command: string, args: string[]): number {
  const started = performance.now();
  execFileSync(command, args, { stdio: "ignore" });
  spawnSync("sync");
  return performance.now() - started;
}

needPrograms("bench:replication", [{ program: "rsync", package: "rsync" }]);
needRoot("bench:replication", "cold-cache figures drop the page cache through /proc/sys/vm/drop_caches");
// The tree, the raw and rsync copies, the replica, and room for the queue and staging.
needFreeDisk("bench:replication", tmpdir(), TREE_MIB * 1048576 * 4.5);
const targets = createTargets("bench:replication");

// Real agent processes, as deployed: each has its own event loop and I/O threads.
const pair = await startProcessPair({ name: "bench-replication", addresses: { a: "127.0.0.41", b: "127.0.0.42" }, ports: { api: 27620, peer: 27621, heartbeat: 27622 } });
const a = pair.data("a");
const b = pair.data("b");
const scratch = join(pair.dir, "baselines");
const job = async () => pair.job("a");
const peakMib = async (node: "a" | "b") => Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pair.pid(node)}/status`, "utf8"))?.[1] ?? NaN) / 1024;
try {
  console.log(`bench:replication — tree of ~${TREE_MIB} MiB in ${pair.dir}`);
  const generating = progress("generating the tree", async () => `${mib(Number(execFileSync("du", ["-sb", a], { encoding: "utf8" }).split("\t")[0])).toFixed(0)} of ${TREE_MIB} MiB`);
  const tree = await generateTree(a).finally(() => generating.stop());
  console.log(`generated ${tree.files.length} files, ${mib(tree.bytes).toFixed(0)} MiB`);

  // --- bulk
  dropCaches();
  const rawMs = await rawTcpCopy(a, tree.files, join(scratch, "raw"));
  dropCaches();
  const rsyncMs = timed("rsync", ["-a", `${a}/`, join(scratch, "rsync")]);
  dropCaches();
  pair.start("a");
  pair.start("b");
  await pair.until("peers connected", 15_000, async () => (await pair.cluster("a")).peerStatus === "connected");
  const client = await pair.client("a");
  const bulkStart = performance.now();
  await client.post("/v1/jobs/data/bring-in", { on: "a" });
  const syncing = progress("initial sync", async () => {
    const v = (await job()).replication.verification as { state: string; doneBytes?: number; totalBytes?: number } | null;
    return v?.state === "running" ? `${mib(v.doneBytes ?? 0).toFixed(0)} of ${mib(v.totalBytes ?? 0).toFixed(0)} MiB verified` : (v?.state ?? "starting");
  });
  await pair.until("initial verification done", 1_800_000, async () => (await job()).replication.colour === "green", 20).finally(() => syncing.stop());
  const bulkMs = performance.now() - bulkStart;
  const mbps = (ms: number) => (mib(tree.bytes) / (ms / 1000)).toFixed(0);
  console.log("\nbulk (initial sync of the whole tree)");
  console.log(`  raw TCP stream to files  ${seconds(rawMs)} s  ${mbps(rawMs)} MiB/s  (baseline)`);
  console.log(`  rsync -a                 ${seconds(rsyncMs)} s  ${mbps(rsyncMs)} MiB/s`);
  console.log(`  duet verification        ${seconds(bulkMs)} s  ${mbps(bulkMs)} MiB/s   ratio to raw ${(rawMs / bulkMs).toFixed(2)}x (target >= 0.8 ${targets.check("bulk >= 0.8x raw TCP", rawMs / bulkMs >= 0.8)})   vs rsync -a ${(rsyncMs / bulkMs).toFixed(2)}x (a local kernel copy: information, see issue 5)`);
  console.log(`  peak memory: agent a ${(await peakMib("a")).toFixed(0)} MiB, agent b ${(await peakMib("b")).toFixed(0)} MiB`);

  // --- incremental: b away, 1% of 4 KiB blocks changed in place on a
  await pair.stop("b");
  await pair.until("a alone", 15_000, async () => (await pair.cluster("a")).peerStatus !== "connected");
  const blocks = Math.floor(tree.bytes / 4096);
  const sizes = new Map<string, number>();
  for (const rel of tree.files) sizes.set(rel, (await stat(join(a, rel))).size);
  // 1% of all 4 KiB blocks, each as likely as any other: the large files take most of them.
  const byFile = new Map<string, Set<number>>();
  const offsets: [string, number][] = [];
  let treeBytes = 0;
  for (const rel of tree.files) {
    offsets.push([rel, treeBytes]);
    treeBytes += sizes.get(rel)!;
  }
  const fileAt = (byte: number) => {
    let lo = 0;
    for (let hi = offsets.length - 1; lo < hi; ) {
      const mid = (lo + hi + 1) >> 1;
      if (offsets[mid]![1] <= byte) lo = mid;
      else hi = mid - 1;
    }
    return offsets[lo]!;
  };
  for (let i = 0; i < Math.floor(blocks / 100); i++) {
    const byte = randomInt(Math.floor(treeBytes / 4096)) * 4096;
    const [rel, start] = fileAt(byte);
    byFile.set(rel, (byFile.get(rel) ?? new Set()).add(Math.min(byte - start, Math.floor((sizes.get(rel)! - 1) / 4096) * 4096)));
  }
  let changedBytes = 0;
  for (const [rel, offsets] of byFile) {
    const handle = await open(join(a, rel), "r+");
    for (const at of offsets) {
      await handle.write(randomBytes(4096), 0, 4096, at);
      changedBytes += 4096;
    }
    await handle.close();
  }
  await pair.until("a captured the changes", 120_000, async () => ((await job()).replication.queue?.batches ?? 0) > 0);
  const old = join(scratch, "rsync");
  dropCaches();
  const rsyncIncMs = timed("rsync", ["-a", "--inplace", "--no-whole-file", `${a}/`, `${old}/`]);
  dropCaches();
  const head = (await pair.events("a")).at(-1)!.seq;
  const incStart = performance.now();
  pair.start("b");
  await pair.until("resync done", 600_000, async () => (await job()).replication.colour === "green", 20);
  const incMs = performance.now() - incStart;
  const after = await pair.events("a", head + 1);
  const resync = after.find((e) => e.type === "ResyncCompleted" || e.type === "VerificationCompleted");
  const shipped = (resync?.data as { shippedBytes?: number } | undefined)?.shippedBytes ?? NaN;
  console.log(`\nincremental (1% of the 4 KiB blocks changed in place, in ${byFile.size} of ${tree.files.length} files, while b was away: ${mib(changedBytes).toFixed(1)} MiB)`);
  console.log(`  rsync --inplace --no-whole-file  ${seconds(rsyncIncMs)} s  (baseline)`);
  const resyncMs = resync?.type === "ResyncCompleted" ? (resync.data as { ms: number }).ms : NaN;
  console.log(`  duet resync (ResyncStarted to ResyncCompleted)  ${seconds(resyncMs)} s   ratio ${(rsyncIncMs / resyncMs).toFixed(2)}x (target > 1 ${targets.check("incremental faster than rsync --inplace", rsyncIncMs / resyncMs > 1)})`);
  console.log(`  (agent b started to link green, including process start and reconnect: ${seconds(incMs)} s)`);
  console.log(`  bytes shipped ${mib(shipped).toFixed(1)} MiB for ${mib(changedBytes).toFixed(1)} MiB changed (${(shipped / changedBytes).toFixed(1)}x, target <= 1.5 ${targets.check("bytes shipped <= 1.5x changed", shipped / changedBytes <= 1.5)}; changes are found and shipped in 4 KiB pieces)`);

  // --- small writes: capture-to-ack latency, from the journal's own timestamps
  await mkdir(join(a, "small-writes"), { recursive: true });
  const writtenAt = new Map<string, number>();
  const total = SMALL_WRITES_PER_S * SMALL_WRITES_S;
  const first = (await pair.events("a")).at(-1)!.seq + 1;
  const writesStart = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = writesStart + (i * 1000) / SMALL_WRITES_PER_S - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const name = `small-writes/w-${i}.txt`;
    writtenAt.set(`0/${name}`, Date.now());
    await writeFile(join(a, name), `write ${i} ${randomBytes(64).toString("hex")}\n`);
  }
  const toCapture: number[] = [];
  const latencies = await pair.until("every small write acknowledged", 60_000, async () => {
    const events = await pair.events("a", first);
    const batchOf = new Map<string, number>();
    for (const e of events) if (e.type === "BatchCaptured") for (const op of e.data.ops) if (writtenAt.has(op.path) && !batchOf.has(op.path)) batchOf.set(op.path, e.data.batch);
    const capturedAt = new Map(events.filter((e) => e.type === "BatchCaptured").map((e) => [(e.data as { batch: number }).batch, e.at]));
    const acks = events.filter((e) => e.type === "BatchAcked").map((e) => ({ batch: (e.data as { batch: number }).batch, at: e.at }));
    const out: number[] = [];
    for (const [path, t] of writtenAt) {
      const batch = batchOf.get(path);
      const ack = batch === undefined ? undefined : acks.find((x) => x.batch >= batch);
      if (ack === undefined) return null;
      out.push(ack.at - t);
      toCapture.push(capturedAt.get(batch!)! - t);
    }
    return out;
  }, 500);
  console.log(`\nsmall writes (${total} files at ${SMALL_WRITES_PER_S}/s)`);
  console.log(`  capture-to-ack latency p50 ${pct(latencies, 50).toFixed(0)} ms  p99 ${pct(latencies, 99).toFixed(0)} ms  max ${Math.max(...latencies).toFixed(0)} ms  (target p99 < 100 ms ${targets.check("small writes p99 < 100 ms", pct(latencies, 99) < 100)})`);
  console.log(`  of which write to captured (watcher, scan, queued) p50 ${pct(toCapture, 50).toFixed(0)} ms  p99 ${pct(toCapture, 99).toFixed(0)} ms`);
  console.log(`  peak memory over the whole run: agent a ${(await peakMib("a")).toFixed(0)} MiB, agent b ${(await peakMib("b")).toFixed(0)} MiB`);

  // --- a snapshot of the replica: hard links, so its cost follows the number of files, not their bytes
  const snapStart = performance.now();
  const { snapshot } = await (await pair.client("b")).post<{ snapshot: { files: number; bytes: number } }>("/v1/jobs/data/snapshots", {});
  const snapMs = performance.now() - snapStart;
  console.log(`\nsnapshot of b's replica (${snapshot.files} files, ${mib(snapshot.bytes).toFixed(0)} MiB): ${snapMs.toFixed(0)} ms, including the API round trip`);

  const differing = execFileSync("rsync", ["-rlpnc", "--delete", "--out-format=%n", `${a}/`, `${b}/`], { encoding: "utf8" }).trim();
  console.log(`\nreplica equal to the source (rsync -c dry run): ${differing === "" ? "yes" : `NO, differing: ${differing.slice(0, 400)}`} ${targets.check("replica equal to the source", differing === "")}`);
} finally {
  await pair.close();
}
targets.exit();
