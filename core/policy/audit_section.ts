// The policy's `audit` section: where the audit trail is written, how durably, how it rotates and
// is kept, whether kernel Landlock denials are read, and where records are exported (syslog,
// OTLP/HTTP). Every key is optional; core/audit/settings.ts fills in the defaults (root:
// /var/log/clawcage/audit; other users: $XDG_STATE_HOME/clawcage/audit).

import { z } from "zod";
import { absolutePath, envVarName, httpUrl } from "./fields.ts";

/** A directory of ours: never / itself. */
const dirPath = absolutePath.refine((p) => p.replace(/\/+$/, "") !== "", {
  message: "must not be / (the whole filesystem)",
});

const int = (min: number, max: number) => z.number().int().min(min).max(max);

/** `unix:///dev/log`, `udp://host:514` or `tcp://host:601`. */
export const syslogTarget = z.string().superRefine((s, ctx) => {
  const m = /^(unix|udp|tcp):\/\/(.+)$/.exec(s);
  if (!m) {
    ctx.addIssue({
      code: "custom",
      message: `syslog target must be unix:///PATH, udp://HOST:PORT or tcp://HOST:PORT, got ${
        JSON.stringify(s)
      }`,
    });
    return;
  }
  if (m[1] === "unix") {
    if (!m[2].startsWith("/")) {
      ctx.addIssue({ code: "custom", message: "unix syslog target needs an absolute socket path" });
    }
    return;
  }
  const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(m[2]);
  if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) {
    ctx.addIssue({ code: "custom", message: `syslog target needs HOST:PORT, got ${m[2]}` });
  }
});

const otlpUrl = httpUrl("otlp url", "headers_env");

const envName = envVarName();
const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, {
  message: "not a valid HTTP header name",
});

/** RFC 5424 facilities by name. */
export const SYSLOG_FACILITIES = {
  kern: 0,
  user: 1,
  daemon: 3,
  auth: 4,
  syslog: 5,
  authpriv: 10,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;

export const syslogExport = z.strictObject({
  target: syslogTarget,
  facility: z.enum(Object.keys(SYSLOG_FACILITIES) as [keyof typeof SYSLOG_FACILITIES])
    .default("authpriv"),
  app_name: z.string().regex(/^[\x21-\x7e]{1,48}$/, {
    message: "app_name is 1 to 48 printable ASCII characters without spaces",
  }).default("clawcage"),
});

export const otlpExport = z.strictObject({
  /** The OTLP/HTTP logs endpoint, e.g. http://collector:4318/v1/logs (JSON encoding). */
  url: otlpUrl,
  /** Extra request headers whose values are not secret. */
  headers: z.record(headerName, z.string()).default({}),
  /** Headers whose values come from environment variables of the supervisor (tokens). */
  headers_env: z.record(headerName, envName).default({}),
  timeout_ms: int(100, 120_000).default(5000),
  /** Records per request. */
  batch_max: int(1, 10_000).default(512),
});

export const auditExport = z.strictObject({
  syslog: syslogExport.optional(),
  otlp: otlpExport.optional(),
  /** Records waiting for export, per target; beyond it the oldest are dropped (and counted). */
  queue_max: int(1, 10_000_000).default(100_000),
});

export const auditPolicy = z.strictObject({
  /** false: `clawcage run` writes no audit trail (as --no-audit). */
  enabled: z.boolean().default(true),
  log_dir: dirPath.optional(),
  key_dir: dirPath.optional(),
  /** batched: fdatasync at most every fsync_interval_ms; always: every record; none: never. */
  fsync: z.enum(["batched", "always", "none"]).default("batched"),
  fsync_interval_ms: int(1, 60_000).default(100),
  seal_every_records: int(1, 10_000_000).default(10_000),
  seal_every_ms: int(10, 3_600_000).default(1000),
  rotate_bytes: int(4096, 2 ** 40).default(64 << 20),
  rotate_seconds: int(1, 366 * 86400).default(86400),
  /** Retention: keep at most this many files (0: unlimited). */
  max_files: int(0, 1_000_000).default(0),
  /** Retention: remove files last written more than this many days ago (0: never). */
  max_age_days: z.number().min(0).max(36600).default(0),
  /**
   * Kernel Landlock denial records (root only): read them if kernel auditing is on
   * (`if_enabled`), turn kernel auditing on for the run if it is off (`enable`), or `off`.
   */
  kernel_denials: z.enum(["if_enabled", "enable", "off"]).default("if_enabled"),
  /** Record every exec inside the sandbox (root: the kernel's process events connector). */
  exec_events: z.boolean().default(true),
  export: auditExport.optional(),
}).superRefine((a, ctx) => {
  const norm = (p: string) => p.replace(/\/+$/, "");
  if (a.log_dir && a.key_dir) {
    const log = norm(a.log_dir);
    const key = norm(a.key_dir);
    if (key === log || key.startsWith(log + "/") || log.startsWith(key + "/")) {
      ctx.addIssue({
        code: "custom",
        path: ["key_dir"],
        message: "key_dir must not be inside log_dir, contain it, or be the same directory",
      });
    }
  }
});

export type AuditPolicy = z.infer<typeof auditPolicy>;
export type AuditExportPolicy = z.infer<typeof auditExport>;
export type SyslogExportPolicy = z.infer<typeof syslogExport>;
export type OtlpExportPolicy = z.infer<typeof otlpExport>;
