// Translation between the OpenAI Chat Completions API and the Anthropic Messages API, so that an
// agent speaking one can be served by a backend speaking the other: requests, whole responses,
// and SSE streams (event by event, after placeholders have been restored).
//
// What has no counterpart is refused with a clear 400 (TranslationError) rather than dropped:
// n > 1, logprobs, response_format json modes, legacy function_call messages. What is lost on
// the way is documented in docs/router.md (thinking blocks, Anthropic cache token counts).

import type { RequestBody } from "./protocol.ts";
import { formatSse, type SseEvent, SseReader } from "./sse.ts";

/** A request that cannot be expressed in the backend's API. */
export class TranslationError extends Error {}

/** Anthropic requires max_tokens; OpenAI does not. Used when the client gave none. */
export const DEFAULT_MAX_TOKENS = 4096;

// deno-lint-ignore no-explicit-any
type Json = any;

function textOfOpenAIContent(content: unknown, where: string): string {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) return "";
  if (Array.isArray(content)) {
    return content.map((p: Json) => {
      if (p.type === "text" && typeof p.text === "string") return p.text;
      throw new TranslationError(`${where}: content part ${JSON.stringify(p.type)} is not text`);
    }).join("");
  }
  throw new TranslationError(`${where}: content must be a string or a list of parts`);
}

function openAIPartToAnthropic(p: Json, where: string): Json {
  if (p.type === "text") return { type: "text", text: String(p.text ?? "") };
  if (p.type === "image_url") {
    const url: string = typeof p.image_url === "string" ? p.image_url : p.image_url?.url;
    const data = /^data:([^;,]+);base64,(.*)$/s.exec(url ?? "");
    if (data) {
      return { type: "image", source: { type: "base64", media_type: data[1], data: data[2] } };
    }
    if (typeof url === "string" && /^https?:\/\//.test(url)) {
      return { type: "image", source: { type: "url", url } };
    }
    throw new TranslationError(`${where}: image_url must be an http(s) or base64 data URL`);
  }
  throw new TranslationError(
    `${where}: content part ${JSON.stringify(p.type)} has no Anthropic counterpart`,
  );
}

function parseArguments(args: unknown, where: string): unknown {
  if (args === undefined || args === "") return {};
  if (typeof args !== "string") throw new TranslationError(`${where}: arguments must be a string`);
  try {
    return JSON.parse(args);
  } catch {
    throw new TranslationError(`${where}: arguments are not valid JSON`);
  }
}

/** Appends a message, merging it into the previous one when the role repeats. */
function pushTurn(out: Json[], role: "user" | "assistant", blocks: Json[]): void {
  if (blocks.length === 0) return;
  const last = out.at(-1);
  if (last && last.role === role) last.content.push(...blocks);
  else out.push({ role, content: blocks });
}

