// Model servers for the tests: they answer by echoing the placeholders they received, so that
// the router must restore them, and stream in small pieces so that placeholders are split.

import { pieces, placeholders, type Recorded, sse, Upstream } from "./helpers.ts";

/** The text of the last user message as the upstream received it. */
// deno-lint-ignore no-explicit-any
function lastUserText(json: any): string {
  const msgs = json?.messages ?? [];
  const last = msgs.filter((m: { role: string }) => m.role === "user").at(-1);
  const c = last?.content;
  if (typeof c === "string") return c;
  if (Array.isArray(c)) {
    return c.map((p: { text?: string; content?: unknown }) =>
      typeof p.text === "string" ? p.text : typeof p.content === "string" ? p.content : ""
    ).join(" ");
  }
  return "";
}

export function answerFor(rec: Recorded): string {
  // deno-lint-ignore no-explicit-any
  const json = rec.json as any;
  const text = rec.path.endsWith("/completions") && !rec.path.endsWith("chat/completions")
    ? String(json.prompt)
    : lastUserText(json);
  const seen = placeholders(text);
  return seen.length ? `Noted: ${seen.join(" and ")}.` : `Plain answer (${text.length} chars).`;
}

/** Tool-call arguments that name the first person and email placeholders received. */
export function toolArgsFor(rec: Recorded): string {
  const all = placeholders(rec.body.replaceAll("\\u003c", "<").replaceAll("\\u003e", ">"));
  return JSON.stringify({
    to: all.find((p) => p.startsWith("<EMAIL")) ?? "",
    name: all.find((p) => p.startsWith("<PERSON")) ?? "",
  });
}

/** An OpenAI-compatible server. Pass `label` to tell local and cloud answers apart. */
export function openaiUpstream(label: string, chunk = 3): Upstream {
  return new Upstream((rec) => {
    // deno-lint-ignore no-explicit-any
    const json = rec.json as any;
    if (rec.path === "/v1/embeddings") {
      return Response.json({
        object: "list",
        data: [{ object: "embedding", index: 0, embedding: [0.25, -0.5] }],
        model: json.model,
        usage: { prompt_tokens: 3, total_tokens: 3 },
      });
    }
    if (rec.path === "/v1/completions") {
      const text = `${label}: ${answerFor(rec)}`;
      if (json.stream) {
        return sse([
          ...pieces(text, chunk).map((t) =>
            JSON.stringify({
              id: "c1",
              object: "text_completion",
              choices: [{ index: 0, text: t }],
            })
          ),
          JSON.stringify({
            id: "c1",
            object: "text_completion",
            choices: [{ index: 0, text: "", finish_reason: "stop" }],
          }),
          "[DONE]",
        ]);
      }
      return Response.json({
        id: "c1",
        object: "text_completion",
        model: json.model,
        choices: [{ index: 0, text, finish_reason: "stop" }],
        usage: { prompt_tokens: 10, completion_tokens: 5 },
      });
    }
    if (rec.path !== "/v1/chat/completions") return new Response("no", { status: 404 });
    const text = `${label}: ${answerFor(rec)}`;
    const wantsTool = Array.isArray(json.tools) && json.tools.length > 0;
    const args = toolArgsFor(rec);
    const base = {
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      created: 1,
      model: json.model,
    };
    if (json.stream) {
      const events: string[] = [
        JSON.stringify({ ...base, choices: [{ index: 0, delta: { role: "assistant" } }] }),
      ];
      if (wantsTool) {
        events.push(JSON.stringify({
          ...base,
          choices: [{
            index: 0,
            delta: {
              tool_calls: [{
                index: 0,
                id: "call_1",
                type: "function",
                function: { name: "send_email", arguments: "" },
              }],
            },
          }],
        }));
        for (const p of pieces(args, chunk)) {
          events.push(JSON.stringify({
            ...base,
            choices: [{
              index: 0,
              delta: { tool_calls: [{ index: 0, function: { arguments: p } }] },
            }],
          }));
        }
      } else {
        for (const p of pieces(text, chunk)) {
          events.push(JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: p } }] }));
        }
      }
      events.push(JSON.stringify({
        ...base,
        choices: [{ index: 0, delta: {}, finish_reason: wantsTool ? "tool_calls" : "stop" }],
      }));
      events.push(JSON.stringify({
        ...base,
        choices: [],
        usage: { prompt_tokens: 21, completion_tokens: 7 },
      }));
      events.push("[DONE]");
      return sse(events);
    }
    return Response.json({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: json.model,
      choices: [{
        index: 0,
        message: wantsTool
          ? {
            role: "assistant",
            content: null,
            tool_calls: [{
              id: "call_1",
              type: "function",
              function: { name: "send_email", arguments: args },
            }],
          }
          : { role: "assistant", content: text },
        finish_reason: wantsTool ? "tool_calls" : "stop",
      }],
      usage: { prompt_tokens: 21, completion_tokens: 7, total_tokens: 28 },
    });
  });
}

/** An Anthropic Messages server. */
export function anthropicUpstream(label: string, chunk = 3): Upstream {
  return new Upstream((rec) => {
    // deno-lint-ignore no-explicit-any
    const json = rec.json as any;
    if (rec.path !== "/v1/messages") return new Response("no", { status: 404 });
    const text = `${label}: ${answerFor(rec)}`;
    const wantsTool = Array.isArray(json.tools) && json.tools.length > 0;
    const args = toolArgsFor(rec);
    if (!json.stream) {
      const content: unknown[] = [{ type: "text", text }];
      if (wantsTool) {
        content.push({
          type: "tool_use",
          id: "toolu_1",
          name: "send_email",
          input: JSON.parse(args),
        });
      }
      return Response.json({
        id: "msg_1",
        type: "message",
        role: "assistant",
        model: json.model,
        content,
        stop_reason: wantsTool ? "tool_use" : "end_turn",
        usage: { input_tokens: 30, output_tokens: 9 },
      });
    }
    const events: { event: string; data: unknown }[] = [
      {
        event: "message_start",
        data: {
          type: "message_start",
          message: {
            id: "msg_1",
            type: "message",
            role: "assistant",
            model: json.model,
            content: [],
            usage: { input_tokens: 30, output_tokens: 1 },
          },
        },
      },
      {
        event: "content_block_start",
        data: { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
      },
      ...pieces(text, chunk).map((t) => ({
        event: "content_block_delta",
        data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: t } },
      })),
      { event: "content_block_stop", data: { type: "content_block_stop", index: 0 } },
    ];
    if (wantsTool) {
      events.push({
        event: "content_block_start",
        data: {
          type: "content_block_start",
          index: 1,
          content_block: { type: "tool_use", id: "toolu_1", name: "send_email", input: {} },
        },
      });
      for (const p of pieces(args, chunk)) {
        events.push({
          event: "content_block_delta",
          data: {
            type: "content_block_delta",
            index: 1,
            delta: { type: "input_json_delta", partial_json: p },
          },
        });
      }
      events.push({ event: "content_block_stop", data: { type: "content_block_stop", index: 1 } });
    }
    events.push(
      {
        event: "message_delta",
        data: {
          type: "message_delta",
          delta: { stop_reason: wantsTool ? "tool_use" : "end_turn" },
          usage: { output_tokens: 9 },
        },
      },
      { event: "message_stop", data: { type: "message_stop" } },
    );
    return sse(events);
  });
}
