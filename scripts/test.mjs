#!/usr/bin/env node
// Runs the suite with vitest and closes with the one plain line CI reads:
// "N passed, N failed", counted from vitest's JSON report, and a non-zero exit on any failure.
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, mkdirSync } from "node:fs";

const reportPath = ".tmp/vitest-report.json";
mkdirSync(".tmp", { recursive: true });
rmSync(reportPath, { force: true });

const run = spawnSync(
  "npx",
  ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${reportPath}`, ...process.argv.slice(2)],
  { stdio: "inherit" },
);

let passed = 0;
let failed = 0;
try {
  const report = JSON.parse(readFileSync(reportPath, "utf8"));
  passed = report.numPassedTests;
  failed = report.numFailedTests + (report.numRuntimeErrorTestSuites ?? 0);
  // A file that fails to load, or whose beforeAll fails (its tests then count as skipped), must still fail the run.
  for (const file of report.testResults ?? [])
    if (file.status === "failed" && !file.assertionResults.some((test) => test.status === "failed")) failed += 1;
} catch (error) {
  console.error(`test: no readable vitest report at ${reportPath}: ${error.message}`);
  failed += 1;
}
if (passed + failed === 0) failed = 1; // a run that tested nothing is not a pass
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || run.status !== 0 ? 1 : 0);
