// One HTTP call to a model backend: timeouts, cancellation when the client goes away, and
// upstream failures turned into errors that name the backend but never its key.

import type { PrivacyBackend } from "../../core/policy/privacy.ts";
import type { LlamaCppEngine } from "./llama_cpp.ts";

/** A backend from the policy, with its key read from the environment. */
export interface Backend {
  name: string;
  role: "local" | "cloud";
  config: PrivacyBackend;
  /** Never logged, never returned to a client. */
  apiKey: string | null;
  /** type llama-cpp: the model loaded in this process. */
  engine?: LlamaCppEngine;
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    /** "unreachable" (connection failed), "timeout", "status" (a non-2xx answer), "aborted". */
    readonly kind: "unreachable" | "timeout" | "status" | "aborted",
    /** The status the router answers with. */
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * An upstream call in progress. The timeout covers the response headers and, while the body
 * is read, each gap between two chunks.
 */
export class UpstreamCall {
  readonly #controller = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timedOut = false;
  #clientGone = false;

  // The client's request.signal is not watched: in Deno it also fires after every successful
  // response (and warns). A streamed response notices a client that leaves through the
  // stream's cancel(); a non-streamed call runs to its end (bounded by timeout_ms).
  constructor(readonly backend: Backend) {}

  /** The call is over. */
  done(): void {
    this.disarm();
  }

  /** Aborted when the call times out or the client goes away (for in-process backends). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  /** (Re)starts the idle timer. */
  arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      this.#controller.abort();
    }, this.backend.config.timeout_ms);
  }

  disarm(): void {
    clearTimeout(this.#timer);
  }

  /** The client went away: stop the upstream call. */
  abort(): void {
    this.#clientGone = true;
    this.disarm();
    this.#controller.abort();
  }

  async post(url: string, headers: Record<string, string>, body: unknown): Promise<Response> {
    this.arm();
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
        signal: this.#controller.signal,
        redirect: "error",
      });
    } catch (e) {
      this.disarm();
      throw this.failure(e);
    }
    if (!response.ok) {
      const text = await this.readText(response).catch(() => "");
      this.disarm();
      throw statusError(this.backend, response.status, text);
    }
    return response;
  }

  /** Reads a whole (non-streamed) body under the idle timeout. */
  async readText(response: Response): Promise<string> {
    this.arm();
    try {
      return await response.text();
    } catch (e) {
      throw this.failure(e);
    } finally {
      this.disarm();
    }
  }

  /** Classifies an exception thrown by fetch or by reading a body. */
  failure(e: unknown): UpstreamError {
    const name = JSON.stringify(this.backend.name);
    if (this.#timedOut) {
      return new UpstreamError(
        `backend ${name} did not answer within ${this.backend.config.timeout_ms} ms`,
        "timeout",
        504,
        "upstream_timeout",
      );
    }
    if (this.#clientGone) {
      return new UpstreamError("the client closed the connection", "aborted", 499, "aborted");
    }
    const why = scrub(this.backend, firstLine((e as Error)?.message ?? String(e)));
    return new UpstreamError(
      `backend ${name} is unreachable (${why})`,
      "unreachable",
      502,
      "upstream_unreachable",
    );
  }
}

function statusError(backend: Backend, status: number, text: string): UpstreamError {
  const name = JSON.stringify(backend.name);
  if (status === 401 || status === 403) {
    return new UpstreamError(
      `backend ${name} refused the router's credentials (HTTP ${status}); check ${
        backend.config.api_key_env ? `the key in $${backend.config.api_key_env}` : "api_key_env"
      }`,
      "status",
      502,
      "upstream_auth",
    );
  }
  let detail = text;
  try {
    const j = JSON.parse(text);
    const m = j?.error?.message ?? j?.message ?? j?.detail;
    if (typeof m === "string") detail = m;
  } catch {
    // not JSON: use the text
  }
  detail = scrub(backend, firstLine(detail)).slice(0, 500);
  const mapped = status === 429 ? 429 : status >= 400 && status < 500 ? status : 502;
  return new UpstreamError(
    `backend ${name} answered HTTP ${status}${detail ? `: ${detail}` : ""}`,
    "status",
    mapped,
    status === 429 ? "upstream_rate_limited" : "upstream_error",
  );
}

/** Removes the backend's key (and any echo of its first characters) from a message. */
export function scrub(backend: Backend, text: string): string {
  const key = backend.apiKey;
  if (!key) return text;
  let out = text.split(key).join("[redacted]");
  if (key.length >= 12) out = out.split(key.slice(0, 8)).join("[redacted]");
  return out;
}

function firstLine(s: string): string {
  return s.split("\n")[0];
}

export function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, "") + path;
}
