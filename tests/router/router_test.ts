// The privacy router end to end: real HTTP upstreams on loopback record what they receive.

import assert from "node:assert/strict";
import {
  closedPort,
  CLOUD_KEY,
  readSse,
  type Served,
  serveRouter,
  sse,
  until,
  Upstream,
} from "./helpers.ts";
import { anthropicUpstream, openaiUpstream } from "./upstreams.ts";

const SSN_AND_NAME = "Patient John Smith, SSN 536-22-8174, asks about his refill.";
const EMAIL_AND_NAME = "Please email John Smith at john.smith@example.com about the invoice.";

interface Setup {
  local: Upstream;
  cloud: Upstream;
  router: Served;
}

function privacyFor(
  localUrl: string,
  cloudUrl: string,
  extra: Record<string, unknown> = {},
  types: { local?: string; cloud?: string } = {},
) {
  const localType = types.local ?? "openai";
  const cloudType = types.cloud ?? "openai";
  return {
    backends: {
      nemotron: {
        type: localType,
        base_url: localType === "openai" ? `${localUrl}/v1` : localUrl,
        model: "nemotron-local",
        embedding_model: "nemotron-embed",
        timeout_ms: 2000,
      },
      frontier: {
        type: cloudType,
        base_url: cloudType === "openai" ? `${cloudUrl}/v1` : cloudUrl,
        api_key_env: "TEST_CLOUD_KEY",
        model: "frontier-1",
        embedding_model: "frontier-embed",
        timeout_ms: 2000,
      },
    },
    local: "nemotron",
    cloud: "frontier",
    keep_local: ["US_SSN"],
    pseudonymise: ["PERSON", "EMAIL_ADDRESS"],
    ...extra,
  };
}

async function withSetup(
  fn: (s: Setup) => Promise<void>,
  opts: { extra?: Record<string, unknown>; anthropic?: boolean; localDown?: boolean } = {},
) {
  const make = opts.anthropic ? anthropicUpstream : openaiUpstream;
  const local = make("LOCAL");
  const cloud = make("CLOUD");
  const localUrl = opts.localDown ? `http://127.0.0.1:${closedPort()}` : local.url;
  const router = serveRouter(
    privacyFor(
      localUrl,
      cloud.url,
      opts.extra,
      opts.anthropic ? { local: "anthropic", cloud: "anthropic" } : {},
    ),
  );
  try {
    await fn({ local, cloud, router });
  } finally {
    await router.close();
    await local.close();
    await cloud.close();
  }
}

function post(r: Served, path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${r.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "auto",
  messages: [{ role: "user", content }],
  ...extra,
});

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

