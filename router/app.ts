// The privacy router: an OpenAI- and Anthropic-compatible HTTP endpoint (Hono) that scans every
// request for PII, sends requests that carry keep_local types to the local backend, and sends
// the rest to the cloud backend with the pseudonymise types replaced by placeholders, which are
// put back in the answer (streamed or not). Cloud keys stay here.

import { type Context, Hono } from "hono";
import type { PrivacyPolicy } from "../core/policy/privacy.ts";
import { type InferenceAuditEvent, type InferenceAuditSink, promptHmac } from "./audit_event.ts";
import { anthropicPost } from "./backends/anthropic.ts";
import { EnginePool } from "./backends/llama_cpp.ts";
import { type OpenAIPath, openaiPost } from "./backends/openai.ts";
import { type Backend, UpstreamCall, UpstreamError } from "./backends/upstream.ts";
import { errorResponse, type ErrorStyle } from "./errors.ts";
import { type BackendHealth, HealthProbe } from "./health.ts";
import type { Detect, Entity, EntityType } from "./pii/types.ts";
import { type Endpoint, type RequestBody, validateRequest, walkRequest } from "./protocol.ts";
import { Pseudonymiser } from "./pseudonymise.ts";
import { decideRoute, knownModels, type Role } from "./routing.ts";
import { restoreStream, type StreamProtocol, type Tokens } from "./stream.ts";
import {
  AnthropicToChatStream,
  chatRequestToMessages,
  chatResponseToMessages,
  ChatToAnthropicStream,
  messagesRequestToChat,
  messagesResponseToChat,
  translateStream,
  TranslationError,
} from "./translate.ts";

export interface RouterOptions {
  policy: PrivacyPolicy;
  /** PII detection (router/pii/detect.ts in production). */
  detect: Detect;
  /** The per-install key for prompt HMACs in audit events. */
  hmacKey: Uint8Array;
  audit: InferenceAuditSink;
  /** Where API keys are read from (default: the process environment). */
  env?: (name: string) => string | undefined;
  /** A fixed client label (the sandbox's name); default: the peer's address. */
  client?: string;
  /** Status lines (local model loading, device, failures); default: stderr. */
  log?: (line: string) => void;
  /** Turns a llama-cpp backend's model_path into a file (model store names); default: as is. */
  resolveModelPath?: (modelPath: string) => string;
}

/** The policy cannot be served as it is (e.g. a key's environment variable is unset). */
export class RouterConfigError extends Error {}

interface Config {
  policy: PrivacyPolicy;
  backends: Map<string, Backend>;
}

function resolveConfig(
  policy: PrivacyPolicy,
  env: (name: string) => string | undefined,
  engines: EnginePool,
): Config {
  const backends = new Map<string, Backend>();
  let loaded;
  try {
    loaded = engines.sync(Object.entries(policy.backends));
  } catch (e) {
    throw new RouterConfigError((e as Error).message);
  }
  for (const [name, config] of Object.entries(policy.backends)) {
    let apiKey: string | null = null;
    if (config.api_key_env !== undefined) {
      apiKey = env(config.api_key_env) ?? null;
      if (!apiKey) {
        throw new RouterConfigError(
          `backend ${
            JSON.stringify(name)
          }: environment variable ${config.api_key_env} (api_key_env) is not set`,
        );
      }
    }
    const role = name === policy.local ? "local" : "cloud";
    backends.set(name, { name, role, config, apiKey, engine: loaded.get(name) });
  }
  return { policy, backends };
}

export interface Router {
  fetch: (request: Request, info?: Deno.ServeHandlerInfo) => Response | Promise<Response>;
  /** Serve a new privacy policy from the next request on (requests in flight keep theirs). */
  reload(policy: PrivacyPolicy): void;
  /** Health of every backend (llama-cpp: its engine; remote: a probe, cached a few seconds). */
  health(): Promise<BackendHealth[]>;
  /** Local models of llama-cpp backends, once they have loaded or failed. */
  ready(): Promise<void>;
  /** Frees the local models (after their requests in flight). */
  close(): Promise<void>;
}

const PATHS: Record<Endpoint, string> = {
  chat: "/v1/chat/completions",
  completions: "/v1/completions",
  embeddings: "/v1/embeddings",
  messages: "/v1/messages",
};

