import type { Hlc } from "../events/catalogue.ts";
export { compareHlc } from "../events/catalogue.ts";
import type { Clock } from "./clock.ts";

// Hybrid logical clocks after Kulkarni et al., 2014; the stamp type lives with the events.

/** The clock of one node: `tick` stamps a local event, `receive` merges a peer's stamp. */
export function createHlc(clock: Clock, start: Hlc = [0, 0]) {
  let last: Hlc = start;
  return {
    tick(): Hlc {
      const wall = clock.now();
      last = wall > last[0] ? [wall, 0] : [last[0], last[1] + 1];
      return last;
    },
    receive(remote: Hlc): Hlc {
      const wall = clock.now();
      const top = Math.max(wall, last[0], remote[0]);
      const logical =
        top === last[0] && top === remote[0] ? Math.max(last[1], remote[1]) + 1
        : top === last[0] ? last[1] + 1
        : top === remote[0] ? remote[1] + 1
        : 0;
      last = [top, logical];
      return last;
    },
    peek: (): Hlc => last,
  };
}
export type HybridClock = ReturnType<typeof createHlc>;
