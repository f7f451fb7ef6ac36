import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { DuetEvent, Recorded } from "../events/catalogue.ts";
import { openJournal, type Journal } from "../journal/journal.ts";
import type { OpenDatabase } from "../journal/store.ts";
import { clusterProjection, type ClusterState } from "../projections/cluster.ts";
import { decideSwitchover } from "../policy/switchover.ts";
import type { Config, JobSpec, WitnessSpec } from "../config/schema.ts";
import type { ConfigPlan } from "../policy/config-change.ts";
import { peerOf, selfNode, type LoadedConfig } from "../config/load.ts";
import { localTokenFile } from "../config/self.ts";
import { startHeartbeat, TCP_LINK } from "../cluster/heartbeat.ts";
import { startPeerChannel } from "../cluster/peer-channel.ts";
import { runTiebreaker, type ArpTarget } from "../cluster/tiebreak.ts";
import { createWitnessSession, type WitnessStore } from "../cluster/witness.ts";
import { etcdGateway } from "../cluster/etcd-gateway.ts";
import { createJobRunner, type JobRunner } from "../resources/runner.ts";
import { createApi } from "../api/app.ts";
import { startApiServer } from "../api/server.ts";
import type { ControlPort } from "../api/ports.ts";
import type { PeerStreams } from "../world/streams.ts";
import { Refusal } from "../api/ports.ts";
import { lateTickGuard, systemClock, systemTimers, type Clock, type Timers } from "../world/clock.ts";
import { createHlc } from "../world/hlc.ts";
import { systemProcesses, type ProcessRunner } from "../world/process.ts";
import { udpTransport, type DatagramTransport } from "../world/transport.ts";
import { systemReach, type TcpReach } from "../world/reach.ts";
import { systemRandom, type RandomSource } from "../world/random.ts";
import { createJobControl } from "./jobs.ts";
import { helloUntilAnswered, jobsRunningHere, parseRelayedFact, reconcile } from "./peer-link.ts";
import { configDiffers } from "../projections/membership.ts";
import { isMirrorRequest, parsePeerRequest, type PeerRequest, type PeerResponse, peerResponse } from "./peer-protocol.ts";
import { createMirrors, type MirroredJob } from "./mirrors.ts";
import { createReactor } from "./reactor.ts";
import { jobDefinitionEvents } from "./definitions.ts";
import { createConfigControl } from "./config.ts";
import type { Logger } from "./log.ts";
import { GATHERINFO_KEPT, writeGatherinfo } from "./gatherinfo.ts";
import { DUET_VERSION } from "./package-info.ts";


/** How often the agent looks for a stall of its own loop. */
export const STALL_WATCH_MS = 100;
/**
 * After a stall, how long the peer has to confirm the jobs still run here (reconnecting first, if
 * it dropped the connection meanwhile) before a stall long enough for a takeover fences them.
 */
export const STALL_CHECK_TIMEOUT_MS = 400;
const STALL_CHECK_POLL_MS = 10;
const HELLO_TIMEOUT_MS = 10_000;

/** A stall check's answer for one job, and how it came. */
interface StallAnswer {
  job: string;
  where: { active: string | null; phase: string } | null;
  error: string | null;
  how: string;
}

export interface AgentWorld {
  clock: Clock;
  timers: Timers;
  transport: DatagramTransport;
  processes: ProcessRunner;
  reach: TcpReach;
  /** Boot and generation ids. */
  random: RandomSource;
  /** Heartbeat sockets in a thread of their own (the system's UDP and clock): production only. */
  heartbeatThread?: boolean;
  /** The peer channel's streams from this node's addresses; absent: TLS with the cluster key over TCP. */
  streams?: (addresses: readonly string[]) => PeerStreams;
  /** false: no HTTP API (a simulated agent is driven through RunningAgent.control). */
  serveApi?: boolean;
  /** The witness's store (absent: etcd through its JSON gateway, as tiebreaker.witness says). */
  witness?: (spec: WitnessSpec) => WitnessStore;
  /** The journal's database (absent: LevelDB in the data directory; the simulator's is in memory). */
  journalDatabase?: OpenDatabase;
}

export interface AgentOptions {
  /** The configuration as read from its file: `duet config apply` replaces the file, gatherinfo bundles it, redacted. */
  loaded: LoadedConfig;
  /** This node's name; resolved from the config by address when absent. */
  node?: string;
  key: Buffer;
  log: Logger;
  world?: AgentWorld;
  /** Asked over the API to clear this node's configuration: the host process stops the agent, then clears. */
  onClearRequested?: (request: { by: string; force: boolean }) => void;
}

