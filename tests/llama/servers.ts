// Loopback servers that answer like the local inference servers a site may already run, each
// with its own response shapes (taken from their OpenAI-compatible endpoints):
//
// - vllm:     `stop_reason`, `logprobs: null`, `reasoning_content`, empty `tool_calls: []` in
//             messages; a streamed usage chunk with `choices: []` only when the client asks
//             (stream_options.include_usage); tool-call arguments streamed in pieces.
// - nim:      NVIDIA NIM for LLMs: vllm's shapes, but usage in the last streamed chunk together
//             with finish_reason (the placement some OpenAI-compatible servers use; which one a
//             given NIM version uses depends on its engine, so both are covered).
// - ollama:   `system_fingerprint: "fp_ollama"`, role in every streamed delta, a tool call
//             delivered whole in one chunk, usage only with include_usage; errors as
//             {"error": {"message", "type": "api_error", "param": null, "code": null}}.
// - llamacpp: llama.cpp's llama-server: `timings` in answers and in the last streamed chunk,
//             usage in the last chunk, context errors as 400 exceed_context_size_error.
//
// Every server echoes the placeholders it received (so that the router must restore them) and
// serves GET /v1/models in its own shape.

import { answerFor, toolArgsFor } from "../router/upstreams.ts";
import { pieces, type Recorded, sse, Upstream } from "../router/helpers.ts";

export type ServerKind = "vllm" | "nim" | "ollama" | "llamacpp";
export const SERVER_KINDS: ServerKind[] = ["vllm", "nim", "ollama", "llamacpp"];

/** Prompts containing this word get the server's context-length error. */
export const TOO_LONG = "OVERFLOW";

const USAGE = { prompt_tokens: 17, completion_tokens: 9, total_tokens: 26 };

function modelsList(kind: ServerKind, model: string) {
  if (kind === "ollama") {
    return {
      object: "list",
      data: [{ id: model, object: "model", created: 1, owned_by: "library" }],
    };
  }
  if (kind === "llamacpp") {
    return {
      models: [{ name: model, model, type: "model", capabilities: ["completion"] }],
      object: "list",
      data: [{
        id: model,
        object: "model",
        created: 1,
        owned_by: "llamacpp",
        meta: { n_ctx_train: 4096 },
      }],
    };
  }
  return {
    object: "list",
    data: [{
      id: model,
      object: "model",
      created: 1,
      owned_by: kind === "nim" ? "system" : "vllm",
      root: model,
      max_model_len: 8192,
    }],
  };
}

function contextError(kind: ServerKind): Response {
  switch (kind) {
    case "llamacpp":
      return Response.json({
        error: {
          code: 400,
          message: "the request exceeds the available context size, try increasing it",
          type: "exceed_context_size_error",
          n_prompt_tokens: 5000,
          n_ctx: 4096,
        },
      }, { status: 400 });
    case "ollama":
      return Response.json({
        error: {
          message: "input length exceeds the context length",
          type: "api_error",
          param: null,
          code: null,
        },
      }, { status: 400 });
    default:
      return Response.json({
        object: "error",
        message:
          "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens in the messages.",
        type: "BadRequestError",
        param: null,
        code: 400,
      }, { status: 400 });
  }
}

export function localServer(kind: ServerKind, chunk = 3): Upstream {
  return new Upstream((rec: Recorded) => {
    // deno-lint-ignore no-explicit-any
    const json = rec.json as any;
    if (rec.method === "GET" && rec.path === "/v1/models") {
      return Response.json(modelsList(kind, "served-model"));
    }
    if (rec.path === "/v1/embeddings") {
      return Response.json({
        object: "list",
        data: [{ object: "embedding", embedding: [0.5, -0.25, 0.125], index: 0 }],
        model: json.model,
        usage: { prompt_tokens: 4, total_tokens: 4 },
      });
    }
    if (rec.path !== "/v1/chat/completions") return new Response("not found", { status: 404 });
    if (rec.body.includes(TOO_LONG)) return contextError(kind);
    const text = `${kind}: ${answerFor(rec)}`;
    const wantsTool = Array.isArray(json.tools) && json.tools.length > 0;
    const args = toolArgsFor(rec);
    const id = kind === "ollama" ? "chatcmpl-651" : `chatcmpl-${kind}-1`;
    const base: Record<string, unknown> = {
      id,
      object: "chat.completion.chunk",
      created: 1700000000,
      model: json.model,
    };
    if (kind === "ollama") base.system_fingerprint = "fp_ollama";
    if (kind === "llamacpp") base.system_fingerprint = "b6000-abcdef";
    const timings = { prompt_n: 17, prompt_ms: 12.5, predicted_n: 9, predicted_ms: 40.1 };
    const toolCall = {
      id: "call_7",
      type: "function",
      function: { name: "send_email", arguments: args },
    };

    if (!json.stream) {
      const message: Record<string, unknown> = wantsTool
        ? { role: "assistant", content: kind === "ollama" ? "" : null, tool_calls: [toolCall] }
        : { role: "assistant", content: text };
      if (kind === "vllm" || kind === "nim") {
        message.reasoning_content = null;
        if (!wantsTool) message.tool_calls = [];
      }
      const choice: Record<string, unknown> = {
        index: 0,
        message,
        finish_reason: wantsTool ? "tool_calls" : "stop",
        logprobs: null,
      };
      if (kind === "vllm" || kind === "nim") choice.stop_reason = null;
      const answer: Record<string, unknown> = {
        ...base,
        object: "chat.completion",
        choices: [choice],
        usage: USAGE,
      };
      if (kind === "vllm") answer.prompt_logprobs = null;
      if (kind === "llamacpp") answer.timings = timings;
      return Response.json(answer);
    }

    const includeUsage = json.stream_options?.include_usage === true;
    const events: string[] = [];
    const delta = (d: Record<string, unknown>, finish: string | null = null, extra = {}) =>
      JSON.stringify({
        ...base,
        choices: [{
          index: 0,
          delta: kind === "ollama" ? { role: "assistant", ...d } : d,
          logprobs: null,
          finish_reason: finish,
        }],
        ...extra,
      });
    if (kind !== "ollama") events.push(delta({ role: "assistant", content: "" }));
    if (wantsTool) {
      if (kind === "ollama") {
        events.push(delta({ content: "", tool_calls: [{ index: 0, ...toolCall }] }));
      } else {
        events.push(delta({
          tool_calls: [{
            index: 0,
            id: "call_7",
            type: "function",
            function: { name: "send_email", arguments: "" },
          }],
        }));
        for (const p of pieces(args, chunk)) {
          events.push(delta({ tool_calls: [{ index: 0, function: { arguments: p } }] }));
        }
      }
    } else {
      for (const p of pieces(text, chunk)) events.push(delta({ content: p }));
    }
    const finish = wantsTool ? "tool_calls" : "stop";
    if (kind === "nim") events.push(delta({}, finish, { usage: USAGE }));
    else if (kind === "llamacpp") events.push(delta({}, finish, { usage: USAGE, timings }));
    else events.push(delta({}, finish));
    if (includeUsage && (kind === "vllm" || kind === "ollama")) {
      events.push(JSON.stringify({ ...base, choices: [], usage: USAGE }));
    }
    events.push("[DONE]");
    return sse(events);
  });
}
