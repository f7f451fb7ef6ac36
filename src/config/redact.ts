/** Keys whose values a support bundle must never carry: password hashes and anything named like a secret. */
const SECRET_VALUE = /\b(passwordHash|password|secret|token|apiKey)(\s*:\s*)("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s,}#]+)/gi;

export const REDACTED = "<redacted>";

/** Redacts secret values in block and flow style alike, keeping comments and layout so the config still reads as written. */
export function redactConfigText(text: string): string {
  return text.replace(SECRET_VALUE, (_m, key: string, colon: string) => `${key}${colon}"${REDACTED}"`);
}
