// OpenAI <-> Anthropic translation: an agent speaking one API is served by a backend speaking
// the other, with pseudonymisation and restoration on the way (real loopback upstreams).

import assert from "node:assert/strict";
import { CLOUD_KEY, readSse, type Served, serveRouter, until, type Upstream } from "./helpers.ts";
import { anthropicUpstream, openaiUpstream } from "./upstreams.ts";
import {
  chatRequestToMessages,
  messagesRequestToChat,
  TranslationError,
} from "../../router/translate.ts";

const EMAIL_AND_NAME = "Please email John Smith at john.smith@example.com about the invoice.";

const TOOLS = [{
  type: "function",
  function: {
    name: "send_email",
    description: "send an email",
    parameters: {
      type: "object",
      properties: { to: { type: "string" }, name: { type: "string" } },
    },
  },
}];

/** A cloud backend of `cloudType`; the local backend is an OpenAI server. */
async function withCloud(
  cloudType: "openai" | "anthropic",
  fn: (cloud: Upstream, router: Served) => Promise<void>,
) {
  const local = openaiUpstream("LOCAL");
  const cloud = cloudType === "anthropic" ? anthropicUpstream("CLOUD") : openaiUpstream("CLOUD");
  const router = serveRouter({
    backends: {
      nemotron: { type: "openai", base_url: `${local.url}/v1`, model: "nemotron-local" },
      frontier: {
        type: cloudType,
        base_url: cloudType === "openai" ? `${cloud.url}/v1` : cloud.url,
        api_key_env: "TEST_CLOUD_KEY",
        model: "frontier-1",
      },
    },
    local: "nemotron",
    cloud: "frontier",
    keep_local: ["US_SSN"],
    pseudonymise: ["PERSON", "EMAIL_ADDRESS"],
  });
  try {
    await fn(cloud, router);
    assert.equal(local.received.length, 0);
  } finally {
    await router.close();
    await local.close();
    await cloud.close();
  }
}

