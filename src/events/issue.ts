import type { z } from "zod";

/**
 * The first problem zod found: its dotted path under `under` (or `whole` when the value itself is
 * wrong) and its message; `text` is the two as one line, "jobs.0.name: expected a string".
 */
export function firstIssue(error: z.ZodError, whole: string, under?: string): { field: string; message: string; text: string } {
  const issue = error.issues[0];
  const path = issue ? issue.path.map(String) : [];
  const field = [...(under ? [under] : []), ...path].join(".") || whole;
  const message = issue?.message ?? "invalid";
  return { field, message, text: `${field}: ${message}` };
}
