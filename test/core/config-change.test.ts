import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.ts";
import { planConfigChange, planLines, type JobPlaces } from "../../src/policy/config-change.ts";

const running = `
cluster: { name: shop, keyFile: /etc/duet/cluster.key }
nodes:
  - { name: alpha, address: 10.0.0.1 }
  - { name: beta, address: 10.0.0.2 }
tiebreaker: { ping: { targets: [10.0.0.254] } }
jobs:
  - name: web
    policy: manual
    resources:
      - name: ip
        vip: { address: 10.0.0.100/24, interface: eth0 }
      - name: app
        process: { command: [/usr/bin/sleep, "1000"] }
    mirrors: [{ path: /srv/web }]
  - name: batch
    resources:
      - name: worker
        process: { command: [/usr/bin/sleep, "1000"] }
`;

const config = (text: string) => parseConfig(text, "test.yaml").config;
const inOnAlpha: JobPlaces = new Map([
  ["web", { phase: "in", active: "alpha" }],
  ["batch", { phase: "out", active: null }],
]);
const plan = (next: string, places = inOnAlpha) => planConfigChange(config(running), config(next), places);
const edit = (from: string, to: string) => {
  if (!running.includes(from)) throw new Error(`the test's config has no ${from}`);
  return running.replace(from, to);
};

