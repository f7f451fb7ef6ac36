import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** The Debian package that ships each program duet runs itself: named in every "not installed". */
export const DEBIAN_PACKAGES: Readonly<Record<string, string>> = {
  ip: "iproute2",
  arping: "iputils-arping",
  ping: "iputils-ping",
  nft: "nftables",
  cat: "coreutils",
  id: "coreutils",
  timeout: "coreutils",
};

/** "ping: not installed (apt-get install iputils-ping)", or with no package known, "not found on PATH". */
export function notInstalled(program: string): string {
  const pkg = DEBIAN_PACKAGES[program];
  return pkg ? `${program}: not installed (apt-get install ${pkg})` : `${program}: not found (not on PATH, or not executable)`;
}

/** A spawn that failed because the program is missing, said as such; null for any other failure. */
export function missingProgram(program: string, spawnError: string): string | null {
  return /ENOENT/.test(spawnError) ? notInstalled(program) : null;
}

/** Whether a command's first word runs: a path that is executable, or a name found on PATH. */
export function findProgram(command: string, path = process.env.PATH ?? ""): string | null {
  const executable = (file: string) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes("/")) return executable(command) ? command : null;
  for (const dir of path.split(delimiter)) if (dir && executable(join(dir, command))) return join(dir, command);
  return null;
}
