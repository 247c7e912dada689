// Anthropic Messages API upstreams. base_url is the host root, as with the Anthropic SDK:
// https://api.anthropic.com (the router adds /v1/messages).

import { type Backend, joinUrl, UpstreamCall } from "./upstream.ts";

export const DEFAULT_ANTHROPIC_VERSION = "2023-06-01";

export function anthropicPost(
  backend: Backend,
  body: unknown,
  clientHeaders: Headers,
): { call: UpstreamCall; response: Promise<Response> } {
  const call = new UpstreamCall(backend);
  const headers: Record<string, string> = {
    "anthropic-version": clientHeaders.get("anthropic-version") ?? DEFAULT_ANTHROPIC_VERSION,
  };
  const beta = clientHeaders.get("anthropic-beta");
  if (beta) headers["anthropic-beta"] = beta;
  if (backend.apiKey) headers["x-api-key"] = backend.apiKey;
  return {
    call,
    response: call.post(joinUrl(backend.config.base_url!, "/v1/messages"), headers, body),
  };
}
