import { Command, Option } from "commander";
import { resolve } from "node:path";
import { DUET_VERSION } from "../agent/package-info.ts";
import type { clusterView } from "../api/views.ts";
import type { SnapshotInfo } from "../replication/snapshot.ts";
import { CliError, DEFAULT_CONFIG, exitCodes, type ApiClient } from "./client.ts";

// Every command loads what it needs when it runs: `duet --help` must not load the agent, the
// journal or the API (each a few hundred milliseconds of module loading).
const agentOf = async (o: { config: string; node?: string; url?: string }) => (await import("./context.ts")).localAgent(o);

const program = new Command("duet")
  .description("High availability for a pair of Linux hosts with no shared storage.")
  .version(DUET_VERSION, "-V, --version", "print duet's version")
  .showHelpAfterError()
  .exitOverride();
const configOption = () => new Option("-c, --config <file>", "the cluster config").default(DEFAULT_CONFIG);
const nodeOption = () => new Option("-n, --node <name>", "this node's name (default: the node whose address is local)");
const urlOption = () => new Option("--url <url>", "a remote agent's API (log in first: duet login --url URL)");
const print = (json: boolean, value: unknown, human: string) => console.log(json ? JSON.stringify(value, null, 2) : human);

program
  .command("init")
  .description("write a commented config, a new cluster key (0600) and an admin password")
  .requiredOption("--dir <dir>", "where to write duet.yaml and cluster.key (e.g. /etc/duet)")
  .requiredOption("--cluster <name>", "the cluster's name")
  .requiredOption("--nodes <a=addr,b=addr>", "the two nodes and their addresses")
  .option("--password-stdin", "read the admin password from stdin instead of generating one")
  .option("--force", "replace an existing duet.yaml")
  .action(async (o: { dir: string; cluster: string; nodes: string; passwordStdin?: boolean; force?: boolean }) => {
    const nodes = o.nodes.split(",").map((pair) => {
      const [name, address] = pair.split("=");
      if (!name || !address) throw new CliError(`--nodes: expected name=address,name=address, got "${o.nodes}"`, exitCodes.usage);
      return { name, address };
    });
    if (nodes.length !== 2) throw new CliError(`--nodes: expected exactly two nodes, got ${nodes.length}`, exitCodes.usage);
    const password = o.passwordStdin ? (await new Response(process.stdin as unknown as ReadableStream).text()).trim() : undefined;
    const { initConfig } = await import("../config/init.ts");
    const duetCommand = `${process.execPath} ${resolve(process.argv[1] ?? "duet")}`;
    const result = await initConfig({ dir: o.dir, cluster: o.cluster, nodes: nodes as never, password, force: o.force, duetCommand });
    console.log(`wrote ${result.configFile} and ${result.keyFile} (copy both to the other node)`);
    if (result.unitFile) console.log(`wrote ${result.unitFile}: cp ${result.unitFile} /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now duet`);
    if (result.generatedPassword) console.log(`admin password (shown once): ${result.generatedPassword}`);
  });

program
  .command("agent")
  .description("run the agent of this node (SIGTERM switches its jobs over when allowed, else brings them out)")
  .addOption(configOption())
  .addOption(nodeOption())
  .action(async (o: { config: string; node?: string }) => (await import("./agent-command.ts")).runAgent(o));

program
  .command("status")
  .description("hosts, links, jobs, resources, data link and queue")
  .addOption(configOption())
  .addOption(nodeOption())
  .addOption(urlOption())
  .option("--json", "machine-readable output")
  .action(async (o: { config: string; node?: string; url?: string; json?: boolean }) => {
    const client = await agentOf(o);
    const cluster = await client.get<ReturnType<typeof clusterView>>("/v1/cluster");
    const { renderStatus } = await import("./status.ts");
    print(!!o.json, cluster, renderStatus(cluster));
  });

