import { randomBytes } from "node:crypto";

/**
 * Where ids that only need to be unique come from (boot ids, data generations): the system's
 * random bytes in production, a seeded sequence in the simulator so a run repeats exactly.
 * Secrets (tokens, keys) never come from here: they always use the system's CSPRNG.
 */
export interface RandomSource {
  /** BYTES random bytes as lowercase hex. */
  hex(bytes: number): string;
  /** A number in [0, 1): jitter (the peer channel's redial backoff). */
  fraction(): number;
}

export const systemRandom: RandomSource = { hex: (bytes) => randomBytes(bytes).toString("hex"), fraction: Math.random };
