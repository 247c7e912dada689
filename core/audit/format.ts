// One readable line per record, and the filters of `audit query`.

import type { AnyEvent, AuditRecord } from "./events.ts";
import { eventType } from "./events.ts";

function hostOf(e: AnyEvent): string | undefined {
  if ("dst" in e && e.dst) return e.dst.host ?? e.dst.ip;
  return undefined;
}

function endpoint(d: { host?: string; ip?: string; port?: number }): string {
  const h = d.host ?? d.ip ?? "?";
  return d.port !== undefined ? `${h}:${d.port}` : h;
}

function detail(e: AnyEvent): string {
  switch (e.class) {
    case "network":
      return [
        endpoint(e.dst),
        e.protocol,
        e.bytes_out !== undefined ? `out=${e.bytes_out}` : undefined,
        e.bytes_in !== undefined ? `in=${e.bytes_in}` : undefined,
      ].filter(Boolean).join(" ");
    case "http":
      return [e.http.method, e.http.url, e.http.status].filter((x) => x !== undefined).join(" ");
    case "process": {
      const p = e.process;
      return [
        p.role,
        p.pid !== undefined ? `pid=${p.pid}` : undefined,
        p.argv ? JSON.stringify(p.argv) : p.exe,
        p.exit_code !== undefined ? `exit=${p.exit_code}` : undefined,
        p.signal ? `signal=${p.signal}` : undefined,
      ].filter(Boolean).join(" ");
    }
    case "file":
      return [e.file.path, e.file.access?.join(","), e.actor?.exe].filter(Boolean).join(" ");
    case "api": {
      const a = e.api;
      return [
        a.operation,
        a.model,
        a.route ? `route=${a.route}` : undefined,
        a.backend ? `backend=${a.backend}` : undefined,
        a.pii_types?.length ? `pii=${a.pii_types.join(",")}` : undefined,
        a.status !== undefined ? `status=${a.status}` : undefined,
        a.duration_ms !== undefined ? `${a.duration_ms}ms` : undefined,
      ].filter(Boolean).join(" ");
    }
    case "config":
      return [e.config.name, e.config.sha256?.slice(0, 12), e.config.error].filter(Boolean).join(
        " ",
      );
    case "audit":
      if (e.activity === "segment") {
        return `${e.segment} (${e.opened_because})` +
          (e.recovered
            ? ` after a crash: ${e.recovered.torn_bytes} torn bytes in ${e.recovered.file}`
            : "");
      }
      if (e.activity === "seal") return `head ${e.head.slice(0, 16)}… key ${e.key_id}`;
      if (e.activity === "retention") return `removed ${e.removed.join(", ")}`;
      return [e.target, e.dropped !== undefined ? `dropped=${e.dropped}` : undefined, e.message]
        .filter(Boolean).join(" ");
  }
}

/** `TIME #SEQ TYPE [DECISION] [SANDBOX] DETAIL [rule=..] [reason]` */
export function formatRecord(r: AuditRecord): string {
  const e = r.event;
  const parts = [r.time, `#${r.seq}`, eventType(e)];
  if ("decision" in e && e.decision) parts.push(e.decision.toUpperCase());
  if ("sandbox" in e && e.sandbox) parts.push(`[${e.sandbox}]`);
  parts.push(detail(e));
  if ("rule" in e && e.rule) parts.push(`rule=${e.rule}`);
  if ("reason" in e && e.reason) parts.push(`(${e.reason})`);
  return parts.filter((p) => p !== "").join(" ");
}

export interface Filter {
  since?: number;
  until?: number;
  types?: string[];
  decision?: string;
  sandbox?: string;
  host?: RegExp;
  /** Include the log's own records (segment headers, seals, retention). */
  all?: boolean;
}

export function matches(r: AuditRecord, f: Filter): boolean {
  const e = r.event;
  const type = eventType(e);
  if (f.types) {
    if (!f.types.some((t) => type === t || e.class === t)) return false;
  } else if (e.class === "audit" && !f.all) {
    return false;
  }
  if (f.since !== undefined || f.until !== undefined) {
    const t = Date.parse(r.time);
    if (f.since !== undefined && !(t >= f.since)) return false;
    if (f.until !== undefined && !(t < f.until)) return false;
  }
  if (f.decision && !("decision" in e && e.decision === f.decision)) return false;
  if (f.sandbox && !("sandbox" in e && e.sandbox === f.sandbox)) return false;
  if (f.host) {
    const h = hostOf(e);
    if (!h || !f.host.test(h)) return false;
  }
  return true;
}

/** `*.example.com` style glob to an anchored, case-insensitive RegExp. */
export function hostGlob(glob: string): RegExp {
  const src = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${src}$`, "i");
}

/**
 * A time bound: an ISO 8601 date/time, or a duration before now (`90s`, `15m`, `2h`, `7d`).
 * Returns ms since the epoch, or null when `s` is neither.
 */
export function parseTime(s: string, now = Date.now()): number | null {
  const rel = /^(\d+)(s|m|h|d)$/.exec(s);
  if (rel) {
    const unit = { s: 1000, m: 60_000, h: 3600_000, d: 86400_000 }[rel[2] as "s" | "m" | "h" | "d"];
    return now - Number(rel[1]) * unit;
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(s)) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}
