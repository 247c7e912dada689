// OpenAI request bodies as node-llama-cpp inputs (chat history, functions, sampling options),
// and the small pieces of OpenAI answers the llama-cpp backend builds. Every problem a client can
// cause is an UpstreamError with status 400 and one line.

import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions } from "node-llama-cpp";
import { UpstreamError } from "./upstream.ts";

/** Stop sequences per request, as most servers allow. */
const MAX_STOP = 16;

export interface Sampling {
  maxTokens: number | null;
  temperature: number;
  topP: number | undefined;
  seed: number | undefined;
  stop: string[];
}

export function usage(prompt: number, completion: number) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

export function finishReason(stop: string): string {
  return stop === "maxTokens" ? "length" : stop === "functionCalls" ? "tool_calls" : "stop";
}

export function badRequest(message: string): UpstreamError {
  return new UpstreamError(message, "status", 400, "invalid_request");
}

export function contextError(message: string): UpstreamError {
  return new UpstreamError(
    `${message}; shorten the conversation or lower max_tokens`,
    "status",
    400,
    "context_length_exceeded",
  );
}

export function sampling(body: Record<string, unknown>): Sampling {
  const num = (key: string, min: number, max: number): number | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
      throw badRequest(`${key} must be a number from ${min} to ${max}`);
    }
    return v;
  };
  if (body.n !== undefined && body.n !== null && body.n !== 1) {
    throw badRequest("n other than 1 is not supported by type llama-cpp");
  }
  const maxTokens = num("max_completion_tokens", 1, 1e9) ?? num("max_tokens", 1, 1e9) ?? null;
  if (maxTokens !== null && !Number.isInteger(maxTokens)) {
    throw badRequest("max_tokens must be an integer");
  }
  const stopRaw = body.stop;
  let stop: string[] = [];
  if (typeof stopRaw === "string") stop = [stopRaw];
  else if (Array.isArray(stopRaw) && stopRaw.every((s) => typeof s === "string")) stop = stopRaw;
  else if (stopRaw !== undefined && stopRaw !== null) {
    throw badRequest("stop must be a string or an array of strings");
  }
  stop = stop.filter((s) => s !== "");
  if (stop.length > MAX_STOP) throw badRequest(`at most ${MAX_STOP} stop sequences`);
  const seed = num("seed", -(2 ** 53), 2 ** 53);
  return {
    maxTokens,
    temperature: num("temperature", 0, 2) ?? 1,
    topP: num("top_p", 0, 1),
    seed: seed === undefined ? undefined : Math.abs(Math.trunc(seed)) % 2 ** 32,
    stop,
  };
}

export function completionPrompt(body: Record<string, unknown>): string {
  const p = body.prompt;
  if (typeof p === "string") return p;
  if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") return p[0];
  throw badRequest("prompt must be one string for type llama-cpp (no batches, no token ids)");
}

/** Text of an OpenAI message content (string or text parts). */
export function contentText(content: unknown, where: string): string {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((p) => {
      if (p?.type === "text" && typeof p.text === "string") return p.text;
      throw badRequest(
        `${where}: content part ${
          JSON.stringify(p?.type)
        } is not supported by type llama-cpp (text only)`,
      );
    }).join("");
  }
  throw badRequest(`${where}: content must be a string or an array of text parts`);
}

/** OpenAI chat messages and tools as node-llama-cpp chat history and functions. */
export function chatHistory(
  body: Record<string, unknown>,
): { history: ChatHistoryItem[]; functions: ChatModelFunctions | undefined } {
  // deno-lint-ignore no-explicit-any
  const messages = body.messages as any[];
  const history: ChatHistoryItem[] = [];
  const calls = new Map<string, ChatModelFunctionCall>();
  messages.forEach((m, i) => {
    const where = `messages.${i}`;
    switch (m.role) {
      case "system":
      case "developer":
        history.push({ type: "system", text: contentText(m.content, where) });
        break;
      case "user":
        history.push({ type: "user", text: contentText(m.content, where) });
        break;
      case "assistant": {
        const response: (string | ChatModelFunctionCall)[] = [];
        const text = contentText(m.content, where);
        if (text) response.push(text);
        for (const [j, tc] of (m.tool_calls ?? []).entries()) {
          let params: unknown;
          try {
            params = JSON.parse(tc?.function?.arguments ?? "{}");
          } catch {
            throw badRequest(`${where}.tool_calls.${j}.function.arguments is not JSON`);
          }
          const call: ChatModelFunctionCall = {
            type: "functionCall",
            name: String(tc?.function?.name ?? ""),
            params,
            result: undefined,
          };
          if (typeof tc?.id === "string") calls.set(tc.id, call);
          response.push(call);
        }
        const last = history.at(-1);
        if (last?.type === "model") last.response.push(...response);
        else history.push({ type: "model", response });
        break;
      }
      case "tool": {
        const call = calls.get(String(m.tool_call_id));
        if (!call) {
          throw badRequest(
            `${where}: tool_call_id ${JSON.stringify(m.tool_call_id)} matches no tool call`,
          );
        }
        const text = contentText(m.content, where);
        try {
          call.result = JSON.parse(text);
        } catch {
          call.result = text;
        }
        break;
      }
      default:
        throw badRequest(`${where}: role ${JSON.stringify(m.role)} is not supported`);
    }
  });
  if (history.at(-1)?.type !== "model") history.push({ type: "model", response: [] });

  // deno-lint-ignore no-explicit-any
  const tools = body.tools as any[] | undefined;
  let functions: ChatModelFunctions | undefined;
  if (Array.isArray(tools) && tools.length > 0 && body.tool_choice !== "none") {
    const defs: Record<string, ChatModelFunctions[string]> = {};
    functions = defs;
    for (const [i, t] of tools.entries()) {
      if (t?.type !== "function" || typeof t.function?.name !== "string") {
        throw badRequest(`tools.${i}: only {type: "function", function: {name, ...}} is supported`);
      }
      defs[t.function.name] = {
        description: typeof t.function.description === "string"
          ? t.function.description
          : undefined,
        // deno-lint-ignore no-explicit-any
        params: t.function.parameters as any,
      };
    }
  }
  return { history, functions };
}
