// Journal benchmark: duet's append and replay against raw classic-level + msgpackr on the same
// ~120-byte records, measured in the same run. Prints rates and ratios; targets in the last column.
// Run: npm run bench:journal   (scale down with BENCH_EVENTS=200000 for a quick look)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { Unpackr } from "msgpackr";
import type { DuetEvent, Recorded } from "../src/events/catalogue.ts";
import { encodeEnvelope, GENESIS_PREV, seqKey } from "../src/journal/envelope.ts";
import { openJournal, type JournalStats, type Projection } from "../src/journal/journal.ts";
import { systemClock } from "../src/world/clock.ts";
import { createTargets, needFreeDisk } from "./bench-kit.ts";

const targets = createTargets("bench:journal");

// The baseline decodes with the settings duet uses (plain msgpack), its fastest for these records.
const unpackr = new Unpackr({ useRecords: false });
const REPLAY_EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const BUILD_BATCH = 10_000;

type Counts = { total: number; byType: Map<string, number>; byJob: Map<string, number> };
// The fold updates in place so the figure is the journal's cost, not a Map copy per event.
const counting: Projection<Counts> = {
  name: "bench-counts@1",
  get initial() {
    return { total: 0, byType: new Map(), byJob: new Map() };
  },
  evolve(s, e) {
    s.total++;
    s.byType.set(e.type, (s.byType.get(e.type) ?? 0) + 1);
    const job = (e.data as { job?: string }).job;
    if (job !== undefined) s.byJob.set(job, (s.byJob.get(job) ?? 0) + 1);
    return s;
  },
};

function event(i: number): DuetEvent {
  const job = `web-frontend-${i % 100}`;
  return i % 3 === 0
    ? { type: "ResourceStarted", data: { job, node: "node-a", resource: `vip-10.0.${i % 250}.10` } }
    : i % 3 === 1
      ? { type: "MonitorFailed", data: { job, node: "node-a", resource: "httpd", error: "exit 7", failures: 1 + (i % 5) } }
      : { type: "BatchAcked", data: { job, node: "node-a", by: "node-b", batch: 1 + i } };
}

const events = Array.from({ length: 3000 }, (_, i) => event(i));
/** The bytes duet stores for these events, so the raw baseline writes identical records. */
const encoded = events.map((e, i) =>
  encodeEnvelope({ seq: i + 1, hlc: [Date.now(), 0], at: Date.now(), node: "node-a", type: e.type, v: 1, data: e.data, prev: GENESIS_PREV }),
);
const avgBytes = encoded.reduce((n, b) => n + b.length, 0) / encoded.length;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
}

const rows: string[][] = [];
function row(what: string, rate: number, baseline: number | undefined, target: string) {
  rows.push([what, `${Math.round(rate).toLocaleString("en")} ev/s`, baseline ? `${(rate / baseline).toFixed(2)}x` : "", target]);
}

async function rawAppend(dir: string, batch: number, total: number): Promise<number> {
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
  await db.open();
  const events = db.sublevel<Buffer, Buffer>("events", { keyEncoding: "buffer", valueEncoding: "buffer" });
  let seq = 0;
  const secs = await timed(async () => {
    while (seq < total) {
      const ops = [];
      for (let i = 0; i < batch; i++, seq++) ops.push({ type: "put" as const, sublevel: events, key: seqKey(seq + 1), value: encoded[seq % encoded.length]! });
      await db.batch(ops, { sync: true } as object);
    }
  });
  await db.close();
  return total / secs;
}