/** OpenAI chat completion request -> Anthropic Messages request. */
export function chatRequestToMessages(body: RequestBody): RequestBody {
  const b: Json = body;
  if (b.n !== undefined && b.n !== 1) {
    throw new TranslationError("n > 1 cannot be served by an anthropic backend");
  }
  if (b.logprobs) throw new TranslationError("logprobs cannot be served by an anthropic backend");
  if (b.response_format && b.response_format.type !== "text") {
    throw new TranslationError(
      `response_format ${
        JSON.stringify(b.response_format.type)
      } cannot be served by an anthropic backend`,
    );
  }
  const system: string[] = [];
  const messages: Json[] = [];
  b.messages.forEach((m: Json, i: number) => {
    const where = `messages.${i}`;
    switch (m.role) {
      case "system":
      case "developer":
        system.push(textOfOpenAIContent(m.content, where));
        return;
      case "user": {
        const blocks = typeof m.content === "string"
          ? [{ type: "text", text: m.content }]
          : Array.isArray(m.content)
          ? m.content.map((p: Json, j: number) => openAIPartToAnthropic(p, `${where}.content.${j}`))
          : [];
        pushTurn(messages, "user", blocks);
        return;
      }
      case "assistant": {
        const blocks: Json[] = [];
        const text = textOfOpenAIContent(m.content, where);
        if (text) blocks.push({ type: "text", text });
        (m.tool_calls ?? []).forEach((tc: Json, j: number) => {
          blocks.push({
            type: "tool_use",
            id: tc.id,
            name: tc.function?.name,
            input: parseArguments(tc.function?.arguments, `${where}.tool_calls.${j}`),
          });
        });
        if (m.function_call) {
          throw new TranslationError(`${where}: legacy function_call is not supported; use tools`);
        }
        pushTurn(messages, "assistant", blocks);
        return;
      }
      case "tool":
        pushTurn(messages, "user", [{
          type: "tool_result",
          tool_use_id: m.tool_call_id,
          content: textOfOpenAIContent(m.content, where),
        }]);
        return;
      default:
        throw new TranslationError(
          `${where}: role ${JSON.stringify(m.role)} has no Anthropic counterpart`,
        );
    }
  });
  if (messages.length === 0) {
    throw new TranslationError("an anthropic backend needs at least one user or assistant message");
  }
  const out: Json = {
    model: b.model,
    max_tokens: b.max_completion_tokens ?? b.max_tokens ?? DEFAULT_MAX_TOKENS,
    messages,
  };
  if (system.length) out.system = system.join("\n\n");
  if (typeof b.temperature === "number") out.temperature = Math.min(b.temperature, 1);
  if (typeof b.top_p === "number") out.top_p = b.top_p;
  if (b.stop !== undefined && b.stop !== null) {
    out.stop_sequences = Array.isArray(b.stop) ? b.stop : [b.stop];
  }
  if (b.stream === true) out.stream = true;
  if (typeof b.user === "string") out.metadata = { user_id: b.user };
  if (Array.isArray(b.tools) && b.tools.length) {
    out.tools = b.tools.map((t: Json, j: number) => {
      if (t.type !== "function") {
        throw new TranslationError(`tools.${j}: only function tools can be translated`);
      }
      return {
        name: t.function.name,
        ...(t.function.description ? { description: t.function.description } : {}),
        input_schema: t.function.parameters ?? { type: "object", properties: {} },
      };
    });
  }
  const choice = b.tool_choice;
  if (choice !== undefined) {
    if (choice === "auto") out.tool_choice = { type: "auto" };
    else if (choice === "none") out.tool_choice = { type: "none" };
    else if (choice === "required") out.tool_choice = { type: "any" };
    else if (choice?.type === "function") {
      out.tool_choice = { type: "tool", name: choice.function?.name };
    } else throw new TranslationError("tool_choice has no Anthropic counterpart");
  }
  if (b.parallel_tool_calls === false && out.tools) {
    out.tool_choice = { ...(out.tool_choice ?? { type: "auto" }), disable_parallel_tool_use: true };
  }
  return out;
}

function anthropicBlocksToText(blocks: unknown, where: string): string {
  if (typeof blocks === "string") return blocks;
  if (!Array.isArray(blocks)) return "";
  return blocks.map((x: Json) => {
    if (x.type === "text") return String(x.text ?? "");
    throw new TranslationError(`${where}: block ${JSON.stringify(x.type)} is not text`);
  }).join("");
}

function anthropicImageToOpenAI(block: Json, where: string): Json {
  const s = block.source ?? {};
  if (s.type === "base64") {
    return { type: "image_url", image_url: { url: `data:${s.media_type};base64,${s.data}` } };
  }
  if (s.type === "url") return { type: "image_url", image_url: { url: s.url } };
  throw new TranslationError(`${where}: image source ${JSON.stringify(s.type)} is not supported`);
}

