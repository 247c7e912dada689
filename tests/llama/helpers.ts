// Helpers for the llama-cpp tests: a router whose local backend is the tiny test model (CPU,
// one thread, so that the suite stays fast on a shared 2-core machine).

import { type Served, serveRouter } from "../router/helpers.ts";
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

/** Serves a router whose local backend "tiny" is a llama-cpp backend. */
export async function serveLocal(
  opts: LocalOptions = {},
): Promise<Served & { stop(): Promise<void> }> {
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
  const served = serveRouter({
    backends,
    local: "tiny",
    ...(opts.cloud ? { cloud: "cloud" } : {}),
    ...opts.privacy,
  });
  await served.router.ready();
  return {
    ...served,
    async stop() {
      await served.close();
      await served.router.close();
    },
  };
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
