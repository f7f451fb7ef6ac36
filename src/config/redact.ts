import { isMap, isScalar, isSeq, parseDocument, visit, type Scalar } from "yaml";

export const REDACTED = "<redacted>";

/** A key whose value is a secret: password hashes, API keys, tokens, credentials, private keys. */
const SECRET_KEY = /pass(word|wd|phrase)?|secret|token|api[_-]?key|credential|private[_-]?key|access[_-]?key|auth/i;
/** A command-line argument carrying its secret: --password=x, --api-token=x. */
const SECRET_FLAG_WITH_VALUE = /^(--?[\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|credential|auth)[\w.-]*=)(.+)$/i;
/** A flag whose secret is the next argument: --password x, -p x is too ambiguous to guess. */
const SECRET_FLAG = /^--?[\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|credential)$/i;
/** user:password@ in a URL. */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[^@\s/]+@/gi;

/**
 * The config as a support bundle carries it: every value under a secret-looking key (at any depth:
 * a user's passwordHash, a process's env DB_PASSWORD, an OCF agent's OCF_RESKEY_password), every
 * secret-looking command-line argument and every URL's password replaced, through the YAML
 * document (comments and layout kept) rather than patterns over text. A file that does not parse
 * is not carried at all: nothing could say which of its parts are secret.
 */
export function redactConfigText(text: string): string {
  const doc = parseDocument(text, { keepSourceTokens: false });
  if (doc.errors.length > 0) return `# the config did not parse as YAML (${doc.errors[0]!.message.split("\n")[0]}); left out of the bundle so no secret in it is carried\n`;
  visit(doc, {
    Pair(_key, pair) {
      if (isScalar(pair.key) && SECRET_KEY.test(String(pair.key.value)) && pair.value !== null && (isScalar(pair.value) || isMap(pair.value) || isSeq(pair.value)))
        pair.value = doc.createNode(REDACTED);
    },
    Seq(_key, seq) {
      for (let i = 0; i < seq.items.length; i++) {
        const item = seq.items[i];
        if (!isScalar(item) || typeof item.value !== "string") continue;
        const withValue = SECRET_FLAG_WITH_VALUE.exec(item.value);
        if (withValue) item.value = `${withValue[1]}${REDACTED}`;
        else if (SECRET_FLAG.test(item.value) && isScalar(seq.items[i + 1])) (seq.items[i + 1] as Scalar).value = REDACTED;
      }
    },
    Scalar(_key, scalar) {
      if (typeof scalar.value === "string") scalar.value = scalar.value.replace(URL_PASSWORD, `$1${REDACTED}@`);
    },
  });
  return doc.toString();
}