describe("the plan of a configuration change, as a dry run prints it", () => {
  it("is empty, and allowed, for the configuration in force", () => {
    expect(plan(running)).toEqual({ changes: [], allowed: true });
  });

  // [what, the new file, the item, its effect or refusal]
  const table: [string, string, string, RegExp][] = [
    ["a policy change of a running job touches nothing", edit("policy: manual", "policy: when-consistent"), "job web: policy changed (manual -> when-consistent)", /nothing: the takeover policy decides with it/],
    ["a restart threshold", edit("  - name: batch\n", "  - name: batch\n    restart: { max: 5, windowMs: 60000 }\n"), "job batch: restart changed", /monitors count restarts against it from now on/],
    ["a snapshot schedule", edit("    mirrors: [{ path: /srv/web }]", "    mirrors: [{ path: /srv/web }]\n    snapshots: { intervalMs: 3600000 }"), "job web: snapshots changed", /snapshot schedule starts again/],
    ["a new job without mirrors", `${running}  - name: report\n    resources: []\n`, "job report: (job) added", /created, brought out: bring it in when ready$/],
    ["a new job with mirrors", `${running}  - name: logs\n    resources: []\n    mirrors: [{ path: /srv/logs }]\n`, "job logs: (job) added (- -> 0 resource(s), 1 mirror(s))", /created, brought out: bring it in when ready; its first bring-in verifies its 1 mirrored path\(s\) against the other node and ships what differs/],
    ["a user added", `${running}users:\n  - { name: ops, role: monitor, passwordHash: "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$${"A".repeat(86)}" }\n`, "cluster: users.ops added", /can log in at once/],
    ["ping targets", edit("targets: [10.0.0.254]", "targets: [10.0.0.253]"), "cluster: tiebreaker.ping changed", /next tiebreak/],
  ];
  for (const [what, next, line, effect] of table) {
    it(what, () => {
      const p = plan(next);
      expect(p.allowed, planLines(p).join("\n")).toBe(true);
      const found = planLines(p).find((l) => l.startsWith(line));
      expect(found, planLines(p).join("\n")).toMatch(effect);
    });
  }

  it("a resource added, changed or removed: where the job runs, only it starts or stops; out, the job is redefined", () => {
    const added = (before: string) => running.replace(`      - name: ${before}\n`, (m) => `      - name: extra\n        process: { command: [/usr/bin/sleep, "5"] }\n${m}`);
    expect(planLines(plan(added("worker")))).toEqual([expect.stringMatching(/^job batch: resources\.extra added .*: added: the job is out, nothing runs$/)]);
    expect(planLines(plan(added("app")))).toEqual([expect.stringMatching(/^job web: resources\.extra added .*: started on alpha in its place in the order; the others keep running$/)]);
    const moved = plan(edit("10.0.0.100/24", "10.0.0.101/24"));
    expect(planLines(moved)).toEqual([expect.stringMatching(/^job web: resources\.ip changed .*: on alpha: the old address removed, the new one added with gratuitous ARP; only this resource blinks$/)]);
    const slower = plan(edit("        process: { command: [/usr/bin/sleep, \"1000\"] }\n    mirrors", "        process: { command: [/usr/bin/sleep, \"1000\"] }\n        monitor: { intervalMs: 2000 }\n    mirrors"));
    expect(planLines(slower)).toEqual([expect.stringMatching(/^job web: resources\.app changed .*: nothing: it keeps running, its monitor follows the new timings$/)]);
    const removed = plan(running.replace(/ {6}- name: ip\n.*\n/, ""));
    expect(planLines(removed)).toEqual([expect.stringMatching(/^job web: resources\.ip removed .*: stopped on alpha; the others keep running$/)]);
    const starting = plan(added("app"), new Map([["web", { phase: "bringing-in", active: "alpha" }]]));
    expect(starting.allowed).toBe(false);
    expect(starting.changes[0]?.refused).toBe("job web is bringing-in: apply once it is in or out");
    const recovering = plan(added("app"), new Map([["web", { phase: "in", active: "alpha", recovering: true }]]));
    expect(recovering.changes[0]?.refused).toBe("job web is recovering: apply once it is in or out");
    const reordered = plan(running.replace(/( {6}- name: ip\n.*\n)( {6}- name: app\n.*\n)/, "$2$1"));
    expect(reordered.changes[0]?.refused).toMatch(/changing the order of the resources of a job that is not out is not supported online \(web is in on alpha\)/);
  });

  it("refuses what cannot be done online, each with the reason", () => {
    const refusals: [string, string, RegExp][] = [
      ["renaming a node", edit("name: beta,", "name: gamma,"), /cannot be renamed online/],
      ["a node's address", edit("10.0.0.2 }", "10.0.0.3 }"), /listens on its address/],
      ["the heartbeat timing", `${running}heartbeat: { intervalMs: 250, deadtimeMs: 1500 }\n`, /heartbeat links and timings are fixed/],
      ["the ports", `${running}ports: { api: 7400 }\n`, /listen on them from the agents' start/],
      ["removing a job that runs", running.replace(/ {2}- name: web[\s\S]*?(?= {2}- name: batch)/, ""), /job web is in on alpha: bring it out first/],
      ["a mirror path put before the others", edit("[{ path: /srv/web }]", "[{ path: /srv/logs }, { path: /srv/web }]"), /mirror paths can only be added online, after the existing ones/],
      ["a mirror path removed", edit("[{ path: /srv/web }]", "[]"), /removing or reordering them is not supported online/],
      ["the cluster key", edit("/etc/duet/cluster.key", "/etc/duet/other.key"), /keyed by the cluster's name and key/],
      ["the ping timeout", edit("targets: [10.0.0.254] }", "targets: [10.0.0.254], timeoutMs: 2000 }"), /the ping timeout sets when a node cut off fences itself/],
      ["no ping tiebreaker any more", edit("tiebreaker: { ping: { targets: [10.0.0.254] } }\n", ""), /the ping timeout sets when/],
      ["a witness added", edit("tiebreaker: { ping: { targets: [10.0.0.254] } }", "tiebreaker: { ping: { targets: [10.0.0.254] }, witness: { etcd: { endpoints: [http://10.0.0.9:2379] } } }"), /keeps its lease and its jobs' keys on the witness it started with/],
    ];
    for (const [what, next, why] of refusals) {
      const p = plan(next);
      expect(p.allowed, what).toBe(false);
      expect(p.changes.filter((c) => c.refused).map((c) => c.refused).join("\n"), what).toMatch(why);
      expect(planLines(p).join("\n"), what).toMatch(/REFUSED: /);
    }
  });

  it("a mirror path added after the others is verified where the job runs, alone", () => {
    const p = plan(edit("[{ path: /srv/web }]", "[{ path: /srv/web }, { path: /srv/logs }]"));
    expect(p.allowed).toBe(true);
    expect(planLines(p)).toEqual([
      expect.stringMatching(/^job web: mirrors changed .*: the added path\(s\) verified against the other node on alpha now, shipping only what differs there; the other paths keep streaming/),
    ]);
  });

  it("deletes a job that is out on both nodes", () => {
    const p = plan(running.replace(/ {2}- name: batch[\s\S]*$/, ""));
    expect(p.allowed).toBe(true);
    expect(planLines(p)).toEqual(["job batch: (job) removed: deleted on both nodes (it is out)"]);
  });

  it("never shows a password hash", () => {
    const hash = (c: string) => `scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$${c.repeat(86)}`;
    const withUser = (c: string) => `${running}users:\n  - { name: ops, role: admin, passwordHash: "${hash(c)}" }\n`;
    const p = planConfigChange(config(withUser("A")), config(withUser("B")), inOnAlpha);
    expect(planLines(p)).toEqual(["cluster: users.ops changed (admin -> admin, new password): nothing: the user's sessions end; it logs in again"]);
  });
});
