// Streaming responses: events are read as they come, placeholders are restored (holding back a
// piece that ends in the start of one until the next piece completes it), and the stream ends
// cleanly when the upstream fails, times out, or the client goes away.

import type { Pseudonymiser, StreamRestorer } from "./pseudonymise.ts";
import { formatSse, type SseEvent, SseReader } from "./sse.ts";
import type { UpstreamCall } from "./backends/upstream.ts";

export type StreamProtocol = "openai-chat" | "openai-completions" | "anthropic";

export interface Tokens {
  prompt: number | null;
  completion: number | null;
}

export interface StreamEnd {
  /** "ok", "client_disconnected", or the error code of an upstream failure. */
  outcome: string;
  tokens: Tokens | null;
}

interface Rewriter {
  tokens: Tokens | null;
  event(e: SseEvent): string;
  /** Whatever is still held back, as events (the stream is ending). */
  end(): string;
  errorEvent(message: string, code: string): string;
}

export function restoreStream(
  response: Response,
  call: UpstreamCall,
  protocol: StreamProtocol,
  ps: Pseudonymiser | null,
  onEnd: (end: StreamEnd) => void,
): ReadableStream<Uint8Array> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const sse = new SseReader();
  const rewriter: Rewriter = protocol === "anthropic"
    ? new AnthropicRewriter(ps)
    : new OpenAIRewriter(ps, protocol === "openai-chat");
  let finished = false;
  const finish = (outcome: string) => {
    if (finished) return;
    finished = true;
    call.done();
    onEnd({ outcome, tokens: rewriter.tokens });
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (finished) return;
      try {
        call.arm();
        const { value, done } = await reader.read();
        call.disarm();
        if (done) {
          const tail = decoder.decode();
          const out = [...sse.push(tail), ...sse.end()].map((e) => rewriter.event(e)).join("") +
            rewriter.end();
          if (out) controller.enqueue(encoder.encode(out));
          controller.close();
          finish("ok");
          return;
        }
        const out = sse.push(decoder.decode(value, { stream: true })).map((e) => rewriter.event(e))
          .join("");
        if (out) controller.enqueue(encoder.encode(out));
      } catch (e) {
        if (finished) return;
        const err = call.failure(e);
        reader.cancel().catch(() => {});
        if (err.kind === "aborted") {
          finish("client_disconnected");
          try {
            controller.close();
          } catch {
            // already closed by the consumer
          }
          return;
        }
        controller.enqueue(
          encoder.encode(rewriter.end() + rewriter.errorEvent(err.message, err.code)),
        );
        controller.close();
        finish(err.code);
      }
    },
    cancel() {
      call.abort();
      reader.cancel().catch(() => {});
      finish("client_disconnected");
    },
  });
}

