import type { DuetEvent } from "../events/catalogue.ts";
import type { TimerHandle, Timers } from "../world/clock.ts";
import { ResourceError, StartAbandoned, createAgent, throwIfAbandoned, type AgentContext, type MonitorResult, type ResourceAgent } from "./agent.ts";
import { kindOf, resourceChange, type ResourceSpec, type RestartSpec } from "./spec.ts";
import { restartsInPlace } from "../policy/failover.ts";

export type BringInResult = { ok: true } | { ok: false; resource: string; error: string; abandoned?: boolean };

export interface JobRunner {
  /** signal: abandon the start (the peer runs the job after all): what was started is stopped again. */
  bringIn(options?: { signal?: AbortSignal }): Promise<BringInResult>;
  /**
   * urgent (self-fence): virtual IPs go first, so a node that may be cut off stops claiming them at
   * once, and processes are killed rather than asked to exit, and nothing waits for a monitor run
   * under way, so the stop ends within the wait the standby's takeover counts on (peerReleasedAfterMs).
   */
  bringOut(options?: { urgent?: boolean }): Promise<{ ok: boolean; failed: { resource: string; error: string }[] }>;
  /** Each resource's monitor, without acting: what runs here after an agent restart. */
  probe(): Promise<{ resource: string; running: boolean }[]>;
  monitoring(): boolean;
  /** Announces the job's addresses again (gratuitous ARP), without touching anything else. */
  announce(): Promise<void>;
  /**
   * A configuration change of the job's resources. Running here: removed and changed ones stop
   * (in reverse order), changed and added ones start in their place in the order, the others keep
   * running; a change of timings only is followed by the monitor. Not running: only redefined.
   */
  redefine(resources: ResourceSpec[]): Promise<{ ok: boolean; failed: { resource: string; error: string }[] }>;
  /** The restart threshold a configuration change set: counted against from the next failure on. */
  setRestart(restart: RestartSpec): void;
  close(): Promise<void>;
}

export interface JobRunnerOptions {
  job: string;
  node: string;
  resources: ResourceSpec[];
  restart: RestartSpec;
  ctx: Omit<AgentContext, "job" | "node" | "timers">;
  timers: Timers;
  report: (events: DuetEvent[]) => Promise<void>;
  /** Where a monitor loop's failure to report goes (the journal refused): the loop itself carries on. */
  onLoopError?: (error: Error) => void;
}

/** Slack over an action's own timeout before the runner gives up on it: the agent's own kill and clean-up come first. */
export const ACTION_MARGIN_MS = 5000;
/** Failure times kept per resource: only the count within the window matters, and it is compared with restart.max (<= 100). */
const FAILURES_KEPT_MAX = 1000;

function bounded<T>(work: Promise<T>, ms: number, timers: Timers, what: string): Promise<T> {
  let handle: TimerHandle | undefined;
  const timeout = new Promise<never>((_, reject) => {
    handle = timers.after(ms, () => reject(new Error(`${what} timed out after ${ms} ms`)));
  });
  return Promise.race([work, timeout]).finally(() => handle?.cancel());
}

/**
 * The resources of one job on this node: started in order, stopped in reverse, watched by one
 * monitor loop each. A failing monitor restarts its resource in place up to restart.max times
 * within restart.windowMs; past that it only reports, and the policy moves the job.
 */
