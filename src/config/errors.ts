export interface ConfigIssue {
  path: string;
  message: string;
}

/** Every problem of a config file at once, each with its key path, what was expected and the line. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: ConfigIssue[],
  ) {
    super(issues.length === 1 ? `config ${source}: ${issues[0]!.path}: ${issues[0]!.message}` : `config ${source}: ${issues.length} problems:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join("\n")}`);
    this.name = "ConfigError";
  }
}
