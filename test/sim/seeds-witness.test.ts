import { seedRange } from "./seed-range.ts";

// With a witness no cut excuses two actives: every seed is held to "one node at every instant".
seedRange(1, 100, { witness: { leaseMs: 4000, unreachable: "self-fence" } });
seedRange(101, 50, { witness: { leaseMs: 4000, unreachable: "keep-running" } });
