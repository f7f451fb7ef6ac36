import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";

/** The cluster key: 32 random bytes shared by both nodes, readable by root alone. */
export const CLUSTER_KEY_BYTES = 32;

// scrypt parameters as stored in the hash, so a later release can raise them without breaking logins.
const SCRYPT_N = 16384;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SCRYPT_KEY_BYTES = 32;
const PASSWORD_MIN_CHARS = 8;

function scryptAsync(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT_KEY_BYTES, { N: n, r, p, maxmem: 128 * n * r * 2 }, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

/** "scrypt$N$r$p$salt$hash" with base64 salt and hash. */
export async function hashPassword(password: string): Promise<string> {
  if (password.length < PASSWORD_MIN_CHARS) throw new Error(`password: expected at least ${PASSWORD_MIN_CHARS} characters`);
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P);
  return ["scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P, salt.toString("base64"), key.toString("base64")].join("$");
}

export const passwordHashPattern = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/;

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0) || n > 1 << 20) return false;
  const salt = Buffer.from(parts[4] ?? "", "base64");
  const expected = Buffer.from(parts[5] ?? "", "base64");
  const actual = await scryptAsync(password, salt, n, r, p);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A printable random password for `duet init` when the operator gives none. */
export function generatePassword(): string {
  return randomBytes(18).toString("base64url");
}

/** Writes a new cluster key with mode 0600; refuses to overwrite one (the peer holds a copy). */
export async function writeClusterKey(file: string): Promise<void> {
  const handle = await open(file, "wx", 0o600).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "EEXIST") throw new Error(`cluster key ${file}: already exists; remove it first if you really mean to replace it on both nodes`);
    throw new Error(`cluster key ${file}: ${error.message}`);
  });
  try {
    await handle.writeFile(randomBytes(CLUSTER_KEY_BYTES));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads the cluster key, refusing one that has the wrong size or that others may read. */
export async function readClusterKey(file: string): Promise<Buffer> {
  const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cluster key ${file}: ${error.code === "ENOENT" ? "not found (duet init writes one; copy it to the peer)" : error.message}`);
  });
  if ((info.mode & 0o077) !== 0) throw new Error(`cluster key ${file}: mode ${(info.mode & 0o777).toString(8)} lets others read it; expected 600 (chmod 600 ${file})`);
  const key = await readFile(file);
  if (key.length !== CLUSTER_KEY_BYTES) throw new Error(`cluster key ${file}: expected ${CLUSTER_KEY_BYTES} bytes, got ${key.length}`);
  return key;
}