export function createJobRunner(options: JobRunnerOptions): JobRunner {
  const { job, node, timers, report } = options;
  const ctx: AgentContext = { ...options.ctx, job, node, timers: options.timers };
  /** restarting: a monitor run of it is past its check, stopping and starting it in place. */
  type Resource = { spec: ResourceSpec; agent: ResourceAgent; failures: number[]; failing: boolean; leftToPolicy: boolean; restarting: boolean };
  const resources: Resource[] = options.resources.map((spec) => ({ spec, agent: createAgent(spec, ctx), failures: [], failing: false, leftToPolicy: false, restarting: false }));
  const loops = new Map<Resource, TimerHandle>();
  /** Monitor runs under way (with their restarts): a bring-out waits for them, or a restart could start a resource again behind it. */
  const inflight = new Map<Resource, Promise<void>>();
  let restart = options.restart;
  let generation = 0; // bumps when monitoring stops, so a monitor run in flight does not act afterwards

  const fact = <T extends DuetEvent["type"]>(type: T, data: Record<string, unknown>) => ({ type, data: { job, node, ...data } }) as DuetEvent;

  type StartFailure = { error: string; exitCode?: number; abandoned?: boolean };
  async function start(r: Resource, signal?: AbortSignal): Promise<StartFailure | null> {
    try {
      throwIfAbandoned(r.spec.name, signal);
      await bounded(r.agent.start({ signal }), r.spec.startTimeoutMs + ACTION_MARGIN_MS, timers, `${r.spec.name}: start`);
      return null;
    } catch (error) {
      if (error instanceof StartAbandoned) return { error: error.message, abandoned: true };
      const exitCode = error instanceof ResourceError ? error.exitCode : undefined;
      return { error: (error as Error).message, ...(exitCode === undefined ? {} : { exitCode }) };
    }
  }

  async function stop(r: Resource, urgent = false): Promise<string | null> {
    try {
      await bounded(r.agent.stop({ urgent }), r.spec.stopTimeoutMs + ACTION_MARGIN_MS, timers, `${r.spec.name}: stop`);
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  }

  /** Stops and reports; the error, if any, for the caller's list. */
  async function stopReported(r: Resource, urgent = false): Promise<string | null> {
    const error = await stop(r, urgent);
    await report([error === null ? fact("ResourceStopped", { resource: r.spec.name }) : fact("ResourceStopFailed", { resource: r.spec.name, error })]);
    return error;
  }

  function monitor(r: Resource): Promise<MonitorResult> {
    return bounded(r.agent.monitor(), r.spec.monitor.timeoutMs + ACTION_MARGIN_MS, timers, `${r.spec.name}: monitor`).catch((error: unknown) => ({ ok: false, error: (error as Error).message }));
  }

  /** One monitor loop per resource, rescheduled after each run ends: runs of one monitor never overlap. */
  function schedule(r: Resource, mine: number): void {
    loops.set(
      r,
      timers.after(r.spec.monitor.intervalMs, () => {
        const run = check(r, mine)
          .catch((error: unknown) => {
            options.onLoopError?.(error instanceof Error ? error : new Error(String(error)));
            if (mine === generation) schedule(r, mine);
          })
          .finally(() => inflight.delete(r));
        inflight.set(r, run);
      }),
    );
  }

  async function check(r: Resource, mine: number): Promise<void> {
    if (mine !== generation) return;
    const result = await monitor(r);
    if (mine !== generation) return;
    if (result.ok) {
      if (r.failing) await report([fact("MonitorRecovered", { resource: r.spec.name })]);
      r.failing = false;
      r.leftToPolicy = false;
    } else if (!(r.failing && r.leftToPolicy)) {
      // Each fall from healthy to failing is reported, even after the policy was left to act: a NIC
      // that flaps, or a resource that recovered by itself and failed again, must not go unseen.
      const now = ctx.clock.monotonic();
      r.failures = [...r.failures.filter((t) => now - t < restart.windowMs), now].slice(-FAILURES_KEPT_MAX);
      r.failing = true;
      const failures = r.failures.length;
      await report([fact("MonitorFailed", { resource: r.spec.name, error: result.error, failures })]);
      if (!restartsInPlace(kindOf(r.spec), failures, restart.max)) {
        r.leftToPolicy = true;
      } else {
        r.restarting = true;
        try {
          await stop(r);
          if (mine !== generation) return;
          const failed = await start(r);
          if (mine !== generation) return;
          if (failed === null) {
            r.failing = false;
            await report([fact("ResourceRestarted", { resource: r.spec.name, attempt: failures })]);
          } else await report([fact("ResourceStartFailed", { resource: r.spec.name, ...failed })]);
        } finally {
          r.restarting = false;
        }
      }
    }
    if (mine === generation) schedule(r, mine);
  }

  /**
   * Ends monitoring at once; `settled` resolves when runs under way have finished (each bounded by
   * its timeouts); `restarting` holds those of them restarting a resource. A run still checking
   * acts on nothing once monitoring has ended.
   */
  function stopMonitors(): { settled: Promise<unknown>; restarting: Map<Resource, Promise<void>> } {
    generation += 1;
    for (const loop of loops.values()) loop.cancel();
    loops.clear();
    return { settled: Promise.all(inflight.values()), restarting: new Map([...inflight].filter(([r]) => r.restarting)) };
  }

  return {
    async bringIn({ signal } = {}) {
      await stopMonitors().settled;
      const started: Resource[] = [];
      for (const r of resources) {
        const failed = await start(r, signal);
        if (failed !== null) {
          // An abandoned start is no resource's failure: nothing to report against the resource.
          if (!failed.abandoned) await report([fact("ResourceStartFailed", { resource: r.spec.name, ...failed })]);
          // Roll back what this attempt started, so a failed start leaves nothing half-running.
          for (const s of started.reverse()) await stopReported(s);
          return { ok: false, resource: r.spec.name, error: failed.error, ...(failed.abandoned ? { abandoned: true } : {}) };
        }
        started.push(r);
        r.failures = [];
        r.failing = false;
        r.leftToPolicy = false;
        await report([fact("ResourceStarted", { resource: r.spec.name })]);
      }
      const mine = generation;
      for (const r of resources) schedule(r, mine);
      return { ok: true };
    },
    async bringOut(options = {}) {
      const { restarting, settled } = stopMonitors();
      const failed: { resource: string; error: string }[] = [];
      const note = (r: Resource, error: string | null) => void (error === null || failed.push({ resource: r.spec.name, error }));
      const reversed = [...resources].reverse();
      if (!options.urgent) {
        // A monitor run under way may be restarting a resource: let it end, then stop everything.
        await settled;
        for (const r of reversed) note(r, await stopReported(r));
        return { ok: failed.length === 0, failed };
      }
      // A fence waits for nothing: the addresses go first, then every other resource is killed.
      // A monitor run only checking (a health check of the address just removed can last its whole
      // timeout) is not waited for at all: the job is stopped when its resources are, and the peer
      // may be counting on that. A run restarting a resource is waited for afterwards, and what it
      // started is stopped again.
      const fenceOrder = [...reversed.filter((r) => kindOf(r.spec) === "vip"), ...reversed.filter((r) => kindOf(r.spec) !== "vip")];
      for (const r of fenceOrder) note(r, await stopReported(r, true));
      await Promise.all(restarting.values());
      for (const r of fenceOrder.filter((x) => restarting.has(x))) {
        const error = await stop(r, true);
        if (error !== null) await report([fact("ResourceStopFailed", { resource: r.spec.name, error })]);
        note(r, error);
      }
      return { ok: failed.length === 0, failed };
    },
    async probe() {
      return Promise.all(resources.map(async (r) => ({ resource: r.spec.name, running: (await monitor(r)).ok })));
    },
    monitoring: () => loops.size > 0,
    async announce() {
      await Promise.all(resources.map((r) => r.agent.announce?.().catch(() => undefined)));
    },
    async redefine(specs) {
      const running = loops.size > 0;
      await stopMonitors().settled;
      const before = new Map(resources.map((r) => [r.spec.name, r]));
      const kept = (spec: ResourceSpec) => {
        const old = before.get(spec.name);
        return old && resourceChange(old.spec, spec) !== "action" ? old : undefined;
      };
      const next = specs.map((spec) => {
        const old = kept(spec);
        if (old) old.spec = spec; // timings only: the agent's actions are the same
        return old ?? { spec, agent: createAgent(spec, ctx), failures: [], failing: false, leftToPolicy: false, restarting: false };
      });
      const failed: { resource: string; error: string }[] = [];
      if (running) {
        for (const r of [...resources].reverse()) {
          if (next.includes(r)) continue;
          const error = await stopReported(r);
          if (error === null) continue;
          failed.push({ resource: r.spec.name, error });
          // Still running: it stays in the job (stopped first at the next bring-out or fence), and a
          // changed one is not started again beside itself.
          const at = next.findIndex((n) => n.spec.name === r.spec.name);
          if (at >= 0) next[at] = r;
          else next.push(r);
        }
        for (const r of next) {
          if (resources.includes(r)) continue;
          const failure = await start(r);
          await report([failure === null ? fact("ResourceStarted", { resource: r.spec.name }) : fact("ResourceStartFailed", { resource: r.spec.name, ...failure })]);
          if (failure !== null) failed.push({ resource: r.spec.name, error: failure.error });
        }
      }
      resources.splice(0, resources.length, ...next);
      // A resource that failed to start is monitored like the others: its monitor fails, and the
      // restart threshold and the policy take it from there.
      if (running) for (const r of resources) schedule(r, generation);
      return { ok: failed.length === 0, failed };
    },
    setRestart(next) {
      restart = next;
    },
    async close() {
      await stopMonitors().settled;
    },
  };
}