const job = program.command("job").description("operate a job");
const jobAction = (name: string, description: string, act: (client: ApiClient, job: string, o: Record<string, string | boolean | undefined>) => Promise<{ seq: number }>, extra?: (c: Command) => Command, parent = job, outcomeOf = name) => {
  let command = parent.command(`${name} <job>`).description(description).addOption(configOption()).addOption(nodeOption()).addOption(urlOption()).option("--json", "machine-readable output").option("--no-wait", "return once the request is journaled").option("--timeout <ms>", "how long to wait for the outcome", "120000");
  if (extra) command = extra(command);
  command.action(async (jobName: string, o: Record<string, string | boolean | undefined>) => {
    const client = await agentOf(o as { config: string; node?: string; url?: string });
    const { seq } = await act(client, jobName, o);
    if (o.wait === false) return print(!!o.json, { seq }, `requested (journal seq ${seq})`);
    const [{ waitForOutcome }, { progressBar }] = await Promise.all([import("./follow.ts"), import("./progress.ts")]);
    const bar = o.json ? null : progressBar(name);
    const outcome = await waitForOutcome(client, jobName, seq, outcomeOf, Number(o.timeout), bar?.update).finally(() => bar?.stop());
    print(!!o.json, { seq, outcome }, outcome.text);
    if (!outcome.ok) process.exitCode = exitCodes.failed;
  });
};
jobAction(
  "bring-in",
  "start the job on a node (default: its first node); while the other node runs it, this is a switchover",
  (c, j, o) => c.post(`/v1/jobs/${encodeURIComponent(j)}/bring-in`, { ...(o.on ? { on: o.on } : {}), ...(o.force ? { force: true } : {}) }),
  (c) => c.option("--on <node>", "the node to run it on").option("--force", "even if the switchover is refused: the other node's unreplicated writes are lost (lineage records the fork)"),
);
jobAction("bring-out", "stop the job; it is then unmanaged", (c, j) => c.post(`/v1/jobs/${encodeURIComponent(j)}/bring-out`, {}));
jobAction("switchover", "move the job to the other node (only when the data link is green, verified and the queue empty)", (c, j, o) => c.post(`/v1/jobs/${encodeURIComponent(j)}/switchover`, o.to ? { to: o.to } : {}), (c) => c.option("--to <node>", "the target node"));
jobAction("delete", "remove a brought-out job from the configuration of both nodes (as `duet config apply` would)", (c, j) => c.delete(`/v1/jobs/${encodeURIComponent(j)}`));
jobAction("verify", "compare both sides' mirrored data block by block and ship only what differs", (c, j) => c.post(`/v1/jobs/${encodeURIComponent(j)}/verify`, {}));
const source = program.command("source").description("which node's data a job's mirror keeps");
jobAction(
  "select",
  "restart a gray (or any) mirror with NODE as the source; the other side's data is kept in a snapshot first",
  (c, j, o) => c.post(`/v1/jobs/${encodeURIComponent(j)}/source`, { from: o.from, force: o.force === true }),
  (c) => c.requiredOption("--from <node>", "the node whose data is kept").option("--force", "accept losing the other side's newer writes"),
  source,
  "source",
);

const snapshot = program.command("snapshot").description("snapshots of a job's replica (hard-link trees: cheap to take, never changed afterwards)");
snapshot
  .command("create <job>")
  .description("snapshot this node's copy of the job's data, between two batches (on the replica side)")
  .addOption(configOption())
  .addOption(nodeOption())
  .addOption(urlOption())
  .option("--json", "machine-readable output")
  .action(async (job: string, o: { config: string; node?: string; url?: string; json?: boolean }) => {
    const client = await agentOf(o);
    const taken = await client.post<{ seq: number; snapshot: SnapshotInfo }>(`/v1/jobs/${encodeURIComponent(job)}/snapshots`, {});
    print(!!o.json, taken, `snapshot ${taken.snapshot.name}: ${taken.snapshot.files} files, ${taken.snapshot.bytes} bytes, generation ${taken.snapshot.generation ?? "none"}, batch ${taken.snapshot.batch}`);
  });
snapshot
  .command("list <job>")
  .description("this node's snapshots of the job, oldest first")
  .addOption(configOption())
  .addOption(nodeOption())
  .addOption(urlOption())
  .option("--json", "machine-readable output")
  .action(async (job: string, o: { config: string; node?: string; url?: string; json?: boolean }) => {
    const client = await agentOf(o);
    const { snapshots } = await client.get<{ snapshots: SnapshotInfo[] }>(`/v1/jobs/${encodeURIComponent(job)}/snapshots`);
    const lines = snapshots.map((s) => `${s.name}  ${new Date(s.at).toISOString()}  ${String(s.files).padStart(7)} files  ${String(s.bytes).padStart(12)} bytes  generation ${s.generation ?? "none"}  ${s.reason}`);
    print(!!o.json, snapshots, lines.length > 0 ? lines.join("\n") : `no snapshots of ${job} on this node`);
  });