export interface RunningAgent {
  node: string;
  journal: Journal<ClusterState>;
  /** "" when the world serves no API. */
  apiUrl: string;
  /** What the API asks of the agent, for a caller in the same process (the simulator). */
  control: ControlPort;
  /** What SIGTERM does: switch brought-in jobs over when the gate allows, else bring them out; then close. */
  stop(signal?: string): Promise<void>;
}

/** The daemon: the only place that knows the journal, the core and every effector. */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const { log } = options;
  // Replaced by a configuration change (adoptConfig): closures that read it at call time see the new one.
  let config = options.loaded.config;
  const world = options.world ?? { clock: systemClock, timers: systemTimers, transport: udpTransport, processes: systemProcesses, reach: systemReach, random: systemRandom, heartbeatThread: true };
  const me = selfNode(config, options.node);
  const peer = peerOf(config, me.name);
  const dataDir = me.dataDir;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const hlc = createHlc(world.clock);
  // The journal's lock refuses a second agent on this data directory with a clear error.
  const journal = await openJournal({ dir: join(dataDir, "journal"), node: me.name, clock: world.clock, hlc, projection: clusterProjection(me.name), warn: (m) => log.warn(m), ...(world.journalDatabase ? { database: world.journalDatabase } : {}) });
  const boot = world.random.hex(8);
  const closers: (() => Promise<void> | void)[] = [() => journal.close()];
  try {
    const record = (events: DuetEvent[]) => (events.length === 0 ? Promise.resolve([] as Recorded[]) : journal.append(events));
    const state = () => journal.state();
    const info = (message: string, fields?: Record<string, unknown>) => log.info(fields ?? {}, message);

    await record([
      { type: "AgentStarted", data: { node: me.name, version: DUET_VERSION, pid: process.pid, configHash: options.loaded.hash, heartbeatIntervalMs: config.heartbeat.intervalMs, suspectMs: config.heartbeat.suspectMs, deadtimeMs: config.heartbeat.deadtimeMs, pingTimeoutMs: config.tiebreaker.ping?.timeoutMs ?? 0, selfFenceGraceMs: config.tiebreaker.selfFenceGraceMs, links: [...config.heartbeat.links.map((l) => ({ link: l.name, kind: "udp" as const })), { link: TCP_LINK, kind: "tcp" as const }] } },
      ...jobDefinitionEvents(config, state()),
    ]);
    const configs = createConfigControl(
      {
        self: me.name,
        keptFile: join(dataDir, "config-in-force.yaml"),
        peer: peer.name,
        state,
        record,
        connected: () => channel.connected(),
        request: (request, timeoutMs) => peerPort.request(request, timeoutMs),
        adopt: (next, plan, by) => adoptConfig(next, plan, by),
        log: (line) => info(line),
      },
      options.loaded,
    );
    await configs.atStart();

    // Journaled before the policy runs: with a witness, no takeover without its key.
    const witnessSpec = config.tiebreaker.witness;
    const witness = witnessSpec
      ? createWitnessSession({
          self: me.name,
          spec: witnessSpec,
          store: world.witness?.(witnessSpec) ?? etcdGateway(witnessSpec.etcd),
          clock: world.clock,
          timers: world.timers,
          report: (fact) => record([fact]).then(() => pokeReactor()),
          onNewLease: () => void reclaimRunning(),
          log: info,
        })
      : null;
    // Under each new lease the keys of the jobs the journal says run here are asked for again
    // (after a restart, what the crash left running among them: the key guards it from a
    // takeover at once); one the peer holds meanwhile fences the job (policy decideWitnessFence).
    const reclaimRunning = async () => {
      for (const job of state().jobs.values()) {
        if (job.active !== me.name || job.phase !== "in" || !witness) continue;
        await record([await witness.claim(job.name, "renew")]);
      }
      pokeReactor();
    };
    // The reactor is made further on; the witness reports from its start.
    let pokeReactor = () => {};
    if (witness) {
      closers.push(() => witness.stop());
      await witness.start();
    }

    // The loop's own stalls, measured first among this agent's timers: a stall past the suspicion
    // time is journaled before anything else, and the reactor asks the peer before it acts again.
    const stalled = lateTickGuard(world.clock, STALL_WATCH_MS);
    /** When (monotonic) the last stall past the suspicion time began. */
    let stallBeganAt = -Infinity;
    const watchdog = world.timers.every(STALL_WATCH_MS, () => {
      const gapMs = stalled();
      if (gapMs === null || gapMs < config.heartbeat.suspectMs) return;
      stallBeganAt = world.clock.monotonic() - gapMs;
      log.warn(`this agent's loop stalled for ${Math.round(gapMs)} ms; asking ${peer.name} whether it still sees this node's jobs here`);
      void record([{ type: "LoopStalled", data: { node: me.name, stalledMs: Math.round(gapMs), sinceAt: Math.round(world.clock.now() - gapMs) } }]).then(() => reactor.poke());
    });
    closers.push(() => watchdog.cancel());

    const runners = new Map<string, JobRunner>();
    const runnerFor = (job: JobSpec) =>
      createJobRunner({
        job: job.name,
        node: me.name,
        resources: job.resources,
        restart: job.restart,
        ctx: { stateDir: join(dataDir, "jobs", job.name), processes: world.processes, clock: world.clock },
        timers: world.timers,
        report: async (events) => {
          await record(events);
          reactor.poke();
        },
        onLoopError: (error) => log.warn({ job: job.name }, `monitor loop: ${error.message}`),
      });
    for (const job of config.jobs) if (job.nodes.includes(me.name)) runners.set(job.name, runnerFor(job));
    closers.push(async () => {
      for (const runner of runners.values()) await runner.close();
    });

    // After a restart the journal may say a job runs here while the peer took it over meanwhile:
    // such a job waits for the policy (decideRecovery), which waits for the hello or the peer's loss.

    // A job found on both is resolved once per reconnect, though both hellos (ours answered, and
    // the peer's) carry the reports: one decision, one record. Declared before the channel starts:
    // a hello may arrive during any await of the start-up below (once, one came while the
    // heartbeat thread started, and met these in their temporal dead zone).
    const resolving = new Set<string>();
    /** Jobs found on both nodes and resolved since the peer channel last came up. */
    const resolvedThisConnection = new Set<string>();
    /** Peer-channel connections so far: a hello retried belongs to the connection it began on. */
    let connections = 0;
    const warnedConfigs = new Set<string>();
    const yielding = new Set<string>();
    let heartbeat: Awaited<ReturnType<typeof startHeartbeat>> | undefined;
    let api: ReturnType<typeof createApi> | undefined;
    const channel = startPeerChannel({
      self: me.name,
      peer: peer.name,
      cluster: config.cluster.name,
      key: options.key,
      // Over every link's addresses too: the control path must survive the loss of any one network.
      listen: channelAddresses(config, me.name).map((address) => ({ address, port: config.ports.peer })),
      ...(world.streams ? { streams: world.streams(channelAddresses(config, me.name)) } : {}),
      connect: channelAddresses(config, peer.name).map((address) => ({ address, port: config.ports.peer })),
      dial: me.name < peer.name,
      keepaliveMs: config.heartbeat.intervalMs,
      random: () => world.random.fraction(),
      timers: world.timers,
      clock: world.clock,
      onRequest: (body) => onPeerRequest(body),
      onMessage: (topic, body) => void onPeerMessage(topic, body),
      onUp: () => {
        connections++;
        resolvedThisConnection.clear();
        void sayHello();
        mirrors.onPeerUp();
      },
      onDown: (reason) => {
        info(`peer channel down: ${reason}`);
        mirrors.onPeerDown();
      },
      onHeard: (at) => heartbeat?.heardTcp(at),
      log: (line) => info(line),
      hlc,
    });
    closers.push(() => channel.close());

    const peerPort = {
      connected: () => channel.connected(),
      async request(request: PeerRequest, timeoutMs: number): Promise<PeerResponse> {
        return peerResponse.parse(await channel.request(request, timeoutMs));
      },
      relay(event: DuetEvent) {
        if (channel.connected()) void channel.send("fact", { type: event.type, data: event.data }).catch(() => undefined);
      },
    };

    const mirrors = createMirrors(
      {
        self: me.name,
        peer: peer.name,
        dataDir,
        state,
        now: () => world.clock.now(),
        record,
        head: () => journal.head(),
        relay: (event) => peerPort.relay(event),
        request: (body, timeoutMs) => channel.request(body, timeoutMs),
        connected: () => channel.connected(),
        timers: world.timers,
        random: world.random,
        log: info,
      },
      config.jobs.filter((j) => j.nodes.includes(me.name)).map(mirroredJob),
    );
    closers.push(() => mirrors.close());
    let snapshotSchedule = mirrors.scheduleSnapshots();
    closers.push(() => snapshotSchedule.cancel());

    const jobs = createJobControl({ self: me.name, state, head: () => journal.head(), now: () => world.clock.now(), timers: world.timers, record, runner: (j) => runners.get(j), peer: peerPort, log: info, mirrors, ...(witness ? { witness } : {}) });

    const reactor = createReactor({
      self: me.name,
      state,
      head: () => journal.head(),
      now: () => world.clock.now(),
      record,
      jobs,
      log: info,
      stallCheck: () => checkAfterStall(),
      ...(witness ? { claim: (job: string) => witness.claim(job, "takeover") } : {}),
      tiebreak: async (kind) => ({
        type: "TiebreakerResult",
        data: await runTiebreaker({
          self: me.name,
          peer: peer.name,
          // A suspicion never runs the fence command: the peer may be there.
          purpose: kind === "reachability" ? "reachability" : "peer-lost",
          ping: config.tiebreaker.ping ?? null,
          fence: kind === "peer-lost" ? (config.tiebreaker.fence ?? null) : null,
          processes: world.processes,
          reach: world.reach,
          clock: world.clock,
          arpTargets: arpTargetsOf(config, me.name, peer.name),
        }),
      }),
    });
    closers.push(() => reactor.stop());
    pokeReactor = () => reactor.poke();

    heartbeat = await startHeartbeat({
      self: me.name,
      peer: peer.name,
      cluster: config.cluster.name,
      key: options.key,
      boot,
      links: config.heartbeat.links.map((link) => {
        const mine = config.nodes.findIndex((n) => n.name === me.name);
        return { id: link.name, local: { address: link.addresses[mine]!, port: link.port }, peer: { address: link.addresses[1 - mine]!, port: link.port } };
      }),
      intervalMs: config.heartbeat.intervalMs,
      suspectMs: config.heartbeat.suspectMs,
      deadtimeMs: config.heartbeat.deadtimeMs,
      transport: world.transport,
      clock: world.clock,
      timers: world.timers,
      thread: world.heartbeatThread,
      holds: () => [...state().jobs.values()].filter((j) => j.active === me.name && (j.phase === "in" || j.phase === "bringing-in")).map((j) => j.name),
      report: (events) => {
        // A peer heard again on a UDP link is up: its channel need not wait for the next retry.
        if (events.some((e) => e.type === "PeerSeen" || (e.type === "LinkUp" && e.data.kind === "udp"))) channel.redial();
        void record(events).then(() => {
          for (const e of events) if (e.type === "PeerSeen" || e.type === "PeerSuspected" || e.type === "PeerLost") info(`${e.type}: ${peer.name}`);
          reactor.poke();
        });
      },
    });
    closers.push(() => heartbeat?.stop());

    /** After a stall: for each job running here, does the peer still see it here, and not run it? */
    async function checkAfterStall(): Promise<DuetEvent> {
      const mine = [...state().jobs.values()].filter((j) => j.active === me.name && j.phase === "in").map((j) => j.name);
      // The peer's frames that waited behind the stall say at once which jobs it took over; a
      // frame says nothing of the others (its list may be short), so those are asked over the
      // channel. The peer may have dropped it while this agent was stalled (the first request may
      // find it gone): ask again over the new one, which the dialer opens at once, until the deadline.
      const deadline = world.clock.monotonic() + STALL_CHECK_TIMEOUT_MS;
      const takenOver = (job: string) => {
        const claims = heartbeat?.peerHolds();
        return !!claims && claims.at >= stallBeganAt && claims.jobs.includes(job);
      };
      const ask = async (job: string): Promise<StallAnswer> => {
        let error = "no answer";
        while (world.clock.monotonic() < deadline) {
          if (takenOver(job)) return { job, where: { active: peer.name, phase: "held" }, error: null, how: "its heartbeat frames" };
          if (!channel.connected()) {
            await new Promise<void>((r) => world.timers.after(STALL_CHECK_POLL_MS, r));
            continue;
          }
          try {
            const answer = await Promise.race([peerPort.request({ kind: "job-where", job }, Math.max(1, deadline - world.clock.monotonic())), framesSay(job)]);
            if (answer === "taken-over") continue;
            return { job, where: answer.ok ? (answer.where ?? null) : null, error: answer.ok ? null : answer.message, how: "the peer channel" };
          } catch (e) {
            error = (e as Error).message;
            await new Promise<void>((r) => world.timers.after(STALL_CHECK_POLL_MS, r));
          }
        }
        return { job, where: null, error, how: "the peer channel" };
      };
      /** Resolves once the frames say the peer holds JOB: a request under way need not be awaited. */
      const framesSay = (job: string) =>
        new Promise<"taken-over">((resolve) => {
          const poll = () => (takenOver(job) ? resolve("taken-over") : world.clock.monotonic() < deadline && world.timers.after(STALL_CHECK_POLL_MS, poll));
          poll();
        });
      const answers = await Promise.all(mine.map(ask));
      const answered = answers.every((a) => a.where !== null);
      const confirmedJobs = answers.filter((a) => a.where?.active === me.name).map((a) => a.job);
      const detail = answers.map((a) => (a.where ? `${a.job}: ${peer.name} sees it ${a.where.phase} on ${a.where.active ?? "no node"} (${a.how})` : `${a.job}: ${a.error}`)).join("; ");
      return { type: "StallChecked", data: { node: me.name, answered, confirmedJobs, detail: detail.slice(0, 1024) } };
    }

    function sayHello(): Promise<void> {
      const connection = connections;
      return helloUntilAnswered({
        ask: () => peerPort.request({ kind: "hello", node: me.name, boot, jobs: jobsRunningHere(state()), configHash: configs.hash(), configVersion: configs.version() }, HELLO_TIMEOUT_MS),
        apply: (jobs, answer) => applyPeerJobs(jobs, answer),
        live: () => connection === connections && channel.connected(),
        alert: async (message) => void (await record([{ type: "AlertRaised", data: { node: me.name, code: "hello-failed", message } }])),
        log: info,
        timers: world.timers,
        peer: peer.name,
      });
    }

    /** Runs WORK unless it already runs for KEY (the other hello's reports arrived meanwhile). */
    async function once(held: Set<string>, key: string, work: () => Promise<void>): Promise<void> {
      if (held.has(key)) return;
      held.add(key);
      try {
        await work();
      } finally {
        held.delete(key);
      }
    }
    async function applyPeerJobs(peerJobs: Extract<PeerRequest, { kind: "hello" }>["jobs"], peerConfig: { configHash?: string; configVersion?: number }): Promise<void> {
      const basis = { basisSeq: journal.head(), decidedAt: world.clock.now() };
      const { facts, bothActive, yields } = reconcile(state(), peer.name, peerJobs, resolvedThisConnection);
      for (const d of yields) {
        await once(yielding, d.job, async () => {
          await record([{ type: "StartAbandoned", data: { job: d.job, node: me.name, code: d.code, reasons: d.reasons, ...basis } }]);
          const underWay = jobs.abandonStart(d.job, `${peer.name} runs ${d.job}`);
          info(`job ${d.job}: ${peer.name} runs it; ${underWay ? "abandoning the start here" : "the start here will not begin"}`);
        });
      }
      for (const choice of bothActive) {
        // Both hellos of one connection report it: resolved once. A connection after that is a new
        // episode (seed 13 of the simulator: a one-way cut never made this node lose its peer, and
        // a resolution from an earlier episode suppressed this one, so both ran the job for good).
        if (resolvedThisConnection.has(choice.job)) continue;
        await once(resolving, choice.job, async () => {
          resolvedThisConnection.add(choice.job);
          await record([{ type: "BothActiveResolved", data: { job: choice.job, node: me.name, keeper: choice.keeper, other: choice.other, code: choice.code, reasons: choice.reasons, ...basis } }]);
          info(`job ${choice.job} was running on both nodes; ${choice.keeper} keeps it (${choice.code})`);
          if (choice.keeper === me.name) {
            // Clients' neighbour tables may point at the other node: tell them at once, and again
            // when the other says it let go of the address (onPeerMessage).
            void runners.get(choice.job)?.announce();
          } else {
            // It ran on two nodes: let go as a fence does (addresses first, processes killed).
            await jobs.fenceHere(choice.job);
            await record([{ type: "JobBroughtIn", data: { job: choice.job, node: peer.name } }]);
          }
        });
      }
      const { configHash: peerHash, configVersion: peerVersion } = peerConfig;
      const reported: DuetEvent = { type: "PeerJobsReported", data: { node: me.name, peer: peer.name, jobs: peerJobs.filter((j) => j.phase === "in").map((j) => j.job), ...(peerHash === undefined ? {} : { configHash: peerHash }), ...(peerVersion === undefined ? {} : { configVersion: peerVersion }) } };
      // The node with the older version adopts the newer one; the alert is for what that leaves
      // different, said once per configuration the peer runs (both hellos carry it).
      const differs = peerHash !== undefined && peerHash !== configs.hash() && !warnedConfigs.has(peerHash) && !(peerVersion !== undefined && peerVersion !== configs.version());
      if (differs) warnedConfigs.add(peerHash);
      const alert: DuetEvent[] = differs ? [{ type: "AlertRaised", data: { node: me.name, code: "config-differs", message: configDiffers(me.name, { hash: configs.hash(), version: configs.version() }, peer.name, { hash: peerHash, ...(peerVersion === undefined ? {} : { version: peerVersion }) }) } }] : [];
      await record([...facts, reported, ...alert]);
      reactor.poke();
      if (peerVersion !== undefined && peerVersion > configs.version()) void catchUpConfig(peerVersion, peerHash);
    }

    /** The peer runs a newer configuration (applied while this node was away): adopt it, or say why not. */
    async function catchUpConfig(peerVersion: number, peerHash: string | undefined): Promise<void> {
      const why = await configs.catchUp(peerVersion, peerHash).catch((error: Error) => error.message);
      if (why === null || warnedConfigs.has(`${peerHash}`)) return;
      warnedConfigs.add(`${peerHash}`);
      log.warn(why);
      await record([{ type: "AlertRaised", data: { node: me.name, code: "config-not-adopted", message: `${peer.name} runs configuration version ${peerVersion}, newer than ${configs.version()} here, but it was not adopted: ${why}`.slice(0, 1000) } }]);
    }

    /** A configuration change journaled: what it changes comes into force, touching nothing else. */
    async function adoptConfig(next: Config, plan: ConfigPlan, by: string): Promise<void> {
      const before = config;
      config = next;
      const deleted = before.jobs.filter((j) => !next.jobs.some((n) => n.name === j.name));
      // Planned while it was out; brought in since (the plan was made before the peer's answer): out first.
      for (const job of deleted) if (state().jobs.get(job.name)?.active === me.name) await jobs.stopHere(job.name);
      await record([...jobDefinitionEvents(next, state()), ...deleted.filter((j) => state().jobs.has(j.name)).map((j): DuetEvent => ({ type: "JobDeleted", data: { job: j.name, by } }))]);
      for (const job of deleted) {
        await runners.get(job.name)?.close();
        runners.delete(job.name);
      }
      for (const job of next.jobs.filter((j) => j.nodes.includes(me.name))) {
        const old = before.jobs.find((j) => j.name === job.name);
        const runner = runners.get(job.name);
        if (!old) mirrors.addJob(mirroredJob(job));
        if (!runner) runners.set(job.name, runnerFor(job));
        else {
          runner.setRestart(job.restart);
          // Under the job's lock: a bring-in or bring-out under way finishes first.
          // The plan already compared them: redefine only a job it lists a resource change for.
          if (old && plan.changes.some((c) => c.scope === `job ${job.name}` && c.item.startsWith("resources"))) {
            const done = await jobs.exclusive(job.name, () => runner.redefine(job.resources));
            for (const f of done.failed) log.warn({ job: job.name }, `configuration change: ${f.resource}: ${f.error}`);
          }
        }
        if (old && job.mirrors.length > 0) mirrors.retune(job.name, { snapshots: job.snapshots, syncMaxMiBps: job.syncMaxMiBps });
        const added = old ? job.mirrors.slice(old.mirrors.length).map((m) => m.path) : [];
        if (added.length > 0) await mirrors.addPaths(job.name, added);
      }
      if (plan.changes.some((c) => c.item === "snapshots" || c.item === "mirrors" || (c.item === "(job)" && c.change === "added"))) {
        await snapshotSchedule.cancel();
        snapshotSchedule = mirrors.scheduleSnapshots();
      }
      api?.reconfigure({ users: next.users, scrape: scrapeOf(next) });
      if (!process.env.DUET_LOG_LEVEL) log.level = next.log.level;
      reactor.poke();
      // The peer's record of our version (its status, its next apply's version) follows at once.
      if (channel.connected()) void sayHello();
    }

    async function onPeerRequest(body: unknown): Promise<unknown> {
      if (isMirrorRequest(body)) return mirrors.onRequest(body);
      let request: PeerRequest;
      try {
        request = parsePeerRequest(body);
      } catch (error) {
        return { ok: false, code: "bad-request", message: (error as Error).message };
      }
      if (request.kind === "hello") {
        if (request.node !== peer.name) return { ok: false, code: "unknown-peer", message: `hello from ${request.node}, expected ${peer.name}` };
        await applyPeerJobs(request.jobs, request);
        return { ok: true, jobs: jobsRunningHere(state()), configHash: configs.hash(), configVersion: configs.version() };
      }
      if (request.kind === "config-offer") return configs.onOffer(request);
      if (request.kind === "config-get") return configs.onGet();
      const answer = await jobs.onPeerRequest(request);
      reactor.poke();
      return answer;
    }

    async function onPeerMessage(topic: string, body: unknown): Promise<void> {
      if (topic !== "fact") return info(`peer message on unknown topic ${topic} ignored`);
      try {
        const fact = parseRelayedFact(body, peer.name);
        await record([fact]);
        reactor.poke();
        // The peer stopped a job that runs here (it lost a both-active resolution): its address is
        // gone now, and clients that still point at its MAC follow at once rather than in 20-30 s.
        const job = fact.type === "JobBroughtOut" ? state().jobs.get(fact.data.job) : undefined;
        if (job?.active === me.name && job.phase === "in") void runners.get(job.name)?.announce();
      } catch (error) {
        log.warn(`peer ${peer.name}: ${(error as Error).message}`);
      }
    }

    const control: ControlPort = {
      bringIn: (job, by, on, force) => jobs.bringIn(job, by, on, force),
      bringOut: (job, by) => jobs.bringOut(job, by),
      switchover: (job, by, to) => jobs.switchover(job, by, to),
      // A job in the configuration is deleted from it, on both nodes, so a restart does not bring it back.
      deleteJob: async (job, by) => {
        const from = journal.head() + 1;
        return (await configs.deleteJob(job, by)) === null ? jobs.deleteJob(job, by) : { seq: from };
      },
      applyConfig: (text, by, options) => configs.apply(text, by, options),
      verify: (job, by) => mirrors.verify(job, by),
      selectSource: (job, from, by, force) => mirrors.selectSource(job, from, by, force),
      takeSnapshot: async (job) => {
        const snapshot = await mirrors.takeSnapshot(job);
        return { seq: journal.head(), snapshot };
      },
      listSnapshots: (job) => mirrors.listSnapshots(job),
      restoreSnapshot: (job, name, to, by) => mirrors.restoreSnapshot(job, name, to, by),
      clearConfig: async (by, force) => {
        if (!options.onClearRequested) throw new Refusal("not-available", "run `duet config clear` on the host with the agent stopped");
        const running = [...state().jobs.values()].filter((j) => j.active === me.name && j.phase !== "out").map((j) => j.name);
        if (running.length > 0 && !force)
          throw new Refusal("job-brought-in", `${running.join(", ")} ${running.length === 1 ? "runs" : "run"} on ${me.name}; bring ${running.length === 1 ? "it" : "them"} out first, or pass force`);
        info(`${by} asked to clear this node's configuration${force ? " (forced)" : ""}: stopping, then archiving`);
        const request = { by, force };
        // After the answer is sent: the agent stops as for SIGTERM (jobs switched over or brought out).
        world.timers.after(50, () => options.onClearRequested?.(request));
        return { archivedTo: join(dataDir, "archive") };
      },
      gatherinfo: async () => {
        const outDir = join(dataDir, "gatherinfo");
        await mkdir(outDir, { recursive: true, mode: 0o700 });
        return writeGatherinfo({ journal, configFile: options.loaded.file, logFile: join(dataDir, "agent.log"), node: me.name, version: DUET_VERSION, outDir, now: world.clock.now(), keep: GATHERINFO_KEPT });
      },
    };
    const cliToken = randomBytes(32).toString("base64url");
    api = createApi({
      journal,
      control,
      users: config.users,
      clock: world.clock,
      timers: world.timers,
      self: me.name,
      localTokens: [{ token: cliToken, user: "local-cli", role: "admin" }],
      scrape: scrapeOf(config),
      log: (level, message) => log[level](message),
      live: { heartbeatAgesMs: () => heartbeatAges(heartbeat, world.clock), ...(witness ? { witnessRemainingMs: () => witness.remainingMs() } : {}) },
    });
    const server = world.serveApi === false ? null : await startApiServer(api, { address: me.address, port: config.ports.api });
    if (server) closers.push(() => server.close());
    closers.push(() => api?.close());
    if (server) {
      await writeFile(localTokenFile(dataDir), `${cliToken}\n`, { mode: 0o600 });
      closers.push(() => rm(localTokenFile(dataDir), { force: true }));
    }

    /**
     * A job awaiting recovery here that the peer's frames say it holds: journaled once per claim,
     * so the policy can let go of what the crash left running even without a hello (decideRecovery).
     */
    let claimed = "";
    const reportClaims = () => {
      const claims = heartbeat?.peerHolds();
      if (!claims) return;
      const recoveringClaimed = [...state().jobs.values()].some((j) => j.recovering && j.active === me.name && claims.jobs.includes(j.name));
      const said = claims.jobs.join(",");
      if (!recoveringClaimed || said === claimed) return;
      claimed = said;
      void record([{ type: "PeerClaimsHeard", data: { node: me.name, peer: peer.name, jobs: claims.jobs } }]).then(() => reactor.poke());
    };
    const tick = world.timers.every(Math.max(100, Math.floor(config.heartbeat.intervalMs / 2)), () => {
      if (!channel.connected() && state().membership.peerStatus === "connected") channel.nudge();
      reportClaims();
      reactor.poke();
    });
    closers.push(() => tick.cancel());
    reactor.poke();
    info(`agent ${me.name} started`, { api: server?.url ?? "none", peer: peer.name });

    let stopping: Promise<void> | null = null;
    return {
      node: me.name,
      journal,
      apiUrl: server?.url ?? "",
      control,
      stop(signal = "SIGTERM") {
        stopping ??= (async () => {
          const running = [...state().jobs.values()].filter((j) => j.active === me.name && j.phase === "in").map((j) => j.name);
          // The journal may still call the peer connected for a deadtime after it went away: ask the channel too.
          const switchable = channel.connected() ? running.filter((j) => decideSwitchover(state(), j, peer.name, world.clock.now()).allowed) : [];
          const action = running.length === 0 ? "none" : switchable.length === running.length ? "switch-over" : "bring-out";
          await record([{ type: "AgentStopping", data: { node: me.name, signal, jobsAction: action } }]);
          await reactor.stop(); // no new automatic decision may start while the jobs are being handed over
          for (const job of running) {
            if (switchable.includes(job)) await jobs.moveToPeer(job, `agent-stop@${me.name}`, "switchover", false);
            else await jobs.stopHere(job);
          }
          await jobs.drain();
          await closeAll(closers, log);
        })();
        return stopping;
      },
    };
  } catch (error) {
    await closeAll(closers, log);
    throw error;
  }
}

