// Test helpers: real HTTP upstreams on loopback that record what they receive, a router served
// on loopback, and the PII detector.

import type { PrivacyPolicy } from "../../core/policy/privacy.ts";
import { privacyPolicy } from "../../core/policy/privacy.ts";
import type { InferenceAuditEvent } from "../../router/audit_event.ts";
import { createRouter, type Router } from "../../router/app.ts";
import { detect } from "../../router/pii/detect.ts";
import type { Detect } from "../../router/pii/types.ts";

export const DETECTOR: { detect: Detect } = { detect };

export interface Recorded {
  method: string;
  path: string;
  headers: Headers;
  body: string;
  json: unknown;
}

export type UpstreamHandler = (req: Recorded, request: Request) => Response | Promise<Response>;

/** A real HTTP server on 127.0.0.1 that records every request. */
export class Upstream {
  readonly received: Recorded[] = [];
  readonly server: Deno.HttpServer<Deno.NetAddr>;

  constructor(handler: UpstreamHandler) {
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (r) => {
      const body = await r.text();
      let json: unknown = undefined;
      try {
        json = JSON.parse(body);
      } catch { /* not JSON */ }
      const rec = {
        method: r.method,
        path: new URL(r.url).pathname,
        headers: r.headers,
        body,
        json,
      };
      this.received.push(rec);
      return await handler(rec, r);
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.addr.port}`;
  }

  async close(): Promise<void> {
    await this.server.shutdown();
  }
}

/** A loopback port nothing listens on. */
export function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export const CLOUD_KEY = "sk-test-CLOUDSECRET-0123456789abcdef";

export interface Served {
  url: string;
  router: Router;
  audit: InferenceAuditEvent[];
  close(): Promise<void>;
}

/** Serves a router for `privacy` (raw policy section, validated here) on loopback. */
export function serveRouter(privacy: unknown): Served {
  const policy: PrivacyPolicy = privacyPolicy.parse(privacy);
  const audit: InferenceAuditEvent[] = [];
  const router = createRouter({
    policy,
    detect: DETECTOR.detect,
    hmacKey: new TextEncoder().encode("test-install-key-0123456789"),
    audit: (e) => audit.push(e),
    env: (name) => (name === "TEST_CLOUD_KEY" ? CLOUD_KEY : undefined),
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    router.fetch,
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    router,
    audit,
    close: () => server.shutdown(),
  };
}

/** Waits until `check` holds (audit events of streams arrive when the stream ends). */
export async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Splits text into pieces of `n` characters (to split placeholders across SSE chunks). */
export function pieces(text: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += n) out.push(text.slice(i, i + n));
  return out;
}

export function sse(events: (string | { event?: string; data: unknown })[]): Response {
  const body = events.map((e) =>
    typeof e === "string"
      ? `data: ${e}\n\n`
      : `${e.event ? `event: ${e.event}\n` : ""}data: ${JSON.stringify(e.data)}\n\n`
  ).join("");
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/** Reads an SSE response into its data payloads. */
export async function readSse(res: Response): Promise<{ event: string | null; data: string }[]> {
  const text = await res.text();
  return text.split("\n\n").filter((b) => b.trim()).map((block) => {
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    return { event, data: data.join("\n") };
  });
}

/** Placeholders such as <PERSON_1> in a text. */
export function placeholders(text: string): string[] {
  return [...text.matchAll(/<[A-Z_]+_\d+>/g)].map((m) => m[0]);
}
