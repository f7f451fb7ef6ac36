// The bench's writing application: appends a numbered line to DIR/{node}/data/log.txt RATE times a
// second, going on from the lines its copy holds, and keeps its count in DIR/{node}/written
// (outside the mirror). It ends between two writes (SIGTERM handled), so the count is exact.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";

const [template, rate = "100"] = process.argv.slice(2);
const dir = template.replaceAll("{node}", process.env.DUET_NODE ?? "unknown");
const file = `${dir}/data/log.txt`;
let n = existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).length : 0;
setInterval(() => {
  n += 1;
  appendFileSync(file, `${n} ${process.env.DUET_NODE}\n`);
  writeFileSync(`${dir}/written`, String(n));
}, 1000 / Number(rate));
process.on("SIGTERM", () => process.exit(0));
