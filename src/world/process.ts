import { spawn } from "node:child_process";

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** The injected world: running a command to completion, with a timeout; `signal` kills it sooner. */
export interface ProcessRunner {
  run(argv: readonly string[], options?: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; input?: string; signal?: AbortSignal }): Promise<RunResult>;
}

/** Output kept per stream: enough to explain a failure, bounded so a chatty command can't grow memory. */
export const OUTPUT_MAX_BYTES = 64 * 1024;
/** After a timeout's SIGTERM, how long a command gets before SIGKILL. */
export const KILL_GRACE_MS = 2000;

export const systemProcesses: ProcessRunner = {
  run(argv, options = {}) {
    return new Promise((resolve) => {
      const [command, ...args] = argv;
      if (!command) return resolve({ code: null, signal: null, stdout: "", stderr: "empty command", timedOut: false });
      const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"], detached: true });
      let stdout = "";
      let stderr = "";
      let timedOut = false;
      child.stdout.on("data", (d: Buffer) => (stdout = (stdout + d.toString()).slice(-OUTPUT_MAX_BYTES)));
      child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-OUTPUT_MAX_BYTES)));
      child.stdin.on("error", () => undefined);
      child.stdin.end(options.input ?? "");
      const killGroup = (signal: NodeJS.Signals) => {
        try {
          if (child.pid) process.kill(-child.pid, signal);
        } catch {
          // already gone
        }
      };
      const timer = options.timeoutMs
        ? setTimeout(() => {
            timedOut = true;
            killGroup("SIGTERM");
            setTimeout(() => killGroup("SIGKILL"), KILL_GRACE_MS).unref();
          }, options.timeoutMs)
        : undefined;
      const abort = () => killGroup("SIGKILL");
      options.signal?.addEventListener("abort", abort, { once: true });
      if (options.signal?.aborted) abort();
      const done = () => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", abort);
      };
      child.on("error", (error) => {
        done();
        resolve({ code: null, signal: null, stdout, stderr: `${stderr}${error.message}`, timedOut });
      });
      child.on("close", (code, signal) => {
        done();
        resolve({ code, signal, stdout, stderr, timedOut });
      });
    });
  },
};
