// Helpers for the llama-cpp tests: a router whose local backend is the tiny test model (CPU,
// one thread, so that the suite stays fast on a shared 2-core machine).

import { privacyPolicy } from "../../core/policy/privacy.ts";
import type { InferenceAuditEvent } from "../../router/audit_event.ts";
import { createRouter, type Router } from "../../router/app.ts";
import { CLOUD_KEY, DETECTOR } from "../router/helpers.ts";
import { writeTinyModel } from "../helpers/gguf.ts";

let shared: Promise<string> | null = null;

/** The tiny model, written once per test process. */
export function tinyModelPath(): Promise<string> {
  shared ??= writeTinyModel({ contextLength: 4096 });
  return shared;
}

export interface LocalOptions {
  modelPath?: string;
  contextSize?: number;
  parallel?: number;
  maxQueue?: number;
  timeoutMs?: number;
  embeddings?: boolean;
  /** Extra privacy keys (cloud backend, keep_local, ...). */
  privacy?: Record<string, unknown>;
  cloud?: Record<string, unknown>;
}

export interface ServedLocal {
  url: string;
  router: Router;
  audit: InferenceAuditEvent[];
  /** The router's status lines (model loading, device). */
  logs: string[];
  /** The GGUF of the local backend (serveLocal). */
  modelPath?: string;
  stop(): Promise<void>;
}

/** Serves a router for `privacy` on loopback, its status lines kept in `logs`. */
export function serveWithLog(privacy: unknown): ServedLocal {
  const audit: InferenceAuditEvent[] = [];
  const logs: string[] = [];
  const router = createRouter({
    policy: privacyPolicy.parse(privacy),
    detect: DETECTOR.detect,
    hmacKey: new TextEncoder().encode("test-install-key-0123456789"),
    audit: (e) => audit.push(e),
    env: (name) => (name === "TEST_CLOUD_KEY" ? CLOUD_KEY : undefined),
    log: (line) => logs.push(line),
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, router.fetch);
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    router,
    audit,
    logs,
    async stop() {
      await server.shutdown();
      await router.close();
    },
  };
}

/** Serves a router whose local backend "tiny" is a llama-cpp backend. */
export async function serveLocal(opts: LocalOptions = {}): Promise<ServedLocal> {
  const backends: Record<string, unknown> = {
    tiny: {
      type: "llama-cpp",
      model: "tiny-chat",
      model_path: opts.modelPath ?? await tinyModelPath(),
      context_size: opts.contextSize ?? 512,
      gpu_layers: 0,
      threads: 1,
      parallel: opts.parallel ?? 1,
      max_queue: opts.maxQueue ?? 16,
      ...(opts.timeoutMs ? { timeout_ms: opts.timeoutMs } : {}),
      ...(opts.embeddings ? { embedding_model: "tiny-embed" } : {}),
    },
  };
  if (opts.cloud) backends.cloud = opts.cloud;
  const served = serveWithLog({
    backends,
    local: "tiny",
    ...(opts.cloud ? { cloud: "cloud" } : {}),
    ...opts.privacy,
  });
  await served.router.ready();
  return { ...served, modelPath: (backends.tiny as { model_path: string }).model_path };
}

export async function chat(
  url: string,
  body: Record<string, unknown>,
  init: RequestInit = {},
): Promise<Response> {
  return await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny-chat", ...body }),
    ...init,
  });
}
