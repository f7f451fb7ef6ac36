import { describe, expect, it } from "vitest";
import { EventSchemaError, upcast, validateEvent } from "../../src/events/catalogue.ts";

describe("event catalogue", () => {
  it("accepts a well-formed event and returns its data", () => {
    const event = validateEvent("JobBroughtIn", { job: "web", node: "a" });
    expect(event).toEqual({ type: "JobBroughtIn", data: { job: "web", node: "a" } });
  });

  it("names the bad field of a malformed event", () => {
    expect(() => validateEvent("LinkDown", { node: "a", peer: "b", link: "udp0", kind: "smoke", lastHeardAt: 1 })).toThrow(/LinkDown: kind:/);
  });

  it("refuses a field the schema does not know, so typos never reach the journal", () => {
    expect(() => validateEvent("JobBroughtOut", { job: "web", node: "a", nod: "b" })).toThrow(EventSchemaError);
  });

  it("refuses an unknown type and a version from the future when reading", () => {
    expect(() => upcast("Teleported", 1, {})).toThrow(/unknown event type/);
    expect(() => upcast("JobBroughtIn", 99, { job: "web", node: "a" })).toThrow(/version 99 is not known/);
  });
});

describe("reason values", () => {
  it("refuses values the journal codec would silently change", () => {
    const decision = (value: unknown) => ({ job: "web", by: "b", from: "a", policy: "manual", code: "x", reasons: [{ name: "n", value }] });
    expect(() => validateEvent("TakeoverDeclined", decision(-0))).toThrow(/JSON-like/);
    expect(() => validateEvent("TakeoverDeclined", decision(JSON.parse('{"__proto__": 1}')))).toThrow(/JSON-like/);
    expect(() => validateEvent("TakeoverDeclined", decision({ links: [{ up: true, since: 5 }] }))).not.toThrow();
  });
});

describe("reading records of an older version", () => {
  it("an AgentStarted written by a v1 agent reads as v3: no configured links, no early suspicion", () => {
    const v1 = { node: "a", version: "0.0.9", pid: 7, configHash: "h", deadtimeMs: 3000, selfFenceGraceMs: 1000 };
    expect(upcast("AgentStarted", 1, v1)).toEqual({ type: "AgentStarted", data: { ...v1, links: [], heartbeatIntervalMs: 500, suspectMs: 3000, pingTimeoutMs: 1000 } });
    expect(() => upcast("AgentStarted", 3, v1)).toThrow(/links|heartbeatIntervalMs/);
  });
});
