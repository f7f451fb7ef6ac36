import { seedRange } from "./seed-range.ts";

seedRange(1, 250);
