import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { request as httpsRequest } from "node:https";
import { execFileSync } from "node:child_process";

/** A real etcd (Debian's etcd-server) for a test: one member, or a cluster of several, on loopback or in a namespace. */
export interface EtcdCluster {
  /** Client URLs, one per member. */
  endpoints: string[];
  /** kill -9 of member I. */
  kill(i: number): void;
  /** Starts member I again on its data (after kill) and waits for its health. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

export interface EtcdOptions {
  members?: number;
  /** Serve clients over TLS with these PEM files, asking each client for a certificate from `ca`. */
  tls?: { ca: string; cert: string; key: string };
  /** The address each member listens on (default 127.0.0.1). */
  host?: string;
  /** Runs etcd inside this network namespace (ip netns exec). */
  netns?: string;
}

export const ETCD_MISSING = "etcd is not installed: apt-get install etcd-server (.ci/run installs it)";

/** Starts etcd and waits until every member answers /health. */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdCluster> {
  const members = options.members ?? 1;
  const host = options.host ?? "127.0.0.1";
  const dir = await mkdtemp(join(tmpdir(), "duet-etcd-"));
  const ports = await Promise.all(Array.from({ length: members * 2 }, () => freePort()));
  const names = Array.from({ length: members }, (_, i) => `m${i}`);
  const peerUrl = (i: number) => `http://${host}:${ports[2 * i + 1]}`;
  const clientUrl = (i: number) => `${options.tls ? "https" : "http"}://${host}:${ports[2 * i]}`;
  const tlsArgs = options.tls ? ["--cert-file", options.tls.cert, "--key-file", options.tls.key, "--trusted-ca-file", options.tls.ca, "--client-cert-auth"] : [];
  const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(",");
  const member = (i: number): ChildProcess => {
    const name = names[i]!;
    const argv = ["etcd", "--name", name, "--data-dir", join(dir, name), "--listen-client-urls", clientUrl(i), "--advertise-client-urls", clientUrl(i), "--listen-peer-urls", peerUrl(i), "--initial-advertise-peer-urls", peerUrl(i), "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--log-level", "error", ...tlsArgs];
    const full = options.netns ? ["ip", "netns", "exec", options.netns, ...argv] : argv;
    const child = spawn(full[0]!, full.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.resume();
    return child;
  };
  const children: ChildProcess[] = names.map((_, i) => member(i));
  const endpoints = names.map((_, i) => clientUrl(i));
  const stop = async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once("exit", r)))));
    await rm(dir, { recursive: true, force: true });
  };
  const spawnFailed = new Promise<never>((_, reject) => children[0]!.once("error", (e: NodeJS.ErrnoException) => reject(new Error(e.code === "ENOENT" ? ETCD_MISSING : e.message))));
  try {
    await Promise.race([Promise.all(endpoints.map((e) => waitHealthy(e, options.netns, options.tls))), spawnFailed]);
  } catch (error) {
    await stop();
    throw error;
  }
  const kill = (i: number) => children[i]!.kill("SIGKILL");
  const restart = async (i: number) => {
    const old = children[i]!;
    if (old.exitCode === null && old.signalCode === null) await new Promise((r) => old.once("exit", r));
    children[i] = member(i);
    await waitHealthy(endpoints[i]!, options.netns, options.tls);
  };
  return { endpoints, kill, restart, stop };
}

async function waitHealthy(endpoint: string, netns: string | undefined, tls: EtcdOptions["tls"]): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (await healthy(endpoint, netns, tls)) return;
    if (Date.now() > deadline) throw new Error(`etcd at ${endpoint} not healthy within 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** /health from the root namespace (loopback), or asked by node from inside the namespace. */
function healthy(endpoint: string, netns: string | undefined, tls: EtcdOptions["tls"]): Promise<boolean> {
  if (netns) {
    return new Promise((resolve) => {
      const ask = `fetch(${JSON.stringify(`${endpoint}/health`)}, { signal: AbortSignal.timeout(1000) }).then((r) => r.text()).then((t) => console.log(t), () => {})`;
      const c = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", ask], { stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      c.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      c.on("exit", () => resolve(/"health":\s*"true"/.test(out)));
      c.on("error", () => resolve(false));
    });
  }
  return new Promise((resolve) => {
    const files = tls ? { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) } : {};
    const req = (tls ? httpsRequest : request)(`${endpoint}/health`, { timeout: 1000, ...files }, (res) => {
      let out = "";
      res.on("data", (d: Buffer) => (out += d.toString()));
      res.on("end", () => resolve(/"health":\s*"true"/.test(out)));
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A CA, a server certificate for ADDRESS and a client certificate, made by openssl in DIR: what
 * an etcd that asks clients for certificates needs, and what duet's tiebreaker.witness.etcd.tls names.
 */
export function makeCertificates(dir: string, address: string): { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string } {
  const at = (name: string) => join(dir, name);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl("req", "-x509", ...ec, "-keyout", at("ca.key"), "-out", at("ca.pem"), "-subj", "/CN=duet-test-ca", "-days", "2");
  for (const [who, san] of [["server", `IP:${address}`], ["client", "DNS:duet"]] as const) {
    ssl("req", ...ec, "-keyout", at(`${who}.key`), "-out", at(`${who}.csr`), "-subj", `/CN=${who}`);
    const ext = at(`${who}.ext`);
    writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    ssl("x509", "-req", "-in", at(`${who}.csr`), "-CA", at("ca.pem"), "-CAkey", at("ca.key"), "-CAcreateserial", "-out", at(`${who}.pem`), "-days", "2", "-extfile", ext);
  }
  return { ca: at("ca.pem"), serverCert: at("server.pem"), serverKey: at("server.key"), clientCert: at("client.pem"), clientKey: at("client.key") };
}
