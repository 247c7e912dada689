// Error answers in the client's dialect: OpenAI `{"error":{"message","type","code"}}`, or
// Anthropic `{"type":"error","error":{"type","message"}}` on /v1/messages.

export type ErrorStyle = "openai" | "anthropic";

function openaiType(status: number): string {
  if (status === 429) return "rate_limit_error";
  if (status === 502 || status === 504) return "upstream_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

function anthropicType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "overloaded_error";
    default:
      return status < 500 ? "invalid_request_error" : "api_error";
  }
}

export function errorBody(style: ErrorStyle, status: number, code: string, message: string) {
  return style === "anthropic"
    ? { type: "error", error: { type: anthropicType(status), message } }
    : { error: { message, type: openaiType(status), code } };
}

export function errorResponse(
  style: ErrorStyle,
  status: number,
  code: string,
  message: string,
): Response {
  return Response.json(errorBody(style, status, code, message), { status });
}