function post(r: Served, path: string, body: unknown) {
  return fetch(`${r.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
    body: JSON.stringify(body),
  });
}

Deno.test("OpenAI chat client, Anthropic backend: request, answer and tool call translated", () =>
  withCloud("anthropic", async (cloud, router) => {
    const res = await post(router, "/v1/chat/completions", {
      model: "auto",
      temperature: 1.5,
      stop: "END",
      tools: TOOLS,
      tool_choice: "required",
      messages: [
        { role: "system", content: "You help John Smith." },
        { role: "user", content: EMAIL_AND_NAME },
      ],
    });
    assert.equal(res.status, 200);
    const answer = await res.json();
    // What the Anthropic server received: its own dialect, with placeholders, under its key.
    const sent = cloud.received[0];
    assert.equal(sent.path, "/v1/messages");
    assert.equal(sent.headers.get("x-api-key"), CLOUD_KEY);
    // deno-lint-ignore no-explicit-any
    const got = sent.json as any;
    assert.equal(got.model, "frontier-1");
    assert.equal(got.max_tokens, 4096);
    assert.equal(got.temperature, 1);
    assert.deepEqual(got.stop_sequences, ["END"]);
    assert.match(got.system, /^You help <PERSON_1>\.$/);
    assert.deepEqual(got.tool_choice, { type: "any" });
    assert.equal(got.tools[0].name, "send_email");
    assert.equal(got.tools[0].input_schema.type, "object");
    assert.equal(got.messages[0].role, "user");
    assert.match(got.messages[0].content[0].text, /<EMAIL_ADDRESS_1>/);
    assert.ok(!sent.body.includes("John Smith") && !sent.body.includes("john.smith@"));
    // What the agent got: OpenAI's shape, real values back.
    assert.equal(answer.object, "chat.completion");
    const message = answer.choices[0].message;
    assert.match(message.content, /^CLOUD: Noted: /);
    assert.ok(message.content.includes("john.smith@example.com"), message.content);
    assert.equal(answer.choices[0].finish_reason, "tool_calls");
    assert.equal(message.tool_calls[0].function.name, "send_email");
    assert.deepEqual(JSON.parse(message.tool_calls[0].function.arguments), {
      to: "john.smith@example.com",
      name: "John Smith",
    });
    assert.deepEqual(answer.usage, { prompt_tokens: 30, completion_tokens: 9, total_tokens: 39 });
    assert.deepEqual(router.audit[0].tokens, { prompt: 30, completion: 9 });
  }));

Deno.test("OpenAI chat client, Anthropic backend, streamed: chunks with restored text and tools", () =>
  withCloud("anthropic", async (_cloud, router) => {
    const res = await post(router, "/v1/chat/completions", {
      model: "auto",
      stream: true,
      stream_options: { include_usage: true },
      tools: TOOLS,
      messages: [{ role: "user", content: EMAIL_AND_NAME }],
    });
    assert.equal(res.status, 200);
    const events = await readSse(res);
    assert.equal(events.at(-1)!.data, "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.ok(text.includes("John Smith") && text.includes("john.smith@example.com"), text);
    assert.ok(!text.includes("<"), text);
    const calls = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    assert.equal(calls[0].function.name, "send_email");
    assert.deepEqual(JSON.parse(calls.map((t) => t.function.arguments ?? "").join("")), {
      to: "john.smith@example.com",
      name: "John Smith",
    });
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === "tool_calls"));
    assert.deepEqual(chunks.at(-1).usage, {
      prompt_tokens: 30,
      completion_tokens: 9,
      total_tokens: 39,
    });
    await until(() => router.audit.length === 1);
    assert.equal(router.audit[0].outcome, "ok");
  }));

const MESSAGES_BODY = {
  model: "auto",
  max_tokens: 100,
  system: "You help John Smith.",
  tools: [{ name: "send_email", input_schema: { type: "object" } }],
  messages: [{ role: "user", content: [{ type: "text", text: EMAIL_AND_NAME }] }],
};

Deno.test("Anthropic client, OpenAI backend: request, answer and tool use translated", () =>
  withCloud("openai", async (cloud, router) => {
    const res = await post(router, "/v1/messages", MESSAGES_BODY);
    assert.equal(res.status, 200);
    const msg = await res.json();
    const sent = cloud.received[0];
    assert.equal(sent.path, "/v1/chat/completions");
    assert.equal(sent.headers.get("authorization"), `Bearer ${CLOUD_KEY}`);
    // deno-lint-ignore no-explicit-any
    const got = sent.json as any;
    assert.equal(got.max_tokens, 100);
    assert.deepEqual(got.messages[0], { role: "system", content: "You help <PERSON_1>." });
    assert.equal(got.messages[1].role, "user");
    assert.match(got.messages[1].content, /<EMAIL_ADDRESS_1>/);
    assert.equal(got.tools[0].function.name, "send_email");
    assert.equal(msg.type, "message");
    assert.equal(msg.stop_reason, "tool_use");
    const use = msg.content.find((b: { type: string }) => b.type === "tool_use");
    assert.deepEqual(use.input, { to: "john.smith@example.com", name: "John Smith" });
    assert.deepEqual(msg.usage, { input_tokens: 21, output_tokens: 7 });
  }));

Deno.test("Anthropic client, OpenAI backend, streamed: message events with restored values", () =>
  withCloud("openai", async (cloud, router) => {
    const res = await post(router, "/v1/messages", {
      ...MESSAGES_BODY,
      tools: undefined,
      stream: true,
    });
    assert.equal(res.status, 200);
    // deno-lint-ignore no-explicit-any
    assert.deepEqual((cloud.received[0].json as any).stream_options, { include_usage: true });
    const events = await readSse(res);
    const names = events.map((e) => e.event);
    assert.equal(names[0], "message_start");
    assert.equal(names.at(-1), "message_stop");
    assert.equal(names.at(-2), "message_delta");
    assert.ok(names.indexOf("content_block_start") < names.indexOf("content_block_delta"));
    assert.ok(names.lastIndexOf("content_block_delta") < names.indexOf("content_block_stop"));
    const text = events.filter((e) => e.event === "content_block_delta")
      .map((e) => JSON.parse(e.data).delta.text).join("");
    assert.ok(text.includes("John Smith") && text.includes("john.smith@example.com"), text);
    assert.ok(!text.includes("<"), text);
    const delta = JSON.parse(events.at(-2)!.data);
    assert.equal(delta.delta.stop_reason, "end_turn");
    assert.equal(delta.usage.output_tokens, 7);
    await until(() => router.audit.length === 1);
    assert.deepEqual(router.audit[0].tokens, { prompt: 21, completion: 7 });
  }));

Deno.test("multi-turn tool use maps both ways", () => {
  const openai = {
    model: "m",
    messages: [
      { role: "user", content: "send it" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{
          id: "call_9",
          type: "function",
          function: { name: "send_email", arguments: '{"to":"a@b.c"}' },
        }],
      },
      { role: "tool", tool_call_id: "call_9", content: "sent" },
      { role: "user", content: "thanks" },
    ],
  };
  // deno-lint-ignore no-explicit-any
  const anthropic = chatRequestToMessages(openai) as any;
  assert.deepEqual(anthropic.messages, [
    { role: "user", content: [{ type: "text", text: "send it" }] },
    {
      role: "assistant",
      content: [{ type: "tool_use", id: "call_9", name: "send_email", input: { to: "a@b.c" } }],
    },
    {
      role: "user",
      content: [
        { type: "tool_result", tool_use_id: "call_9", content: "sent" },
        { type: "text", text: "thanks" },
      ],
    },
  ]);
  // deno-lint-ignore no-explicit-any
  const back = messagesRequestToChat(anthropic) as any;
  assert.deepEqual(back.messages, [
    { role: "user", content: "send it" },
    {
      role: "assistant",
      content: null,
      tool_calls: [{
        id: "call_9",
        type: "function",
        function: { name: "send_email", arguments: '{"to":"a@b.c"}' },
      }],
    },
    { role: "tool", tool_call_id: "call_9", content: "sent" },
    { role: "user", content: "thanks" },
  ]);
});

Deno.test("fields with no counterpart are refused, not dropped", () => {
  const base = { model: "m", messages: [{ role: "user", content: "x" }] };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ n: 3 }, /n > 1/],
    [{ logprobs: true }, /logprobs/],
    [{ response_format: { type: "json_schema" } }, /response_format "json_schema"/],
    [{ messages: [{ role: "system", content: "only a system prompt" }] }, /at least one user/],
    [{ messages: [{ role: "user", content: [{ type: "input_audio" }] }] }, /input_audio/],
    [{
      messages: [{
        role: "assistant",
        tool_calls: [{ id: "c", function: { name: "f", arguments: "{oops" } }],
      }],
    }, /arguments are not valid JSON/],
  ];
  for (const [extra, why] of bad) {
    assert.throws(() => chatRequestToMessages({ ...base, ...extra }), (e: Error) => {
      assert.ok(e instanceof TranslationError);
      assert.match(e.message, why);
      return true;
    });
  }
  assert.throws(
    () =>
      messagesRequestToChat({
        model: "m",
        max_tokens: 5,
        messages: [{ role: "user", content: [{ type: "document" }] }],
      }),
    /document/,
  );
});
