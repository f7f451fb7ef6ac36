import fc from "fast-check";
import type { DuetEvent } from "../../src/events/catalogue.ts";

/** Names operators might choose, including the ones that break naive object-as-map code. */
export const nameArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "prototype", "web", "a", "ж", "名前", "😀", "a.b", "a\u0000b"),
  fc.string({ minLength: 1, maxLength: 12, unit: "grapheme" }).filter((s) => s.length >= 1 && s.length <= 64),
);
export const pathArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("__proto__/x", "constructor", "../etc/passwd", "dir/ä ö.txt", "🗂/📄", ""),
  fc.array(nameArb, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("/")),
);
const genArb = fc.stringMatching(/^[0-9a-f]{16}$/);

export const eventArb: fc.Arbitrary<DuetEvent> = fc.oneof(
  fc.record({ job: nameArb, node: nameArb }).map((data) => ({ type: "JobBroughtIn", data }) as DuetEvent),
  fc.record({ job: nameArb, node: nameArb, resource: nameArb }).map((data) => ({ type: "ResourceStarted", data }) as DuetEvent),
  fc
    .record({ job: nameArb, node: nameArb, generation: genArb, paths: fc.array(pathArb, { maxLength: 5 }), overflow: fc.boolean() })
    .map((data) => ({ type: "PathsWritten", data }) as DuetEvent),
  fc
    .record({ node: nameArb, job: fc.option(nameArb, { nil: undefined }), code: fc.string(), message: fc.string({ unit: "binary" }) }, { requiredKeys: ["node", "code", "message"] })
    .map((data) => ({ type: "AlertRaised", data }) as DuetEvent),
  fc
    .record({
      job: nameArb,
      by: nameArb,
      from: nameArb,
      policy: fc.constantFrom("manual", "when-consistent", "allow-difference", "unconditional"),
      reasons: fc.array(
        fc.record({ name: nameArb, value: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)))), ok: fc.boolean() }),
        { maxLength: 3 },
      ),
    })
    .map((data) => ({ type: "TakeoverDecided", data }) as DuetEvent),
  fc
    .record({ job: nameArb, node: nameArb, batch: fc.nat(), path: pathArb, reason: fc.string() })
    .map((data) => ({ type: "OpRefused", data }) as DuetEvent),
);

