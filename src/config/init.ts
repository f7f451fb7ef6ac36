import { mkdir, open, stat, writeFile } from "node:fs/promises";
import { systemdUnit } from "./systemd.ts";
import { join } from "node:path";
import { generatePassword, hashPassword, writeClusterKey } from "./secrets.ts";
import { parseConfig } from "./load.ts";

export interface InitOptions {
  dir: string;
  cluster: string;
  nodes: [{ name: string; address: string; dataDir?: string }, { name: string; address: string; dataDir?: string }];
  /** The admin password; when absent one is generated and returned once. */
  password?: string;
  force?: boolean;
  /** Extra YAML appended under `jobs:` (the demo passes its sample job). */
  jobsYaml?: string;
  /** Ports other than the defaults (the demo runs beside a real agent without clashing). */
  ports?: { api: number; peer: number; heartbeat: number };
  tiebreakerYaml?: string;
  /** The command line that runs duet, for the systemd unit written beside the config. */
  duetCommand?: string;
}

export interface InitResult {
  configFile: string;
  keyFile: string;
  /** duet.service beside the config, when a duet command was given. */
  unitFile: string | null;
  generatedPassword: string | null;
}

/**
 * `duet init`: a commented config, a new cluster key (0600) and an admin user. There is never a
 * default password: without one, a random one is generated and shown once.
 */
export async function initConfig(options: InitOptions): Promise<InitResult> {
  await mkdir(options.dir, { recursive: true, mode: 0o755 });
  const configFile = join(options.dir, "duet.yaml");
  const keyFile = join(options.dir, "cluster.key");
  if (!options.force && (await exists(configFile))) throw new Error(`${configFile} already exists; pass --force to replace it`);
  const generatedPassword = options.password === undefined ? generatePassword() : null;
  const passwordHash = await hashPassword(options.password ?? generatedPassword!);
  const text = renderConfig({ ...options, keyFile, passwordHash });
  parseConfig(text, configFile); // what init writes must load: checked before anything is on disk
  if (!(await exists(keyFile))) await writeClusterKey(keyFile);
  const handle = await open(configFile, options.force ? "w" : "wx", 0o640);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  let unitFile: string | null = null;
  if (options.duetCommand) {
    unitFile = join(options.dir, "duet.service");
    await writeFile(unitFile, systemdUnit({ configFile, cluster: options.cluster, duet: options.duetCommand }), { mode: 0o644 });
  }
  return { configFile, keyFile, unitFile, generatedPassword };
}

function renderConfig(o: InitOptions & { keyFile: string; passwordHash: string }): string {
  const node = (n: InitOptions["nodes"][number]) => `  - name: ${n.name}\n    address: ${n.address}${n.dataDir ? `\n    dataDir: ${n.dataDir}` : ""}`;
  return `# duet config written by \`duet init\`; the same file goes on both nodes (copy cluster.key too).
# Every key is explained in examples/duet.example.yaml.

cluster:
  name: ${o.cluster}
  keyFile: ${o.keyFile}       # 32 random bytes, mode 0600: copy it to the peer as is

nodes:
${node(o.nodes[0])}
${node(o.nodes[1])}

${o.ports ? `ports: { api: ${o.ports.api}, peer: ${o.ports.peer} }\n\n` : ""}heartbeat:
  intervalMs: 500              # a frame per link every interval
  deadtimeMs: 3000             # silence after which a link is down; the peer is lost when all links are
  # suspectMs: 1500            # silence on all links after which a node running jobs pings its targets; cut off from them, it
                               # brings its jobs out at once. Default: as late as still lets it do so by the deadtime
                               # (deadtimeMs - ping timeout - grace - intervalMs - 500, at least 2 x intervalMs)
${o.ports ? `  links:\n    - { name: lan, port: ${o.ports.heartbeat}, addresses: [${o.nodes[0].address}, ${o.nodes[1].address}] }\n` : ""}
tiebreaker:
${o.tiebreakerYaml ?? `  # ping: { targets: [GATEWAY], mode: any, timeoutMs: 500 }   # without a tiebreaker no node ever takes over by itself`}
  selfFenceGraceMs: 0          # extra wait before a node cut off from peer AND ping targets brings its jobs out; the standby,
                               # confirmed by ping only, takes over suspectMs + ping timeout + this + intervalMs + 500 ms after
                               # the peer's last frame (3000 ms by default: the deadtime itself)

jobs:
${o.jobsYaml ?? `  # - name: web
  #   policy: manual           # manual | when-consistent | allow-difference | unconditional
  #   resources:
  #     - name: ip
  #       vip: { address: 10.0.0.100/24, interface: eth0 }
  #   mirrors:
  #     - path: /srv/web/data
  #   syncMaxMiBps: 100        # at most this for a verification or resync (realtime is never held back); absent: no limit
  []`}

users:
  - name: admin
    role: admin
    passwordHash: "${o.passwordHash}"
`;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
