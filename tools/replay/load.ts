import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import type { Recorded } from "../../src/events/catalogue.ts";
import { importJournal, openJournal, verifyExport } from "../../src/journal/journal.ts";
import { systemClock } from "../../src/world/clock.ts";
import { BUNDLE_JOURNAL_NAME } from "../../src/agent/gatherinfo.ts";

/** One node's history as replay reads it: its records, in seq order, and where they came from. */
export interface LoadedJournal {
  node: string;
  source: string;
  records: Recorded[];
  /** The chain check of the source; replay reports a broken chain but still shows what it can. */
  verified: { ok: boolean; message?: string; firstBadSeq?: number };
}

/** Bounds what replay holds in memory: a forensic read, not a bulk export. */
export const REPLAY_RECORDS_MAX = 2_000_000;
const EXPORT_NAME_IN_BUNDLE = BUNDLE_JOURNAL_NAME;

/**
 * Reads a journal directory (a stopped node's, or a copy), a journal export file, or a
 * gatherinfo bundle (.zip holding journal.duetj). Sources are never modified: an export is
 * imported into a temporary directory first.
 */
export async function loadJournal(source: string): Promise<LoadedJournal> {
  const info = await stat(source).catch(() => {
    throw new Error(`replay: ${source}: no such file or directory`);
  });
  if (info.isDirectory()) return readDirectory(source, source);
  const head = (await readFile(source)).subarray(0, 8);
  if (head.subarray(0, 2).toString("latin1") === "PK") return readBundle(source);
  if (head.toString("latin1") === "DUETJRNL") return readExport(source, source);
  throw new Error(`replay: ${source}: not a journal directory, a journal export (DUETJRNL) or a gatherinfo bundle (.zip)`);
}

async function readDirectory(dir: string, source: string): Promise<LoadedJournal> {
  const journal = await openJournal({ dir, node: "replay", clock: systemClock, readOnly: true });
  try {
    const report = await journal.verify();
    const records: Recorded[] = [];
    try {
      for await (const chunk of journal.readChunks()) {
        if (records.length + chunk.length > REPLAY_RECORDS_MAX) throw new Error(`replay: ${source}: more than ${REPLAY_RECORDS_MAX} records; export a range first`);
        records.push(...chunk);
      }
    } catch (error) {
      if (report.ok) throw error;
      // A broken record ends the readable history; verify() already names it.
    }
    const node = records.find((r) => r.type === "AgentStarted")?.node ?? records[0]?.node ?? "unknown";
    return { node, source, records, verified: report.ok ? { ok: true } : { ok: false, message: report.firstBad?.message ?? "verification failed", firstBadSeq: report.firstBad?.seq ?? 1 } };
  } finally {
    await journal.close();
  }
}

async function readExport(file: string, source: string): Promise<LoadedJournal> {
  const dir = await mkdtemp(join(tmpdir(), "duet-replay-"));
  try {
    const check = await verifyExport(file);
    await importJournal(file, join(dir, "journal"), "replay-import");
    const loaded = await readDirectory(join(dir, "journal"), source);
    return check.ok ? loaded : { ...loaded, verified: { ok: false, message: check.firstBad?.message ?? "export failed verification", firstBadSeq: check.firstBad?.seq ?? 1 } };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function readBundle(zipFile: string): Promise<LoadedJournal> {
  const entries = unzipSync(new Uint8Array(await readFile(zipFile)), { filter: (f) => f.name.endsWith(EXPORT_NAME_IN_BUNDLE) });
  const [name, bytes] = Object.entries(entries)[0] ?? [];
  if (!name || !bytes) throw new Error(`replay: ${zipFile}: the bundle holds no ${EXPORT_NAME_IN_BUNDLE}`);
  const dir = await mkdtemp(join(tmpdir(), "duet-replay-"));
  try {
    await writeFile(join(dir, EXPORT_NAME_IN_BUNDLE), bytes);
    return await readExport(join(dir, EXPORT_NAME_IN_BUNDLE), zipFile);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export { EXPORT_NAME_IN_BUNDLE };
