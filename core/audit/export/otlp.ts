// OTLP/HTTP logs export (JSON encoding, opentelemetry-proto v1 logs): a batch of audit records
// per POST to the configured URL (e.g. http://collector:4318/v1/logs), each record one LogRecord
// whose body is the record's JSON line and whose attributes carry the fields a SIEM filters on.

import type { OtlpExportPolicy } from "../../policy/audit_section.ts";
import type { AuditRecord } from "../events.ts";
import { type ExportTarget, PermanentExportError } from "./exporter.ts";

type AnyValue = { stringValue: string } | { intValue: string };
interface KeyValue {
  key: string;
  value: AnyValue;
}

const str = (key: string, v: string): KeyValue => ({ key, value: { stringValue: v } });
const int = (key: string, v: number): KeyValue => ({ key, value: { intValue: String(v) } });

function logRecord(line: string, observedNs: string) {
  let rec: AuditRecord | null = null;
  try {
    rec = JSON.parse(line);
  } catch { /* sent as an unparsed body */ }
  const e = rec?.event;
  const deny = e && "decision" in e && e.decision === "deny";
  const attributes: KeyValue[] = [];
  if (rec && e) {
    attributes.push(int("clawcage.seq", rec.seq), str("event.name", `${e.class}.${e.activity}`));
    attributes.push(str("clawcage.class", e.class), str("clawcage.activity", e.activity));
    if ("sandbox" in e && e.sandbox) attributes.push(str("clawcage.sandbox", e.sandbox));
    if ("decision" in e && e.decision) attributes.push(str("clawcage.decision", e.decision));
  }
  const t = rec ? Date.parse(rec.time) : NaN;
  return {
    timeUnixNano: Number.isFinite(t) ? `${BigInt(t) * 1_000_000n}` : observedNs,
    observedTimeUnixNano: observedNs,
    severityNumber: deny ? 13 : 9, // WARN : INFO
    severityText: deny ? "WARN" : "INFO",
    body: { stringValue: line },
    attributes,
  };
}

/** The request body for `lines` (exported for tests). */
export function otlpBody(lines: string[], hostname: string) {
  const observed = `${BigInt(Date.now()) * 1_000_000n}`;
  return {
    resourceLogs: [{
      resource: { attributes: [str("service.name", "clawcage"), str("host.name", hostname)] },
      scopeLogs: [{
        scope: { name: "clawcage.audit" },
        logRecords: lines.map((l) => logRecord(l, observed)),
      }],
    }],
  };
}

export function otlpTarget(p: OtlpExportPolicy): ExportTarget {
  let hostname = "unknown";
  try {
    hostname = Deno.hostname();
  } catch { /* keep unknown */ }
  const headers: Record<string, string> = { ...p.headers, "content-type": "application/json" };
  for (const [name, env] of Object.entries(p.headers_env)) {
    const v = Deno.env.get(env);
    if (v !== undefined) headers[name] = v;
  }
  return {
    name: `otlp ${p.url}`,
    maxBatch: p.batch_max,
    async send(lines) {
      const res = await fetch(p.url, {
        method: "POST",
        headers,
        body: JSON.stringify(otlpBody(lines, hostname)),
        signal: AbortSignal.timeout(p.timeout_ms),
      });
      await res.body?.cancel();
      if (res.ok) return;
      const msg = `HTTP ${res.status} from ${p.url}`;
      // OTLP/HTTP: 429, 502, 503 and 504 are retryable; other failures will not get better.
      if ([429, 502, 503, 504].includes(res.status) || res.status >= 500) throw new Error(msg);
      throw new PermanentExportError(msg);
    },
    close() {},
  };
}
