// One audit record per inference call. It names what was detected (counts by type), never the
// values; the prompt is kept only as an HMAC under a per-install key, so an auditor holding a
// suspected prompt can check whether it was sent without the log disclosing it.

import { createHmac } from "node:crypto";
import type { EntityType } from "./pii/types.ts";

export interface InferenceAuditEvent {
  kind: "inference";
  /** ISO 8601, when the request arrived. */
  time: string;
  /** Who called: the sandbox name or the peer address. */
  client: string;
  /** e.g. "POST /v1/chat/completions". */
  endpoint: string;
  /** Backend name from the policy, or null when no backend was called. */
  backend: string | null;
  /** "local", "cloud", or null when no backend was called. */
  backend_role: "local" | "cloud" | null;
  /** Why that backend (or why none). */
  reason: string;
  /** Findings at or above min_score, by type. Never the values. */
  entities: Partial<Record<EntityType, number>>;
  /** Findings replaced by placeholders before the call, by type. */
  pseudonymised: Partial<Record<EntityType, number>>;
  /** HMAC-SHA256 (hex) of the prompt text as the client sent it, under the install's key. */
  prompt_hmac: string;
  /** The model the client asked for. */
  requested_model: string | null;
  /** The model asked of the backend. */
  model: string | null;
  /** Token counts as reported by the backend, when it reported them. */
  tokens: { prompt: number | null; completion: number | null } | null;
  /** From the request's arrival until its response ended (the last streamed byte). */
  latency_ms: number;
  /** HTTP status sent to the client. */
  status: number;
  /** "ok", or what went wrong: an error code, "client_disconnected", "upstream_stream_error". */
  outcome: string;
  stream: boolean;
}

export type InferenceAuditSink = (event: InferenceAuditEvent) => void;

/** HMAC-SHA256 of the prompt's text parts joined by U+0000 (hex). */
export function promptHmac(key: Uint8Array, parts: readonly string[]): string {
  const h = createHmac("sha256", key);
  parts.forEach((p, i) => {
    if (i > 0) h.update("\0");
    h.update(p, "utf8");
  });
  return h.digest("hex");
}
