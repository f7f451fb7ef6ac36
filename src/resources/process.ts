import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import type { AgentContext, MonitorResult, ResourceAgent } from "./agent.ts";
import { ResourceError } from "./agent.ts";
import type { ResourceSpec } from "./spec.ts";

type ProcessSpec = Extract<ResourceSpec, { process: unknown }>;

/** A process's log is rotated once past this size: one old file kept, memory never involved. */
export const PROCESS_LOG_MAX_BYTES = 1024 * 1024;
const HEALTH_POLL_MS = 200;
const EXIT_POLL_MS = 50;
const ID_LOOKUP_TIMEOUT_MS = 5000;
/** After SIGKILL, how long a process gets to vanish before the stop is reported as failed (stuck in the kernel). */
export const KILL_REAP_MS = 2000;
/** With health by pid alone, a process must stay up this long to count as started: a command that dies at once is a failed start. */
export const PID_SETTLE_MS = 1000;

/** A pid plus its start time: a pid recycled by another program is never mistaken for ours. */
interface PidRecord {
  pid: number;
  startTime: string;
}

/** /proc/PID/stat after the command name (which is in parentheses and may contain spaces): state, ppid, pgrp, ... */
async function statFields(pid: number | string): Promise<string[] | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}
const exited = (fields: string[]) => fields[0] === "Z" || fields[0] === "X"; // exited, not yet reaped

async function startTimeOf(pid: number): Promise<string | null> {
  const fields = await statFields(pid);
  return fields && !exited(fields) ? (fields[19] ?? null) : null;
}

/**
 * Whether any live process is left in the group. Zombies do not count: an orphan's is reaped by
 * init whenever init gets to it, and it holds nothing (no port, no file).
 */
async function groupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = await statFields(entry);
    if (fields && fields[2] === String(pgid) && !exited(fields)) return true;
  }
  return false;
}

async function idOf(ctx: AgentContext, resource: string, user: string, flag: "-u" | "-g"): Promise<number> {
  const result = await ctx.processes.run(["id", flag, user], { timeoutMs: ID_LOOKUP_TIMEOUT_MS });
  const id = Number(result.stdout.trim());
  if (result.code !== 0 || !Number.isInteger(id)) throw new ResourceError(`${resource}: user ${user}: no such user on this host (${result.stderr.trim() || `id exited ${result.code ?? result.signal}`})`);
  return id;
}

/**
 * A supervised long-running command, in its own process group so a stop reaches its children too.
 * Its pid file lets an agent restarted after a crash find it again; health is the pid alone or a
 * TCP port, an HTTP URL or a command.
 */