export function createRouter(options: RouterOptions): Router {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const engines = new EnginePool(options.log, options.resolveModelPath);
  let config = resolveConfig(options.policy, env, engines);
  const probe = new HealthProbe();
  const health = () => Promise.all([...config.backends.values()].map((b) => probe.check(b)));
  const app = new Hono<{ Bindings: Deno.ServeHandlerInfo | undefined }>();

  const clientOf = (c: Context): string => {
    if (options.client) return options.client;
    const addr = (c.env as Deno.ServeHandlerInfo | undefined)?.remoteAddr;
    return addr && "hostname" in addr ? `${addr.hostname}:${addr.port}` : "unknown";
  };

  for (const endpoint of Object.keys(PATHS) as Endpoint[]) {
    app.post(PATHS[endpoint], (c) =>
      handleInference({
        config,
        options,
        endpoint,
        request: c.req.raw,
        client: clientOf(c),
      }));
  }

  app.get("/healthz", async (c) => {
    const backends = await health();
    const down = backends.filter((b) => !b.available);
    const localDown = down.some((b) => b.role === "local");
    return c.json({
      status: down.length === 0
        ? "ok"
        : localDown || down.length === backends.length
        ? "unavailable"
        : "degraded",
      fail_closed: config.policy.fail_closed,
      backends,
    }, down.length === 0 ? 200 : 503);
  });

  app.get("/v1/models", async (c) => {
    const policy = config.policy;
    const ids = knownModels(policy);
    const byName = new Map((await health()).map((h) => [h.name, h]));
    // Which backend answers a model id; "auto" may go to either, so it needs both.
    const status = (id: string) => {
      const names = Object.entries(policy.backends)
        .filter(([name, b]) => id === name || id === b.model || id === b.embedding_model)
        .map(([name]) => name);
      const used = names.length ? names : [policy.local, policy.cloud].filter((n) => n) as string[];
      return {
        backend: names.length ? names[0] : null,
        available: used.every((n) => byName.get(n)?.available === true),
      };
    };
    if (c.req.header("anthropic-version")) {
      return c.json({
        data: ids.map((id) => ({
          type: "model",
          id,
          display_name: id,
          created_at: "1970-01-01T00:00:00Z",
          ...status(id),
        })),
        has_more: false,
        first_id: ids[0] ?? null,
        last_id: ids.at(-1) ?? null,
      });
    }
    return c.json({
      object: "list",
      data: ids.map((id) => ({
        id,
        object: "model",
        created: 0,
        owned_by: "clawcage",
        ...status(id),
      })),
    });
  });

  app.notFound((c) =>
    errorResponse(
      c.req.path === "/v1/messages" ? "anthropic" : "openai",
      Object.values(PATHS).includes(c.req.path) ? 405 : 404,
      "not_found",
      `no route for ${c.req.method} ${c.req.path}`,
    )
  );
  app.onError((e, c) => {
    console.error(`clawcage router: internal error: ${(e as Error)?.message ?? e}`);
    return errorResponse(
      c.req.path === "/v1/messages" ? "anthropic" : "openai",
      500,
      "internal_error",
      "internal error in the privacy router; the request was not forwarded",
    );
  });

  return {
    fetch: (request, info) => app.fetch(request, info),
    reload(policy) {
      config = resolveConfig(policy, env, engines);
    },
    health,
    async ready() {
      await Promise.all([...config.backends.values()].map((b) => b.engine?.ready));
    },
    close: () => engines.close(),
  };
}

interface Job {
  config: Config;
  options: RouterOptions;
  endpoint: Endpoint;
  request: Request;
  client: string;
}

type Problem = { status: number; code: string; message: string };

