import { describe, expect, it } from "vitest";
import { createDetector } from "../../src/cluster/detector.ts";

const links = [
  { id: "lan", kind: "udp" as const },
  { id: "tcp", kind: "tcp" as const },
];

describe("failure detector on given times", () => {
  it("suspects the peer after suspectMs of silence on every link, loses it at the deadtime, and sees it again", () => {
    const d = createDetector({ self: "a", peer: "b", links, suspectMs: 1000, deadtimeMs: 3000, startedAt: 0 });
    expect(d.heard("lan", 100).map((e) => e.type)).toEqual(["LinkUp", "PeerSeen"]);
    d.heard("tcp", 200);
    expect(d.tick(1100)).toEqual([]); // lan silent 1000, tcp only 900: not every link
    expect(d.tick(1200)).toEqual([{ type: "PeerSuspected", data: { node: "a", peer: "b", lastHeardAt: 200, suspectMs: 1000 } }]);
    expect(d.tick(2000)).toEqual([]);
    expect(d.heard("tcp", 2100).map((e) => e.type)).toEqual(["PeerSeen"]);
    expect(d.tick(3200).map((e) => e.type)).toEqual(["LinkDown", "PeerSuspected"]); // lan silent since 100
    expect(d.tick(5099)).toEqual([]);
    expect(d.tick(5100).map((e) => e.type)).toEqual(["LinkDown", "PeerLost"]);
    expect(d.tick(9000)).toEqual([]);
    expect(d.heard("lan", 9100).map((e) => e.type)).toEqual(["LinkUp", "PeerSeen"]);
  });

  it("a suspicion time at or above the deadtime means no suspicion, only the loss", () => {
    const d = createDetector({ self: "a", peer: "b", links, suspectMs: 3000, deadtimeMs: 3000, startedAt: 0 });
    d.heard("lan", 0);
    expect(d.tick(3000).map((e) => e.type)).toEqual(["LinkDown", "PeerLost"]);
  });
});
