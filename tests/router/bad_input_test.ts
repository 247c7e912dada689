// Bad input and failing upstreams: clear error objects with the right status, in the client's
// dialect, and no unhandled rejection (Deno's test runner fails a test that leaves one).

import assert from "node:assert/strict";
import { closedPort, readSse, type Served, serveRouter, until, Upstream } from "./helpers.ts";
import { openaiUpstream } from "./upstreams.ts";

function privacy(url: string, extra: Record<string, unknown> = {}, timeout_ms = 2000) {
  return {
    backends: {
      nemotron: { type: "openai", base_url: `${url}/v1`, model: "nemotron-local", timeout_ms },
      claude: {
        type: "anthropic",
        base_url: url,
        model: "claude-x",
        api_key_env: "TEST_CLOUD_KEY",
        timeout_ms,
      },
    },
    local: "nemotron",
    cloud: "claude",
    pseudonymise: ["PERSON"],
    ...extra,
  };
}

async function withRouter(
  fn: (r: Served, up: Upstream) => Promise<void>,
  upstream: Upstream = openaiUpstream("LOCAL"),
  extra: Record<string, unknown> = {},
  timeout_ms = 2000,
) {
  const router = serveRouter(privacy(upstream.url, extra, timeout_ms));
  try {
    await fn(router, upstream);
  } finally {
    await router.close();
    await upstream.close();
  }
}

async function expectError(
  res: Response,
  status: number,
  code: string | null,
  message: RegExp,
  style: "openai" | "anthropic" = "openai",
) {
  assert.equal(res.status, status);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = await res.json();
  if (style === "openai") {
    assert.equal(typeof body.error.type, "string");
    if (code) assert.equal(body.error.code, code);
    assert.match(body.error.message, message);
  } else {
    assert.equal(body.type, "error");
    assert.equal(typeof body.error.type, "string");
    assert.match(body.error.message, message);
  }
}

const send = (r: Served, path: string, body: BodyInit, headers: Record<string, string> = {}) =>
  fetch(`${r.url}${path}`, { method: "POST", body, headers });

Deno.test("invalid JSON, wrong types, missing fields, empty body: 400", () =>
  withRouter(async (r, up) => {
    await expectError(
      await send(r, "/v1/chat/completions", "{not json"),
      400,
      "invalid_json",
      /not valid JSON/,
    );
    await expectError(
      await send(r, "/v1/chat/completions", JSON.stringify({ model: 7, messages: [] })),
      400,
      "invalid_request",
      /model/,
    );
    await expectError(
      await send(r, "/v1/chat/completions", JSON.stringify({ model: "auto" })),
      400,
      "invalid_request",
      /missing required field messages/,
    );
    await expectError(
      await send(
        r,
        "/v1/chat/completions",
        JSON.stringify({ model: "auto", messages: [{ role: "user", content: 5 }] }),
      ),
      400,
      "invalid_request",
      /messages\.0\.content/,
    );
    await expectError(
      await send(r, "/v1/chat/completions", "[1,2]"),
      400,
      "invalid_request",
      /JSON object/,
    );
    await expectError(await send(r, "/v1/embeddings", ""), 400, "invalid_request", /empty/);
    await expectError(
      await send(r, "/v1/messages", JSON.stringify({ model: "auto", messages: [] })),
      400,
      null,
      /max_tokens|messages/,
      "anthropic",
    );
    assert.equal(up.received.length, 0);
    assert.ok(r.audit.every((e) => e.status === 400 && e.backend === null));
  }));

Deno.test("a 50 MB body is refused with 413 (declared or streamed)", () =>
  withRouter(async (r, up) => {
    const big = new Uint8Array(50 * 1024 * 1024).fill(0x20);
    await expectError(
      await send(r, "/v1/chat/completions", big),
      413,
      "request_too_large",
      /larger than 8388608 bytes/,
    );
    // Without a Content-Length (chunked), the limit is counted while reading.
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 50) return c.close();
        sent++;
        c.enqueue(new Uint8Array(1024 * 1024).fill(0x20));
      },
    });
    await expectError(
      await fetch(`${r.url}/v1/messages`, { method: "POST", body: stream }),
      413,
      null,
      /larger than/,
      "anthropic",
    );
    assert.ok(sent < 50, `read ${sent} MiB before refusing`);
    assert.equal(up.received.length, 0);
  }));

