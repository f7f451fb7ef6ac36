import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { MemoryLevel } from "memory-level";
import { startAgent, type RunningAgent } from "../../src/agent/agent.ts";
import type { Db } from "../../src/journal/store.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createSimHosts } from "../../src/world/sim-host.ts";
import { createSimNetwork, createVirtualWorld, seededIds, seededRandom } from "../../src/world/sim.ts";
import { createSimWitness } from "../../src/world/sim-witness.ts";
import type { TimerHandle, Timers } from "../../src/world/clock.ts";
import type { ProcessRunner } from "../../src/world/process.ts";
import type { PeerStream, PeerStreams } from "../../src/world/streams.ts";
import type { DatagramTransport } from "../../src/world/transport.ts";

/**
 * Two real agents in one process on a virtual clock: journal (the real code on an in-memory
 * LevelDB, memory-level), reactor, policy, job runner and peer channel, over the simulated network
 * and hosts. A VIP and an application
 * script make job "web"; the ping tiebreaker asks the gateway. Time moves only in step().
 */
export const NODES = ["a", "b"] as const;
export type Node = (typeof NODES)[number];
export const VIP = "10.0.0.100";
export const GATEWAY = "10.0.0.254";
/** etcd, on the public network beside the gateway: a node can lose it and keep the gateway. */
export const ETCD = "10.0.0.250";
const PUBLIC = { a: "10.0.0.1", b: "10.0.0.2" };
const BACKUP = { a: "10.1.0.1", b: "10.1.0.2" };
const STEP_MS = 5;
// A valid scrypt hash: the simulated agents serve no API, so nobody logs in with it.
const HASH = "scrypt$16384$8$1$zWaRi3AcgdHn9V+huDkQng==$0QDF4HPqaUX9VF6x2d7dAvqJNTTFTTDcz2zLU/wHCYg=";

/** A witness (etcd at the gateway) for the pair, as tiebreaker.witness configures it. */
export interface SimWitnessConfig {
  leaseMs: number;
  unreachable: "self-fence" | "keep-running";
}

function configText(dir: string, policy: string, witness: SimWitnessConfig | null): string {
  return `cluster: { name: sim, keyFile: ${join(dir, "cluster.key")} }
nodes:
  - { name: a, address: ${PUBLIC.a}, dataDir: ${join(dir, "a")} }
  - { name: b, address: ${PUBLIC.b}, dataDir: ${join(dir, "b")} }
ports: { api: 7320, peer: 7321 }
heartbeat:
  intervalMs: 500
  deadtimeMs: 3000
  links:
    - { name: lan, port: 7322, addresses: [${PUBLIC.a}, ${PUBLIC.b}] }
    - { name: backup, port: 7323, addresses: [${BACKUP.a}, ${BACKUP.b}] }
tiebreaker:
  ping: { targets: [${GATEWAY}], mode: any, timeoutMs: 500 }
  selfFenceGraceMs: 1000
${witness ? `  witness: { etcd: { endpoints: ["http://${ETCD}:2379"] }, leaseMs: ${witness.leaseMs}, unreachable: ${witness.unreachable} }\n` : ""}jobs:
  - name: web
    policy: ${policy}
    resources:
      - { name: uplink, nic: { interface: eth0 } }
      - { name: ip, vip: { address: ${VIP}/24, interface: eth0, arpCount: 1 } }
      - { name: app, script: { start: [app, start, web], stop: [app, stop, web], monitor: [app, status, web] } }
users:
  - { name: admin, role: admin, passwordHash: "${HASH}" }
`;
}

/**
 * A node's side of the world, which a pause stops as SIGSTOP would: its timers, the datagrams and
 * stream bytes it receives and its commands' results wait until it resumes, then run in order
 * (each periodic timer once). The clock goes on: the node sees that it stalled. A kill ends it as
 * kill -9 would: nothing it waits for ever arrives, and nothing it sends leaves.
 */
