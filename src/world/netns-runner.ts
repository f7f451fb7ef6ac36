import type { ProcessRunner } from "./process.ts";

/**
 * A process runner that runs every command inside a network namespace: how tests (and an agent
 * started outside the namespace it manages) reach `ip`, `ping` and `arping` there.
 */
export function inNamespace(namespace: string, runner: ProcessRunner): ProcessRunner {
  return { run: (argv, options) => runner.run(["ip", "netns", "exec", namespace, ...argv], options) };
}
