import { Command, InvalidArgumentError } from "commander";
import { FAULT_KINDS, runSeed, WITNESS_FAULT_KINDS, type FaultKind, type SeedOptions, type SeedResult } from "./run.ts";

/**
 * `npm run sim -- --seeds N [--seed S] [--faults split,isolate,...]`: runs seeds S..S+N-1 of the
 * whole-agent simulator and prints what they covered; exits 1 naming each failing seed and the
 * command that replays it.
 */
export interface SimSummary {
  seeds: number;
  failed: SeedResult[];
  virtualMs: number;
  realMs: number;
  faults: Partial<Record<FaultKind, number>>;
  checks: number;
  /** --story: the last seed's story, failing or not. */
  story?: string[];
}

export async function runSeeds(first: number, count: number, kinds: readonly FaultKind[], onSeed?: (r: SeedResult) => void, options: SeedOptions = {}): Promise<SimSummary> {
  const started = performance.now();
  const summary: SimSummary = { seeds: 0, failed: [], virtualMs: 0, realMs: 0, faults: {}, checks: 0 };
  for (let seed = first; seed < first + count; seed++) {
    const result = await runSeed(seed, kinds, options);
    summary.seeds++;
    summary.virtualMs += result.virtualMs;
    summary.checks += result.checks;
    for (const [kind, n] of Object.entries(result.faults)) summary.faults[kind as FaultKind] = (summary.faults[kind as FaultKind] ?? 0) + n;
    if (result.violations.length > 0) summary.failed.push(result);
    if (options.story) summary.story = result.story;
    onSeed?.(result);
  }
  summary.realMs = performance.now() - started;
  return summary;
}

export function summaryLines(s: SimSummary, kinds: readonly FaultKind[], witness: SeedOptions["witness"] = null): string[] {
  const lines = [
    `seeds run: ${s.seeds}, failed: ${s.failed.length}${witness ? `, with a witness (lease ${witness.leaseMs} ms, unreachable: ${witness.unreachable})` : ""}`,
    `virtual time covered: ${(s.virtualMs / 1000).toFixed(0)} s in ${(s.realMs / 1000).toFixed(1)} s real (${(s.virtualMs / s.realMs).toFixed(0)}x real time), ${(s.seeds / (s.realMs / 1000)).toFixed(2)} seeds/s`,
    `faults injected: ${kinds.map((k) => `${k} ${s.faults[k] ?? 0}`).join(", ")}`,
    `invariant checks: ${s.checks} (one VIP holder and one application after every step of virtual time; liveness and exact replay per seed)`,
  ];
  for (const f of s.failed) {
    const all = kinds.length === (witness ? WITNESS_FAULT_KINDS : FAULT_KINDS).length;
    lines.push(`FAILED seed ${f.seed}: replay it with: npm run sim -- --seed ${f.seed} --seeds 1${all ? "" : ` --faults ${kinds.join(",")}`}${witnessFlags(witness)}`);
    for (const v of f.violations) lines.push(`  ${v}`);
    if (s.failed.length === 1) lines.push("  what happened:", ...f.story.map((line) => `    ${line}`));
  }
  if (s.story && s.failed.length === 0) lines.push("what happened:", ...s.story.map((line) => `  ${line}`));
  return lines;
}

const witnessFlags = (w: SeedOptions["witness"]) => (w ? ` --witness ${w.leaseMs}${w.unreachable === "keep-running" ? " --witness-keep-running" : ""}` : "");

const integer = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name}: expected a whole number, got "${value}"`);
  return n;
};
const faultList = (value: string): FaultKind[] => {
  const kinds = value.split(",").map((k) => k.trim());
  const unknown = kinds.filter((k) => !(WITNESS_FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new InvalidArgumentError(`--faults: unknown ${unknown.join(", ")}; expected some of ${WITNESS_FAULT_KINDS.join(", ")} (the etcd ones with --witness)`);
  return kinds as FaultKind[];
};

/**
 * Progress on stderr as the seeds run: a failing seed at once (a long run stopped early still
 * names it), and a count every 10 seeds on a terminal, or a line every 100 seeds to a log.
 */
function progress(total: number): (r: SeedResult) => void {
  const started = performance.now();
  let done = 0;
  let failed = 0;
  return (r) => {
    done++;
    if (r.violations.length > 0) {
      failed++;
      process.stderr.write(`${process.stderr.isTTY ? "\r" : ""}seed ${r.seed} FAILED: ${r.violations[0]}\n`);
    }
    const rate = (done / ((performance.now() - started) / 1000)).toFixed(2);
    if (process.stderr.isTTY && done % 10 === 0) process.stderr.write(`\r${done}/${total}, ${failed} failed, ${rate} seeds/s`);
    else if (!process.stderr.isTTY && (done % 100 === 0 || done === total)) process.stderr.write(`${done}/${total} seeds, ${failed} failed, ${rate} seeds/s\n`);
  };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) {
  const program = new Command("sim")
    .option("--seeds <n>", "how many seeds to run", integer("--seeds"), 100)
    .option("--seed <s>", "the first seed", integer("--seed"), 1)
    .option("--faults <kinds>", `the faults to inject, from ${WITNESS_FAULT_KINDS.join(", ")} (default: all; the etcd ones only with --witness)`, faultList)
    .option("--story", "print the last seed's story (faults and facts by virtual time) even when it passes")
    .option("--witness <leaseMs>", "give the pair a witness (etcd at the gateway) with this lease", integer("--witness"))
    .option("--witness-keep-running", "with --witness: unreachable: keep-running (default self-fence)")
    .parse();
  const opts = program.opts<{ seeds: number; seed: number; faults?: FaultKind[]; story?: boolean; witness?: number; witnessKeepRunning?: boolean }>();
  const { seeds, seed, story } = opts;
  const witness = opts.witness === undefined ? null : { leaseMs: opts.witness, unreachable: opts.witnessKeepRunning ? ("keep-running" as const) : ("self-fence" as const) };
  const faults = opts.faults ?? [...(witness ? WITNESS_FAULT_KINDS : FAULT_KINDS)];
  const summary = await runSeeds(seed, seeds, faults, progress(seeds), { story: story === true, witness });
  if (process.stderr.isTTY) process.stderr.write("\r");
  console.log(summaryLines(summary, faults, witness).join("\n"));
  process.exit(summary.failed.length > 0 ? 1 : 0);
}