snapshot
  .command("restore <job> <name>")
  .description("restore a snapshot in place (the job must be brought out; the mirror then resyncs from here) or --to a directory")
  .addOption(configOption())
  .addOption(nodeOption())
  .addOption(urlOption())
  .option("--to <dir>", "restore into this new or empty directory instead")
  .option("--json", "machine-readable output")
  .action(async (job: string, name: string, o: { config: string; node?: string; url?: string; to?: string; json?: boolean }) => {
    const client = await agentOf(o);
    const done = await client.post<{ seq: number }>(`/v1/jobs/${encodeURIComponent(job)}/snapshots/${encodeURIComponent(name)}/restore`, o.to ? { to: resolve(o.to) } : {});
    print(!!o.json, done, o.to ? `restored ${name} into ${resolve(o.to)} (journal seq ${done.seq})` : `restored ${name} in place (journal seq ${done.seq}); the mirror resyncs from this node when the job is brought in here`);
  });

program
  .command("events")
  .description("the journal")
  .command("tail")
  .description("follow the live event stream (resumes after a reconnect)")
  .addOption(configOption())
  .addOption(nodeOption())
  .addOption(urlOption())
  .option("--from <seq>", "start at this seq (default: new events only)")
  .option("--json", "one JSON event per line")
  .action(async (o: { config: string; node?: string; url?: string; from?: string; json?: boolean }) => {
    const client = await agentOf(o);
    const { followEvents } = await import("./follow.ts");
    await followEvents(client, o.from ? Number(o.from) : null, !!o.json);
  });

program
  .command("replay <journals...>")
  .description("merge one or both nodes' journals (directories, exports or gatherinfo bundles), explain and re-check every automatic decision")
  .option("--at <time>", "show each node's state at this time (ISO or epoch ms)")
  .option("--json", "machine-readable output")
  .option("--html <file>", "write a self-contained timeline page")
  .action(async (paths: string[], o: { at?: string; json?: boolean; html?: string }) => {
    const { runReplay } = await import("../../tools/replay/main.ts");
    const { output, exitCode } = await runReplay(paths, o);
    console.log(output);
    process.exitCode = exitCode;
  });

program
  .command("journal")
  .description("this node's journal")
  .command("verify [dir]")
  .description("check the hash chain of a journal (default: this node's, with its agent stopped); exit 1 names the first bad record")
  .addOption(configOption())
  .addOption(nodeOption())
  .option("--json", "machine-readable output")
  .action(async (dir: string | undefined, o: { config: string; node?: string; json?: boolean }) => {
    const { verifyJournalDir } = await import("./maintenance.ts");
    const report = await verifyJournalDir(dir, o);
    print(!!o.json, report, report.ok ? `${report.dir}: ${report.count} records, seq 1..${report.head}, hash chain verified` : `${report.dir}: CHAIN BROKEN at seq ${report.firstBad?.seq} (${report.firstBad?.problem}): ${report.firstBad?.message}; every record from there on is unverified`);
    if (!report.ok) process.exitCode = exitCodes.failed;
  });

program
  .command("gatherinfo")
  .description("write HOSTNAME-NODE-DATE.zip: journal export, redacted config, agent log, versions, network facts")
  .addOption(configOption())
  .addOption(nodeOption())
  .option("--out <dir>", "where to write the bundle", ".")
  .option("--json", "machine-readable output")
  .action(async (o: { config: string; node?: string; out: string; json?: boolean }) => {
    const { gatherinfo } = await import("./maintenance.ts");
    const result = await gatherinfo(o);
    print(!!o.json, result, `wrote ${result.file} (${result.bytes} bytes); duet replay reads it as is`);
  });

const configCommand = program.command("config").description("this node's cluster configuration");
configCommand
  .command("clear")
  .description("forget this node's cluster configuration (journal and config archived, not deleted)")
  .addOption(configOption())
  .addOption(nodeOption())
  .option("--force", "even if the journal says a job runs here")
  .option("--json", "machine-readable output")
  .action(async (o: { config: string; node?: string; force?: boolean; json?: boolean }) => {
    const { clearConfig } = await import("./maintenance.ts");
    const result = await clearConfig({ ...o, force: !!o.force, by: process.env.SUDO_USER ?? process.env.USER ?? "root" });
    print(!!o.json, result, `cleared; the old journal and config are in ${result.archivedTo}`);
  });

