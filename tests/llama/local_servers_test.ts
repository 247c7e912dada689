// Backends `type: openai` pointed at local inference servers (vLLM, NIM, Ollama, llama.cpp's
// llama-server), each emulated on loopback with its real response shapes: answers, streams,
// usage, tool calls, errors, health probes, and pseudonymisation when one is the cloud side.

import assert from "node:assert/strict";
import { closedPort, CLOUD_KEY, readSse, until } from "../router/helpers.ts";
import { openaiUpstream } from "../router/upstreams.ts";
import { localServer, SERVER_KINDS, TOO_LONG } from "./servers.ts";
import { serveWithLog } from "./helpers.ts";

const SSN_AND_NAME = "Patient John Smith, SSN 536-22-8174, asks about his refill.";
const EMAIL_AND_NAME = "Please email John Smith at john.smith@example.com about the invoice.";
const TOOLS = [{
  type: "function",
  function: { name: "send_email", parameters: { type: "object", properties: {} } },
}];

// deno-lint-ignore no-explicit-any
type Json = any;

function post(url: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "auto", ...body }),
  });
}

/** Content and tool-call arguments of a streamed chat answer. */
async function streamed(res: Response): Promise<{ text: string; args: string; chunks: Json[] }> {
  const events = await readSse(res);
  assert.equal(events.at(-1)!.data, "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
  let text = "", args = "";
  for (const c of chunks) {
    const d = c.choices?.[0]?.delta;
    if (typeof d?.content === "string") text += d.content;
    for (const tc of d?.tool_calls ?? []) args += tc.function?.arguments ?? "";
  }
  return { text, args, chunks };
}

for (const kind of SERVER_KINDS) {
  Deno.test(`local ${kind} server: answers, streams, usage, tool calls, errors, health`, async () => {
    const local = localServer(kind);
    const cloud = openaiUpstream("cloud");
    const s = serveWithLog({
      backends: {
        local: { type: "openai", base_url: `${local.url}/v1`, model: "served-model" },
        cloud: { type: "openai", base_url: `${cloud.url}/v1`, model: "gpt-x" },
      },
      local: "local",
      cloud: "cloud",
      keep_local: ["US_SSN"],
      pseudonymise: ["PERSON"],
    });
    try {
      const msgs = [{ role: "user", content: SSN_AND_NAME }];
      const once = await post(s.url, { messages: msgs });
      assert.equal(once.status, 200);
      const oj = await once.json();
      assert.equal(
        oj.choices[0].message.content,
        `${kind}: Plain answer (${SSN_AND_NAME.length} chars).`,
      );
      assert.deepEqual(s.audit[0].tokens, { prompt: 17, completion: 9 });
      assert.equal(s.audit[0].backend, "local");

      const st = await post(s.url, {
        messages: msgs,
        stream: true,
        stream_options: { include_usage: true },
      });
      const { text } = await streamed(st);
      assert.equal(text, oj.choices[0].message.content);
      await until(() => s.audit.length === 2);
      assert.deepEqual(s.audit[1].tokens, { prompt: 17, completion: 9 });
      assert.equal(s.audit[1].outcome, "ok");

      const tools = await streamed(
        await post(s.url, { messages: msgs, tools: TOOLS, stream: true }),
      );
      assert.deepEqual(JSON.parse(tools.args), { to: "", name: "" });
      const finish = tools.chunks.map((c) => c.choices?.[0]?.finish_reason).filter((f) => f);
      assert.deepEqual(finish, ["tool_calls"]);

      const tooLong = await post(s.url, {
        messages: [{ role: "user", content: `${SSN_AND_NAME} ${TOO_LONG}` }],
      });
      assert.equal(tooLong.status, 400);
      assert.match(
        (await tooLong.json()).error.message,
        /^backend "local" answered HTTP 400: .*(context size|context length)/,
      );
      assert.equal(cloud.received.length, 0);

      const h = await fetch(`${s.url}/healthz`);
      const hj = await h.json();
      const lh = hj.backends.find((b: Json) => b.name === "local");
      assert.equal(lh.state, "up", lh.detail);
      assert.equal(lh.available, true);
      assert.deepEqual(local.received.filter((r) => r.method === "GET").map((r) => r.path), [
        "/v1/models",
      ]);
    } finally {
      await s.stop();
      await local.close();
      await cloud.close();
    }
  });

  Deno.test(`${kind} server as the cloud side: placeholders restored in answers, streams and tool calls`, async () => {
    const remote = localServer(kind);
    const s = serveWithLog({
      backends: {
        remote: {
          type: "openai",
          base_url: `${remote.url}/v1`,
          model: "served-model",
          api_key_env: "TEST_CLOUD_KEY",
        },
      },
      cloud: "remote",
      pseudonymise: ["PERSON", "EMAIL_ADDRESS"],
    });
    try {
      const msgs = [{ role: "user", content: EMAIL_AND_NAME }];
      const once = await (await post(s.url, { messages: msgs })).json();
      assert.match(once.choices[0].message.content, /John Smith.*john\.smith@example\.com/);
      const got = remote.received[0];
      assert.equal(got.headers.get("authorization"), `Bearer ${CLOUD_KEY}`);
      assert.ok(!got.body.includes("John Smith") && !got.body.includes("john.smith@"));

      const st = await streamed(await post(s.url, { messages: msgs, stream: true }));
      assert.equal(st.text, once.choices[0].message.content);

      const tools = await streamed(
        await post(s.url, { messages: msgs, tools: TOOLS, stream: true }),
      );
      assert.deepEqual(JSON.parse(tools.args), {
        to: "john.smith@example.com",
        name: "John Smith",
      });
      const toolsOnce = await (await post(s.url, { messages: msgs, tools: TOOLS })).json();
      assert.deepEqual(JSON.parse(toolsOnce.choices[0].message.tool_calls[0].function.arguments), {
        to: "john.smith@example.com",
        name: "John Smith",
      });
    } finally {
      await s.stop();
      await remote.close();
    }
  });
}

Deno.test("a local server that is down: health says so and keep_local requests fail closed", async () => {
  const cloud = openaiUpstream("cloud");
  const port = closedPort();
  const s = serveWithLog({
    backends: {
      local: { type: "openai", base_url: `http://127.0.0.1:${port}/v1`, model: "served-model" },
      cloud: { type: "openai", base_url: `${cloud.url}/v1`, model: "gpt-x" },
    },
    local: "local",
    cloud: "cloud",
    keep_local: ["US_SSN"],
  });
  try {
    const h = await fetch(`${s.url}/healthz`);
    assert.equal(h.status, 503);
    const hj = await h.json();
    assert.equal(hj.status, "unavailable");
    const lh = hj.backends.find((b: Json) => b.name === "local");
    assert.equal(lh.state, "down");
    assert.match(lh.detail, new RegExp(`GET http://127\\.0\\.0\\.1:${port}/v1/models: `));
    const models = await (await fetch(`${s.url}/v1/models`)).json();
    assert.equal(models.data.find((m: Json) => m.id === "served-model").available, false);
    assert.equal(models.data.find((m: Json) => m.id === "auto").available, false);

    const res = await post(s.url, { messages: [{ role: "user", content: SSN_AND_NAME }] });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, "local_backend_unavailable");
    assert.deepEqual(cloud.received.map((r) => `${r.method} ${r.path}`), ["GET /v1/models"]);
  } finally {
    await s.stop();
    await cloud.close();
  }
});
