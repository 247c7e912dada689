// `clawcage models`: the model store, run as the real CLI. Downloads come from a loopback HTTP
// server that can break a transfer off half way and that honours (or ignores) Range.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cli } from "../helpers/cli.ts";
import { tinyLlamaGguf } from "../helpers/gguf.ts";
import { modelPathResolver, ModelStore } from "../../core/models/store.ts";
import { privacyPolicy } from "../../core/policy/privacy.ts";
import { createRouter, RouterConfigError } from "../../router/app.ts";
import { DETECTOR } from "../router/helpers.ts";

const MODEL = tinyLlamaGguf({ seed: 3 });
const SHA = createHash("sha256").update(MODEL).digest("hex");

async function withStore(
  fn: (store: string, env: Record<string, string>, tmp: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-models-" });
  try {
    await fn(`${dir}/store`, { CLAWCAGE_MODELS_DIR: `${dir}/store`, NO_COLOR: "1" }, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("models add PATH --sha256, list --json, add again refused, remove", async () => {
  await withStore(async (store, env, tmp) => {
    const src = `${tmp}/tiny-chat.gguf`;
    await Deno.writeFile(src, MODEL);
    const add = await cli(["models", "add", src, "--sha256", SHA], { env });
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, new RegExp(`added tiny-chat \\(.*sha256 ${SHA}, verified\\)`));
    assert.deepEqual(await Deno.readFile(`${store}/tiny-chat.gguf`), MODEL);

    const list = await cli(["models", "list", "--json"], { env });
    assert.equal(list.code, 0);
    const j = JSON.parse(list.stdout);
    assert.equal(j.dir, store);
    assert.equal(j.models.length, 1);
    assert.equal(j.models[0].name, "tiny-chat");
    assert.equal(j.models[0].sha256, SHA);
    assert.equal(j.models[0].size, MODEL.length);
    assert.equal(j.models[0].verified, true);
    assert.equal(j.models[0].path, `${store}/tiny-chat.gguf`);

    const again = await cli(["models", "add", src], { env });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^clawcage: models add: "tiny-chat" is already in the store/);

    const rm = await cli(["models", "remove", "tiny-chat", "--json"], { env });
    assert.equal(rm.code, 0);
    assert.equal(JSON.parse(rm.stdout).removed, "tiny-chat");
    assert.deepEqual(
      JSON.parse((await cli(["models", "list", "--json"], { env })).stdout).models,
      [],
    );
    const gone = await cli(["models", "remove", "tiny-chat"], { env });
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /is not in the model store/);
  });
});

Deno.test("models add: a wrong --sha256 or a file that is not GGUF is refused and discarded", async () => {
  await withStore(async (store, env, tmp) => {
    const src = `${tmp}/m.gguf`;
    await Deno.writeFile(src, MODEL);
    const bad = await cli(["models", "add", src, "--sha256", "0".repeat(64)], { env });
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      new RegExp(`SHA-256 mismatch for .*: expected 0{64}, got ${SHA}; the file was discarded`),
    );
    assert.deepEqual([...Deno.readDirSync(store)], []);

    const text = `${tmp}/notes.gguf`;
    await Deno.writeTextFile(text, "not a model at all");
    const notGguf = await cli(["models", "add", text], { env });
    assert.equal(notGguf.code, 1);
    assert.match(notGguf.stderr, /not a GGUF model/);
    assert.deepEqual([...Deno.readDirSync(store)], []);

    const usage = await cli(["models", "add", src, "--sha256", "xyz"], { env });
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--sha256 needs 64 hexadecimal digits/);
    const badName = await cli(["models", "add", src, "--name", "../x"], { env });
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /invalid model name/);
  });
});

