// Denials in the audit log since a point in time, for `clawcage status`.

import { logFiles, logsAt, readSegment } from "../audit/read.ts";
import { matches } from "../audit/format.ts";

export type DenialCount =
  | { count: number; since: string; source: string }
  | { count: null; unavailable: string };

/**
 * Counts records with decision "deny" at or after `since` (ms) in the log, or the per-agent
 * logs, at `log`. Segments last written before `since` are skipped unread.
 */
export function countDenials(log: string | undefined, since: number): DenialCount {
  if (!log) return { count: null, unavailable: "no audit_log in the service configuration" };
  try {
    let count = 0;
    // `log` is one log or a directory of per-agent logs (see agentAuditDir).
    for (const dir of logsAt(log)) {
      for (const segment of logFiles(dir).files) {
        const mtime = Deno.statSync(segment.path).mtime?.getTime();
        if (mtime !== undefined && mtime < since) continue;
        for (const { record } of readSegment(segment)) {
          if (matches(record, { since, decision: "deny" })) count++;
        }
      }
    }
    return { count, since: new Date(since).toISOString(), source: log };
  } catch (e) {
    return { count: null, unavailable: (e as Error).message };
  }
}