async function handleInference(job: Job): Promise<Response> {
  const started = performance.now();
  const { config, options, endpoint } = job;
  const policy = config.policy;
  const style: ErrorStyle = endpoint === "messages" ? "anthropic" : "openai";
  const ev: InferenceAuditEvent = {
    kind: "inference",
    time: new Date().toISOString(),
    client: job.client,
    endpoint: `POST ${PATHS[endpoint]}`,
    backend: null,
    backend_role: null,
    reason: "",
    entities: {},
    pseudonymised: {},
    prompt_hmac: "",
    requested_model: null,
    model: null,
    tokens: null,
    latency_ms: 0,
    status: 0,
    outcome: "",
    stream: false,
  };
  let emitted = false;
  const emit = (status: number, outcome: string) => {
    if (emitted) return;
    emitted = true;
    ev.status = status;
    ev.outcome = outcome;
    ev.latency_ms = Math.round((performance.now() - started) * 100) / 100;
    try {
      options.audit(ev);
    } catch (e) {
      console.error(`clawcage router: audit sink failed: ${(e as Error)?.message ?? e}`);
    }
  };
  const fail = (p: Problem, reason?: string): Response => {
    if (reason !== undefined) ev.reason = reason;
    else if (!ev.reason) ev.reason = `refused: ${p.code}`;
    emit(p.status, p.code);
    return errorResponse(style, p.status, p.code, p.message);
  };

  // 1. Read and check the body.
  const parsed = await readJson(job.request, policy.max_body_bytes);
  if ("status" in parsed) return fail(parsed);
  const valid = validateRequest(endpoint, parsed.value);
  if (!valid.ok) return fail({ status: 400, code: "invalid_request", message: valid.message });
  const body = valid.body;
  ev.requested_model = body.model;
  ev.stream = body.stream === true && endpoint !== "embeddings";

  // 2. Scan.
  const texts: string[] = [];
  const unscannableSet = new Set<string>();
  walkRequest(endpoint, body, (t) => {
    texts.push(t);
    return t;
  }, unscannableSet);
  const unscannable = [...unscannableSet];
  ev.prompt_hmac = promptHmac(options.hmacKey, texts);
  let found: Entity[][];
  try {
    found = texts.map((t) => options.detect(t, { minScore: policy.min_score }));
  } catch (e) {
    return fail({
      status: 500,
      code: "pii_detection_failed",
      message: `PII detection failed (${
        (e as Error)?.message ?? e
      }); the request was not forwarded`,
    });
  }
  for (const list of found) {
    for (const e of list) ev.entities[e.type] = (ev.entities[e.type] ?? 0) + 1;
  }

  // 3. Route.
  const route = decideRoute(policy, { counts: ev.entities, unscannable, model: body.model });
  if (!route.ok) return fail(route);
  ev.reason = route.reason;

  const attempt = async (
    role: Role,
    backendName: string,
    replaceTypes: readonly EntityType[],
  ): Promise<Response | UpstreamError> => {
    const backend = config.backends.get(backendName)!;
    ev.backend = backend.name;
    ev.backend_role = role;
    let outgoing: RequestBody = body;
    let ps: Pseudonymiser | null = null;
    if (role === "cloud" && replaceTypes.length > 0) {
      ps = new Pseudonymiser();
      for (const t of texts) ps.reserve(t);
      outgoing = structuredClone(body);
      const types = new Set(replaceTypes);
      let i = 0;
      walkRequest(endpoint, outgoing, (t) => {
        const entities = found[i++].filter((e) => types.has(e.type));
        return ps!.replace(t, entities);
      }, new Set());
      ev.pseudonymised = { ...ps.counts };
    } else {
      ev.pseudonymised = {};
      outgoing = { ...body };
    }
    const model = endpoint === "embeddings" ? backend.config.embedding_model : backend.config.model;
    if (model === undefined) {
      return new UpstreamError(
        `backend ${
          JSON.stringify(backend.name)
        } has no embedding_model; embeddings are not available for this request`,
        "status",
        400,
        "embeddings_unavailable",
      );
    }
    outgoing.model = model;
    ev.model = model;
    return await callBackend(job, backend, outgoing, ps, ev, emit);
  };

  let result = await attempt(
    route.role,
    route.backend,
    route.role === "cloud" ? policy.pseudonymise : [],
  );
  if (result instanceof Response) return result;

  const localDown = route.role === "local" &&
    (result.kind === "unreachable" || result.kind === "timeout" ||
      (result.kind === "status" && result.status >= 500));
  if (localDown && result.kind !== "aborted") {
    const canFallBack = !policy.fail_closed && policy.cloud !== undefined &&
      route.keepLocalTypes.length > 0 && unscannable.length === 0 &&
      !route.reason.startsWith("the client asked");
    if (canFallBack) {
      ev.reason =
        `${route.reason}; local backend failed (${result.code}) and fail_closed is false: sent to cloud with keep_local types pseudonymised`;
      result = await attempt("cloud", policy.cloud!, [
        ...new Set([...policy.pseudonymise, ...policy.keep_local]),
      ]);
      if (result instanceof Response) return result;
    } else {
      return fail({
        status: 503,
        code: "local_backend_unavailable",
        message: `${result.message}; this request must stay local (${route.reason}) and ${
          policy.fail_closed ? "fail_closed is set, so it" : "it"
        } was not sent to any other backend`,
      });
    }
  }
  if (result.kind === "aborted") {
    emit(499, "client_disconnected");
    return new Response(null, { status: 499 });
  }
  return fail({ status: result.status, code: result.code, message: result.message });
}

