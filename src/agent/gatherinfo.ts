import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { hostname, release, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { zipSync, type Zippable } from "fflate";
import type { Journal } from "../journal/journal.ts";
import { redactConfigText } from "../config/redact.ts";

const run = promisify(execFile);
/** The agent log taken into a bundle: its tail, enough for the last incident. */
export const BUNDLE_LOG_MAX_BYTES = 8 * 1024 * 1024;
/** The bundle's journal export name: tools/replay reads a bundle by it. */
export const BUNDLE_JOURNAL_NAME = "journal.duetj";

/** The network facts an engineer asks for first, each command bounded; a missing tool is noted, not fatal. */
const NETWORK_COMMANDS: [string, string[]][] = [
  ["ip-addr.txt", ["ip", "addr"]],
  ["ip-route.txt", ["ip", "route"]],
  ["ip-link.txt", ["ip", "-s", "link"]],
  ["ip-neigh.txt", ["ip", "neigh"]],
  ["nft-ruleset.txt", ["nft", "list", "ruleset"]],
];

export interface GatherinfoInput {
  journal: Pick<Journal<unknown>, "exportRange" | "head">;
  configFile: string;
  logFile: string;
  node: string;
  version: string;
  outDir: string;
  now: number;
  /** Keep at most this many bundles of this node in outDir, the newest (the agent's own directory); absent: keep all. */
  keep?: number;
}

/** Bundles the agent keeps in DATADIR/gatherinfo: each holds the whole journal export. */
export const GATHERINFO_KEPT = 3;

/**
 * A support bundle, HOSTNAME-DATE.zip: a verifiable journal export (replay reads the bundle as is),
 * the config with secrets redacted (the cluster key is never read), the agent's log, versions and
 * network facts. Written to a temporary name and renamed, so a half-written bundle is never seen.
 */
export async function writeGatherinfo(input: GatherinfoInput): Promise<{ file: string; bytes: number }> {
  const work = await mkdtemp(join(tmpdir(), "duet-gatherinfo-"));
  try {
    const journalFile = join(work, BUNDLE_JOURNAL_NAME);
    const exported = await input.journal.exportRange({}, journalFile);
    const files: Zippable = {};
    const text = (s: string) => new TextEncoder().encode(s);
    files[BUNDLE_JOURNAL_NAME] = new Uint8Array(await readFile(journalFile));
    files["config-redacted.yaml"] = text(redactConfigText(await readFile(input.configFile, "utf8").catch((e: Error) => `unreadable: ${e.message}`)));
    files["agent.log"] = new Uint8Array(await tail(input.logFile, BUNDLE_LOG_MAX_BYTES));
    files["versions.txt"] = text(
      [`duet ${input.version}`, `node ${process.version}`, `kernel ${release()}`, `host ${hostname()}`, `duet node ${input.node}`, `journal seq 1..${exported.to} (${exported.count} records)`, `collected ${new Date(input.now).toISOString()}`].join("\n") + "\n",
    );
    for (const [name, argv] of NETWORK_COMMANDS) {
      const output = await run(argv[0]!, argv.slice(1), { timeout: 10_000 }).then(
        (r) => r.stdout,
        (e: Error) => `${argv.join(" ")} failed: ${e.message}\n`,
      );
      files[`network/${name}`] = text(output);
    }
    const stamp = new Date(input.now).toISOString().replace(/[:.]/g, "-").slice(0, 19);
    const file = join(input.outDir, `${hostname()}-${input.node}-${stamp}.zip`);
    const zip = zipSync(files, { level: 6 });
    await writeFile(`${file}.partial`, zip, { mode: 0o600 });
    const { rename } = await import("node:fs/promises");
    await rename(`${file}.partial`, file);
    if (input.keep !== undefined) await pruneBundles(input.outDir, input.node, input.keep);
    return { file, bytes: zip.length };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The oldest of this node's bundles in `dir` beyond `keep` are removed (names sort by their time). */
async function pruneBundles(dir: string, node: string, keep: number): Promise<void> {
  const { readdir } = await import("node:fs/promises");
  const mine = (await readdir(dir)).filter((f) => f.startsWith(`${hostname()}-${node}-`) && f.endsWith(".zip")).sort();
  for (const old of mine.slice(0, Math.max(0, mine.length - keep))) await rm(join(dir, old), { force: true });
}

async function tail(file: string, maxBytes: number): Promise<Buffer> {
  const size = await stat(file).then((s) => s.size, () => -1);
  if (size < 0) return Buffer.from(`no log at ${file}\n`);
  const all = await readFile(file);
  return size > maxBytes ? all.subarray(size - maxBytes) : all;
}
