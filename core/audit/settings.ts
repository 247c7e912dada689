// The policy's `audit` section (or its absence) and the command-line overrides, resolved into
// what the supervisor opens: directories, writer options, kernel denials, export targets.

import { resolve } from "node:path";
import type { AuditExportPolicy, AuditPolicy } from "../policy/audit_section.ts";
import { auditPolicy } from "../policy/audit_section.ts";
import { defaultAuditDir, defaultKeyDir } from "./paths.ts";
import type { AuditLogOptions } from "./writer.ts";

export interface AuditSettings {
  enabled: boolean;
  dir: string;
  /**
   * `dir` is the default (no --audit-dir, no audit.log_dir): a second run at the same time may
   * then write a log of its own below it (see RunAudit.open) instead of being refused.
   */
  defaultDir: boolean;
  keyDir: string;
  writer: Omit<AuditLogOptions, "onFailure" | "keyDir">;
  kernelDenials: AuditPolicy["kernel_denials"];
  execEvents: boolean;
  export: AuditExportPolicy | null;
}

export interface AuditOverrides {
  /** --audit-dir: the log directory (the key directory stays the policy's or the default). */
  dir?: string;
  /** --no-audit. */
  disabled?: boolean;
}

/** Resolves `section` (undefined: every default) with the command line's overrides. */
export function auditSettings(
  section: AuditPolicy | undefined,
  overrides: AuditOverrides = {},
): AuditSettings {
  const a = section ?? auditPolicy.parse({});
  return {
    enabled: a.enabled && !overrides.disabled,
    dir: resolve(overrides.dir ?? a.log_dir ?? defaultAuditDir()),
    defaultDir: overrides.dir === undefined && a.log_dir === undefined,
    keyDir: resolve(a.key_dir ?? defaultKeyDir()),
    writer: {
      fsync: a.fsync === "batched" ? { intervalMs: a.fsync_interval_ms } : a.fsync,
      sealEveryRecords: a.seal_every_records,
      sealEveryMs: a.seal_every_ms,
      rotateBytes: a.rotate_bytes,
      rotateMs: a.rotate_seconds * 1000,
      maxFiles: a.max_files,
      maxAgeMs: Math.round(a.max_age_days * 86400_000),
    },
    kernelDenials: a.kernel_denials,
    execEvents: a.exec_events,
    export: a.export && (a.export.syslog || a.export.otlp) ? a.export : null,
  };
}