/** Sends the request to the backend and turns the answer into the client's response. */
async function callBackend(
  job: Job,
  backend: Backend,
  outgoing: RequestBody,
  ps: Pseudonymiser | null,
  ev: InferenceAuditEvent,
  emit: (status: number, outcome: string) => void,
): Promise<Response | UpstreamError> {
  const { endpoint } = job;
  const clientAnthropic = endpoint === "messages";
  const backendAnthropic = backend.config.type === "anthropic";
  // chat <-> messages are translated; the Anthropic API has no completions or embeddings.
  const translate = clientAnthropic === backendAnthropic
    ? null
    : endpoint === "chat"
    ? "chat->messages"
    : endpoint === "messages"
    ? "messages->chat"
    : null;
  if (clientAnthropic !== backendAnthropic && translate === null) {
    return new UpstreamError(
      `backend ${JSON.stringify(backend.name)} speaks the anthropic API, which has no ${
        PATHS[endpoint]
      } endpoint; route this request to an openai backend`,
      "status",
      501,
      "protocol_mismatch",
    );
  }
  let body: RequestBody = outgoing;
  try {
    if (translate === "chat->messages") body = chatRequestToMessages(outgoing);
    if (translate === "messages->chat") body = messagesRequestToChat(outgoing);
  } catch (e) {
    if (!(e instanceof TranslationError)) throw e;
    return new UpstreamError(
      `${e.message} (backend ${
        JSON.stringify(backend.name)
      } speaks the ${backend.config.type} API)`,
      "status",
      400,
      "untranslatable_request",
    );
  }
  const { call, response } = backendAnthropic
    ? anthropicPost(backend, body, job.request.headers)
    : openaiPost(
      backend,
      `/${
        endpoint === "messages" || endpoint === "chat" ? "chat/completions" : endpoint
      }` as OpenAIPath,
      body,
    );
  let upstream: Response;
  try {
    upstream = await response;
  } catch (e) {
    call.done();
    return e instanceof UpstreamError ? e : call.failure(e);
  }

  if (ev.stream) {
    const protocol: StreamProtocol = backendAnthropic
      ? "anthropic"
      : endpoint === "completions"
      ? "openai-completions"
      : "openai-chat";
    let stream = restoreStream(upstream, call, protocol, ps, (end) => {
      ev.tokens = end.tokens;
      emit(200, end.outcome);
    });
    if (translate === "chat->messages") {
      // deno-lint-ignore no-explicit-any
      const usage = (outgoing as any).stream_options?.include_usage === true;
      stream = translateStream(stream, new AnthropicToChatStream(usage));
    } else if (translate === "messages->chat") {
      stream = translateStream(stream, new ChatToAnthropicStream(outgoing.model));
    }
    return new Response(stream, {
      status: 200,
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
      },
    });
  }

  const convert = translate === "chat->messages"
    ? messagesResponseToChat
    : translate === "messages->chat"
    ? chatResponseToMessages
    : null;
  return await finishJson(call, upstream, ps, ev, emit, convert);
}

async function finishJson(
  call: UpstreamCall,
  upstream: Response,
  ps: Pseudonymiser | null,
  ev: InferenceAuditEvent,
  emit: (status: number, outcome: string) => void,
  convert: ((answer: unknown) => unknown) | null,
): Promise<Response | UpstreamError> {
  let text: string;
  try {
    text = await call.readText(upstream);
  } catch (e) {
    return e instanceof UpstreamError ? e : call.failure(e);
  } finally {
    call.done();
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    return new UpstreamError(
      `backend ${JSON.stringify(call.backend.name)} answered with invalid JSON`,
      "status",
      502,
      "upstream_invalid_response",
    );
  }
  ev.tokens = usageOf(answer);
  if (ps !== null) answer = ps.restoreDeep(answer);
  if (convert !== null) answer = convert(answer);
  emit(200, "ok");
  return Response.json(answer);
}

function usageOf(answer: unknown): Tokens | null {
  // deno-lint-ignore no-explicit-any
  const u = (answer as any)?.usage;
  if (!u || typeof u !== "object") return null;
  return {
    prompt: u.prompt_tokens ?? u.input_tokens ?? null,
    completion: u.completion_tokens ?? u.output_tokens ?? null,
  };
}

/** Reads a JSON body of at most `limit` bytes, strictly UTF-8. */
async function readJson(
  request: Request,
  limit: number,
): Promise<{ value: unknown } | Problem> {
  const tooLarge: Problem = {
    status: 413,
    code: "request_too_large",
    message: `the request body is larger than ${limit} bytes (privacy.max_body_bytes)`,
  };
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    request.body?.cancel().catch(() => {});
    return tooLarge;
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (request.body) {
    const reader = request.body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit) {
          reader.cancel().catch(() => {});
          return tooLarge;
        }
        chunks.push(value);
      }
    } catch {
      return { status: 400, code: "invalid_request", message: "the request body was cut off" };
    }
  }
  if (total === 0) {
    return { status: 400, code: "invalid_request", message: "the request body is empty" };
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return {
      status: 400,
      code: "invalid_encoding",
      message: "the request body is not valid UTF-8",
    };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return {
      status: 400,
      code: "invalid_json",
      message: `the request body is not valid JSON (${(e as Error).message})`,
    };
  }
}
