// The demo's sample application: a small HTTP server that answers with the node it runs on and
// the contents of the job's mirrored data directory, so a client sees both the takeover and
// that the data came along.
import { createServer } from "node:http";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const [host = "127.0.0.1", port = "18080", dataTemplate = "."] = process.argv.slice(2);
const node = process.env.DUET_NODE ?? "unknown";
// The demo runs both nodes on one machine, so each has its own copy: DIR/{node}/data.
const dataDir = dataTemplate.replaceAll("{node}", node);

createServer((request, response) => {
  const files = readdirSync(dataDir, { withFileTypes: false })
    .filter((name) => statSync(join(dataDir, name)).isFile())
    .sort()
    .map((name) => ({ name, text: readFileSync(join(dataDir, name), "utf8").slice(0, 200) }));
  response.writeHead(200, { "content-type": "application/json" });
  response.end(JSON.stringify({ servedBy: node, files }));
}).listen(Number(port), host);
