import { describe, expect, it } from "vitest";
import { textLine } from "../../src/agent/log.ts";

describe("the agent's log on stderr", () => {
  const record = { level: 40, time: "2026-12-02T17:00:00.000Z", node: "a", pid: 7, msg: "authentication failure for user admin from 10.0.0.9", job: "web" };

  it("under systemd: one plain line with the syslog priority journald reads (warn is 4, error 3)", () => {
    expect(textLine(record, true)).toBe("<4>warn: authentication failure for user admin from 10.0.0.9 job=web\n");
    expect(textLine({ ...record, level: 50 }, true)).toMatch(/^<3>error: /);
    expect(textLine({ ...record, level: 30 }, true)).toMatch(/^<6>info: /);
  });

  it("on a terminal: the time, the level and the message, then the fields", () => {
    expect(textLine(record, false)).toBe("2026-12-02T17:00:00.000Z warn: authentication failure for user admin from 10.0.0.9 job=web\n");
  });
});
