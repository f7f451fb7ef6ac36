import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdGateway } from "../../src/cluster/etcd-gateway.ts";
import { createWitnessSession, holderKey } from "../../src/cluster/witness.ts";
import { witnessSpec } from "../../src/config/schema.ts";
import type { EventOf } from "../../src/events/catalogue.ts";
import { systemClock, systemTimers } from "../../src/world/clock.ts";
import { makeCertificates, startEtcd, type EtcdCluster } from "./etcd-server.ts";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

type LeaseFact = EventOf<"WitnessLease">["data"];

/** A node's witness session against ENDPOINTS, with what it reported. */
function node(self: string, endpoints: string[], prefix: string, extra: { unreachable?: "self-fence" | "keep-running"; leaseMs?: number } = {}) {
  const spec = witnessSpec.parse({ etcd: { endpoints, prefix }, leaseMs: 2000, ...extra });
  const reports: (LeaseFact & { reportedAt: number })[] = [];
  const state = { newLeases: 0 };
  const waiters: (() => void)[] = [];
  const session = createWitnessSession({
    self,
    spec,
    store: etcdGateway(spec.etcd),
    clock: systemClock,
    timers: systemTimers,
    report: async (fact) => {
      reports.push({ ...fact.data, reportedAt: Date.now() });
      for (const w of waiters.splice(0)) w();
    },
    onNewLease: () => void state.newLeases++,
    log: () => {},
  });
  /** Resolves once a report in STATE arrives (or has). */
  const reported = async (state: LeaseFact["state"], timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = reports.find((r) => r.state === state);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`${self}: no ${state} report within ${timeoutMs} ms (saw ${reports.map((r) => r.state).join(", ")})`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  return { session, reports, reported, spec, get newLeases() {
    return state.newLeases;
  } };
}

async function waitFor(ok: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return ok();
}

/** Nodes a and b on ENDPOINTS under a prefix of their own, both sessions started. */
async function pairOn(endpoints: string[]) {
  const prefix = freshPrefix();
  const a = node("a", endpoints, prefix);
  const b = node("b", endpoints, prefix);
  await Promise.all([a.session.start(), b.session.start()]);
  const stop = () => {
    a.session.stop();
    b.session.stop();
  };
  return { prefix, a, b, stop };
}

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd();
}, 30_000);
afterAll(async () => {
  await etcd?.stop();
});

let prefixes = 0;
const freshPrefix = () => `/duet-test-${process.pid}-${++prefixes}`;