/** What the mirrors need of a job's definition. */
function mirroredJob(job: JobSpec): MirroredJob {
  return { name: job.name, paths: job.mirrors.map((m) => m.path), snapshots: job.snapshots, syncMaxMiBps: job.syncMaxMiBps };
}

/** The config's metrics section as the API takes it. */
function scrapeOf(config: Config) {
  const { allowFrom, scrapeTokenSha256 } = config.metrics;
  return { allowFrom, ...(scrapeTokenSha256 === undefined ? {} : { tokenSha256: scrapeTokenSha256 }) };
}

/** A node's addresses for the peer channel: its node address first, then each heartbeat link's. */
export function channelAddresses(config: Config, node: string): string[] {
  const index = config.nodes.findIndex((n) => n.name === node);
  return [...new Set([config.nodes[index]!.address, ...config.heartbeat.links.map((l) => l.addresses[index]!)])];
}

/**
 * Where a standby looks for its peer before taking over: from each interface one of its VIPs would
 * use, the VIP itself (asked as duplicate-address detection) and every address the peer has in the
 * config (a Linux host answers ARP for any of its addresses on any interface); and on each
 * heartbeat link's own network, the peer's address there, from the interface that reaches it. A
 * host whose public NIC is down still answers on its interconnect: its agent may be dead with
 * the job still running there. Only with a VIP, which is what makes arping a requirement.
 */
