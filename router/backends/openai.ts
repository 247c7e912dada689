// OpenAI-compatible upstreams (OpenAI, vLLM, NIM, Ollama, llama.cpp server). base_url includes
// the API version prefix, as with the OpenAI SDK: https://api.openai.com/v1. A llama-cpp backend
// answers the same API in this process.

import { llamaCppPost } from "./llama_cpp.ts";
import { type Backend, joinUrl, UpstreamCall } from "./upstream.ts";

export type OpenAIPath = "/chat/completions" | "/completions" | "/embeddings";

export function openaiPost(
  backend: Backend,
  path: OpenAIPath,
  body: unknown,
): { call: UpstreamCall; response: Promise<Response> } {
  if (backend.engine) return llamaCppPost(backend, path, body as Record<string, unknown>);
  const call = new UpstreamCall(backend);
  const headers: Record<string, string> = {};
  if (backend.apiKey) headers.authorization = `Bearer ${backend.apiKey}`;
  return { call, response: call.post(joinUrl(backend.config.base_url!, path), headers, body) };
}
