// Tests spawn bin/duet.js, which runs dist/: build it first when a source changed since.
import { buildIfStale } from "../scripts/build-if-stale.mjs";

export default function setup(): void {
  buildIfStale();
}