function nodeSide(world: ReturnType<typeof createVirtualWorld>, net: ReturnType<typeof createSimNetwork>, hosts: ReturnType<typeof createSimHosts>, node: Node) {
  let paused = false;
  let dead = false;
  const held: (() => void)[] = [];
  const handles = new Set<TimerHandle>();
  const gate =
    <A extends unknown[]>(fn: (...args: A) => void) =>
    (...args: A): void => {
      if (dead) return;
      if (paused) held.push(() => fn(...args));
      else fn(...args);
    };
  const tracked = (handle: TimerHandle): TimerHandle => {
    handles.add(handle);
    return {
      cancel() {
        handle.cancel();
        handles.delete(handle);
      },
    };
  };
  const timers: Timers = {
    after(ms, fn) {
      const handle = world.timers.after(ms, () => {
        handles.delete(handle);
        gate(fn)();
      });
      return tracked(handle);
    },
    every(ms, fn) {
      let waiting = false;
      return tracked(
        world.timers.every(ms, () => {
          if (dead) return;
          if (!paused) return fn();
          if (waiting) return;
          waiting = true;
          held.push(() => {
            waiting = false;
            fn();
          });
        }),
      );
    },
  };
  const transport: DatagramTransport = {
    async bind(address, port) {
      const socket = await net.transport.bind(address, port);
      return { ...socket, send: (...args) => void (dead || socket.send(...args)), onMessage: (handler) => socket.onMessage(gate(handler)) };
    },
  };
  const gated = (stream: PeerStream): PeerStream =>
    new Proxy(stream, {
      get: (target, key) => {
        if (key === "on") return (event: string, listener: (arg: never) => void) => target.on(event as "data", gate(listener) as (chunk: Buffer) => void);
        if (key === "write") return (chunk: Uint8Array) => !dead && target.write(chunk);
        return Reflect.get(target, key);
      },
    });
  const streams = (addresses: readonly string[]): PeerStreams => {
    const inner = net.streamsFor(addresses);
    return {
      listen: (at, h) => inner.listen(at, { connected: gate((s, from) => h.connected(gated(s), from)), refused: gate(h.refused) }),
      dial: (targets, h) => (dead ? { abandon() {} } : inner.dial(targets, { connected: gate((s, target) => h.connected(gated(s), target)), failed: gate(h.failed) })),
    };
  };
  const processes: ProcessRunner = { run: (argv, o) => new Promise((resolve) => void hosts.processes(node).run(argv, o).then(gate(resolve))) };
  return {
    timers,
    transport,
    streams,
    processes,
    pause: () => void (paused = true),
    resume() {
      paused = false;
      for (const fn of held.splice(0)) fn();
    },
    kill() {
      dead = true;
      held.length = 0;
      for (const handle of handles) handle.cancel();
      handles.clear();
    },
  };
}

