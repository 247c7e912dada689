// `clawcage router` (the real CLI process) with a llama-cpp backend that names a model in the
// store: the start lines say where the model runs, it answers, /healthz is ready, SIGTERM stops it
// cleanly; a store name that does not exist is one line and exit 2.

import assert from "node:assert/strict";
import { selfCommand, selfEnv } from "../../core/self.ts";
import { ModelStore } from "../../core/models/store.ts";
import { tinyLlamaGguf } from "../helpers/gguf.ts";

function policyFor(modelPath: string): string {
  return `version: 1
privacy:
  backends:
    tiny:
      type: llama-cpp
      model: tiny-chat
      model_path: ${modelPath}
      context_size: 256
      gpu_layers: 0
      threads: 1
  local: tiny
`;
}

Deno.test("clawcage router loads a stored GGUF, says where it runs, answers, stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new ModelStore(`${dir}/models`);
    await store.ensureDir();
    const bytes = tinyLlamaGguf();
    await Deno.writeFile(store.partPath("tiny"), bytes);
    await store.commit("tiny", {
      sha256: "x",
      size: bytes.length,
      source: "test",
      verified: false,
    });
    await Deno.writeTextFile(`${dir}/policy.yaml`, policyFor("tiny"));
    const [cmd, ...args] = selfCommand([
      "router",
      "--policy",
      `${dir}/policy.yaml`,
      "--listen",
      "127.0.0.1:0",
      "--json",
      "--audit-file",
      `${dir}/audit.jsonl`,
      "--hmac-key-file",
      `${dir}/key`,
    ]);
    const child = new Deno.Command(cmd, {
      args,
      env: { ...selfEnv(), CLAWCAGE_MODELS_DIR: `${dir}/models` },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    while (!buf.includes("\n")) {
      const { value, done } = await out.read();
      if (done) break;
      buf += value;
    }
    const url = JSON.parse(buf.split("\n")[0]).listening;
    let health;
    const deadline = Date.now() + 20_000;
    do {
      health = await fetch(`${url}/healthz`);
      if (health.status !== 200) {
        await health.body?.cancel();
        await new Promise((r) => setTimeout(r, 100));
      }
    } while (health.status !== 200 && Date.now() < deadline);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).backends[0].state, "ready");
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "tiny-chat",
        messages: [{ role: "user", content: "hello" }],
        max_tokens: 5,
      }),
    });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).usage.completion_tokens, 5);
    child.kill("SIGTERM");
    await out.cancel();
    const stderr = new TextDecoder().decode(
      await new Response(child.stderr).arrayBuffer(),
    );
    const status = await child.status;
    assert.equal(status.code, 0, stderr);
    assert.match(stderr, new RegExp(`local backend "tiny": loading ${dir}/models/tiny\\.gguf`));
    assert.match(stderr, /local backend "tiny": tiny\.gguf ready on CPU .*context 256 tokens/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clawcage router: a model_path that names no stored model is one line, exit 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/policy.yaml`, policyFor("nemotron-missing"));
    const [cmd, ...args] = selfCommand([
      "router",
      "--policy",
      `${dir}/policy.yaml`,
      "--hmac-key-file",
      `${dir}/key`,
    ]);
    const out = await new Deno.Command(cmd, {
      args,
      env: { ...selfEnv(), CLAWCAGE_MODELS_DIR: `${dir}/models` },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2);
    assert.equal(
      stderr.trim(),
      `clawcage: ${dir}/policy.yaml: model "nemotron-missing" is not in the model store ${dir}/models (see clawcage models list)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