export function createProcess(spec: ProcessSpec, ctx: AgentContext): ResourceAgent {
  const p = spec.process;
  const pidFile = join(ctx.stateDir, `${spec.name}.pid`);
  const logFile = join(ctx.stateDir, `${spec.name}.log`);

  async function running(): Promise<PidRecord | null> {
    let record: PidRecord;
    try {
      record = JSON.parse(await readFile(pidFile, "utf8")) as PidRecord;
    } catch {
      return null;
    }
    return record.startTime === (await startTimeOf(record.pid)) ? record : null;
  }

  async function healthy(timeoutMs: number): Promise<MonitorResult> {
    const h = p.health;
    if ("pid" in h) return { ok: true };
    if ("tcp" in h) {
      const index = h.tcp.lastIndexOf(":");
      const host = h.tcp.slice(0, index).replace(/^\[|\]$/g, "");
      const port = Number(h.tcp.slice(index + 1));
      return new Promise((resolve) => {
        const socket = connect({ host, port, timeout: timeoutMs });
        const done = (result: MonitorResult) => {
          socket.destroy();
          resolve(result);
        };
        socket.once("connect", () => done({ ok: true }));
        socket.once("timeout", () => done({ ok: false, error: `${spec.name}: tcp ${h.tcp} did not accept within ${timeoutMs} ms` }));
        socket.once("error", (e) => done({ ok: false, error: `${spec.name}: tcp ${h.tcp}: ${e.message}` }));
      });
    }
    if ("http" in h) {
      try {
        const response = await fetch(h.http, { signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
        await response.body?.cancel();
        return response.status < 400 ? { ok: true } : { ok: false, error: `${spec.name}: GET ${h.http} answered ${response.status}` };
      } catch (e) {
        return { ok: false, error: `${spec.name}: GET ${h.http}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}` };
      }
    }
    const result = await ctx.processes.run(h.command, { timeoutMs });
    return result.code === 0 ? { ok: true } : { ok: false, error: `${spec.name}: health command exited ${result.code ?? result.signal}: ${result.stderr.trim().slice(-200)}` };
  }

  async function monitor(): Promise<MonitorResult> {
    const record = await running();
    if (!record) return { ok: false, error: `${spec.name}: process is not running`, notRunning: true };
    await capLog();
    return healthy(spec.monitor.timeoutMs);
  }

  const logSize = () => stat(logFile).then((s) => s.size, () => 0);

  /** Before a start: the old log moves aside whole. */
  async function rotateLog(): Promise<void> {
    if ((await logSize()) > PROCESS_LOG_MAX_BYTES) await rename(logFile, `${logFile}.1`);
  }

  /**
   * While it runs (checked at each monitor): the process holds the log open for appending, so it is
   * copied aside and truncated in place; what it writes between the copy and the truncation is lost.
   */
  async function capLog(): Promise<void> {
    if ((await logSize()) <= PROCESS_LOG_MAX_BYTES) return;
    await copyFile(logFile, `${logFile}.1`);
    await truncate(logFile, 0);
  }

  async function logTail(): Promise<string> {
    const text = await readFile(logFile, "utf8").catch(() => "");
    return text.trim().slice(-400);
  }

  /**
   * SIGTERM to the whole group, SIGKILL to whatever is left after the timeout (at once for a zero
   * timeout: a fence). Done means the group
   * is empty, not just its leader gone: a child that shrugs off SIGTERM would keep the port. The
   * caller has just checked the leader is ours; while the group has members its id cannot be reused.
   */
  async function kill(record: PidRecord, timeoutMs: number): Promise<void> {
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(-record.pid, s);
      } catch {
        // the group is gone already
      }
    };
    const emptied = async (ms: number) => {
      const deadline = ctx.clock.monotonic() + ms;
      while (ctx.clock.monotonic() < deadline) {
        if (!(await groupAlive(record.pid))) return true;
        await new Promise((r) => setTimeout(r, EXIT_POLL_MS));
      }
      return !(await groupAlive(record.pid));
    };
    if (timeoutMs > 0) {
      signal("SIGTERM");
      if (await emptied(timeoutMs)) return;
    }
    signal("SIGKILL");
    if (!(await emptied(KILL_REAP_MS))) throw new ResourceError(`${spec.name}: process group ${record.pid} still there ${KILL_REAP_MS} ms after SIGKILL (stuck in the kernel?)`);
  }

  return {
    async start() {
      if (!(await running())) {
        await mkdir(ctx.stateDir, { recursive: true });
        await rotateLog();
        const [command, ...args] = p.command;
        const ids = p.user ? { uid: await idOf(ctx, spec.name, p.user, "-u"), gid: await idOf(ctx, spec.name, p.user, "-g") } : {};
        const out = openSync(logFile, "a", 0o640);
        let child;
        try {
          child = spawn(command!, args, {
            cwd: p.cwd,
            env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", DUET_JOB: ctx.job, DUET_NODE: ctx.node, ...p.env },
            detached: true,
            stdio: ["ignore", out, out],
            ...ids,
          });
        } finally {
          closeSync(out);
        }
        const spawned = await new Promise<number>((resolve, reject) => {
          child.once("spawn", () => resolve(child.pid!));
          child.once("error", (e) => reject(new ResourceError(`${spec.name}: cannot run ${command}: ${e.message}`)));
        });
        child.unref();
        const startTime = await startTimeOf(spawned);
        if (startTime === null) throw new ResourceError(`${spec.name}: ${command} exited at once: ${await logTail()}`);
        await writeFile(pidFile, JSON.stringify({ pid: spawned, startTime }));
      }
      const deadline = ctx.clock.monotonic() + spec.startTimeoutMs;
      const settled = ctx.clock.monotonic() + ("pid" in p.health ? Math.min(PID_SETTLE_MS, spec.startTimeoutMs / 2) : 0);
      let last: MonitorResult = { ok: false, error: "not checked" };
      while (ctx.clock.monotonic() < deadline) {
        last = await monitor();
        if (last.ok && ctx.clock.monotonic() >= settled) return;
        if (!last.ok && last.notRunning) break;
        await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
      }
      const record = await running();
      if (record) await kill(record, spec.stopTimeoutMs);
      await rm(pidFile, { force: true });
      throw new ResourceError(`${spec.name}: did not become healthy within ${spec.startTimeoutMs} ms (${last.ok ? "" : last.error}); its log ends: ${await logTail()}`);
    },
    async stop(options = {}) {
      const record = await running();
      if (record) await kill(record, options.urgent ? 0 : spec.stopTimeoutMs);
      await rm(pidFile, { force: true });
    },
    monitor,
  };
}
