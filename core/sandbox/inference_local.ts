// `http://inference.local` for one sandbox: the privacy router (router/app.ts) served on a
// loopback port of the supervisor, which the egress proxy maps that name to. Each inference call
// is recorded in the sandbox's audit trail (entity counts and the prompt's HMAC, never values).

import type { AuditEvent } from "../audit/events.ts";
import type { PrivacyPolicy } from "../policy/privacy.ts";
import type { InferenceAuditEvent } from "../../router/audit_event.ts";
import { createRouter, type Router } from "../../router/app.ts";

export { RouterConfigError } from "../../router/app.ts";
import { detect } from "../../router/pii/detect.ts";
import { modelPathResolver } from "../models/store.ts";
import { defaultKeyPath, loadOrCreateKey } from "../cli/router.ts";

export interface InferenceLocal {
  port: number;
  /** Serves a new privacy section from the next request on. */
  reload(privacy: PrivacyPolicy): void;
  close(): Promise<void>;
}

/** The router's audit record as an audit-trail event (OCSF API activity). */
export function inferenceEvent(e: InferenceAuditEvent, sandbox: string): AuditEvent {
  return {
    class: "api",
    activity: "inference",
    sandbox,
    ...(e.backend_role === null && e.status >= 400 ? { decision: "deny" } : {}),
    reason: e.reason,
    api: {
      operation: e.endpoint,
      ...(e.model ? { model: e.model } : {}),
      ...(e.backend ? { backend: e.backend } : {}),
      ...(e.backend_role ? { route: e.backend_role } : {}),
      pii_types: Object.keys(e.entities).sort(),
      status: e.status,
      duration_ms: e.latency_ms,
    },
  } as AuditEvent;
}

export function startInferenceLocal(
  privacy: PrivacyPolicy,
  opts: { sandbox: string; record(event: AuditEvent): void },
): InferenceLocal {
  const router: Router = createRouter({
    policy: privacy,
    detect,
    hmacKey: loadOrCreateKey(defaultKeyPath()),
    audit: (e) => opts.record(inferenceEvent(e, opts.sandbox)),
    client: opts.sandbox,
    resolveModelPath: modelPathResolver(),
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    router.fetch,
  );
  return {
    port: server.addr.port,
    reload: (p) => router.reload(p),
    async close() {
      await server.shutdown();
      await router.close();
    },
  };
}
