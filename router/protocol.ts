// The request shapes the router accepts, and where their text lives. Every text field the
// router knows of is visited (scanned, and pseudonymised for the cloud); content it cannot read
// (images, audio, files, token ids, unknown part types) is reported as unscannable, which keeps
// the request local.

import { z } from "zod";

export type Endpoint = "chat" | "completions" | "embeddings" | "messages";

/** Nesting deeper than this is refused (real requests stay far below). */
export const MAX_JSON_DEPTH = 64;

const part = z.looseObject({ type: z.string() });
const toolCall = z.looseObject({
  function: z.looseObject({ arguments: z.string().optional() }).optional(),
});

const chatRequest = z.looseObject({
  model: z.string().min(1),
  messages: z.array(z.looseObject({
    role: z.string(),
    content: z.union([z.string(), z.array(part), z.null()]).optional(),
    tool_calls: z.array(toolCall).optional(),
    function_call: z.looseObject({ arguments: z.string().optional() }).optional(),
  })).min(1),
  stream: z.boolean().optional(),
});

const tokens = z.array(z.number());
const textOrTokens = z.union([z.string(), z.array(z.string()), tokens, z.array(tokens)]);

const completionRequest = z.looseObject({
  model: z.string().min(1),
  prompt: textOrTokens,
  suffix: z.string().optional(),
  stream: z.boolean().optional(),
});

const embeddingRequest = z.looseObject({
  model: z.string().min(1),
  input: textOrTokens,
});

const anthropicBlock = z.looseObject({ type: z.string() });
const messagesRequest = z.looseObject({
  model: z.string().min(1),
  max_tokens: z.number().int().positive(),
  system: z.union([z.string(), z.array(anthropicBlock)]).optional(),
  messages: z.array(z.looseObject({
    role: z.string(),
    content: z.union([z.string(), z.array(anthropicBlock)]),
  })).min(1),
  stream: z.boolean().optional(),
});

const SCHEMAS = {
  chat: chatRequest,
  completions: completionRequest,
  embeddings: embeddingRequest,
  messages: messagesRequest,
};

export type RequestBody = Record<string, unknown> & { model: string; stream?: boolean };

/** Validates the body's shape; returns a one-line problem or the body. */
export function validateRequest(
  endpoint: Endpoint,
  body: unknown,
): { ok: true; body: RequestBody } | { ok: false; message: string } {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return { ok: false, message: "the request body must be a JSON object" };
  }
  const depth = jsonDepth(body);
  if (depth > MAX_JSON_DEPTH) {
    return { ok: false, message: `the request is nested deeper than ${MAX_JSON_DEPTH} levels` };
  }
  const result = SCHEMAS[endpoint].safeParse(body);
  if (result.success) return { ok: true, body: body as RequestBody };
  const issue = result.error.issues[0];
  const where = issue.path.length ? issue.path.join(".") : "body";
  const missing = issue.code === "invalid_type" && /received undefined/.test(issue.message);
  return {
    ok: false,
    message: missing ? `missing required field ${where}` : `${where}: ${issue.message}`,
  };
}

/** Depth of a parsed JSON value, without recursion (the input may be hostile). */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (d > max) max = d;
    if (d > MAX_JSON_DEPTH) return d;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

/** Gets each text and returns what replaces it. */
export type TextVisitor = (text: string) => string;

/**
 * Visits every text of a validated request, in a fixed order, replacing each by what `visit`
 * returns; adds what cannot be read to `unscannable`.
 */
export function walkRequest(
  endpoint: Endpoint,
  body: RequestBody,
  visit: TextVisitor,
  unscannable: Set<string>,
): void {
  // deno-lint-ignore no-explicit-any
  const b = body as any;
  switch (endpoint) {
    case "chat":
      for (const m of b.messages) {
        if (typeof m.content === "string") m.content = visit(m.content);
        else if (Array.isArray(m.content)) walkOpenAIParts(m.content, visit, unscannable);
        for (const tc of m.tool_calls ?? []) {
          if (typeof tc.function?.arguments === "string") {
            tc.function.arguments = visit(tc.function.arguments);
          }
        }
        if (typeof m.function_call?.arguments === "string") {
          m.function_call.arguments = visit(m.function_call.arguments);
        }
        for (const key of ["reasoning_content", "reasoning", "refusal"]) {
          if (typeof m[key] === "string") m[key] = visit(m[key]);
        }
      }
      return;
    case "completions":
      b.prompt = walkTextOrTokens(b.prompt, visit, unscannable);
      if (typeof b.suffix === "string") b.suffix = visit(b.suffix);
      return;
    case "embeddings":
      b.input = walkTextOrTokens(b.input, visit, unscannable);
      return;
    case "messages":
      if (typeof b.system === "string") b.system = visit(b.system);
      else if (Array.isArray(b.system)) walkAnthropicBlocks(b.system, visit, unscannable);
      for (const m of b.messages) {
        if (typeof m.content === "string") m.content = visit(m.content);
        else walkAnthropicBlocks(m.content, visit, unscannable);
      }
      return;
  }
}

// deno-lint-ignore no-explicit-any
function walkOpenAIParts(parts: any[], visit: TextVisitor, unscannable: Set<string>): void {
  for (const p of parts) {
    if (p.type === "text" && typeof p.text === "string") p.text = visit(p.text);
    else if (p.type === "refusal" && typeof p.refusal === "string") p.refusal = visit(p.refusal);
    else unscannable.add(`content part ${JSON.stringify(p.type)}`);
  }
}

function walkTextOrTokens(v: unknown, visit: TextVisitor, unscannable: Set<string>): unknown {
  if (typeof v === "string") return visit(v);
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v.map((x) => visit(x));
  if (Array.isArray(v) && v.length > 0) unscannable.add("token ids");
  return v;
}

// deno-lint-ignore no-explicit-any
function walkAnthropicBlocks(blocks: any[], visit: TextVisitor, unscannable: Set<string>): void {
  for (const block of blocks) {
    switch (block.type) {
      case "text":
        if (typeof block.text === "string") block.text = visit(block.text);
        break;
      case "thinking":
        if (typeof block.thinking === "string") block.thinking = visit(block.thinking);
        break;
      case "redacted_thinking":
        break; // opaque, produced by the model provider
      case "tool_use":
        block.input = walkJsonStrings(block.input, visit);
        break;
      case "tool_result":
        if (typeof block.content === "string") block.content = visit(block.content);
        else if (Array.isArray(block.content)) {
          walkAnthropicBlocks(block.content, visit, unscannable);
        }
        break;
      default:
        unscannable.add(`content block ${JSON.stringify(block.type)}`);
    }
  }
}

/** Visits every string value (not keys) of a JSON value. */
function walkJsonStrings(v: unknown, visit: TextVisitor): unknown {
  if (typeof v === "string") return visit(v);
  if (Array.isArray(v)) return v.map((x) => walkJsonStrings(x, visit));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walkJsonStrings(x, visit);
    return out;
  }
  return v;
}
