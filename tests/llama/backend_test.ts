// The llama-cpp backend through the router, on the tiny test model (real llama.cpp, CPU): generate
// N tokens, stream, stop sequences, JSON schema, context-length errors, cancellation, the
// bounded queue, embeddings, and a corrupt or truncated GGUF that keeps the router closed.

import assert from "node:assert/strict";
import { openaiUpstream } from "../router/upstreams.ts";
import { readSse, until } from "../router/helpers.ts";
import { tinyLlamaGguf, writeTinyModel } from "../helpers/gguf.ts";
import { privacyPolicy } from "../../core/policy/privacy.ts";
import { chat, serveLocal } from "./helpers.ts";

const HI = [{ role: "user", content: "Say something." }];

// deno-lint-ignore no-explicit-any
type Json = any;

async function json(res: Response): Promise<Json> {
  return await res.json();
}

Deno.test("llama-cpp: generates exactly max_tokens tokens, the same text at temperature 0", async () => {
  const s = await serveLocal();
  try {
    const a = await json(await chat(s.url, { messages: HI, max_tokens: 16, temperature: 0 }));
    const b = await json(await chat(s.url, { messages: HI, max_tokens: 16, temperature: 0 }));
    assert.equal(a.object, "chat.completion");
    assert.equal(a.model, "tiny-chat");
    assert.equal(a.choices[0].finish_reason, "length");
    assert.equal(a.usage.completion_tokens, 16);
    assert.ok(a.usage.prompt_tokens > 5);
    assert.equal(a.usage.total_tokens, a.usage.prompt_tokens + 16);
    assert.match(a.choices[0].message.content, /^[\x20-\x7e]+$/);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.match(
      s.logs[1],
      /tiny\.gguf ready on CPU .*context 512 tokens x 1, chat template ChatML/,
    );
    const ev = s.audit.at(-1)!;
    assert.equal(ev.backend, "tiny");
    assert.equal(ev.backend_role, "local");
    assert.deepEqual(ev.tokens, { prompt: a.usage.prompt_tokens, completion: 16 });
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: streams the same text as SSE chunks, with finish_reason, usage and [DONE]", async () => {
  const s = await serveLocal();
  try {
    const once = await json(await chat(s.url, { messages: HI, max_tokens: 12, temperature: 0 }));
    const res = await chat(s.url, { messages: HI, max_tokens: 12, temperature: 0, stream: true });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /text\/event-stream/);
    const events = await readSse(res);
    assert.equal(events.at(-1)!.data, "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
    assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text, once.choices[0].message.content);
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, "length");
    assert.equal(last.usage.completion_tokens, 12);
    await until(() => s.audit.length === 2);
    assert.equal(s.audit[1].outcome, "ok");
    assert.equal(s.audit[1].stream, true);
    assert.equal(s.audit[1].tokens!.completion, 12);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: a stop sequence ends the answer before it, with finish_reason stop", async () => {
  const s = await serveLocal();
  try {
    const full = (await json(await chat(s.url, { messages: HI, max_tokens: 24, temperature: 0 })))
      .choices[0].message.content as string;
    // A stop string from the middle of the answer: the answer must end right before it.
    const stop = full.slice(8, 10);
    const cut = full.indexOf(stop);
    for (const stream of [false, true]) {
      const res = await chat(s.url, {
        messages: HI,
        max_tokens: 24,
        temperature: 0,
        stop: [stop],
        stream,
      });
      if (stream) {
        const chunks = (await readSse(res)).slice(0, -1).map((e) => JSON.parse(e.data));
        const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
        assert.equal(text, full.slice(0, cut));
        assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
      } else {
        const a = await json(res);
        assert.equal(a.choices[0].message.content, full.slice(0, cut));
        assert.equal(a.choices[0].finish_reason, "stop");
      }
    }
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: response_format json_schema gives JSON of that schema", async () => {
  const s = await serveLocal();
  try {
    const schema = {
      type: "object",
      properties: { ok: { type: "boolean" }, size: { enum: ["small", "large"] } },
      required: ["ok", "size"],
    };
    const a = await json(
      await chat(s.url, {
        messages: HI,
        max_tokens: 40,
        temperature: 0.7,
        seed: 7,
        response_format: { type: "json_schema", json_schema: { name: "x", schema } },
      }),
    );
    const value = JSON.parse(a.choices[0].message.content);
    assert.equal(typeof value.ok, "boolean");
    assert.ok(["small", "large"].includes(value.size));
    assert.equal(a.choices[0].finish_reason, "stop");
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: prompts beyond the context are refused with 400 context_length_exceeded", async () => {
  const s = await serveLocal({ contextSize: 256 });
  try {
    const long = await chat(s.url, {
      messages: [{ role: "user", content: "word ".repeat(400) }],
      max_tokens: 4,
    });
    assert.equal(long.status, 400);
    const e = (await json(long)).error;
    assert.equal(e.code, "context_length_exceeded");
    assert.match(
      e.message,
      /the prompt is \d+ tokens and the context of local model "tiny-chat" is 256 tokens/,
    );
    const tooMany = await chat(s.url, { messages: HI, max_tokens: 1000 });
    assert.equal(tooMany.status, 400);
    assert.match(
      (await json(tooMany)).error.message,
      /plus max_tokens \(1000\) exceeds the context/,
    );
    // The backend still answers afterwards.
    assert.equal((await chat(s.url, { messages: HI, max_tokens: 2 })).status, 200);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: a client that goes away stops its generation and frees the sequence", async () => {
  const s = await serveLocal({ contextSize: 2048 });
  try {
    const before = await json(await fetch(`${s.url}/healthz`));
    const start = before.backends[0].generated_tokens as number;
    const res = await chat(s.url, { messages: HI, max_tokens: 1900, stream: true });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    await until(() => s.audit.length === 1, 5000);
    assert.equal(s.audit[0].outcome, "client_disconnected");
    let h: Json;
    const deadline = Date.now() + 5000;
    do {
      h = (await json(await fetch(`${s.url}/healthz`))).backends[0];
    } while (h.active > 0 && Date.now() < deadline);
    assert.equal(h.active, 0);
    const generated = h.generated_tokens - start;
    assert.ok(generated < 1900, `generated ${generated} of 1900 tokens`);
    // The freed sequence serves the next request.
    const next = await chat(s.url, { messages: HI, max_tokens: 3 });
    assert.equal(next.status, 200);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: concurrent requests wait in the queue; beyond max_queue they get 429", async () => {
  const s = await serveLocal({ parallel: 1, maxQueue: 2 });
  try {
    const alone = (await json(await chat(s.url, { messages: HI, max_tokens: 60, temperature: 0 })))
      .choices[0].message.content;
    const results = await Promise.all(
      [0, 1, 2, 3].map(() => chat(s.url, { messages: HI, max_tokens: 60, temperature: 0 })),
    );
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    for (const r of results) {
      const body = await json(r);
      if (r.status === 200) assert.equal(body.choices[0].message.content, alone);
      else {
        assert.equal(body.error.code, "local_model_busy");
        assert.match(body.error.message, /1 request\(s\) generating and 2 waiting \(max_queue 2\)/);
      }
    }
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: two sequences generate at once and answer as one would alone", async () => {
  const s = await serveLocal({ parallel: 2, maxQueue: 0 });
  try {
    const prompts = ["first question", "second question"];
    const alone = [];
    for (const p of prompts) {
      alone.push(
        (await json(
          await chat(s.url, {
            messages: [{ role: "user", content: p }],
            max_tokens: 20,
            temperature: 0,
          }),
        )).choices[0].message.content,
      );
    }
    const both = await Promise.all(
      prompts.map((p) =>
        chat(s.url, { messages: [{ role: "user", content: p }], max_tokens: 20, temperature: 0 })
      ),
    );
    assert.deepEqual(both.map((r) => r.status), [200, 200]);
    const texts = await Promise.all(
      both.map(async (r) => (await json(r)).choices[0].message.content),
    );
    assert.deepEqual(texts, alone);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: /v1/completions, tool history, and what it refuses", async () => {
  const s = await serveLocal({ contextSize: 2048 });
  try {
    const c = await fetch(`${s.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "tiny-chat", prompt: "Once", max_tokens: 5, temperature: 0 }),
    });
    const cj = await json(c);
    assert.equal(cj.object, "text_completion");
    assert.equal(cj.usage.completion_tokens, 5);
    assert.equal(cj.choices[0].finish_reason, "length");

    const tools = [{
      type: "function",
      function: {
        name: "lookup",
        description: "Look a word up",
        parameters: { type: "object", properties: { word: { type: "string" } } },
      },
    }];
    const withTools = await chat(s.url, {
      max_tokens: 4,
      tools,
      messages: [
        { role: "user", content: "look up cage" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: "call_1",
            type: "function",
            function: { name: "lookup", arguments: '{"word":"cage"}' },
          }],
        },
        { role: "tool", tool_call_id: "call_1", content: '{"meaning":"an enclosure"}' },
      ],
    });
    assert.equal(withTools.status, 200, await withTools.clone().text());

    const refused = [
      [
        { messages: [{ role: "tool", tool_call_id: "nope", content: "x" }] },
        /matches no tool call/,
      ],
      [{
        messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }],
      }, /./],
      [{ messages: HI, n: 2 }, /n other than 1/],
      [{ messages: HI, temperature: 7 }, /temperature must be a number from 0 to 2/],
      [{ messages: HI, response_format: { type: "json_schema", json_schema: {} } }, /schema/],
    ] as const;
    for (const [body, message] of refused) {
      const r = await chat(s.url, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match((await json(r)).error.message, message);
    }
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: /v1/embeddings from the local model", async () => {
  const s = await serveLocal({ embeddings: true });
  try {
    const res = await fetch(`${s.url}/v1/embeddings`, {
      method: "POST",
      body: JSON.stringify({ model: "tiny-embed", input: ["local model", "cage"] }),
    });
    const e = await json(res);
    assert.equal(res.status, 200);
    assert.equal(e.data.length, 2);
    assert.equal(e.data[0].embedding.length, 64);
    assert.ok(e.data[0].embedding.every((x: number) => Number.isFinite(x)));
    assert.notDeepEqual(e.data[0].embedding, e.data[1].embedding);
    const again = await json(
      await fetch(`${s.url}/v1/embeddings`, {
        method: "POST",
        body: JSON.stringify({ model: "tiny-embed", input: "local model" }),
      }),
    );
    assert.deepEqual(again.data[0].embedding, e.data[0].embedding);
    assert.ok(e.usage.prompt_tokens > 0);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: sensitive requests go to the local model, never to the cloud", async () => {
  const cloud = openaiUpstream("cloud");
  const s = await serveLocal({
    cloud: { type: "openai", base_url: `${cloud.url}/v1`, model: "gpt-x" },
    privacy: { keep_local: ["US_SSN"] },
  });
  try {
    const res = await chat(s.url, {
      model: "auto",
      max_tokens: 4,
      messages: [{ role: "user", content: "My SSN is 536-22-8174, file my taxes." }],
    });
    assert.equal(res.status, 200);
    assert.equal((await json(res)).model, "tiny-chat");
    assert.equal(cloud.received.length, 0);
    assert.equal(s.audit[0].backend, "tiny");
    assert.match(s.audit[0].reason, /keep_local: US_SSN/);
  } finally {
    await s.stop();
    await cloud.close();
  }
});

Deno.test("llama-cpp: a corrupt or truncated GGUF is refused clearly and the router stays closed", async () => {
  const dir = await Deno.makeTempDir();
  const good = tinyLlamaGguf();
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "truncated.gguf",
      good.slice(0, Math.floor(good.length / 2)),
      /cannot load .*truncated\.gguf: tensor '.*' data is not within the file bounds, model is corrupted or incomplete/,
    ],
    [
      "corrupt.gguf",
      (() => {
        const bad = good.slice();
        bad.fill(0xff, 24, 64); // the first metadata key's length and text
        return bad;
      })(),
      /cannot read .*corrupt\.gguf as a GGUF model \(/,
    ],
    ["noise.gguf", new Uint8Array(4096).fill(7), /not a GGUF model file \(no GGUF header\)/],
    ["missing.gguf", new Uint8Array(), /cannot open model .*missing\.gguf/],
  ];
  const cloud = openaiUpstream("cloud");
  try {
    for (const [name, bytes, why] of cases) {
      const path = `${dir}/${name}`;
      if (bytes.length) await Deno.writeFile(path, bytes);
      const s = await serveLocal({
        modelPath: path,
        cloud: { type: "openai", base_url: `${cloud.url}/v1`, model: "gpt-x" },
        privacy: { keep_local: ["US_SSN"] },
      });
      try {
        const h = await fetch(`${s.url}/healthz`);
        assert.equal(h.status, 503);
        const hj = await json(h);
        assert.equal(hj.status, "unavailable");
        const tiny = hj.backends.find((b: Json) => b.name === "tiny");
        assert.equal(tiny.state, "failed");
        assert.equal(tiny.available, false);
        assert.match(tiny.detail, why);
        assert.match(s.logs.at(-1)!, /local backend "tiny" is unavailable: /);
        const models = await json(await fetch(`${s.url}/v1/models`));
        assert.equal(models.data.find((m: Json) => m.id === "tiny-chat").available, false);

        const res = await chat(s.url, {
          model: "auto",
          messages: [{ role: "user", content: "My SSN is 536-22-8174." }],
        });
        assert.equal(res.status, 503);
        const e = (await json(res)).error;
        assert.equal(e.code, "local_backend_unavailable");
        assert.match(e.message, why);
        assert.equal(cloud.received.filter((r) => r.path !== "/v1/models").length, 0);
      } finally {
        await s.stop();
      }
    }
  } finally {
    await cloud.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("llama-cpp: a generation longer than timeout_ms is stopped and answered 503 (fail-closed)", async () => {
  const s = await serveLocal({ contextSize: 2048, timeoutMs: 150 });
  try {
    const res = await chat(s.url, { messages: HI, max_tokens: 1900 });
    assert.equal(res.status, 503);
    const e = (await json(res)).error;
    assert.equal(e.code, "local_backend_unavailable");
    assert.match(e.message, /backend "tiny" did not answer within 150 ms/);
    let h: Json;
    const deadline = Date.now() + 5000;
    do {
      h = (await json(await fetch(`${s.url}/healthz`))).backends[0];
    } while (h.active > 0 && Date.now() < deadline);
    assert.equal(h.active, 0);
    assert.ok(h.generated_tokens < 1900, `generated ${h.generated_tokens}`);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: a reload keeps an unchanged model and loads a changed one", async () => {
  const s = await serveLocal();
  try {
    await chat(s.url, { messages: HI, max_tokens: 3 });
    const policy = (contextSize: number) =>
      privacyPolicy.parse({
        backends: {
          tiny: {
            type: "llama-cpp",
            model: "tiny-chat",
            model_path: s.modelPath,
            context_size: contextSize,
            gpu_layers: 0,
            threads: 1,
            parallel: 1,
            max_queue: 16,
          },
        },
        local: "tiny",
      });
    s.router.reload(policy(512));
    let [h] = await s.router.health();
    assert.equal(h.state, "ready");
    assert.equal(h.generated_tokens, 3);
    assert.equal(s.logs.filter((l) => l.includes("loading")).length, 1);

    s.router.reload(policy(1024));
    await s.router.ready();
    [h] = await s.router.health();
    assert.equal(h.state, "ready");
    assert.equal(h.generated_tokens, 0);
    assert.match(h.detail, /context 1024 tokens/);
    assert.equal(s.logs.filter((l) => l.includes("loading")).length, 2);
    assert.equal((await chat(s.url, { messages: HI, max_tokens: 2 })).status, 200);
  } finally {
    await s.stop();
  }
});

Deno.test("llama-cpp: a model that calls a tool answers with tool_calls (whole and streamed)", async () => {
  // A test model whose favourite token is the ChatML wrapper's function-call prefix: it starts
  // a call, and node-llama-cpp's grammar makes the name and arguments follow the tool's schema.
  const modelPath = await writeTinyModel({ favouredToken: "||call: ", name: "caller" });
  const s = await serveLocal({ modelPath, contextSize: 2048 });
  try {
    const tools = [{
      type: "function",
      function: {
        name: "lookup",
        description: "Look up a size",
        parameters: {
          type: "object",
          properties: { size: { enum: ["small", "large"] } },
          required: ["size"],
        },
      },
    }];
    const messages = [{ role: "user", content: "Which size?" }];
    const once = await json(await chat(s.url, { messages, tools, max_tokens: 60 }));
    const choice = once.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.match(call.id, /^call_[0-9a-f]{24}$/);
    assert.equal(call.function.name, "lookup");
    assert.ok(["small", "large"].includes(JSON.parse(call.function.arguments).size));
    assert.ok(once.usage.completion_tokens > 0);

    const chunks =
      (await readSse(await chat(s.url, { messages, tools, max_tokens: 60, stream: true })))
        .slice(0, -1).map((e) => JSON.parse(e.data));
    const deltas = chunks.flatMap((c) => c.choices[0].delta.tool_calls ?? []);
    assert.equal(deltas.length, 1);
    assert.equal(deltas[0].function.name, "lookup");
    assert.deepEqual(JSON.parse(deltas[0].function.arguments), JSON.parse(call.function.arguments));
    assert.equal(chunks.at(-1).choices[0].finish_reason, "tool_calls");

    // tool_choice "none": the tools are left out and the model answers in text.
    const none = await json(
      await chat(s.url, { messages, tools, tool_choice: "none", max_tokens: 3 }),
    );
    assert.equal(none.choices[0].finish_reason, "length");
    assert.match(none.choices[0].message.content, /^\|\|call: /);
  } finally {
    await s.stop();
    await Deno.remove(modelPath.replace(/\/[^/]*$/, ""), { recursive: true });
  }
});

Deno.test("llama-cpp: an Anthropic client (/v1/messages) is served through translation", async () => {
  const s = await serveLocal();
  try {
    const ask = (stream: boolean) =>
      fetch(`${s.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
        body: JSON.stringify({
          model: "auto",
          max_tokens: 10,
          temperature: 0,
          system: "Be brief.",
          messages: [{ role: "user", content: "Say something." }],
          stream,
        }),
      });
    const whole = await json(await ask(false));
    assert.equal(whole.type, "message");
    assert.equal(whole.stop_reason, "max_tokens");
    assert.equal(whole.usage.output_tokens, 10);
    assert.match(whole.content[0].text, /^[\x20-\x7e]+$/);
    const events = await readSse(await ask(true));
    assert.equal(events[0].event, "message_start");
    assert.equal(events.at(-1)!.event, "message_stop");
    const text = events.filter((e) => e.event === "content_block_delta")
      .map((e) => JSON.parse(e.data).delta.text).join("");
    assert.equal(text, whole.content[0].text);
    assert.equal(s.audit.at(-1)!.backend, "tiny");
  } finally {
    await s.stop();
  }
});
