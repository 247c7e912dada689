// Backend health: whether each backend of the policy can answer now. A llama-cpp backend reports
// its engine's state; a remote backend is probed with GET /models (what OpenAI, vLLM, NIM,
// Ollama and llama.cpp's server all answer) or GET /v1/models (Anthropic), and the answer is
// kept for a few seconds so that health checks do not flood it.

import { type Backend, joinUrl, scrub } from "./backends/upstream.ts";
import { DEFAULT_ANTHROPIC_VERSION } from "./backends/anthropic.ts";

export interface BackendHealth {
  name: string;
  role: "local" | "cloud";
  type: string;
  model: string | null;
  available: boolean;
  /** "ready", "loading", "failed" (llama-cpp); "up", "down" (remote). */
  state: string;
  detail: string;
  /** llama-cpp: "cuda", "vulkan", "metal" or "cpu" once loaded. */
  device?: string;
  /** llama-cpp: requests generating and waiting, tokens generated since loading. */
  active?: number;
  queued?: number;
  generated_tokens?: number;
}

const CACHE_MS = 5000;
const PROBE_TIMEOUT_MS = 2000;

export class HealthProbe {
  #cache = new Map<string, { at: number; result: Promise<BackendHealth> }>();

  check(backend: Backend): Promise<BackendHealth> {
    if (backend.engine) return Promise.resolve(engineHealth(backend));
    const key = JSON.stringify([backend.name, backend.config]);
    const hit = this.#cache.get(key);
    if (hit && performance.now() - hit.at < CACHE_MS) return hit.result;
    const result = probe(backend);
    this.#cache.set(key, { at: performance.now(), result });
    return result;
  }
}

function engineHealth(backend: Backend): BackendHealth {
  const e = backend.engine!;
  const base = {
    name: backend.name,
    role: backend.role,
    type: backend.config.type,
    model: backend.config.model ?? null,
    ...e.load,
  };
  switch (e.state) {
    case "ready":
      return {
        ...base,
        available: true,
        state: "ready",
        detail: e.info!.summary,
        device: e.info!.device,
      };
    case "loading":
      return { ...base, available: false, state: "loading", detail: `loading ${e.modelPath}` };
    default:
      return { ...base, available: false, state: "failed", detail: e.error ?? "closed" };
  }
}

async function probe(backend: Backend): Promise<BackendHealth> {
  const base = {
    name: backend.name,
    role: backend.role,
    type: backend.config.type,
    model: backend.config.model ?? null,
  };
  const anthropic = backend.config.type === "anthropic";
  const url = joinUrl(backend.config.base_url!, anthropic ? "/v1/models" : "/models");
  const headers: Record<string, string> = {};
  if (anthropic) {
    headers["anthropic-version"] = DEFAULT_ANTHROPIC_VERSION;
    if (backend.apiKey) headers["x-api-key"] = backend.apiKey;
  } else if (backend.apiKey) {
    headers.authorization = `Bearer ${backend.apiKey}`;
  }
  try {
    const res = await fetch(url, {
      headers,
      redirect: "error",
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    await res.body?.cancel();
    if (res.ok) {
      return { ...base, available: true, state: "up", detail: `GET ${url}: ${res.status}` };
    }
    const why = res.status === 401 || res.status === 403
      ? "the router's credentials were refused"
      : `HTTP ${res.status}`;
    return { ...base, available: false, state: "down", detail: `GET ${url}: ${why}` };
  } catch (e) {
    const why = (e as Error)?.name === "TimeoutError"
      ? `no answer within ${PROBE_TIMEOUT_MS} ms`
      : scrub(backend, String((e as Error)?.message ?? e).split("\n")[0]);
    return { ...base, available: false, state: "down", detail: `GET ${url}: ${why}` };
  }
}
