/** How long `duet agent` may take to hand its jobs over on SIGTERM before it exits anyway. */
export const AGENT_STOP_TIMEOUT_MS = 180_000;
/** systemd waits this long past the agent's own stop timeout before it sends SIGKILL. */
const STOP_MARGIN_S = 20;

/**
 * duet.service, written by `duet init` beside the config. Type=exec: systemd's readiness
 * protocol needs a Unix datagram, which Node cannot send without a native addon, so the unit
 * counts the agent started once it runs (it refuses to start, exit 2, on a bad config or a
 * missing program). The job's applications are the agent's children and inherit its sandbox, so
 * only options that cannot touch them are set.
 */
export function systemdUnit(options: { configFile: string; cluster: string; duet: string }): string {
  return `# duet agent, written by \`duet init\`. Install:
#   cp ${options.configFile.replace(/duet\.yaml$/, "duet.service")} /etc/systemd/system/duet.service
#   systemctl daemon-reload && systemctl enable --now duet
[Unit]
Description=duet high-availability agent (cluster ${options.cluster})
Documentation=https://github.com/duet-ha/duet#readme
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
# The node is the one whose address is on this host (the same file serves both nodes).
ExecStart=${options.duet} agent --config ${options.configFile}
# SIGTERM switches the jobs over when the gate allows, else brings them out; a second signal
# exits at once. systemd waits past the agent's own ${AGENT_STOP_TIMEOUT_MS / 1000} s stop timeout.
KillSignal=SIGTERM
TimeoutStopSec=${AGENT_STOP_TIMEOUT_MS / 1000 + STOP_MARGIN_S}
# Only the agent is signalled: an agent that crashes leaves the job's applications running, and
# the restarted agent adopts them from their pid files (as pacemaker.service does).
KillMode=process
Restart=on-failure
RestartSec=2
# A bad config or a missing program exits 2: restarting cannot fix it.
RestartPreventExitStatus=2
LimitNOFILE=65536
# Hardening that cannot break VIPs (ip addr, arping need CAP_NET_ADMIN/RAW), mounts or the
# applications the agent starts. ProtectSystem, PrivateTmp, ProtectHome and NoNewPrivileges are
# left out on purpose: the children would inherit them.
LockPersonality=yes
ProtectHostname=yes
ProtectClock=yes
StandardOutput=journal
StandardError=journal
SyslogIdentifier=duet

[Install]
WantedBy=multi-user.target
`;
}