configCommand
  .command("apply <file>")
  .description("apply a new configuration to both nodes: the plan first, then only what changed (the old file kept as FILE.prev)")
  .addOption(configOption())
  .addOption(nodeOption())
  .addOption(urlOption())
  .option("--dry-run", "print the plan and apply nothing")
  .option("--force", "apply here even if the peer cannot be reached (it adopts the new version when it is back)")
  .option("--json", "machine-readable output")
  .action(async (file: string, o: { config: string; node?: string; url?: string; dryRun?: boolean; force?: boolean; json?: boolean }) => {
    const [{ applyConfigFile, renderApplied }, client] = await Promise.all([import("./config-apply.ts"), agentOf(o)]);
    const result = await applyConfigFile(client, file, { dryRun: !!o.dryRun, force: !!o.force });
    print(!!o.json, result, renderApplied(result, !!o.dryRun));
    if (!result.plan.allowed) process.exitCode = exitCodes.refused;
  });

program
  .command("demo")
  .description("run two agents on this machine, fail the active one and explain the takeover")
  .option("--keep", "keep the demo's directory for a look afterwards")
  .action(async (o: { keep?: boolean }) => (await import("./demo.ts")).runDemo({ keep: !!o.keep }));

program
  .command("login")
  .description("log in to an agent's API and keep the token (mode 0600) for commands given --url")
  .requiredOption("--url <url>", "the agent's API, e.g. http://10.0.0.1:7320")
  .option("--user <name>", "the user", "admin")
  .option("--password-stdin", "read the password from stdin (else it is asked for)")
  .option("--json", "machine-readable output")
  .action(async (o: { url: string; user: string; passwordStdin?: boolean; json?: boolean }) => {
    const password = o.passwordStdin ? await readStdin() : await askPassword(`password for ${o.user} at ${o.url}: `);
    const { login } = await import("./login.ts");
    const done = await login(o.url, o.user, password);
    print(!!o.json, done, `logged in to ${done.url} as ${done.user} (${done.role}) until ${new Date(done.expiresAt).toISOString()}; token kept in ${done.file}`);
  });

program
  .command("passwd <user>")
  .description("set a user's password in the config (adds the user if new); copy the config to the peer afterwards")
  .addOption(configOption())
  .addOption(new Option("--role <role>", "admin or monitor (default: unchanged, or monitor for a new user)").choices(["admin", "monitor"]))
  .option("--password-stdin", "read the password from stdin (else it is asked for)")
  .option("--json", "machine-readable output")
  .action(async (user: string, o: { config: string; role?: "admin" | "monitor"; passwordStdin?: boolean; json?: boolean }) => {
    const password = o.passwordStdin ? await readStdin() : await askPassword(`new password for ${user}: `);
    const { setPassword } = await import("../config/users.ts");
    const { added } = await setPassword({ configFile: o.config, user, password, role: o.role });
    print(!!o.json, { user, added, config: o.config }, `${added ? "added" : "updated"} ${user} in ${o.config} (the old file is ${o.config}.bak); copy it to the other node and restart both agents`);
  });

async function readStdin(): Promise<string> {
  return (await new Response(process.stdin as unknown as ReadableStream).text()).trim();
}

/** A password typed at a terminal, not echoed; without a terminal, --password-stdin is the way. */
async function askPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) throw new CliError("no terminal to ask for a password: pass --password-stdin", exitCodes.usage, "usage");
  process.stderr.write(prompt);
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let typed = "";
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    const text = chunk.toString("utf8");
    if (text === "\u0003") throw new CliError("cancelled", exitCodes.usage, "usage");
    if (/[\r\n]/.test(text)) break;
    typed += text === "\u007f" ? "" : text;
    if (text === "\u007f") typed = typed.slice(0, -1);
  }
  process.stdin.setRawMode(false);
  process.stdin.pause();
  process.stderr.write("\n");
  return typed;
}

const wantsJson = process.argv.includes("--json");
try {
  await program.parseAsync(process.argv);
} catch (error) {
  const e = error as Error & { exitCode?: number; code?: string };
  if (e.code === "commander.helpDisplayed" || e.code === "commander.version") process.exit(0);
  const { code, exit } = e.code?.startsWith("commander.")
    ? { code: "usage", exit: exitCodes.usage }
    : e instanceof CliError
      ? { code: e.code, exit: e.exitCode }
      : e.name === "ConfigError"
        ? { code: "bad-config", exit: exitCodes.usage }
        : { code: "failed", exit: exitCodes.failed };
  // With --json, scripts read the error from stdout as they read answers; commander already
  // printed its own usage error on stderr.
  if (wantsJson) console.log(JSON.stringify({ error: { code, message: e.message.replace(/^error: /, "") } }));
  if (!e.code?.startsWith("commander.")) console.error(`duet: ${e.message}`);
  process.exit(exit);
}
