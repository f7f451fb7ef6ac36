import { access, chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { probePublicNetwork, runTiebreaker } from "../../src/cluster/tiebreak.ts";
import { arpTargetsOf } from "../../src/agent/agent.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createCabledNet } from "../e2e/cabled-net.ts";
import { systemClock } from "../../src/world/clock.ts";
import { inNamespace } from "../../src/world/netns-runner.ts";
import { systemProcesses } from "../../src/world/process.ts";
import { systemReach } from "../../src/world/reach.ts";
import { createServer } from "node:net";
import { createTestNet, type TestNet } from "../e2e/netns.ts";

const base = { self: "b", peer: "a", purpose: "peer-lost" as const, processes: systemProcesses, reach: systemReach, clock: systemClock };
let net: TestNet;
let dir: string;
beforeAll(async () => {
  net = await createTestNet({ prefix: `tb${process.pid % 10000}`, subnet: `10.233.${process.pid % 200}`, hosts: ["b", "gw"] });
  dir = await mkdtemp(join(tmpdir(), "duet-tiebreak-"));
});
afterAll(async () => {
  await net?.destroy();
  await rm(dir, { recursive: true, force: true });
});

async function script(name: string, body: string) {
  const file = join(dir, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

describe("tiebreaker", () => {
  it("confirms when a ping target answers", async () => {
    const result = await runTiebreaker({ ...base, ping: { targets: ["127.0.0.1"], mode: "any", timeoutMs: 1000 }, fence: null });
    expect(result).toMatchObject({ verdict: "confirmed", method: "ping", targets: [{ target: "127.0.0.1", ok: true }] });
  });

  it("a node cut off from its gateway is isolated and must not take over", async () => {
    const processes = inNamespace(net.ns("b"), systemProcesses);
    const gateway = net.address("gw");
    expect((await runTiebreaker({ ...base, processes, ping: { targets: [gateway], mode: "any", timeoutMs: 1000 }, fence: null })).verdict).toBe("confirmed");
    await net.isolate("b");
    try {
      const result = await runTiebreaker({ ...base, processes, ping: { targets: [gateway], mode: "any", timeoutMs: 1000 }, fence: null });
      expect(result).toMatchObject({ verdict: "isolated", targets: [{ target: gateway, ok: false }] });
    } finally {
      await net.heal("b");
    }
  });

  it("mode all needs every target", async () => {
    const processes = inNamespace(net.ns("b"), systemProcesses);
    const result = await runTiebreaker({ ...base, processes, ping: { targets: [net.address("gw"), "10.233.250.250"], mode: "all", timeoutMs: 1000 }, fence: null });
    expect(result.verdict).toBe("isolated");
  });

  it("a fence command that succeeds confirms; its output and exit code are kept", async () => {
    const fence = await script("fence-ok", 'echo "powered off $1"');
    const result = await runTiebreaker({ ...base, ping: { targets: ["127.0.0.1"], mode: "any", timeoutMs: 1000 }, fence: { command: [fence, "{peer}"], timeoutMs: 5000 } });
    expect(result).toMatchObject({ verdict: "confirmed", method: "fence", exitCode: 0, output: "powered off a\n" });
  });

  it("a failing or hanging fence command fails the tiebreaker, with bounded output", async () => {
    const noisy = await script("fence-fail", 'head -c 10000 /dev/zero | tr "\\0" x; echo; echo "ipmi: no answer" >&2; exit 3');
    const failed = await runTiebreaker({ ...base, ping: null, fence: { command: [noisy], timeoutMs: 5000 } });
    expect(failed).toMatchObject({ verdict: "failed", method: "fence", exitCode: 3 });
    expect(failed.output!.length).toBeLessThanOrEqual(4096);
    expect(failed.output).toContain("ipmi: no answer");
    const hang = await script("fence-hang", "sleep 30");
    const timedOut = await runTiebreaker({ ...base, ping: null, fence: { command: [hang], timeoutMs: 300 } });
    expect(timedOut.verdict).toBe("failed");
    expect(timedOut.output).toContain("timed out after 300 ms");
  });

  it("without any tiebreaker configured the verdict is failed, never confirmed", async () => {
    const result = await runTiebreaker({ ...base, ping: null, fence: null });
    expect(result.verdict).toBe("failed");
    expect(result.output).toMatch(/no tiebreaker configured/);
  });

  it("an isolated node never runs its fence command against the peer", async () => {
    const processes = inNamespace(net.ns("b"), systemProcesses);
    const marker = join(dir, "fenced");
    const fence = await script("fence-marker", `touch ${marker}`);
    await net.isolate("b");
    try {
      const result = await runTiebreaker({ ...base, processes, ping: { targets: [net.address("gw")], mode: "any", timeoutMs: 1000 }, fence: { command: [fence], timeoutMs: 5000 } });
      expect(result).toMatchObject({ verdict: "isolated", method: "ping" });
    } finally {
      await net.heal("b");
    }
    await expect(access(marker)).rejects.toThrow();
  });

  it("a ping that is not installed fails the tiebreaker, naming the package, instead of claiming isolation", async () => {
    const processes = { run: (argv: readonly string[], o?: { timeoutMs?: number }) => systemProcesses.run([join(dir, "no-such-ping"), ...argv.slice(1)], o) };
    const result = await runTiebreaker({ ...base, processes, ping: { targets: ["127.0.0.1"], mode: "any", timeoutMs: 1000 }, fence: null });
    expect(result).toMatchObject({ verdict: "failed", targets: [{ target: "127.0.0.1", ok: false }] });
    expect(result.output).toMatch(/ping 127\.0\.0\.1 could not run: ping: not installed \(apt-get install iputils-ping\)/);
  });

  it("a tcp: target needs no ping binary: a refused or accepted connection is an answer", async () => {
    const noPing = { run: () => Promise.reject(new Error("no process may run for a tcp target")) };
    const server = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const open = (server.address() as { port: number }).port;
    try {
      const refused = await runTiebreaker({ ...base, processes: noPing, ping: { targets: ["tcp:127.0.0.1:9"], mode: "any", timeoutMs: 1000 }, fence: null });
      expect(refused).toMatchObject({ verdict: "confirmed", targets: [{ target: "tcp:127.0.0.1:9", ok: true }] });
      const accepted = await runTiebreaker({ ...base, processes: noPing, ping: { targets: [`tcp:127.0.0.1:${open}`], mode: "all", timeoutMs: 1000 }, fence: null });
      expect(accepted.verdict).toBe("confirmed");
    } finally {
      server.close();
    }
  });

  it("an empty ping target list counts as no tiebreaker, even in mode all", async () => {
    const result = await runTiebreaker({ ...base, ping: { targets: [], mode: "all", timeoutMs: 1000 }, fence: null });
    expect(result.verdict).toBe("failed");
  });
});

describe("looking for the peer on the networks before a takeover", () => {
  it("a peer whose public NIC is down still answers on the interconnect, asked from the interface that routes to it", async () => {
    const prefix = `tl${process.pid % 10000}`;
    const privateNet = `192.168.${(process.pid % 200) + 1}`;
    const cabled = await createCabledNet({ prefix, subnet: `10.234.${process.pid % 200}`, privateNet });
    try {
      await promisify(execFile)("ip", ["-n", cabled.ns("a"), "link", "set", "eth0", "down"]);
      const processes = inNamespace(cabled.ns("b"), systemProcesses);
      const targets = [
        { interface: "eth0", address: cabled.address("a"), dad: false },
        { interface: null, address: `${privateNet}.1`, dad: false },
        { interface: null, address: "198.51.100.7", dad: false }, // routed nowhere from b: not asked
      ];
      const found = await probePublicNetwork(processes, targets);
      expect(found).toEqual([
        { interface: "eth0", address: cabled.address("a"), answered: false },
        { interface: "eth1", address: `${privateNet}.1`, answered: true },
      ]);
    } finally {
      await cabled.destroy();
    }
  });

  it("the targets: the VIP and the peer's addresses from the VIP's interface, and each link's peer address by route", () => {
    const config = parseConfig(
      `cluster: { name: t, keyFile: /k }
nodes:
  - { name: a, address: 10.0.0.1, dataDir: /a }
  - { name: b, address: 10.0.0.2, dataDir: /b }
heartbeat:
  links:
    - { name: private, port: 7340, addresses: [192.168.5.1, 192.168.5.2] }
jobs:
  - name: web
    resources:
      - { name: ip, vip: { address: 10.0.0.100/24, interface: eth0 } }
users:
  - { name: admin, role: admin, passwordHash: "scrypt$16384$8$1$zWaRi3AcgdHn9V+huDkQng==$0QDF4HPqaUX9VF6x2d7dAvqJNTTFTTDcz2zLU/wHCYg=" }
`,
      "/t.yaml",
    ).config;
    expect(arpTargetsOf(config, "b", "a")).toEqual([
      { interface: "eth0", address: "10.0.0.100", dad: true },
      { interface: "eth0", address: "10.0.0.1", dad: false },
      { interface: "eth0", address: "192.168.5.1", dad: false },
      { interface: null, address: "192.168.5.1", dad: false },
    ]);
  });
});
