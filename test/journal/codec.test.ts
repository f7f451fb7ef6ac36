import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { validateEvent } from "../../src/events/catalogue.ts";
import { encodeCheckpoint } from "../../src/journal/checkpoints.ts";
import { chainHash, decodeEnvelope, decodeRecorded, encodeEnvelope, GENESIS_PREV, keySeq, seqKey, validatedRecorded } from "../../src/journal/envelope.ts";
import { Packr } from "msgpackr";
import { eventArb, nameArb } from "./arbitraries.ts";

describe("journal envelope codec", () => {
  it("round-trips any valid event, whatever names and paths it carries", () => {
    fc.assert(
      fc.property(eventArb, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), nameArb, fc.uint8Array({ minLength: 16, maxLength: 16 }), (raw, seq, node, prev) => {
        const event = validateEvent(raw.type, raw.data);
        const hlc = [1_700_000_000_000 + (seq % 1000), seq % 7] as const;
        const bytes = encodeEnvelope({ seq, hlc, at: 1_700_000_000_123, node, type: event.type, v: 1, data: event.data, prev });
        const envelope = decodeEnvelope(bytes);
        expect(envelope).toEqual({ seq, hlc, at: 1_700_000_000_123, node, type: event.type, v: 1, data: event.data, prev: Buffer.from(prev) });
        const expected = { ...event, seq, at: 1_700_000_000_123, hlc, node };
        expect(decodeRecorded(bytes, seq, prev)).toEqual(expected);
        expect(validatedRecorded(envelope)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps seq keys in seq order up to 2^53", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (a, b) => {
        expect(keySeq(seqKey(a))).toBe(a);
        expect(Math.sign(Buffer.compare(seqKey(a), seqKey(b)))).toBe(Math.sign(a - b));
      }),
    );
  });

  it("names what is wrong with a record that is not an envelope", () => {
    expect(() => decodeEnvelope(Buffer.from([0x99, 0x01]))).toThrow(/not msgpack/);
    expect(() => decodeEnvelope(new Packr().pack({ seq: 1 }))).toThrow(/not an envelope array/);
    const good = encodeEnvelope({ seq: 3, hlc: [1, 0], at: 1, node: "a", type: "JobBroughtIn", v: 1, data: { job: "w", node: "a" }, prev: GENESIS_PREV });
    expect(() => decodeRecorded(good, 4)).toThrow(/found record 3 in its place/);
    expect(() => decodeRecorded(good, 3, chainHash(good))).toThrow(/does not follow record 2/);
    const future = encodeEnvelope({ seq: 3, hlc: [1, 0], at: 1, node: "a", type: "JobBroughtIn", v: 9, data: { job: "w", node: "a" }, prev: GENESIS_PREV });
    expect(() => decodeRecorded(future, 3)).toThrow(/version 9 is not known/);
  });
});

describe("checkpoint state codec", () => {
  // The same Packr settings as checkpoints.ts, reached through its encoder and a fresh decoder.
  const decode = (bytes: Buffer) => (new Packr({ moreTypes: true }).unpack(bytes) as { state: unknown }).state;

  it("round-trips Maps keyed by any name (including __proto__), arrays, nested objects, null and undefined", () => {
    // -0 is left out: msgpack stores it as the integer 0.
    const number = fc.double({ noNaN: true }).filter((n) => !Object.is(n, -0));
    const leaf = fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.constant(undefined), fc.boolean(), number);
    const { tree } = fc.letrec((tie) => ({
      tree: fc.oneof({ depthSize: "small" }, leaf, tie("map"), tie("array"), tie("object")),
      map: fc.array(fc.tuple(nameArb, tie("tree")), { maxLength: 4 }).map((entries) => new Map(entries)),
      array: fc.array(tie("tree"), { maxLength: 4 }),
      object: fc.record({ count: tie("tree"), last: tie("tree"), name: fc.option(nameArb, { nil: null }) }, { noNullPrototype: true }),
    }));
    fc.assert(
      fc.property(tree, (state) => {
        expect(decode(encodeCheckpoint("p", 1, GENESIS_PREV, state))).toStrictEqual(state);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps a Map key named __proto__ as a key, without touching any prototype", () => {
    const state = { jobs: new Map<string, unknown>([["__proto__", { polluted: true }], ["constructor", 1]]) };
    const back = decode(encodeCheckpoint("p", 1, GENESIS_PREV, state)) as typeof state;
    expect(back.jobs.get("__proto__")).toEqual({ polluted: true });
    expect(back.jobs.get("constructor")).toBe(1);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});