export async function startSimPair(seed: number, options: { policy?: string; witness?: SimWitnessConfig | null } = {}) {
  const world = createVirtualWorld();
  const net = createSimNetwork(world, { seed, delayMs: [0, 2] });
  const witnessConfig = options.witness ?? null;
  const delays = new Map<string, () => number>();
  const witness = createSimWitness({
    clock: world.clock,
    timers: world.timers,
    address: ETCD,
    open: net.open,
    delay: (from) => {
      let r = delays.get(from);
      if (!r) delays.set(from, (r = seededRandom(seed ^ 0xe7cd ^ from.split(".").reduce((h, p) => h * 31 + Number(p), 7))));
      return r() * 2;
    },
  });
  const hosts = createSimHosts({ timers: world.timers, addresses: PUBLIC, aliases: { a: [BACKUP.a], b: [BACKUP.b] }, gateway: GATEWAY, open: net.open });
  // The agents' files (configuration, job state) in memory where the machine has it.
  const dir = await mkdtemp(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "duet-sim-"));
  const loaded = parseConfig(configText(dir, options.policy ?? "unconditional", witnessConfig), join(dir, "duet.yaml"));
  // The journals in memory: no real I/O, so a step settles on microtasks alone and a seed's
  // outcome never depends on the disk's timing (with LevelDB on tmpfs it could, by a few checks).
  // Each node's database outlives its agent (a crash keeps what was appended, every append being
  // whole before it resolves) and is opened again at its restart.
  const databases = new Map<string, Db>();
  const journalDatabase = (path: string): Db => {
    let db = databases.get(path);
    if (!db) databases.set(path, (db = new MemoryLevel<Buffer, Buffer>({ keyEncoding: "buffer", valueEncoding: "buffer" }) as unknown as Db));
    return db;
  };
  const agents = new Map<Node, RunningAgent>();
  const sides = new Map<Node, ReturnType<typeof nodeSide>>();
  const boots = new Map<Node, number>(NODES.map((node) => [node, 0]));
  // DUET_SIM_LOG=info: the agents' own log lines on stderr, to follow a failing seed.
  const log = pino({ level: process.env.DUET_SIM_LOG ?? "silent", timestamp: () => `,"vt":${world.clock.monotonic()}` }, pino.destination(2));
  /** Starts NODE's agent on a fresh side of the world (each boot draws its own ids). */
  async function boot(node: Node): Promise<void> {
    const side = nodeSide(world, net, hosts, node);
    sides.set(node, side);
    const n = boots.get(node)!;
    boots.set(node, n + 1);
    const world_ = {
      clock: world.clock,
      timers: side.timers,
      transport: side.transport,
      processes: side.processes,
      reach: hosts.reach(node),
      random: seededIds(seed * 2 + NODES.indexOf(node) + 7919 * n),
      heartbeatThread: false,
      streams: side.streams,
      serveApi: false,
      journalDatabase,
      witness: () => witness.storeFor(PUBLIC[node], side.timers),
    };
    agents.set(node, await startAgent({ loaded, node, key: Buffer.alloc(32, 9), log: log.child({ node }), world: world_ }));
  }
  for (const node of NODES) await boot(node);
  /** Nodes whose agent is dead and not started again. */
  const down = new Set<Node>();
  /** Nodes whose host is down with their agent. */
  const hostsDown = new Set<Node>();
  const nicDown = new Set<Node>();
  const paused = new Set<Node>();
  const agent = (node: Node) => agents.get(node)!;
  const addressesOf = (node: Node) => [PUBLIC[node], BACKUP[node]];
  const both = (x: string, y: string) => net.open(x, y) && net.open(y, x);
  const cutOff = () => !both(PUBLIC.a, PUBLIC.b) && !both(BACKUP.a, BACKUP.b);

  /**
   * Real I/O (the journals' appends) done, and what it resolved has run: the world is still. The
   * only real I/O of a simulated agent is its journal, so with none under way microtasks suffice.
   */
  async function settle(): Promise<void> {
    for (;;) {
      for (let i = 0; i < 20; i++) await Promise.resolve();
      if (!NODES.some((n) => agent(n).journal.writing())) return;
      await Promise.all(NODES.map((n) => agent(n).journal.settled()));
      await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Advances virtual time by MS from event to event (the next timer, at most STEP_MS on), settling
   * after each; CHECK runs after each step. Nothing changes between two timers, so no state goes unchecked.
   */
  async function run(ms: number, check?: () => void): Promise<void> {
    const end = world.clock.now() + ms;
    while (world.clock.now() < end) {
      const next = world.nextAt();
      world.advanceTo(Math.min(end, world.clock.now() + STEP_MS, next === null ? end : Math.max(next, world.clock.now())));
      await settle();
      check?.();
    }
  }

  return {
    world,
    net,
    hosts,
    /** The witness configured for this pair, or null; and the simulated etcd itself. */
    witnessConfig,
    witness,
    agent,
    run,
    /** Cuts NODE off from everything: its peer on every link, the gateway and etcd. */
    isolate(node: Node) {
      for (const other of [PUBLIC[node === "a" ? "b" : "a"], GATEWAY, ETCD]) net.partition(PUBLIC[node], other);
      net.partition(BACKUP.a, BACKUP.b);
    },
    /** Cuts the nodes from each other on every link; both still reach the gateway. */
    split() {
      net.partition(PUBLIC.a, PUBLIC.b);
      net.partition(BACKUP.a, BACKUP.b);
    },
    /** What NODE sends to its peer is lost, on every link; the rest flows (an asymmetric cut). */
    cutOneWay(node: Node) {
      const other = node === "a" ? "b" : "a";
      net.cutOneWay(PUBLIC[node], PUBLIC[other]);
      net.cutOneWay(BACKUP[node], BACKUP[other]);
    },
    heal: () => net.heal(),
    /** NODE no longer reaches etcd; its peer and the gateway it still does. */
    cutFromWitness(node: Node) {
      net.partition(PUBLIC[node], ETCD);
    },
    /**
     * Whether the nodes cannot hear each other both ways on any link while each still reaches the
     * gateway: neither can tell the other's death from the cut, and without a witness (issue 18)
     * both may run the job until it heals.
     */
    hiddenFromEachOther() {
      return cutOff() && NODES.every((node) => both(PUBLIC[node], GATEWAY));
    },
    /** Whether no network carries frames (or ARP) both ways between the nodes. */
    cutOff,
    /**
     * NODE's agent dies as under kill -9, its journal kept as it was written (every append is
     * synced before it resolves) and all else lost; with `host`, the host goes too (its addresses,
     * its application, its connections), as in a power loss. restart() boots it again.
     */
    async crash(node: Node, options: { host: boolean }) {
      const dying = agent(node);
      sides.get(node)!.kill();
      hosts.crash(node, options);
      down.add(node);
      if (options.host) {
        hostsDown.add(node);
        for (const address of addressesOf(node)) net.setUp(address, false);
      } else net.reset(addressesOf(node)); // the kernel closes a dead process's sockets
      // The dead agent's code may still be inside an await on its journal: what it appends from
      // now on never completes (the process is gone), and the journal's lock is released.
      (dying.journal as { append: unknown }).append = () => new Promise(() => undefined);
      await dying.journal.close();
    },
    /** Boots NODE again after a crash: the host (if it was down) with nothing running, then the agent. */
    async restart(node: Node) {
      if (!down.has(node)) return;
      if (hostsDown.delete(node)) {
        net.reset(addressesOf(node));
        for (const address of addressesOf(node)) if (!(nicDown.has(node) && address === PUBLIC[node])) net.setUp(address, true);
        hosts.boot(node);
      }
      down.delete(node);
      await boot(node);
    },
    isDown: (node: Node) => down.has(node),
    /** NODE's addresses: public, then backup. */
    addressesOf,
    /** NODE's public NIC loses its carrier (down) or regains it: the public network is gone for it, the backup link stays. */
    setNic(node: Node, up: boolean) {
      if (up) nicDown.delete(node);
      else nicDown.add(node);
      hosts.setNic(node, up);
      if (!hostsDown.has(node)) net.setUp(PUBLIC[node], up);
    },
    setDropRate: (rate: number) => net.setDropRate(rate),
    /** NODE's agent stops as under SIGSTOP (its host still answers ARP); resume() wakes it. */
    pause(node: Node) {
      paused.add(node);
      sides.get(node)!.pause();
    },
    resume(node: Node) {
      paused.delete(node);
      sides.get(node)!.resume();
    },
    /** Whether an operator can reach NODE's agent: not dead, not paused. */
    answers: (node: Node) => !down.has(node) && !paused.has(node),
    job: (node: Node) => agent(node).journal.state().jobs.get("web")!,
    async close() {
      for (const side of sides.values()) side.resume();
      try {
        for (const node of NODES) {
          if (down.has(node)) continue;
          const stopping = agent(node).stop("SIGTERM");
          // Stopping hands jobs over on virtual time: move it along until the agent has closed.
          let done = false;
          void stopping.finally(() => (done = true));
          for (let i = 0; i < 4000 && !done; i++) {
            world.advanceBy(STEP_MS);
            await settle();
          }
          // An agent that does not stop is a finding, not a hang of the simulator.
          if (!done) throw new Error(`agent ${node} did not stop within ${(4000 * STEP_MS) / 1000} s of virtual time after SIGTERM`);
          await stopping;
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
