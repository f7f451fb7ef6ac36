import type { DuetEvent } from "../events/catalogue.ts";
import type { Config } from "../config/schema.ts";
import type { ClusterState } from "../projections/cluster.ts";
import { kindOf } from "../resources/spec.ts";

/**
 * The JobCreated facts the config implies that the journal does not hold yet: a new job, or a
 * changed definition (nodes, policy, resources, mirrors). An unchanged config adds nothing, so a
 * restart does not grow the journal.
 */
export function jobDefinitionEvents(config: Config, state: ClusterState): DuetEvent[] {
  const events: DuetEvent[] = [];
  for (const job of config.jobs) {
    const data = {
      job: job.name,
      nodes: [job.nodes[0]!, job.nodes[1]!] as [string, string],
      policy: job.policy,
      reverseWhenConsistent: job.reverseWhenConsistent,
      restartMax: job.restart.max,
      resources: job.resources.map((r) => ({ name: r.name, kind: kindOf(r) })),
      mirrors: job.mirrors.map((m) => m.path),
      ...(job.switchoverLagMaxMs === undefined ? {} : { switchoverLagMaxMs: job.switchoverLagMaxMs }),
    };
    const known = state.jobs.get(job.name);
    const same =
      known !== undefined &&
      JSON.stringify([known.nodes, known.policy, known.reverseWhenConsistent, known.restartMax, known.resources, known.mirrors, known.switchoverLagMaxMs ?? null]) ===
        JSON.stringify([data.nodes, data.policy, data.reverseWhenConsistent, data.restartMax, data.resources, data.mirrors, data.switchoverLagMaxMs ?? null]);
    if (!same) events.push({ type: "JobCreated", data });
  }
  return events;
}
