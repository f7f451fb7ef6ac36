import { readFile, rename, writeFile, copyFile } from "node:fs/promises";
import { isMap, isSeq, parseDocument, YAMLMap } from "yaml";
import { hashPassword } from "./secrets.ts";
import { parseConfig } from "./load.ts";

/**
 * `duet passwd USER`: sets (or adds) a user's password hash in the config, editing the YAML
 * document so every comment stays. The result must load before it replaces the file; the old
 * file is kept as duet.yaml.bak. Copy the file to the peer: both nodes check the same users.
 */
export async function setPassword(options: { configFile: string; user: string; password: string; role?: "admin" | "monitor" }): Promise<{ added: boolean }> {
  const text = await readFile(options.configFile, "utf8");
  parseConfig(text, options.configFile); // a config that does not load is not edited
  const doc = parseDocument(text);
  const passwordHash = await hashPassword(options.password);
  let users = doc.get("users", true);
  if (!isSeq(users)) {
    doc.set("users", doc.createNode([]));
    users = doc.get("users", true);
  }
  if (!isSeq(users)) throw new Error(`${options.configFile}: users: expected a list`);
  const entry = users.items.find((item) => isMap(item) && item.get("name") === options.user) as YAMLMap | undefined;
  if (entry) {
    entry.set("passwordHash", passwordHash);
    if (options.role) entry.set("role", options.role);
  } else users.add(doc.createNode({ name: options.user, role: options.role ?? "monitor", passwordHash }));
  const updated = doc.toString();
  parseConfig(updated, options.configFile);
  await copyFile(options.configFile, `${options.configFile}.bak`);
  const temporary = `${options.configFile}.${process.pid}.tmp`;
  await writeFile(temporary, updated, { mode: 0o640 });
  await rename(temporary, options.configFile);
  return { added: !entry };
}