Deno.test(`SSN and name: answered by the local backend, the cloud receives nothing`, () =>
  withSetup(async ({ local, cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", chat(SSN_AND_NAME));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.choices[0].message.content, /^LOCAL: /);
    assert.equal(cloud.received.length, 0);
    assert.equal(local.received.length, 1);
    // The local backend gets the text as written, under its own model name.
    // deno-lint-ignore no-explicit-any
    const got = local.received[0].json as any;
    assert.equal(got.messages[0].content, SSN_AND_NAME);
    assert.equal(got.model, "nemotron-local");
    assert.equal(local.received[0].headers.get("authorization"), null);
    const ev = router.audit[0];
    assert.equal(ev.backend, "nemotron");
    assert.equal(ev.backend_role, "local");
    assert.match(ev.reason, /keep_local: .*US_SSN/);
    assert.equal(ev.entities.US_SSN, 1);
    assert.equal(ev.status, 200);
    assert.deepEqual(ev.tokens, { prompt: 21, completion: 7 });
    assert.match(ev.prompt_hmac, /^[0-9a-f]{64}$/);
    const logged = JSON.stringify(router.audit);
    assert.ok(!logged.includes("536-22-8174") && !logged.includes("John Smith"));
  }));

Deno.test(`email and name: the cloud gets placeholders, the agent gets the real values`, () =>
  withSetup(async ({ local, cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", chat(EMAIL_AND_NAME));
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(!text.includes(CLOUD_KEY));
    const answer = JSON.parse(text).choices[0].message.content;
    assert.equal(local.received.length, 0);
    assert.equal(cloud.received.length, 1);
    const sent = cloud.received[0].body;
    assert.ok(!sent.includes("John Smith"), sent);
    assert.ok(!sent.includes("john.smith@example.com"), sent);
    assert.match(sent, /<PERSON_1>/);
    assert.match(sent, /<EMAIL_ADDRESS_1>/);
    assert.equal(cloud.received[0].headers.get("authorization"), `Bearer ${CLOUD_KEY}`);
    assert.match(answer, /^CLOUD: Noted: /);
    assert.ok(answer.includes("John Smith"), answer);
    assert.ok(answer.includes("john.smith@example.com"), answer);
    assert.ok(!/<[A-Z_]+_\d+>/.test(answer), answer);
    const ev = router.audit[0];
    assert.equal(ev.backend_role, "cloud");
    assert.equal(ev.pseudonymised.EMAIL_ADDRESS, 1);
    assert.ok((ev.pseudonymised.PERSON ?? 0) >= 1);
  }));

Deno.test(`streamed: placeholders split across SSE chunks are restored`, () =>
  withSetup(async ({ cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", chat(EMAIL_AND_NAME, { stream: true }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    const events = await readSse(res);
    assert.equal(events.at(-1)!.data, "[DONE]");
    const parts = events.slice(0, -1).map((e) => JSON.parse(e.data));
    const text = parts.map((p) => p.choices[0]?.delta?.content ?? "").join("");
    // The upstream sent 3-character pieces: every placeholder was split.
    assert.match(cloud.received[0].body, /<EMAIL_ADDRESS_1>/);
    assert.ok(text.includes("John Smith") && text.includes("john.smith@example.com"), text);
    assert.ok(!text.includes("<"), text);
    assert.ok(parts.some((p) => p.choices[0]?.finish_reason === "stop"));
    await until(() => router.audit.length === 1);
    assert.equal(router.audit[0].outcome, "ok");
    assert.deepEqual(router.audit[0].tokens, { prompt: 21, completion: 7 });
  }));

Deno.test(`tool-call arguments are restored, streamed and not; tool results are scanned`, () =>
  withSetup(async ({ cloud, router }) => {
    const messages = [
      { role: "user", content: EMAIL_AND_NAME },
      {
        role: "assistant",
        content: null,
        tool_calls: [{
          id: "call_0",
          type: "function",
          function: {
            name: "lookup",
            arguments: JSON.stringify({ email: "john.smith@example.com" }),
          },
        }],
      },
      { role: "tool", tool_call_id: "call_0", content: "Found: John Smith, customer since 2019" },
      { role: "user", content: "Now send the email to John Smith." },
    ];
    for (const stream of [false, true]) {
      const res = await post(router, "/v1/chat/completions", {
        model: "auto",
        messages,
        tools: TOOLS,
        stream,
      });
      assert.equal(res.status, 200);
      let args: string;
      if (stream) {
        const events = (await readSse(res)).filter((e) => e.data !== "[DONE]");
        args = events.map((e) =>
          JSON.parse(e.data).choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? ""
        ).join("");
      } else {
        args = (await res.json()).choices[0].message.tool_calls[0].function.arguments;
      }
      assert.deepEqual(JSON.parse(args), { to: "john.smith@example.com", name: "John Smith" });
      const sent = cloud.received.at(-1)!.body;
      assert.ok(!sent.includes("John Smith") && !sent.includes("john.smith@example.com"), sent);
      // One person, one placeholder, in every message of the conversation.
      // deno-lint-ignore no-explicit-any
      const m = (cloud.received.at(-1)!.json as any).messages;
      assert.match(m[2].content, /Found: <PERSON_1>/);
      assert.match(m[3].content, /<PERSON_1>/);
      assert.match(m[1].tool_calls[0].function.arguments, /<EMAIL_ADDRESS_1>/);
    }
  }));

Deno.test(`concurrent requests never share mappings; numbering is per request`, () =>
  withSetup(async ({ cloud, router }) => {
    const a = "Please email John Smith at john.smith@example.com today.";
    const b = "Please email Maria Garcia at maria.garcia@example.org today.";
    const answers = await Promise.all(
      [a, b, a, b, a, b].map(async (t) => {
        const res = await post(router, "/v1/chat/completions", chat(t, { stream: true }));
        const events = (await readSse(res)).filter((e) => e.data !== "[DONE]");
        return events.map((e) => JSON.parse(e.data).choices[0]?.delta?.content ?? "").join("");
      }),
    );
    answers.forEach((text, i) => {
      const mine = i % 2 === 0 ? "John Smith" : "Maria Garcia";
      const other = i % 2 === 0 ? "Maria Garcia" : "John Smith";
      assert.ok(text.includes(mine), text);
      assert.ok(!text.includes(other), text);
    });
    // Both people become <PERSON_1> and <EMAIL_ADDRESS_1>: the cloud sees one and the same text.
    const bodies = cloud.received.map((r) => r.body);
    assert.equal(new Set(bodies).size, 1, bodies.join("\n"));
    assert.match(bodies[0], /<PERSON_1> at <EMAIL_ADDRESS_1>/);
  }));

Deno.test("fail closed: the local backend is down, a request that must stay local gets 503", () =>
  withSetup(async ({ cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", chat(SSN_AND_NAME));
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.error.code, "local_backend_unavailable");
    assert.equal(body.error.type, "server_error");
    assert.match(body.error.message, /nemotron.*unreachable.*must stay local.*not sent/);
    assert.equal(cloud.received.length, 0);
    assert.equal(router.audit[0].status, 503);
    // A request without keep_local types still reaches the cloud.
    const ok = await post(router, "/v1/chat/completions", chat(EMAIL_AND_NAME));
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.equal(cloud.received.length, 1);
  }, { localDown: true }));

Deno.test(`fail_closed: false sends a keep_local request to the cloud with those types pseudonymised`, () =>
  withSetup(async ({ cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", chat(SSN_AND_NAME));
    assert.equal(res.status, 200);
    const answer = (await res.json()).choices[0].message.content;
    const sent = cloud.received[0].body;
    assert.ok(!sent.includes("536-22-8174"), sent);
    assert.match(sent, /<US_SSN_1>/);
    assert.ok(answer.includes("536-22-8174"), answer);
    assert.match(router.audit[0].reason, /fail_closed is false/);
  }, { localDown: true, extra: { fail_closed: false } }));

Deno.test(`Anthropic /v1/messages: routed, pseudonymised and restored, streamed and not`, () =>
  withSetup(async ({ local, cloud, router }) => {
    const body = {
      model: "auto",
      max_tokens: 100,
      system: "You help John Smith.",
      tools: [{ name: "send_email", input_schema: { type: "object" } }],
      messages: [{ role: "user", content: [{ type: "text", text: EMAIL_AND_NAME }] }],
    };
    const res = await post(router, "/v1/messages", body, { "anthropic-version": "2023-06-01" });
    assert.equal(res.status, 200);
    const msg = await res.json();
    assert.ok(msg.content[0].text.includes("john.smith@example.com"), msg.content[0].text);
    assert.deepEqual(msg.content[1].input, { to: "john.smith@example.com", name: "John Smith" });
    const sent = cloud.received[0];
    assert.equal(sent.headers.get("x-api-key"), CLOUD_KEY);
    assert.equal(sent.headers.get("anthropic-version"), "2023-06-01");
    assert.ok(!sent.body.includes("John Smith") && !sent.body.includes("john.smith@"), sent.body);
    // deno-lint-ignore no-explicit-any
    assert.match((sent.json as any).system, /<PERSON_1>/);

    const streamed = await post(router, "/v1/messages", { ...body, stream: true });
    assert.equal(streamed.status, 200);
    const events = await readSse(streamed);
    const deltas = events.filter((e) => e.event === "content_block_delta").map((e) =>
      JSON.parse(e.data)
    );
    const text = deltas.filter((d) => d.index === 0).map((d) => d.delta.text).join("");
    const json = deltas.filter((d) => d.index === 1).map((d) => d.delta.partial_json).join("");
    assert.ok(text.includes("John Smith") && text.includes("john.smith@example.com"), text);
    assert.ok(!text.includes("<"), text);
    assert.deepEqual(JSON.parse(json), { to: "john.smith@example.com", name: "John Smith" });
    // Every delta comes before the stop of its block.
    const order = events.map((e) => e.event);
    assert.ok(order.lastIndexOf("content_block_delta") < order.lastIndexOf("content_block_stop"));
    await until(() => router.audit.length === 2);
    assert.deepEqual(router.audit[1].tokens, { prompt: 30, completion: 9 });

    // And with an SSN, the local backend answers.
    const sensitive = await post(router, "/v1/messages", {
      ...body,
      messages: [{ role: "user", content: SSN_AND_NAME }],
    });
    assert.equal(sensitive.status, 200);
    assert.match((await sensitive.json()).content[0].text, /^LOCAL/);
    assert.equal(local.received.length, 1);
    assert.equal(cloud.received.length, 2);
  }, { anthropic: true }));

Deno.test("keys never reach the agent, not even in upstream error messages", async () => {
  const cloud = new Upstream((rec) =>
    rec.headers.get("x-trigger") === "401" || rec.body.includes("trigger-401")
      ? Response.json({ error: { message: `Incorrect API key provided: ${CLOUD_KEY}` } }, {
        status: 401,
      })
      : Response.json({ error: { message: `bad request from key ${CLOUD_KEY}` } }, { status: 400 })
  );
  const local = openaiUpstream("LOCAL");
  const router = serveRouter(privacyFor(local.url, cloud.url));
  try {
    for (const [prompt, status] of [["trigger-401", 502], ["hello", 400]] as const) {
      const res = await post(router, "/v1/chat/completions", chat(prompt));
      assert.equal(res.status, status);
      const text = await res.text();
      assert.ok(!text.includes(CLOUD_KEY), text);
      assert.ok(!text.includes(CLOUD_KEY.slice(0, 8)), text);
      assert.ok(JSON.parse(text).error.message.length > 0);
    }
    const models = await (await fetch(`${router.url}/v1/models`)).text();
    assert.ok(!models.includes(CLOUD_KEY) && !models.includes(cloud.url));
  } finally {
    await router.close();
    await local.close();
    await cloud.close();
  }
});

Deno.test(`completions and embeddings: routed and pseudonymised`, () =>
  withSetup(async ({ local, cloud, router }) => {
    const c = await post(router, "/v1/completions", { model: "auto", prompt: EMAIL_AND_NAME });
    assert.equal(c.status, 200);
    assert.ok((await c.json()).choices[0].text.includes("john.smith@example.com"));
    const cs = await post(router, "/v1/completions", {
      model: "auto",
      prompt: EMAIL_AND_NAME,
      stream: true,
    });
    const text = (await readSse(cs)).filter((e) => e.data !== "[DONE]").map((e) =>
      JSON.parse(e.data).choices[0].text
    ).join("");
    assert.ok(text.includes("John Smith") && text.includes("john.smith@example.com"), text);
    const e = await post(router, "/v1/embeddings", { model: "auto", input: [EMAIL_AND_NAME] });
    assert.equal(e.status, 200);
    assert.deepEqual((await e.json()).data[0].embedding, [0.25, -0.5]);
    const sent = cloud.received.at(-1)!;
    // deno-lint-ignore no-explicit-any
    assert.equal((sent.json as any).model, "frontier-embed");
    assert.ok(!sent.body.includes("john.smith@example.com"));
    const s = await post(router, "/v1/embeddings", { model: "auto", input: SSN_AND_NAME });
    assert.equal(s.status, 200);
    await s.body?.cancel();
    // deno-lint-ignore no-explicit-any
    assert.equal((local.received.at(-1)!.json as any).model, "nemotron-embed");
  }));

Deno.test("images and token ids cannot be scanned: they stay local", () =>
  withSetup(async ({ local, cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", {
      model: "auto",
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "What does this say?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
        ],
      }],
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const t = await post(router, "/v1/embeddings", { model: "auto", input: [[1, 2, 3]] });
    assert.equal(t.status, 200);
    await t.body?.cancel();
    assert.equal(local.received.length, 2);
    assert.equal(cloud.received.length, 0);
    assert.match(router.audit[0].reason, /unscannable content: content part "image_url"/);
    assert.match(router.audit[1].reason, /token ids/);
  }));

Deno.test("GET /v1/models lists the router's models in both dialects", () =>
  withSetup(async ({ router }) => {
    const o = await (await fetch(`${router.url}/v1/models`)).json();
    assert.equal(o.object, "list");
    const ids = o.data.map((m: { id: string }) => m.id);
    for (const id of ["auto", "nemotron", "nemotron-local", "frontier", "frontier-1"]) {
      assert.ok(ids.includes(id), id);
    }
    const a = await (await fetch(`${router.url}/v1/models`, {
      headers: { "anthropic-version": "2023-06-01" },
    })).json();
    assert.equal(a.data[0].type, "model");
    assert.equal(a.has_more, false);
  }));

Deno.test("the client may pin the local model; it is never sent to the cloud", () =>
  withSetup(async ({ local, cloud, router }) => {
    const res = await post(router, "/v1/chat/completions", {
      ...chat("hello there"),
      model: "nemotron",
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(local.received.length, 1);
    assert.equal(cloud.received.length, 0);
  }));

Deno.test("the router serves a reloaded policy from the next request on", () =>
  withSetup(async ({ local, cloud, router }) => {
    const first = await post(router, "/v1/chat/completions", chat("hello"));
    await first.body?.cancel();
    assert.equal(cloud.received.length, 1);
    const { privacyPolicy } = await import("../../core/policy/privacy.ts");
    router.router.reload(privacyPolicy.parse({
      backends: {
        nemotron: { type: "openai", base_url: `${local.url}/v1`, model: "nemotron-local" },
      },
      local: "nemotron",
    }));
    const second = await post(router, "/v1/chat/completions", chat("hello"));
    await second.body?.cancel();
    assert.equal(local.received.length, 1);
    assert.equal(cloud.received.length, 1);
    assert.match(router.audit[1].reason, /no cloud backend/);
  }));

export { sse };