/** Anthropic Messages request -> OpenAI chat completion request. */
export function messagesRequestToChat(body: RequestBody): RequestBody {
  const b: Json = body;
  const messages: Json[] = [];
  if (b.system !== undefined) {
    messages.push({ role: "system", content: anthropicBlocksToText(b.system, "system") });
  }
  b.messages.forEach((m: Json, i: number) => {
    const where = `messages.${i}`;
    if (typeof m.content === "string") {
      messages.push({ role: m.role, content: m.content });
      return;
    }
    if (m.role === "user") {
      const parts: Json[] = [];
      m.content.forEach((x: Json, j: number) => {
        const w = `${where}.content.${j}`;
        if (x.type === "tool_result") {
          messages.push({
            role: "tool",
            tool_call_id: x.tool_use_id,
            content: anthropicBlocksToText(x.content ?? "", w),
          });
        } else if (x.type === "text") parts.push({ type: "text", text: x.text });
        else if (x.type === "image") parts.push(anthropicImageToOpenAI(x, w));
        else {throw new TranslationError(
            `${w}: block ${JSON.stringify(x.type)} has no OpenAI counterpart`,
          );}
      });
      if (parts.length) {
        messages.push({
          role: "user",
          content: parts.every((p) => p.type === "text")
            ? parts.map((p) => p.text).join("")
            : parts,
        });
      }
      return;
    }
    if (m.role === "assistant") {
      let text = "";
      const calls: Json[] = [];
      for (const x of m.content) {
        if (x.type === "text") text += x.text;
        else if (x.type === "tool_use") {
          calls.push({
            id: x.id,
            type: "function",
            function: { name: x.name, arguments: JSON.stringify(x.input ?? {}) },
          });
        } else if (x.type === "thinking" || x.type === "redacted_thinking") continue;
        else {
          throw new TranslationError(
            `${where}: block ${JSON.stringify(x.type)} has no OpenAI counterpart`,
          );
        }
      }
      messages.push({
        role: "assistant",
        content: text || null,
        ...(calls.length ? { tool_calls: calls } : {}),
      });
      return;
    }
    throw new TranslationError(`${where}: role ${JSON.stringify(m.role)} is not user or assistant`);
  });
  const out: Json = { model: b.model, messages, max_tokens: b.max_tokens };
  if (typeof b.temperature === "number") out.temperature = b.temperature;
  if (typeof b.top_p === "number") out.top_p = b.top_p;
  if (Array.isArray(b.stop_sequences) && b.stop_sequences.length) out.stop = b.stop_sequences;
  if (b.stream === true) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  if (typeof b.metadata?.user_id === "string") out.user = b.metadata.user_id;
  if (Array.isArray(b.tools) && b.tools.length) {
    out.tools = b.tools.map((t: Json, j: number) => {
      if (!t.input_schema) {
        throw new TranslationError(`tools.${j}: server tools have no OpenAI counterpart`);
      }
      return {
        type: "function",
        function: {
          name: t.name,
          ...(t.description ? { description: t.description } : {}),
          parameters: t.input_schema,
        },
      };
    });
  }
  const choice = b.tool_choice;
  if (choice !== undefined) {
    if (choice.type === "auto") out.tool_choice = "auto";
    else if (choice.type === "any") out.tool_choice = "required";
    else if (choice.type === "none") out.tool_choice = "none";
    else if (choice.type === "tool") {
      out.tool_choice = { type: "function", function: { name: choice.name } };
    } else throw new TranslationError("tool_choice has no OpenAI counterpart");
    if (choice.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
  }
  return out;
}

const FINISH_FROM_ANTHROPIC: Record<string, string> = {
  end_turn: "stop",
  stop_sequence: "stop",
  pause_turn: "stop",
  max_tokens: "length",
  tool_use: "tool_calls",
  refusal: "content_filter",
};

const STOP_FROM_OPENAI: Record<string, string> = {
  stop: "end_turn",
  length: "max_tokens",
  tool_calls: "tool_use",
  function_call: "tool_use",
  content_filter: "refusal",
};

/** Anthropic Messages response -> OpenAI chat completion. */
export function messagesResponseToChat(answer: Json): Json {
  let text = "";
  const calls: Json[] = [];
  for (const x of answer?.content ?? []) {
    if (x.type === "text") text += x.text;
    else if (x.type === "tool_use") {
      calls.push({
        id: x.id,
        type: "function",
        function: { name: x.name, arguments: JSON.stringify(x.input ?? {}) },
      });
    }
  }
  const u = answer?.usage ?? {};
  const prompt = u.input_tokens ?? 0, completion = u.output_tokens ?? 0;
  return {
    id: `chatcmpl-${answer?.id ?? "translated"}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: answer?.model,
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: text || (calls.length ? null : ""),
        ...(calls.length ? { tool_calls: calls } : {}),
      },
      finish_reason: FINISH_FROM_ANTHROPIC[answer?.stop_reason] ?? "stop",
    }],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
    },
  };
}

/** OpenAI chat completion -> Anthropic Messages response. */
export function chatResponseToMessages(answer: Json): Json {
  const choice = answer?.choices?.[0] ?? {};
  const m = choice.message ?? {};
  const content: Json[] = [];
  if (typeof m.content === "string" && m.content) content.push({ type: "text", text: m.content });
  for (const tc of m.tool_calls ?? []) {
    let input: unknown = {};
    try {
      input = JSON.parse(tc.function?.arguments || "{}");
    } catch {
      input = { _raw_arguments: tc.function?.arguments };
    }
    content.push({ type: "tool_use", id: tc.id, name: tc.function?.name, input });
  }
  const u = answer?.usage ?? {};
  return {
    id: `msg_${answer?.id ?? "translated"}`,
    type: "message",
    role: "assistant",
    model: answer?.model,
    content,
    stop_reason: STOP_FROM_OPENAI[choice.finish_reason] ?? "end_turn",
    stop_sequence: null,
    usage: { input_tokens: u.prompt_tokens ?? 0, output_tokens: u.completion_tokens ?? 0 },
  };
}

/** Rewrites a stream event by event into the client's protocol. */
export interface StreamTranslator {
  event(e: SseEvent): string;
  /** The upstream ended: whatever closes the client's stream. */
  end(): string;
}

function parse(data: string | null): Json {
  if (data === null) return null;
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

/** Anthropic Messages SSE -> OpenAI chat completion chunks. */
export class AnthropicToChatStream implements StreamTranslator {
  #id = "chatcmpl-translated";
  #model = "";
  readonly #created = Math.floor(Date.now() / 1000);
  #prompt = 0;
  #completion = 0;
  #done = false;
  /** Anthropic content block index -> OpenAI tool_calls index. */
  readonly #tools = new Map<number, number>();

  constructor(readonly includeUsage: boolean) {}

  #chunk(delta: Json, finish: string | null = null): string {
    return formatSse(null, {
      id: this.#id,
      object: "chat.completion.chunk",
      created: this.#created,
      model: this.#model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
  }

  event(e: SseEvent): string {
    const d = parse(e.data);
    if (d === null || this.#done) return "";
    switch (d.type) {
      case "message_start":
        this.#id = `chatcmpl-${d.message?.id ?? "translated"}`;
        this.#model = d.message?.model ?? "";
        this.#prompt = d.message?.usage?.input_tokens ?? 0;
        return this.#chunk({ role: "assistant", content: "" });
      case "content_block_start":
        if (d.content_block?.type === "tool_use") {
          const k = this.#tools.size;
          this.#tools.set(d.index, k);
          return this.#chunk({
            tool_calls: [{
              index: k,
              id: d.content_block.id,
              type: "function",
              function: { name: d.content_block.name, arguments: "" },
            }],
          });
        }
        if (d.content_block?.type === "text" && d.content_block.text) {
          return this.#chunk({ content: d.content_block.text });
        }
        return "";
      case "content_block_delta":
        if (d.delta?.type === "text_delta") return this.#chunk({ content: d.delta.text });
        if (d.delta?.type === "input_json_delta" && this.#tools.has(d.index)) {
          return this.#chunk({
            tool_calls: [{
              index: this.#tools.get(d.index),
              function: { arguments: d.delta.partial_json },
            }],
          });
        }
        return "";
      case "message_delta":
        this.#completion = d.usage?.output_tokens ?? this.#completion;
        if (d.delta?.stop_reason) {
          return this.#chunk({}, FINISH_FROM_ANTHROPIC[d.delta.stop_reason] ?? "stop");
        }
        return "";
      case "message_stop":
        return this.#finish();
      case "error":
        this.#done = true;
        return formatSse(null, {
          error: {
            message: d.error?.message ?? "upstream error",
            type: d.error?.type ?? "upstream_error",
            code: d.error?.type ?? "upstream_error",
          },
        });
      default:
        return "";
    }
  }

  #finish(): string {
    if (this.#done) return "";
    this.#done = true;
    let out = "";
    if (this.includeUsage) {
      out += formatSse(null, {
        id: this.#id,
        object: "chat.completion.chunk",
        created: this.#created,
        model: this.#model,
        choices: [],
        usage: {
          prompt_tokens: this.#prompt,
          completion_tokens: this.#completion,
          total_tokens: this.#prompt + this.#completion,
        },
      });
    }
    return out + formatSse(null, "[DONE]");
  }

  end(): string {
    return this.#finish();
  }
}

/** OpenAI chat completion chunks -> Anthropic Messages SSE. */
export class ChatToAnthropicStream implements StreamTranslator {
  #started = false;
  #done = false;
  #block = -1;
  #blockKind: "text" | "tool" | null = null;
  /** OpenAI tool_calls index -> Anthropic content block index. */
  readonly #tools = new Map<number, number>();
  #stop: string | null = null;
  #prompt = 0;
  #completion = 0;

  constructor(readonly model: string) {}

  #start(d: Json): string {
    if (this.#started) return "";
    this.#started = true;
    return formatSse("message_start", {
      type: "message_start",
      message: {
        id: `msg_${d?.id ?? "translated"}`,
        type: "message",
        role: "assistant",
        model: d?.model ?? this.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 0, output_tokens: 0 },
      },
    });
  }

  #close(): string {
    if (this.#blockKind === null) return "";
    this.#blockKind = null;
    return formatSse("content_block_stop", { type: "content_block_stop", index: this.#block });
  }

  #open(kind: "text" | "tool", block: Json): string {
    const out = this.#close();
    this.#block++;
    this.#blockKind = kind;
    return out + formatSse("content_block_start", {
      type: "content_block_start",
      index: this.#block,
      content_block: block,
    });
  }

  event(e: SseEvent): string {
    if (this.#done) return "";
    if (e.data === "[DONE]") return this.#finish();
    const d = parse(e.data);
    if (d === null) return "";
    if (d.error) {
      this.#done = true;
      return formatSse("error", {
        type: "error",
        error: { type: "api_error", message: d.error.message ?? "upstream error" },
      });
    }
    let out = this.#start(d);
    if (d.usage) {
      this.#prompt = d.usage.prompt_tokens ?? this.#prompt;
      this.#completion = d.usage.completion_tokens ?? this.#completion;
    }
    const choice = d.choices?.[0];
    if (!choice) return out;
    const delta = choice.delta ?? {};
    if (typeof delta.content === "string" && delta.content) {
      if (this.#blockKind !== "text") out += this.#open("text", { type: "text", text: "" });
      out += formatSse("content_block_delta", {
        type: "content_block_delta",
        index: this.#block,
        delta: { type: "text_delta", text: delta.content },
      });
    }
    for (const tc of delta.tool_calls ?? []) {
      const k = tc.index ?? 0;
      if (!this.#tools.has(k)) {
        out += this.#open("tool", {
          type: "tool_use",
          id: tc.id,
          name: tc.function?.name,
          input: {},
        });
        this.#tools.set(k, this.#block);
      }
      const args = tc.function?.arguments;
      if (typeof args === "string" && args) {
        out += formatSse("content_block_delta", {
          type: "content_block_delta",
          index: this.#tools.get(k),
          delta: { type: "input_json_delta", partial_json: args },
        });
      }
    }
    if (choice.finish_reason) this.#stop = STOP_FROM_OPENAI[choice.finish_reason] ?? "end_turn";
    return out;
  }

  #finish(): string {
    if (this.#done) return "";
    this.#done = true;
    return this.#start(null) + this.#close() +
      formatSse("message_delta", {
        type: "message_delta",
        delta: { stop_reason: this.#stop ?? "end_turn", stop_sequence: null },
        usage: { input_tokens: this.#prompt, output_tokens: this.#completion },
      }) +
      formatSse("message_stop", { type: "message_stop" });
  }

  end(): string {
    return this.#finish();
  }
}

/** Passes an SSE stream through a translator into the client's protocol. */
export function translateStream(
  input: ReadableStream<Uint8Array>,
  translator: StreamTranslator,
): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const sse = new SseReader();
  return input.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        const out = sse.push(decoder.decode(chunk, { stream: true }))
          .map((e) => translator.event(e)).join("");
        if (out) controller.enqueue(encoder.encode(out));
      },
      flush(controller) {
        const out = [...sse.push(decoder.decode()), ...sse.end()]
          .map((e) => translator.event(e)).join("") + translator.end();
        if (out) controller.enqueue(encoder.encode(out));
      },
    }),
  );
}
