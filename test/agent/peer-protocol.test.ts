import { describe, expect, it } from "vitest";
import { mirrorResponse, parseMirrorResponse } from "../../src/agent/peer-protocol.ts";

describe("the answers to mirror requests, checked on arrival", () => {
  it("an answer of the right shape is taken as that request's answer", () => {
    expect(parseMirrorResponse("mirror-batch", { ok: true, applied: 7 })).toEqual({ ok: true, applied: 7 });
    expect(parseMirrorResponse("mirror-keep", { ok: true, snapshot: null })).toEqual({ ok: true, snapshot: null });
    expect(parseMirrorResponse("mirror-verify", { ok: false, code: "job-not-in", message: "no" })).toEqual({ ok: false, code: "job-not-in", message: "no" });
    const entries = new Uint8Array([1, 2]);
    expect(parseMirrorResponse("mirror-manifest", { ok: true, entries, more: false })).toEqual({ ok: true, entries, more: false });
  });

  it("a peer of another build that answers in another shape gets an error naming the request and the field", () => {
    expect(() => parseMirrorResponse("mirror-batch", { ok: true })).toThrow("mirror-batch answer: applied: ");
    expect(() => parseMirrorResponse("mirror-hello", { ok: true, summary: {}, applied: -1 })).toThrow(/^mirror-hello answer: applied: /);
    expect(() => parseMirrorResponse("mirror-manifest", { ok: true, entries: "AAAA", more: true })).toThrow("mirror-manifest answer: entries: expected the page as bytes");
    expect(() => parseMirrorResponse("mirror-select", { ok: false, message: "no" })).toThrow("mirror-select answer: code: ");
    expect(() => parseMirrorResponse("mirror-synced", { ok: true, extra: 1 })).toThrow(/^mirror-synced answer: /);
    expect(() => parseMirrorResponse("mirror-reset", null)).toThrow(/^mirror-reset answer: /);
  });

  it("every mirror request kind has an answer schema", () => {
    expect(Object.keys(mirrorResponse).sort()).toEqual(["mirror-batch", "mirror-hello", "mirror-index", "mirror-keep", "mirror-manifest", "mirror-reset", "mirror-select", "mirror-summary", "mirror-synced", "mirror-verify"]);
  });
});