function passThrough(e: SseEvent): string {
  return e.raw + "\n\n";
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** chat.completion.chunk and text_completion streams. */
class OpenAIRewriter implements Rewriter {
  tokens: Tokens | null = null;
  readonly #restorers = new Map<string, StreamRestorer>();
  // deno-lint-ignore no-explicit-any
  #last: any = {};

  constructor(readonly ps: Pseudonymiser | null, readonly chat: boolean) {}

  event(e: SseEvent): string {
    if (e.data === null) return passThrough(e);
    if (e.data.trim() === "[DONE]") return this.end() + passThrough(e);
    // deno-lint-ignore no-explicit-any
    const obj = parseJson(e.data) as any;
    if (obj === null || typeof obj !== "object") return passThrough(e);
    if (obj.usage && typeof obj.usage === "object") {
      this.tokens = {
        prompt: obj.usage.prompt_tokens ?? null,
        completion: obj.usage.completion_tokens ?? null,
      };
    }
    const ps = this.ps;
    if (ps === null || ps.size === 0) return passThrough(e);
    this.#last = { id: obj.id, object: obj.object, created: obj.created, model: obj.model };
    if (obj.error) obj.error = ps.restoreDeep(obj.error);
    if (Array.isArray(obj.choices)) {
      obj.choices.forEach((c: Record<string, unknown>, pos: number) => {
        if (c === null || typeof c !== "object") return;
        const ci = typeof c.index === "number" ? c.index : pos;
        if (this.chat) {
          if (c.delta && typeof c.delta === "object") this.#rewriteDelta(ci, c.delta);
          if (c.message && typeof c.message === "object") c.message = ps.restoreDeep(c.message);
        } else if (typeof c.text === "string") {
          c.text = this.#restorer(`${ci}:text`, false).push(c.text);
        }
        if (c.finish_reason !== null && c.finish_reason !== undefined) this.#flushInto(ci, c);
      });
    }
    return formatSse(e.event, obj);
  }

  #restorer(key: string, json: boolean): StreamRestorer {
    let r = this.#restorers.get(key);
    if (!r) {
      r = this.ps!.streamRestorer(json);
      this.#restorers.set(key, r);
    }
    return r;
  }

  // deno-lint-ignore no-explicit-any
  #rewriteDelta(ci: number, d: any): void {
    for (const f of ["content", "reasoning_content", "reasoning", "refusal"]) {
      if (typeof d[f] === "string") d[f] = this.#restorer(`${ci}:${f}`, false).push(d[f]);
    }
    if (Array.isArray(d.tool_calls)) {
      // deno-lint-ignore no-explicit-any
      d.tool_calls.forEach((tc: any, pos: number) => {
        const ti = typeof tc?.index === "number" ? tc.index : pos;
        if (typeof tc?.function?.arguments === "string") {
          tc.function.arguments = this.#restorer(`${ci}:tool:${ti}`, true).push(
            tc.function.arguments,
          );
        }
      });
    }
    if (typeof d.function_call?.arguments === "string") {
      d.function_call.arguments = this.#restorer(`${ci}:fc`, true).push(d.function_call.arguments);
    }
  }

  /** Appends what the choice's restorers still hold to `c` (its delta, or its text). */
  // deno-lint-ignore no-explicit-any
  #flushInto(ci: number, c: any): boolean {
    let any = false;
    for (const [key, r] of this.#restorers) {
      const [k, field, ti] = key.split(":");
      if (Number(k) !== ci) continue;
      this.#restorers.delete(key);
      const rest = r.flush();
      if (rest === "") continue;
      any = true;
      if (!this.chat) {
        c.text = (c.text ?? "") + rest;
        continue;
      }
      const d = c.delta ??= {};
      if (field === "tool") {
        d.tool_calls ??= [];
        // deno-lint-ignore no-explicit-any
        let tc = d.tool_calls.find((t: any) => t?.index === Number(ti));
        if (!tc) {
          tc = { index: Number(ti), function: { arguments: "" } };
          d.tool_calls.push(tc);
        }
        tc.function ??= {};
        tc.function.arguments = (tc.function.arguments ?? "") + rest;
      } else if (field === "fc") {
        d.function_call ??= {};
        d.function_call.arguments = (d.function_call.arguments ?? "") + rest;
      } else {
        d[field] = (d[field] ?? "") + rest;
      }
    }
    return any;
  }

  end(): string {
    const choices = new Set([...this.#restorers.keys()].map((k) => Number(k.split(":")[0])));
    let out = "";
    for (const ci of choices) {
      const c = this.chat
        ? { index: ci, delta: {}, finish_reason: null }
        : { index: ci, text: "", finish_reason: null };
      if (this.#flushInto(ci, c)) out += formatSse(null, { ...this.#last, choices: [c] });
    }
    return out;
  }

  errorEvent(message: string, code: string): string {
    return formatSse(null, { error: { message, type: "upstream_error", code } });
  }
}

const ANTHROPIC_DELTA: Record<string, [field: string, key: string, json: boolean]> = {
  text_delta: ["text", "text", false],
  input_json_delta: ["partial_json", "json", true],
  thinking_delta: ["thinking", "thinking", false],
};

/** Anthropic Messages streams. */
class AnthropicRewriter implements Rewriter {
  tokens: Tokens | null = null;
  readonly #restorers = new Map<string, [StreamRestorer, string]>();

  constructor(readonly ps: Pseudonymiser | null) {}

  event(e: SseEvent): string {
    if (e.data === null) return passThrough(e);
    // deno-lint-ignore no-explicit-any
    const obj = parseJson(e.data) as any;
    if (obj === null || typeof obj !== "object") return passThrough(e);
    if (obj.type === "message_start" && obj.message?.usage) {
      this.tokens = { prompt: obj.message.usage.input_tokens ?? null, completion: null };
    } else if (obj.type === "message_delta" && obj.usage) {
      this.tokens = {
        prompt: this.tokens?.prompt ?? obj.usage.input_tokens ?? null,
        completion: obj.usage.output_tokens ?? null,
      };
    }
    const ps = this.ps;
    if (ps === null || ps.size === 0) return passThrough(e);
    switch (obj.type) {
      case "content_block_start":
        obj.content_block = ps.restoreDeep(obj.content_block);
        break;
      case "content_block_delta": {
        const spec = ANTHROPIC_DELTA[obj.delta?.type];
        if (spec && typeof obj.delta[spec[0]] === "string") {
          const key = `${obj.index}:${spec[1]}`;
          let entry = this.#restorers.get(key);
          if (!entry) {
            entry = [ps.streamRestorer(spec[2]), obj.delta.type];
            this.#restorers.set(key, entry);
          }
          obj.delta[spec[0]] = entry[0].push(obj.delta[spec[0]]);
        }
        break;
      }
      case "content_block_stop":
        return this.#flush(String(obj.index)) + formatSse(e.event, obj);
      case "error":
        obj.error = ps.restoreDeep(obj.error);
        break;
    }
    return formatSse(e.event, obj);
  }

  #flush(index: string | null): string {
    let out = "";
    for (const [key, [r, deltaType]] of this.#restorers) {
      const i = key.split(":")[0];
      if (index !== null && i !== index) continue;
      this.#restorers.delete(key);
      const rest = r.flush();
      if (rest === "") continue;
      const field = ANTHROPIC_DELTA[deltaType][0];
      out += formatSse("content_block_delta", {
        type: "content_block_delta",
        index: Number(i),
        delta: { type: deltaType, [field]: rest },
      });
    }
    return out;
  }

  end(): string {
    return this.#flush(null);
  }

  errorEvent(message: string, _code: string): string {
    return formatSse("error", { type: "error", error: { type: "api_error", message } });
  }
}