/** A loopback file server: the first `cutFirst` GETs stop after half the body. */
function fileServer(opts: { cutFirst: number; ranges: boolean }) {
  const seen: (string | null)[] = [];
  let cuts = opts.cutFirst;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const range = req.headers.get("range");
    seen.push(range);
    let start = 0;
    let status = 200;
    const headers = new Headers({ "content-type": "application/octet-stream" });
    const m = /^bytes=(\d+)-$/.exec(range ?? "");
    if (m && opts.ranges) {
      start = Number(m[1]);
      status = 206;
      headers.set("content-range", `bytes ${start}-${MODEL.length - 1}/${MODEL.length}`);
    }
    const body = MODEL.subarray(start);
    headers.set("content-length", String(body.length));
    const cut = cuts-- > 0;
    const stream = new ReadableStream<Uint8Array>({
      async start(c) {
        const half = Math.floor(body.length / 2);
        c.enqueue(body.slice(0, half));
        if (cut) {
          await new Promise((r) => setTimeout(r, 50));
          c.error(new Error("cut"));
          return;
        }
        c.enqueue(body.slice(half));
        c.close();
      },
    });
    return new Response(stream, { status, headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/models/tiny-dl.gguf`,
    seen,
    close: () => server.shutdown(),
  };
}

Deno.test("models add URL: progress, a broken download resumes with Range, checksum verified", async () => {
  await withStore(async (store, env) => {
    const srv = fileServer({ cutFirst: 1, ranges: true });
    try {
      const first = await cli(["models", "add", srv.url, "--sha256", SHA], { env });
      assert.equal(first.code, 1);
      assert.match(first.stderr, /broke off at .*run the same command again to resume/);
      const part = await Deno.stat(`${store}/tiny-dl.gguf.part`);
      assert.ok(part.size > 0 && part.size < MODEL.length, `part ${part.size}`);

      const second = await cli(["models", "add", srv.url, "--sha256", SHA, "--json"], { env });
      assert.equal(second.code, 0, second.stderr);
      assert.deepEqual(srv.seen, [null, `bytes=${part.size}-`]);
      assert.match(second.stderr, /resuming at /);
      assert.match(second.stderr, /tiny-dl: 100% /);
      const m = JSON.parse(second.stdout);
      assert.equal(m.sha256, SHA);
      assert.equal(m.verified, true);
      assert.equal(m.source, srv.url);
      assert.deepEqual(await Deno.readFile(`${store}/tiny-dl.gguf`), MODEL);
      await assert.rejects(Deno.stat(`${store}/tiny-dl.gguf.part`));
    } finally {
      await srv.close();
    }
  });
});

Deno.test("models add URL: a server without Range support restarts the download", async () => {
  await withStore(async (store, env) => {
    const srv = fileServer({ cutFirst: 1, ranges: false });
    try {
      assert.equal((await cli(["models", "add", srv.url], { env })).code, 1);
      const second = await cli(["models", "add", srv.url], { env });
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stderr, /does not resume downloads; starting again/);
      assert.match(second.stdout, /not verified: no --sha256 given/);
      assert.deepEqual(await Deno.readFile(`${store}/tiny-dl.gguf`), MODEL);
    } finally {
      await srv.close();
    }
  });
});

Deno.test("a llama-cpp backend names a stored model in model_path", async () => {
  await withStore(async (dir) => {
    const store = new ModelStore(dir);
    await store.ensureDir();
    await Deno.writeFile(store.partPath("tiny"), MODEL);
    await store.commit("tiny", { sha256: SHA, size: MODEL.length, source: "test", verified: true });
    const make = (modelPath: string) =>
      createRouter({
        policy: privacyPolicy.parse({
          backends: {
            tiny: {
              type: "llama-cpp",
              model: "tiny-chat",
              model_path: modelPath,
              gpu_layers: 0,
              threads: 1,
              context_size: 256,
            },
          },
          local: "tiny",
        }),
        detect: DETECTOR.detect,
        hmacKey: new Uint8Array(32),
        audit: () => {},
        log: () => {},
        resolveModelPath: modelPathResolver(store),
      });
    assert.throws(
      () => make("nope"),
      (e) =>
        e instanceof RouterConfigError &&
        /model "nope" is not in the model store .* \(see clawcage models list\)/.test(e.message),
    );
    const router = make("tiny");
    try {
      await router.ready();
      const [h] = await router.health();
      assert.equal(h.state, "ready", h.detail);
      assert.match(h.detail, /^tiny\.gguf ready on CPU/);
    } finally {
      await router.close();
    }
  });
});
