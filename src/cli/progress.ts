import cliProgress from "cli-progress";

/**
 * A progress bar on stderr for long work (verification, resync), fed from the journal's progress
 * events. Only on a terminal: scripts and --json output get none.
 */
export function progressBar(label: string): { update: (done: number, total: number) => void; stop: () => void } | null {
  if (!process.stderr.isTTY) return null;
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% {doneMiB}/{totalMiB} MiB`, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
  return {
    update(done, total) {
      if (!started) {
        bar.start(Math.max(1, total), done, { doneMiB: mib(done), totalMiB: mib(total) });
        started = true;
      }
      bar.setTotal(Math.max(1, total));
      bar.update(done, { doneMiB: mib(done), totalMiB: mib(total) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
