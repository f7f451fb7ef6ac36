import { readFile } from "node:fs/promises";
import type { ConfigApplied } from "../api/ports.ts";
import { CliError, exitCodes, type ApiClient } from "./client.ts";

/** `duet config apply FILE`: the plan, as a table, and what happened on each node. */
export async function applyConfigFile(client: ApiClient, file: string, options: { dryRun: boolean; force: boolean }): Promise<ConfigApplied> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new CliError(`${file}: ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (error as Error).message}`, exitCodes.usage, "usage");
  }
  return client.post<ConfigApplied>("/v1/config", { text, ...options });
}

export function renderApplied(result: ConfigApplied, dryRun: boolean): string {
  const rows = result.plan.changes.map((c) => [c.scope, c.item, c.change, c.from !== undefined || c.to !== undefined ? `${c.from ?? "-"} -> ${c.to ?? "-"}` : "", c.refused ? `REFUSED: ${c.refused}` : c.effect]);
  const header = ["scope", "item", "change", "from -> to", "what it does"];
  const widths = header.map((h, i) => Math.min(48, Math.max(h.length, ...rows.map((r) => r[i]!.length))));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ");
  const table = rows.length === 0 ? ["no change: the file is the configuration in force"] : [line(header), ...rows.map(line)];
  const peer = { applied: "applied on the peer too", unchanged: "", "not-reached": "the peer was not reached: it adopts this version when it is back", "not-asked": "" }[result.peer];
  const outcome = dryRun
    ? result.plan.allowed
      ? `dry run: applying would make version ${result.version} (hash ${result.hash}) on both nodes`
      : "dry run: this configuration would be refused (see REFUSED above)"
    : result.applied
      ? `applied: version ${result.version} (hash ${result.hash}) in force${peer ? `; ${peer}` : ""}`
      : "nothing applied";
  return [...table, "", outcome].join("\n");
}
