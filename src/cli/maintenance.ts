import { mkdir, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig, selfNode } from "../config/load.ts";
import { DUET_VERSION } from "../agent/package-info.ts";
import { writeGatherinfo } from "../agent/gatherinfo.ts";
import { openJournal } from "../journal/journal.ts";
import { clusterProjection } from "../projections/cluster.ts";
import { systemClock } from "../world/clock.ts";
import { CliError, exitCodes, localClient } from "./client.ts";

const exists = (file: string) => stat(file).then(() => true, () => false);
const stamp = () => new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);

/**
 * `duet gatherinfo`: from the running agent (which holds the journal) through its API, or, with the
 * agent stopped, straight from the data directory.
 */
export async function gatherinfo(options: { config: string; node?: string; out: string }): Promise<{ file: string; bytes: number }> {
  const { config } = await loadConfig(options.config);
  const me = selfNode(config, options.node);
  await mkdir(options.out, { recursive: true });
  if (await exists(join(me.dataDir, "cli.token"))) {
    const client = await localClient({ url: `http://${me.address.includes(":") ? `[${me.address}]` : me.address}:${config.ports.api}`, dataDir: me.dataDir });
    const response = await client.stream("/v1/gatherinfo").catch((error: CliError) => {
      if (error.exitCode === exitCodes.unreachable) return null; // a token left by a crashed agent: read the directory instead
      throw error;
    });
    if (response && !response.ok) throw new CliError(`gatherinfo: the agent answered HTTP ${response.status}: ${await response.text()}`, exitCodes.failed);
    if (response) {
      const name = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") ?? "")?.[1] ?? `gatherinfo-${stamp()}.zip`;
      const bytes = new Uint8Array(await response.arrayBuffer());
      const file = join(options.out, name);
      await writeFile(file, bytes, { mode: 0o600 });
      return { file, bytes: bytes.length };
    }
  }
  const journal = await openJournal({ dir: join(me.dataDir, "journal"), node: me.name, clock: systemClock, readOnly: true });
  try {
    return await writeGatherinfo({ journal, configFile: options.config, logFile: join(me.dataDir, "agent.log"), node: me.name, version: DUET_VERSION, outDir: options.out, now: Date.now() });
  } finally {
    await journal.close();
  }
}

/**
 * `duet config clear`: this node forgets its cluster configuration so it can be set up afresh.
 * Nothing is deleted: the journal (with a ConfigCleared record) and the config are archived. Refused
 * while the agent runs, and while the journal says a job runs here unless forced.
 */
export async function clearConfig(options: { config: string; node?: string; force: boolean; by: string }): Promise<{ archivedTo: string }> {
  const { config } = await loadConfig(options.config);
  const me = selfNode(config, options.node);
  if (await exists(join(me.dataDir, "cli.token"))) throw new CliError(`config clear: the agent of ${me.name} is running; stop it first (it switches its jobs over or brings them out)`, exitCodes.refused);
  const archive = join(me.dataDir, "archive", `cleared-${stamp()}`);
  await mkdir(archive, { recursive: true, mode: 0o700 });
  const journalDir = join(me.dataDir, "journal");
  if (await exists(journalDir)) {
    const journal = await openJournal({ dir: journalDir, node: me.name, clock: systemClock, projection: clusterProjection(me.name) });
    try {
      const running = [...journal.state().jobs.values()].filter((j) => j.active === me.name && j.phase !== "out").map((j) => j.name);
      if (running.length > 0 && !options.force)
        throw new CliError(`config clear: the journal says ${running.join(", ")} ${running.length === 1 ? "runs" : "run"} on ${me.name}; bring ${running.length === 1 ? "it" : "them"} out first, or pass --force`, exitCodes.refused);
      await journal.append([{ type: "ConfigCleared", data: { node: me.name, by: options.by, archivedTo: archive, forced: options.force && running.length > 0 } }]);
    } finally {
      await journal.close();
    }
    await rename(journalDir, join(archive, "journal"));
  }
  for (const file of [options.config, config.cluster.keyFile]) if (await exists(file)) await rename(file, join(archive, `${file.split("/").pop()}`)).catch(async () => {
    // another file system: leave the original, but say where the archive is
    await writeFile(join(archive, "NOTE"), `${file} was not moved (different file system); remove it by hand\n`);
  });
  return { archivedTo: archive };
}

/** `duet journal verify [DIR]`: the journal's hash chain walked record by record, read-only. */
export async function verifyJournalDir(dir: string | undefined, options: { config: string; node?: string }) {
  let target = dir;
  if (target === undefined) {
    const { config } = await loadConfig(options.config);
    target = join(selfNode(config, options.node).dataDir, "journal");
  }
  if (!(await exists(target))) throw new CliError(`journal verify: ${target}: no such directory`, exitCodes.notFound, "not-found");
  let journal;
  try {
    journal = await openJournal({ dir: target, node: "verify", clock: systemClock, readOnly: true, warn: () => undefined });
  } catch (error) {
    throw new CliError(`journal verify: ${target}: ${(error as Error).message} (a running agent holds its journal: stop it, or verify a copy or a gatherinfo bundle with duet replay)`, exitCodes.failed, "journal-busy");
  }
  try {
    return { dir: target, ...(await journal.verify()) };
  } finally {
    await journal.close();
  }
}