async function duetAppend(dir: string, batch: number, total: number, concurrent: boolean): Promise<number> {
  const journal = await openJournal({ dir, node: "node-a", clock: systemClock });
  let done = 0;
  const secs = await timed(async () => {
    while (done < total) {
      const slice = Array.from({ length: batch }, (_, i) => events[(done + i) % events.length]!);
      if (concurrent) await Promise.all(slice.map((e) => journal.append([e])));
      else await journal.append(slice);
      done += batch;
    }
  });
  await journal.close();
  return total / secs;
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), "duet-bench-journal-"));
  let dirs = 0;
  const fresh = () => join(root, `db${dirs++}`);
  try {
    console.log(`records: ~${avgBytes.toFixed(0)} bytes each; replay set ${REPLAY_EVENTS.toLocaleString("en")} events; temp ${root}`);
    const sizes: Array<[number, number]> = [[1, 2_000], [100, 100_000], [1000, 200_000]];
    const rawRates = new Map<number, number>();
    for (const [batch, total] of sizes) {
      const raw = await rawAppend(fresh(), batch, total);
      const duet = await duetAppend(fresh(), batch, total, false);
      rawRates.set(batch, raw);
      row(`raw classic-level batch of ${batch} (sync)`, raw, undefined, "");
      row(`duet append, ${batch} events per call`, duet, raw, batch === 1000 ? ">= 0.70x raw" : "");
      if (batch === 1000) {
        const grouped = await duetAppend(fresh(), 1000, 200_000, true);
        row(`duet 1000 concurrent 1-event appends (group commit)`, grouped, duet, ">= 0.50x duet batch 1000");
      }
    }

    // A journal of REPLAY_EVENTS with checkpoints, built by appending.
    const dir = fresh();
    // Checkpoints every 30k: the newest lands 10k events before the end, so open folds a real tail.
    const builder = await openJournal({ dir, node: "node-a", clock: systemClock, projection: counting, checkpointEvery: 30_000 });
    const buildSecs = await timed(async () => {
      for (let i = 0; i < REPLAY_EVENTS; i += BUILD_BATCH) await builder.append(Array.from({ length: BUILD_BATCH }, (_, k) => event(i + k)));
    });
    await builder.close();
    row(`(building the replay journal, 10k per call)`, REPLAY_EVENTS / buildSecs, undefined, "");

    // Raw: iterate the same records' values in the same LevelDB and decode each with msgpackr.
    const raw = new Level<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
    await raw.open();
    const prefix = raw.sublevel<Buffer, Buffer>("events", { keyEncoding: "buffer", valueEncoding: "buffer" });
    let rawCount = 0;
    const rawSecs = await timed(async () => {
      const it = prefix.iterator({ keys: false });
      for (;;) {
        const entries = await it.nextv(1000);
        if (entries.length === 0) break;
        for (const [, value] of entries) {
          const env = unpackr.unpack(value as Buffer) as unknown[];
          if (env.length === 9) rawCount++;
        }
      }
      await it.close();
    });
    await raw.close();
    const rawRead = rawCount / rawSecs;
    row(`raw classic-level iterate + msgpackr decode`, rawRead, undefined, "");

    const reader = await openJournal({ dir, node: "node-a", clock: systemClock, readOnly: true });
    let folded = counting.initial;
    const foldSecs = await timed(async () => {
      for await (const chunk of reader.readChunks()) for (const record of chunk) folded = counting.evolve(folded, record);
    });
    row(`duet replay + fold (readChunks)`, folded.total / foldSecs, rawRead, `>= 0.90x raw read+decode ${targets.check("replay >= 0.90x raw", folded.total / foldSecs / rawRead >= 0.9)}`);
    let perRecord = counting.initial;
    const perRecordSecs = await timed(async () => {
      for await (const record of reader.read()) perRecord = counting.evolve(perRecord, record as Recorded);
    });
    row(`duet replay + fold (read, one record per await)`, perRecord.total / perRecordSecs, rawRead, "");
    await reader.close();

    let fullState: Counts | undefined;
    const fullSecs = await timed(async () => {
      const j = await openJournal({ dir, node: "node-a", clock: systemClock, readOnly: true, projection: { ...counting, name: "bench-no-checkpoint@1" } });
      fullState = j.state();
      await j.close();
    });
    row(`duet open with a new projection: full fold + chain check`, fullState!.total / fullSecs, rawRead, "");

    let fromCheckpoint: Counts | undefined;
    let openStats: JournalStats | undefined;
    const openSecs = await timed(async () => {
      const j = await openJournal({ dir, node: "node-a", clock: systemClock, projection: counting });
      fromCheckpoint = j.state();
      openStats = j.stats();
      await j.close();
    });
    if (fromCheckpoint!.total !== REPLAY_EVENTS) throw new Error(`open from checkpoint folded ${fromCheckpoint!.total} events, expected ${REPLAY_EVENTS}`);

    const width = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows) console.log(r.map((cell, c) => (c === 1 ? cell.padStart(width[c]!) : cell.padEnd(width[c]!))).join("  "));
    console.log(`open ${REPLAY_EVENTS.toLocaleString("en")}-event journal + rebuild from newest checkpoint (${openStats!.rebuiltFromCheckpoint}, then ${openStats!.foldedOnOpen} events folded): ${(openSecs * 1000).toFixed(0)} ms (target < 1000 ms ${targets.check("open from checkpoint < 1000 ms", openSecs < 1)})`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

needFreeDisk("bench:journal", tmpdir(), 2 * 2 ** 30);
await main();
targets.exit();
