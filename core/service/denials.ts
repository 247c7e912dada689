// Denials in the audit log since a point in time, for `clawcage status`.

import { readRecords } from "../audit/read.ts";
import { matches } from "../audit/format.ts";

export type DenialCount =
  | { count: number; since: string; source: string }
  | { count: null; unavailable: string };

/** Counts records with decision "deny" at or after `since` (ms). Reads the whole log. */
export function countDenials(log: string | undefined, since: number): DenialCount {
  if (!log) {
    return { count: null, unavailable: "no audit_log in the service configuration" };
  }
  try {
    let count = 0;
    for (const { record } of readRecords(log)) {
      if (matches(record, { since, decision: "deny" })) count++;
    }
    return { count, since: new Date(since).toISOString(), source: log };
  } catch (e) {
    return { count: null, unavailable: (e as Error).message };
  }
}
