import { copyFile, open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { isMap, isSeq, parseDocument } from "yaml";
import type { DuetEvent, Recorded } from "../events/catalogue.ts";
import type { ClusterState } from "../projections/cluster.ts";
import type { Config } from "../config/schema.ts";
import { ConfigError, parseConfig, type LoadedConfig } from "../config/load.ts";
import { planConfigChange, planLines, type ConfigPlan } from "../policy/config-change.ts";
import { Refusal, type ConfigApplied } from "../api/ports.ts";
import type { PeerRequest, PeerResponse } from "./peer-protocol.ts";

/** How long the peer has to plan, write and journal an offered configuration. */
const OFFER_TIMEOUT_MS = 15_000;
/** An offer that waited this close to the asker's timeout is refused rather than applied after it gave up. */
const OFFER_MARGIN_MS = 2000;

export interface ConfigHost {
  self: string;
  /** Where the document in force is kept (mode 0600), so the next start can say what an edit changed. */
  keptFile: string;
  peer: string;
  state(): ClusterState;
  record(events: DuetEvent[]): Promise<Recorded[]>;
  connected(): boolean;
  request(request: PeerRequest, timeoutMs: number): Promise<PeerResponse>;
  /** Puts NEXT in force: what the plan said, after ConfigChanged is journaled. */
  adopt(next: Config, plan: ConfigPlan, by: string): Promise<void>;
  log(line: string): void;
}

type Parsed = { loaded: LoadedConfig; plan: ConfigPlan };

/**
 * The configuration in force on this node, its version, and how a new one is applied to both
 * nodes: planned (policy/config-change), offered to the peer, which plans and applies it too, then
 * written here (the old file kept beside it) and journaled. A node that was away adopts the
 * peer's newer version when they meet again.
 */
export function createConfigControl(host: ConfigHost, initial: LoadedConfig) {
  let running = initial;
  let chain: Promise<unknown> = Promise.resolve();
  /** An apply of ours under way: an offer from the peer meanwhile is refused, not queued behind it. */
  let applying = false;
  /** One change at a time: an apply, an offer, an adoption, and what each then does to the jobs. */
  const serial = <T,>(work: () => Promise<T>): Promise<T> => {
    const next = chain.then(work, work);
    chain = next.catch(() => undefined);
    return next;
  };
  // Set with `running`, after its ConfigChanged is journaled: a hello or config-get never pairs a
  // new version with the old document.
  let inForce = host.state().membership.config?.version ?? 0;
  const version = () => inForce;
  const places = () => new Map([...host.state().jobs.values()].map((j) => [j.name, { phase: j.phase, active: j.active, recovering: j.recovering === true }]));

  function parse(text: string): Parsed {
    let loaded: LoadedConfig;
    try {
      loaded = parseConfig(text, running.file);
    } catch (error) {
      if (error instanceof ConfigError) throw new Refusal("bad-config", error.message, { issues: error.issues });
      throw error;
    }
    return { loaded, plan: planConfigChange(running.config, loaded.config, places()) };
  }

  /** The config file replaced whole, the old one kept as FILE.prev. */
  async function writeFile(text: string): Promise<void> {
    await copyFile(running.file, `${running.file}.prev`).catch(() => undefined);
    await writeFileAtomic(running.file, text);
  }

  async function keep(text: string): Promise<void> {
    await writeFileAtomic(host.keptFile, text).catch((error: Error) => host.log(`keeping the configuration in force: ${error.message}`));
  }

  /**
   * The file first, then the journal (a crash between them is seen at the next start as an edited
   * file), then what the plan does. Returns once it is done; the next apply waits for it anyway.
   */
  async function applyHere(parsed: Parsed, text: string, newVersion: number, by: string): Promise<{ done: Promise<void> }> {
    await writeFile(text);
    await host.record([{ type: "ConfigChanged", data: { node: host.self, version: newVersion, configHash: parsed.loaded.hash, previousHash: running.hash, by, changes: planLines(parsed.plan).slice(0, 500).map((l) => l.slice(0, 400)) } }]);
    running = parsed.loaded;
    inForce = newVersion;
    await keep(text);
    host.log(`configuration version ${newVersion} (hash ${parsed.loaded.hash}) in force, applied by ${by}`);
    const done = host.adopt(parsed.loaded.config, parsed.plan, by);
    chain = chain.then(() => done).catch((error: Error) => host.log(`configuration version ${newVersion}: ${error.message}`));
    return { done };
  }

  function refusedMessage(plan: ConfigPlan): string {
    const refused = plan.changes.filter((c) => c.refused);
    return `refused: ${refused.map((c) => `${c.scope}: ${c.item}: ${c.refused}`).join("; ")}`;
  }

  async function offer(text: string, newVersion: number, by: string, force: boolean): Promise<ConfigApplied["peer"]> {
    if (!host.connected()) {
      if (force) return "not-reached";
      throw new Refusal("peer-unreachable", `${host.peer} cannot be reached, so it would keep the old configuration; pass force to apply it here only (${host.peer} adopts version ${newVersion} when it is back)`);
    }
    let answer: PeerResponse;
    try {
      answer = await host.request({ kind: "config-offer", version: newVersion, text, by }, OFFER_TIMEOUT_MS);
    } catch (error) {
      if (force) return "not-reached";
      throw new Refusal("peer-unreachable", `${host.peer} did not answer the offer (${(error as Error).message}); pass force to apply it here only`);
    }
    const known = ["config-refused", "config-conflict", "config-busy", "bad-config"];
    if (!answer.ok) throw new Refusal(known.includes(answer.code) ? answer.code : "peer-refused", `${host.peer} refused the configuration: ${answer.message}`);
    return "applied";
  }

  async function applyingNow<T>(work: () => Promise<T>): Promise<T> {
    applying = true;
    try {
      return await work();
    } finally {
      applying = false;
    }
  }

  /** The running document without job NAME (comments and layout kept). */
  function withoutJob(name: string): string | null {
    const doc = parseDocument(running.text);
    const jobs = doc.get("jobs");
    if (!isSeq(jobs)) return null;
    const index = jobs.items.findIndex((item) => isMap(item) && item.get("name") === name);
    if (index < 0) return null;
    jobs.items.splice(index, 1);
    return doc.toString();
  }

  async function applyNow(text: string, by: string, options: { dryRun: boolean; force: boolean }): Promise<ConfigApplied> {
    const parsed = parse(text);
    const peerVersion = host.state().membership.peerReport?.configVersion ?? 0;
    const newVersion = Math.max(version(), peerVersion) + 1;
    const result = (applied: boolean, peer: ConfigApplied["peer"]): ConfigApplied => ({ applied, version: applied ? newVersion : version(), hash: parsed.loaded.hash, plan: parsed.plan, peer });
    if (!parsed.plan.allowed && !options.dryRun) throw new Refusal("config-refused", refusedMessage(parsed.plan), { plan: parsed.plan });
    if (options.dryRun) return { ...result(false, "not-asked"), version: newVersion };
    // The same document again: nothing to do, unless the peer runs another (then it is offered).
    const peerHash = host.state().membership.peerReport?.configHash;
    if (parsed.loaded.hash === running.hash && (peerHash === undefined || peerHash === running.hash)) return result(false, "unchanged");
    const peer = await offer(text, newVersion, by, options.force);
    await (await applyHere(parsed, text, newVersion, by)).done;
    return result(true, peer);
  }

  /** What an edit made while the agent was stopped changed, from the document kept at the last change. */
  async function editedLines(lastHash: string): Promise<string[]> {
    const kept = await readFile(host.keptFile, "utf8").catch(() => null);
    let before: LoadedConfig | null = null;
    try {
      before = kept === null ? null : parseConfig(kept, host.keptFile);
    } catch {
      // unreadable: said below
    }
    if (!before || before.hash !== lastHash) return ["the file was changed while the agent was stopped (the version before it was not kept)"];
    return planLines(planConfigChange(before.config, running.config, places())).map((l) => l.slice(0, 400)).slice(0, 500);
  }

  return {
    config: () => running.config,
    hash: () => running.hash,
    version,

    /** At the agent's start: a file that differs from the last journaled one was edited meanwhile, a new version. */
    async atStart(): Promise<void> {
      const last = host.state().membership.config;
      if (last?.hash === running.hash) return keep(running.text);
      const edited = version() + 1;
      await host.record([{ type: "ConfigChanged", data: { node: host.self, version: edited, configHash: running.hash, previousHash: last?.hash ?? null, by: "file", changes: last ? await editedLines(last.hash) : [] } }]);
      inForce = edited;
      await keep(running.text);
    },

    /** `duet config apply`: the plan; applied on both nodes unless a dry run. */
    apply(text: string, by: string, options: { dryRun: boolean; force: boolean }): Promise<ConfigApplied> {
      return serial(() => (options.dryRun ? applyNow(text, by, options) : applyingNow(() => applyNow(text, by, options))));
    },

    /** `duet job delete`: the document in force without JOB, applied like any other; null if it has no such job. */
    deleteJob(job: string, by: string): Promise<ConfigApplied | null> {
      return serial(async () => {
        const text = withoutJob(job);
        return text === null ? null : applyingNow(() => applyNow(text, by, { dryRun: false, force: false }));
      });
    },

    /** The peer offers a configuration (it is applying it): plan it here too, and apply it or say why not. */
    onOffer(request: Extract<PeerRequest, { kind: "config-offer" }>): Promise<PeerResponse> {
      // Both nodes applying at once would each wait for the other and then take the other's file.
      if (applying) return Promise.resolve({ ok: false, code: "config-busy", message: `${host.self} is applying a configuration of its own; try again` });
      const received = performance.now();
      return serial(async () => {
        // Queued behind an earlier change that took long: the asker has given up and reported a failure.
        const waitedMs = Math.round(performance.now() - received);
        if (waitedMs > OFFER_TIMEOUT_MS - OFFER_MARGIN_MS) return { ok: false, code: "config-busy", message: `${host.self} was busy with an earlier change for ${waitedMs} ms; try again` };
        let parsed: Parsed;
        try {
          parsed = parse(request.text);
        } catch (error) {
          return { ok: false, code: "bad-config", message: (error as Error).message };
        }
        if (parsed.loaded.hash === running.hash) return { ok: true, configVersion: version() };
        if (request.version <= version())
          return { ok: false, code: "config-conflict", message: `${host.self} runs version ${version()} (hash ${running.hash}) already; offered version ${request.version} is not newer` };
        if (!parsed.plan.allowed) return { ok: false, code: "config-refused", message: refusedMessage(parsed.plan) };
        // Answered once journaled: starting and stopping resources where the job runs may take
        // longer than the asker waits, and the asker's own apply waits for nothing of it.
        await applyHere(parsed, request.text, request.version, request.by);
        return { ok: true, configVersion: request.version };
      });
    },

    onGet(): PeerResponse {
      return { ok: true, config: { version: version(), text: running.text } };
    },

    /**
     * After a hello: the peer runs a newer version (it applied one while this node was away, or
     * its file was edited): adopt it if it applies online. Returns why not, for an alert.
     */
    catchUp(peerVersion: number | undefined, peerHash: string | undefined): Promise<string | null> {
      return serial(async () => {
        if (peerVersion === undefined || peerVersion <= version()) return null;
        if (peerHash === running.hash) {
          // The same document under a newer number (its file was edited back, say): take the number.
          await host.record([{ type: "ConfigChanged", data: { node: host.self, version: peerVersion, configHash: running.hash, previousHash: running.hash, by: "peer", changes: [] } }]);
          inForce = peerVersion;
          return null;
        }
        const answer = await host.request({ kind: "config-get" }, OFFER_TIMEOUT_MS);
        if (!answer.ok || !answer.config) return `${host.peer} did not send its configuration${answer.ok ? "" : `: ${answer.message}`}`;
        let parsed: Parsed;
        try {
          parsed = parse(answer.config.text);
        } catch (error) {
          return `${host.peer}'s version ${answer.config.version} does not load here: ${(error as Error).message}`;
        }
        if (!parsed.plan.allowed) return `${host.peer}'s version ${answer.config.version} cannot be adopted online: ${refusedMessage(parsed.plan)}`;
        await (await applyHere(parsed, answer.config.text, answer.config.version, "peer")).done;
        return null;
      });
    },

  };
}

export type ConfigControl = ReturnType<typeof createConfigControl>;

/** Written beside FILE, synced, renamed over it, the directory synced: never half a file. */
async function writeFileAtomic(file: string, text: string): Promise<void> {
  const temp = `${file}.new`;
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  const dir = await open(dirname(file), "r");
  await dir.sync().finally(() => dir.close());
}