Deno.test("deeply nested content, non-UTF-8, unknown model: refused", () =>
  withRouter(async (r, up) => {
    const deep =
      `{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"x","extra":${
        "[".repeat(100_000)
      }${"]".repeat(100_000)}}]}]}`;
    await expectError(
      await send(r, "/v1/chat/completions", deep),
      400,
      "invalid_request",
      /nested/,
    );
    const bytes = new Uint8Array([
      ...new TextEncoder().encode('{"model":"auto","prompt":"'),
      0xff,
      0xfe,
      ...new TextEncoder().encode('"}'),
    ]);
    await expectError(await send(r, "/v1/completions", bytes), 400, "invalid_encoding", /UTF-8/);
    await expectError(
      await send(
        r,
        "/v1/chat/completions",
        JSON.stringify({ model: "gpt-17", messages: [{ role: "user", content: "hi" }] }),
      ),
      404,
      "model_not_found",
      /unknown model "gpt-17".*auto/,
    );
    await expectError(
      await send(r, "/v1/nothing", "{}"),
      404,
      "not_found",
      /no route/,
    );
    assert.equal(up.received.length, 0);
  }));

Deno.test("upstream errors and timeouts: 502 and 504 with the backend named", async () => {
  const failing = new Upstream(async (rec) => {
    if (rec.body.includes("slow")) await new Promise((r) => setTimeout(r, 1500));
    return new Response("upstream exploded", { status: 500 });
  });
  const router = serveRouter({
    backends: {
      cloudy: { type: "openai", base_url: `${failing.url}/v1`, model: "m", timeout_ms: 300 },
    },
    cloud: "cloudy",
  });
  try {
    const chat = (content: string) =>
      JSON.stringify({ model: "auto", messages: [{ role: "user", content }] });
    await expectError(
      await send(router, "/v1/chat/completions", chat("hi")),
      502,
      "upstream_error",
      /backend "cloudy" answered HTTP 500: upstream exploded/,
    );
    await expectError(
      await send(router, "/v1/chat/completions", chat("slow")),
      504,
      "upstream_timeout",
      /did not answer within 300 ms/,
    );
    assert.deepEqual(router.audit.map((e) => e.outcome), ["upstream_error", "upstream_timeout"]);
  } finally {
    await router.close();
    await failing.close();
  }
});

Deno.test("local and cloud both unreachable: 503 for local-only, 502 for cloud", async () => {
  const port = closedPort();
  const router = serveRouter({
    backends: {
      a: { type: "openai", base_url: `http://127.0.0.1:${port}/v1`, model: "a" },
      b: { type: "openai", base_url: `http://127.0.0.1:${port}/v1`, model: "b" },
    },
    local: "a",
    cloud: "b",
  });
  try {
    const body = (model: string) =>
      JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] });
    await expectError(
      await send(router, "/v1/chat/completions", body("a")),
      503,
      "local_backend_unavailable",
      /client asked for the local model/,
    );
    await expectError(
      await send(router, "/v1/chat/completions", body("auto")),
      502,
      "upstream_unreachable",
      /backend "b" is unreachable/,
    );
  } finally {
    await router.close();
  }
});

Deno.test("a stream that stalls ends with an error event; a stream the client drops stops the upstream", async () => {
  let cancelled = 0;
  const slow = new Upstream((rec) => {
    let n = 0;
    const stall = rec.body.includes("stall");
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (stall && n === 2) return await new Promise(() => {}); // never again
        await new Promise((r) => setTimeout(r, 20));
        const chunk = { choices: [{ index: 0, delta: { content: `part${n++} ` } }] };
        c.enqueue(new TextEncoder().encode(`data: ${JSON.stringify(chunk)}\n\n`));
      },
      cancel() {
        cancelled++;
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const router = serveRouter({
    backends: { up: { type: "openai", base_url: `${slow.url}/v1`, model: "m", timeout_ms: 300 } },
    cloud: "up",
  });
  try {
    const body = (content: string) =>
      JSON.stringify({ model: "auto", stream: true, messages: [{ role: "user", content }] });
    const stalled = await send(router, "/v1/chat/completions", body("stall please"));
    const events = await readSse(stalled);
    const last = JSON.parse(events.at(-1)!.data);
    assert.equal(last.error.code, "upstream_timeout");
    assert.equal(events.length, 3);
    await until(() => router.audit.length === 1);
    assert.equal(router.audit[0].outcome, "upstream_timeout");

    const dropped = await send(router, "/v1/chat/completions", body("go on"));
    const reader = dropped.body!.getReader();
    await reader.read();
    await reader.cancel();
    await until(() => router.audit.length === 2 && cancelled >= 1);
    assert.equal(router.audit[1].outcome, "client_disconnected");
  } finally {
    await router.close();
    await slow.close();
  }
});

Deno.test("an anthropic backend cannot serve /v1/completions or untranslatable chat fields", () =>
  withRouter(async (r) => {
    await expectError(
      await send(r, "/v1/completions", JSON.stringify({ model: "auto", prompt: "hello" })),
      501,
      "protocol_mismatch",
      /backend "claude" speaks the anthropic API, which has no \/v1\/completions endpoint/,
    );
    await expectError(
      await send(
        r,
        "/v1/chat/completions",
        JSON.stringify({ model: "auto", n: 2, messages: [{ role: "user", content: "hello" }] }),
      ),
      400,
      "untranslatable_request",
      /n > 1 cannot be served by an anthropic backend/,
    );
  }));