describe("the witness's lease protocol, against a real etcd", () => {
  it("grants a lease, gives a free key to the first asker, and refuses it to the other while the holder renews", async () => {
    const { prefix, a, b, stop } = await pairOn(etcd.endpoints);
    try {
      // The agent's start does not wait for the lease; the first claim would.
      await Promise.all([a.reported("held"), b.reported("held")]);
      expect(a.reports.map((r) => r.state)).toEqual(["granting", "held"]);
      expect((await a.session.claim("web", "start")).data).toMatchObject({ won: true, holder: "a" });
      // Asked again by its holder (a restart's recovery, a new lease): still its own.
      expect((await a.session.claim("web", "start")).data).toMatchObject({ won: true, holder: "a" });
      // Over three lease lengths, b never wins while a renews.
      const until = Date.now() + 3 * 2000;
      let asked = 0;
      while (Date.now() < until) {
        const claim = (await b.session.claim("web", "takeover")).data;
        expect(claim).toMatchObject({ won: false, holder: "a" });
        expect(claim.holderTtlMs).toBeGreaterThan(0);
        expect(claim.holderTtlMs).toBeLessThanOrEqual(2000);
        asked++;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(asked).toBeGreaterThan(10);
      expect(a.reports.map((r) => r.state)).toEqual(["granting", "held"]);
    } finally {
      stop();
    }
  }, 30_000);

  it("a released key goes to the peer at once; a release by the node that no longer holds it does nothing", async () => {
    const { prefix, a, b, stop } = await pairOn(etcd.endpoints);
    try {
      await a.session.claim("web", "start");
      const released = await a.session.release("web");
      expect(released?.data).toMatchObject({ node: "a", job: "web" });
      expect((await b.session.claim("web", "takeover")).data).toMatchObject({ won: true, holder: "b" });
      expect(await a.session.release("web")).toBeNull();
      expect(await etcdGateway(a.spec.etcd).holder(holderKey(prefix, "web"), 1000)).toBe("b");
    } finally {
      stop();
    }
  }, 30_000);

  it("the standby wins the key only after the holder's own deadline: the holder stopped renewing (its agent died)", async () => {
    const { prefix, a, b, stop } = await pairOn(etcd.endpoints);
    try {
      await a.session.claim("web", "start");
      // Wait for one renewal, then a stops renewing: its lease lasts until its last renewal's send + TTL.
      await new Promise((r) => setTimeout(r, 700));
      a.session.stop();
      const stoppedAt = Date.now();
      let wonAt = 0;
      while (wonAt === 0 && Date.now() < stoppedAt + 10_000) {
        const claim = (await b.session.claim("web", "takeover")).data;
        if (claim.won) wonAt = Date.now();
        else await new Promise((r) => setTimeout(r, 50));
      }
      expect(wonAt).toBeGreaterThan(0);
      // The last validUntil a journaled bounds when it must have fenced; b may win only after it.
      const lastValid = Math.max(...a.reports.map((r) => r.validUntil ?? 0));
      expect(lastValid).toBeGreaterThan(0);
      expect(wonAt).toBeGreaterThanOrEqual(lastValid);
      expect(wonAt - stoppedAt).toBeLessThan(2000 + 1500);
    } finally {
      stop();
    }
  }, 30_000);
});

describe("etcd with authentication", () => {
  it("a user and password get a token and the lease; a wrong password is refused naming the user", async () => {
    const own = await startEtcd();
    const gateway = async (path: string, body: unknown, token?: string) => {
      const answer = await fetch(`${own.endpoints[0]}${path}`, { method: "POST", body: JSON.stringify(body), headers: token ? { authorization: token } : {} });
      return (await answer.json()) as Record<string, unknown>;
    };
    try {
      await gateway("/v3/auth/user/add", { name: "root", password: "root-secret" });
      await gateway("/v3/auth/user/grant", { user: "root", role: "root" });
      await gateway("/v3/auth/enable", {});
      const spec = witnessSpec.parse({ etcd: { endpoints: own.endpoints, prefix: freshPrefix(), auth: { user: "root", password: "root-secret" } }, leaseMs: 2000 });
      const store = etcdGateway(spec.etcd);
      const lease = await store.grant(2000, 2000);
      expect((await store.claim(holderKey(spec.etcd.prefix, "web"), "a", lease.leaseId, 2000)).won).toBe(true);
      expect(await store.holder(holderKey(spec.etcd.prefix, "web"), 2000)).toBe("a");
      const wrong = etcdGateway({ ...spec.etcd, auth: { user: "root", password: "nope" } });
      await expect(wrong.grant(2000, 2000)).rejects.toThrow(/authentication as root failed/);
      // Without credentials etcd refuses the keys (leases it grants to anyone), and the error says what etcd said.
      const anonymous = etcdGateway({ ...spec.etcd, auth: undefined });
      const anonymousLease = await anonymous.grant(2000, 2000);
      await expect(anonymous.claim(holderKey(spec.etcd.prefix, "web"), "b", anonymousLease.leaseId, 2000)).rejects.toThrow(/etcd .*\/v3\/kv\/txn: .*(user name|token|permission)/i);
    } finally {
      await own.stop();
    }
  }, 30_000);
});

describe("etcd over TLS with client certificates", () => {
  it("the lease and the keys over https with duet's certificate; without one etcd refuses the connection", async () => {
    const dir = await mkdtemp(join(tmpdir(), "duet-etcd-tls-"));
    const certs = makeCertificates(dir, "127.0.0.1");
    const own = await startEtcd({ tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey } });
    try {
      expect(own.endpoints[0]).toMatch(/^https:/);
      const spec = witnessSpec.parse({ etcd: { endpoints: own.endpoints, prefix: freshPrefix(), tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } }, leaseMs: 2000 });
      const store = etcdGateway(spec.etcd);
      const lease = await store.grant(2000, 2000);
      expect(lease.ttlMs).toBe(2000);
      expect((await store.claim(holderKey(spec.etcd.prefix, "web"), "a", lease.leaseId, 2000)).won).toBe(true);
      expect((await store.keepAlive(lease.leaseId, 2000)).ttlMs).toBe(2000);
      const noCert = etcdGateway({ ...spec.etcd, tls: { ca: certs.ca } });
      await expect(noCert.grant(2000, 2000)).rejects.toThrow();
    } finally {
      await own.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("the witness unreachable", () => {
  it("etcd killed: the lease is renew-failing with the deadline of its last renewal, then expired once it passed; it comes back as a new lease", async () => {
    const own = await startEtcd();
    const prefix = freshPrefix();
    const a = node("a", own.endpoints, prefix);
    try {
      await a.session.start();
      await a.session.claim("web", "start");
      await new Promise((r) => setTimeout(r, 600));
      const killedAt = Date.now();
      own.kill(0);
      const failing = await a.reported("renew-failing");
      expect(failing.validUntil).toBeGreaterThan(killedAt);
      expect(failing.validUntil! - killedAt).toBeLessThanOrEqual(2000);
      const expired = await a.reported("expired");
      expect(expired.reportedAt).toBeGreaterThanOrEqual(failing.validUntil! - 50);
      // A claim without a lease is refused here, without asking etcd.
      expect((await a.session.claim("web", "takeover")).data).toMatchObject({ won: false, error: "this node holds no lease on the witness" });
      // etcd back: a new lease, and the session says so each time (the agent then asks for its jobs' keys again).
      await own.restart(0);
      await new Promise((r) => setTimeout(r, 100));
      const heldAgain = await waitFor(() => a.reports.filter((r) => r.state === "held").length === 2, 10_000);
      expect(heldAgain).toBe(true);
      expect(a.newLeases).toBe(2);
      const leases = a.reports.filter((r) => r.state === "held").map((r) => r.leaseId);
      expect(leases[1]).not.toBe(leases[0]);
    } finally {
      a.session.stop();
      await own.stop();
    }
  }, 40_000);

  it("a 3-member etcd loses one member mid-run: the lease stays held and keys are still given and refused", async () => {
    const three = await startEtcd({ members: 3 });
    const prefix = freshPrefix();
    // A lease of 4 s: a new leader's election (the killed member may lead) takes a few hundred ms,
    // more on a loaded machine, and etcd extends the leases when it is done.
    const a = node("a", three.endpoints, prefix, { leaseMs: 4000 });
    const b = node("b", three.endpoints, prefix, { leaseMs: 4000 });
    try {
      await Promise.all([a.session.start(), b.session.start()]);
      expect((await a.session.claim("web", "start")).data.won).toBe(true);
      three.kill(0);
      // Two lease lengths later a still holds its lease and the key; b still cannot have it.
      const until = Date.now() + 8000;
      while (Date.now() < until) {
        const claim = (await b.session.claim("web", "takeover")).data;
        if (claim.error === undefined) expect(claim).toMatchObject({ won: false, holder: "a" });
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(a.reports.some((r) => r.state === "expired")).toBe(false);
      expect((await a.session.claim("web", "renew")).data).toMatchObject({ won: true, holder: "a" });
      expect((await b.session.claim("web", "takeover")).data).toMatchObject({ won: false, holder: "a" });
    } finally {
      a.session.stop();
      b.session.stop();
      await three.stop();
    }
  }, 60_000);
});