export function arpTargetsOf(config: Config, self: string, peer: string): ArpTarget[] {
  const mine = config.nodes.findIndex((n) => n.name === self);
  const peerNode = config.nodes.find((n) => n.name === peer);
  const arpable = (a: string | undefined): a is string => !!a && !a.includes(":") && !a.startsWith("127.");
  const peerOnLinks = config.heartbeat.links.map((l) => l.addresses[1 - mine]).filter(arpable);
  const peerAddresses = [peerNode?.address, ...peerOnLinks].filter(arpable);
  const targets = new Map<string, ArpTarget>();
  for (const job of config.jobs) {
    if (!job.nodes.includes(self)) continue;
    for (const r of job.resources) {
      if (!("vip" in r) || r.vip.address.includes(":")) continue;
      const dev = r.vip.interface;
      const vip = r.vip.address.split("/")[0]!;
      targets.set(`${dev} ${vip}`, { interface: dev, address: vip, dad: true });
      for (const address of peerAddresses) targets.set(`${dev} ${address}`, { interface: dev, address, dad: false });
    }
  }
  if (targets.size === 0) return [];
  for (const address of peerOnLinks) targets.set(`route ${address}`, { interface: null, address, dad: false });
  return [...targets.values()];
}

function heartbeatAges(heartbeat: { state(): { links: { id: string; kind: string; lastHeardAt: number | null }[] } } | undefined, clock: Clock) {
  const now = clock.monotonic();
  return (heartbeat?.state().links ?? []).map((l) => ({ link: l.id, kind: l.kind, ageMs: l.lastHeardAt === null ? null : now - l.lastHeardAt }));
}

async function closeAll(closers: (() => Promise<void> | void)[], log: Logger): Promise<void> {
  for (const close of closers.reverse()) {
    try {
      await close();
    } catch (error) {
      log.warn(`while stopping: ${(error as Error).message}`);
    }
  }
}

