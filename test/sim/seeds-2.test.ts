import { seedRange } from "./seed-range.ts";

seedRange(251, 250);
