import { mkdtemp, readFile, rm, stat, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConfig, selfNode } from "../../src/config/load.ts";
import { initConfig } from "../../src/config/init.ts";
import { AGENT_STOP_TIMEOUT_MS } from "../../src/config/systemd.ts";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
import { redactConfigText } from "../../src/config/redact.ts";
import { readClusterKey, verifyPassword } from "../../src/config/secrets.ts";

const base = `
cluster: { name: shop, keyFile: /etc/duet/cluster.key }
nodes:
  - { name: alpha, address: 10.0.0.1 }
  - { name: beta, address: 10.0.0.2 }
`;
const job = (body: string) => `${base}jobs:\n  - name: web\n${body}`;

function errorOf(text: string): ConfigError {
  try {
    parseConfig(text, "test.yaml");
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected the config to be refused");
}

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), "duet-config-"));
  dirs.push(dir);
  return dir;
}

describe("config errors name the key path and what was expected", () => {
  const table: [string, string, string, RegExp][] = [
    ["a vip without a prefix length", job(`    resources:\n      - name: ip\n        vip: { address: 10.0.0.10, interface: eth0 }\n`), "jobs[0].resources[0].vip.address", /expected CIDR like 10\.0\.0\.10\/24/],
    ["one node only", `cluster: { name: shop, keyFile: /k }\nnodes:\n  - { name: alpha, address: 10.0.0.1 }\n`, "nodes", /expected exactly two nodes/],
    ["a missing cluster", `nodes: []\n`, "cluster", /missing/],
    ["a relative key file", base.replace("/etc/duet/cluster.key", "cluster.key"), "cluster.keyFile", /expected an absolute path/],
    ["a bad address", base.replace("10.0.0.2", "ten"), "nodes[1].address", /expected an IP address.*got "ten"/],
    ["an unknown top-level key", `${base}heartbeet: {}\n`, "(top)", /unknown key "heartbeet"/],
    ["an unknown job key", job(`    polcy: manual\n`), "jobs[0]", /unknown key "polcy"/],
    ["an unknown policy", job(`    policy: sometimes\n`), "jobs[0].policy", /manual.*when-consistent/],
    ["a job on a node not in the cluster", job(`    nodes: [alpha, gamma]\n`), "jobs[0].nodes[1]", /expected one of the cluster's nodes \(alpha, beta\), got "gamma"/],
    ["a deadtime shorter than three intervals", `${base}heartbeat: { intervalMs: 500, deadtimeMs: 1000 }\n`, "heartbeat.deadtimeMs", /at least 3 × intervalMs \(1500\), got 1000/],
    ["a suspicion shorter than two intervals", `${base}heartbeat: { intervalMs: 500, deadtimeMs: 3000, suspectMs: 600 }\n`, "heartbeat.suspectMs", /at least 2 × intervalMs \(1000\), got 600/],
    ["a heartbeat interval past Node's timers (it would fire every 1 ms)", `${base}heartbeat: { intervalMs: 2500000000 }\n`, "heartbeat.intervalMs", /at most 2147483647 ms/],
    ["a heartbeat interval of 1 ms", `${base}heartbeat: { intervalMs: 1, deadtimeMs: 3000 }\n`, "heartbeat.intervalMs", /at least 50 ms, got 1/],
    ["a monitor every 5 ms", job(`    resources:\n      - name: x\n        nic: { interface: eth0 }\n        monitor: { intervalMs: 5 }\n`), "jobs[0].resources[0].monitor.intervalMs", /expected at least 20 ms, got 5/],
    ["a snapshot schedule every 10 ms", job(`    snapshots: { intervalMs: 10 }\n`), "jobs[0].snapshots.intervalMs", /at least 100 ms/],
    ["a fractional duration", `${base}tiebreaker: { selfFenceGraceMs: 1.5 }\n`, "tiebreaker.selfFenceGraceMs", /whole milliseconds/],
    ["a port out of range", `${base}ports: { api: 70000 }\n`, "ports.api", /1\.\.65535/],
    ["api and peer on one port", `${base}ports: { api: 7330, peer: 7330 }\n`, "ports.peer", /also ports.api/],
    ["two jobs with one name", `${base}jobs:\n  - name: web\n  - name: web\n`, "jobs[1].name", /defined twice/],
    ["a resource with two kinds", job(`    resources:\n      - name: x\n        nic: { interface: eth0 }\n        ping: { target: 10.0.0.254 }\n`), "jobs[0].resources[0]", /exactly one resource kind key.*found nic and ping/],
    ["a resource with no kind", job(`    resources:\n      - name: x\n`), "jobs[0].resources[0]", /exactly one resource kind key.*found none/],
    ["a process command given as a string", job(`    resources:\n      - name: app\n        process: { command: "node app.js" }\n`), "jobs[0].resources[0]", /process\.command/],
    ["nested mirrors", job(`    mirrors:\n      - path: /srv/data\n      - path: /srv/data/sub\n`), "jobs[0].mirrors[1].path", /overlaps mirrors\[0\]/],
    ["a relative mirror", job(`    mirrors:\n      - path: data\n`), "jobs[0].mirrors[0].path", /absolute path/],
    ["a sync rate of zero", job(`    syncMaxMiBps: 0\n`), "jobs[0].syncMaxMiBps", /expected MiB per second, more than 0/],
    ["a plain-text password", `${base}users:\n  - { name: admin, role: admin, passwordHash: secret }\n`, "users[0].passwordHash", /scrypt hash/],
    ["an unknown role", `${base}users:\n  - { name: bob, role: root, passwordHash: "scrypt$1$1$1$a$b" }\n`, "users[0].role", /admin.*monitor/],
    ["an env name that is not a variable name", job(`    resources:\n      - name: app\n        process: { command: [x], env: { "__proto__": "1" } }\n`), "jobs.resources.process.env.__proto__", /not allowed as a key/],
    ["a witness endpoint that is not a URL", `${base}tiebreaker: { witness: { etcd: { endpoints: [10.0.0.9:2379] } } }\n`, "tiebreaker.witness.etcd.endpoints[0]", /etcd client URL like http:\/\/10\.0\.0\.9:2379/],
    ["a witness with no endpoint", `${base}tiebreaker: { witness: { etcd: { endpoints: [] } } }\n`, "tiebreaker.witness.etcd.endpoints", /at least one etcd endpoint/],
    ["a witness lease in fractions of a second", `${base}tiebreaker: { witness: { etcd: { endpoints: [http://10.0.0.9:2379] }, leaseMs: 2500 } }\n`, "tiebreaker.witness.leaseMs", /whole number of seconds.*etcd's leases count seconds/],
    ["a witness lease shorter than etcd grants", `${base}tiebreaker: { witness: { etcd: { endpoints: [http://10.0.0.9:2379] }, leaseMs: 1000 } }\n`, "tiebreaker.witness.leaseMs", /at least 2000 ms/],
    ["an unknown rule for an unreachable witness", `${base}tiebreaker: { witness: { etcd: { endpoints: [http://10.0.0.9:2379] }, unreachable: ignore } }\n`, "tiebreaker.witness.unreachable", /self-fence.*keep-running/],
    ["a link with one address", `${base}heartbeat:\n  links:\n    - { name: lan, port: 7340, addresses: [10.0.0.1] }\n`, "heartbeat.links[0].addresses", /two addresses/],
  ];
  it.each(table)("%s", (_name, text, path, message) => {
    const error = errorOf(text);
    const issue = error.issues.find((i) => i.path === path);
    expect(issue, `issues were ${JSON.stringify(error.issues)}`).toBeDefined();
    expect(issue!.message).toMatch(message);
    expect(error.message).toContain("test.yaml");
  });

  it("a YAML syntax error names its line", () => {
    const error = errorOf(`cluster:\n  name: [shop\nnodes: []\n`);
    expect(error.issues[0]!.path).toBe("(yaml)");
    expect(error.issues[0]!.message).toMatch(/line \d+/);
  });

  it("an issue names the line of the bad key", () => {
    const error = errorOf(job(`    policy: sometimes\n`));
    expect(error.issues[0]!.message).toMatch(/\(line 8\)/);
  });

  it("every problem is listed at once", () => {
    const error = errorOf(`${base.replace("10.0.0.2", "ten")}ports: { api: 0 }\n`);
    expect(error.issues.map((i) => i.path).sort()).toEqual(["nodes[1].address", "ports.api"]);
  });
});

describe("config defaults and examples", () => {
  it("fills defaults: ports, a lan link over the node addresses, manual policy, both nodes", () => {
    const { config } = parseConfig(job(""), "t");
    expect(config.ports).toEqual({ api: 7320, peer: 7330 });
    expect(config.heartbeat).toMatchObject({ intervalMs: 500, deadtimeMs: 3000, suspectMs: 1500, links: [{ name: "lan", port: 7340, addresses: ["10.0.0.1", "10.0.0.2"] }] });
    expect(config.jobs[0]).toMatchObject({ policy: "manual", nodes: ["alpha", "beta"], restart: { max: 3 } });
  });

  it("the default suspicion is as late as lets the active fence itself by the deadtime, but never shorter than two intervals", () => {
    const timings = (more: string) => parseConfig(`${base}${more}\n`, "t").config.heartbeat.suspectMs;
    // deadtime − (ping timeout + grace + interval + 500 ms margin)
    expect(timings("heartbeat: { intervalMs: 500, deadtimeMs: 3000 }")).toBe(1500);
    expect(timings("heartbeat: { intervalMs: 200, deadtimeMs: 3000 }\ntiebreaker: { ping: { targets: [10.0.0.254], timeoutMs: 1000 } }")).toBe(1300);
    expect(timings("heartbeat: { intervalMs: 500, deadtimeMs: 3000 }\ntiebreaker: { selfFenceGraceMs: 1000 }")).toBe(1000);
    expect(timings("heartbeat: { intervalMs: 200, deadtimeMs: 1000 }")).toBe(400);
  });

  it("the annotated example loads", async () => {
    const { config } = await loadConfig(join(import.meta.dirname, "../../examples/duet.example.yaml"));
    expect(config.jobs[0]!.resources.map((r) => r.name)).toEqual(["ip", "db", "app"]);
  });

  it("picks this node by name, and refuses a name that is not in the config", () => {
    const { config } = parseConfig(base, "t");
    expect(selfNode(config, "beta").address).toBe("10.0.0.2");
    expect(() => selfNode(config, "gamma")).toThrow(/expected one of alpha, beta, got "gamma"/);
  });

  it("picks this node by a local address", () => {
    const { config } = parseConfig(base.replace("10.0.0.1", "127.0.0.1"), "t");
    expect(selfNode(config).name).toBe("alpha");
  });
});

describe("duet init", () => {
  it("writes a config that loads, a 0600 key and an admin with a generated password", async () => {
    const dir = await tempDir();
    const result = await initConfig({ dir, cluster: "shop", nodes: [{ name: "a", address: "10.0.0.1" }, { name: "b", address: "10.0.0.2" }] });
    expect(result.generatedPassword).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    const { config } = await loadConfig(result.configFile);
    expect((await stat(result.keyFile)).mode & 0o777).toBe(0o600);
    expect((await readClusterKey(result.keyFile)).length).toBe(32);
    expect(await verifyPassword(result.generatedPassword!, config.users[0]!.passwordHash)).toBe(true);
    await expect(initConfig({ dir, cluster: "shop", nodes: [{ name: "a", address: "10.0.0.1" }, { name: "b", address: "10.0.0.2" }] })).rejects.toThrow(/already exists; pass --force/);
  });

  it("refuses a key others can read, or of the wrong size", async () => {
    const dir = await tempDir();
    const key = join(dir, "k");
    await writeFile(key, Buffer.alloc(32), { mode: 0o644 });
    await chmod(key, 0o644);
    await expect(readClusterKey(key)).rejects.toThrow(/mode 644 lets others read it; expected 600/);
    await chmod(key, 0o600);
    await writeFile(key, Buffer.alloc(31));
    await expect(readClusterKey(key)).rejects.toThrow(/expected 32 bytes, got 31/);
  });

  it("writes duet.service beside the config: the agent on that config, SIGTERM, a stop timeout past the agent's own, restart on failure", async () => {
    const dir = await tempDir();
    const result = await initConfig({ dir, cluster: "shop", password: "correct horse", duetCommand: "/usr/bin/node /opt/duet/bin/duet.js", nodes: [{ name: "a", address: "10.0.0.1" }, { name: "b", address: "10.0.0.2" }] });
    const unit = await readFile(result.unitFile!, "utf8");
    expect(unit).toContain(`ExecStart=/usr/bin/node /opt/duet/bin/duet.js agent --config ${result.configFile}\n`);
    const setting = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(unit)?.[1];
    expect([setting("Type"), setting("KillSignal"), setting("KillMode"), setting("Restart"), setting("RestartPreventExitStatus")]).toEqual(["exec", "SIGTERM", "process", "on-failure", "2"]);
    expect(Number(setting("TimeoutStopSec")) * 1000).toBeGreaterThan(AGENT_STOP_TIMEOUT_MS);
    // Sandboxing the agent would sandbox the job's applications, its children.
    expect(unit).not.toMatch(/^(ProtectSystem|PrivateTmp|NoNewPrivileges|ProtectHome)=/m);
    const verify = await execFileAsync("systemd-analyze", ["verify", result.unitFile!]).then(
      (r) => r.stderr,
      (e: { stderr: string }) => e.stderr,
    );
    expect(verify.split("\n").filter((line) => /duet\.service/.test(line) && !/Command .* is not executable|not found/.test(line))).toEqual([]);
  });

  it("refuses a short password", async () => {
    const dir = await tempDir();
    await expect(initConfig({ dir, cluster: "c", password: "short", nodes: [{ name: "a", address: "10.0.0.1" }, { name: "b", address: "10.0.0.2" }] })).rejects.toThrow(/at least 8 characters/);
  });
});

describe("redaction for support bundles", () => {
  const config = `# shop's pair
cluster: { name: shop, keyFile: /etc/duet/cluster.key }
jobs:
  - name: db
    resources:
      - name: app
        process:
          command: [/usr/bin/app, --password=hunter2, --api-token, tok-123, --port=5432, --verbose]
          env: { DB_PASSWORD: pw-1, PGPASSWORD: pw-2, API_TOKEN: tok-2, AWS_SECRET_ACCESS_KEY: aws-3, DATABASE_URL: "postgres://shop:pw-4@db:5432/shop", LANG: C.UTF-8 }
      - name: pg
        ocf: { agent: heartbeat/pgsql, params: { OCF_RESKEY_password: pw-5, OCF_RESKEY_pgport: "5432" } }
users:
  - { name: admin, role: admin, passwordHash: "scrypt$16384$8$1$c2FsdA==$aGFzaA==" }
`;
  const secrets = ["hunter2", "tok-123", "pw-1", "pw-2", "tok-2", "aws-3", "pw-4", "pw-5", "scrypt$16384"];
  const kept = ["# shop's pair", "/etc/duet/cluster.key", "--port=5432", "--verbose", "LANG: C.UTF-8", "OCF_RESKEY_pgport", "postgres://shop:<redacted>@db:5432/shop", "--password=<redacted>", "--api-token"];

  it.each(secrets)("removes %s, wherever it sits", (secret) => {
    expect(redactConfigText(config)).not.toContain(secret);
  });
  it.each(kept)("keeps %s", (part) => {
    expect(redactConfigText(config)).toContain(part);
  });
  it("a file that does not parse is left out rather than guessed at", () => {
    expect(redactConfigText("users: [ {name: x, passwordHash: s3cr3t\n")).not.toContain("s3cr3t");
  });

  it("removes every password hash, in block and flow style, and keeps the rest", async () => {
    const dir = await tempDir();
    const result = await initConfig({ dir, cluster: "shop", password: "correct horse", nodes: [{ name: "a", address: "10.0.0.1" }, { name: "b", address: "10.0.0.2" }] });
    const text = (await readFile(result.configFile, "utf8")) + `  - { name: ops, role: monitor, passwordHash: "scrypt$16384$8$1$c2FsdA==$aGFzaA==" }\n`;
    const hashes = [...text.matchAll(/scrypt\$[^"\s]+/g)].map((m) => m[0]);
    expect(hashes.length).toBe(2);
    const redacted = redactConfigText(text);
    for (const hash of hashes) expect(redacted).not.toContain(hash);
    expect(redacted).toContain("cluster:");
    expect(redacted.match(/<redacted>/g)?.length).toBe(2);
  });
});
