#!/usr/bin/env node
// duet runs compiled JavaScript from dist/ (`npm run build`; npm ci and npm pack run it through prepare).
import { existsSync } from "node:fs";

const main = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error("duet: dist/ is missing: run `npm run build` in the duet checkout (npm ci runs it)");
  process.exit(2);
}
await import(main.href);
