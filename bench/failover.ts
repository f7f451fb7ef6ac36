// bench:failover — time from a fault to the client being served again on the VIP.
// Needs root (network namespaces). Usage: npm run bench:failover [-- --runs N]
import { createTestNet, removeStaleNamespaces } from "../test/e2e/netns.ts";
import { keepalivedAvailable, measureKeepalivedHostCrash } from "./keepalived-pair.ts";
import { summarize } from "./vip-client.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1] || 10);
const deadtimeMs = 3000;
const prefix = `bf${process.pid % 10000}`;

if (process.getuid?.() !== 0) {
  console.error("bench:failover needs root for network namespaces (sudo npm run bench:failover)");
  process.exit(2);
}
if (!(await keepalivedAvailable())) {
  console.error("bench:failover compares with keepalived: apt-get install -y keepalived");
  process.exit(2);
}
await removeStaleNamespaces(prefix);
const net = await createTestNet({ prefix, subnet: "10.231.90", hosts: ["a", "b", "client"] });
try {
  const vip = "10.231.90.100";
  const keepalived = await measureKeepalivedHostCrash(net, { vip, deadtimeMs, runs });
  console.log(`keepalived advert_int=${keepalived.advertS}s (master down after ~3 x advert + skew)`);
  summarize("keepalived host crash -> served", keepalived.takeovers, deadtimeMs);
} finally {
  await net.destroy();
}
