// `clawcage router`: one line saying where it listens, audit lines, SIGTERM stops it cleanly.

import assert from "node:assert/strict";
import { selfCommand, selfEnv } from "../../core/self.ts";
import { openaiUpstream } from "./upstreams.ts";

async function firstLine(
  stream: ReadableStream<Uint8Array>,
): Promise<[string, ReadableStreamDefaultReader<string>]> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
  }
  return [buf.split("\n")[0], reader];
}

Deno.test("clawcage router serves on loopback, audits to a file, stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  const up = openaiUpstream("UP");
  try {
    const policy = `${dir}/policy.yaml`;
    await Deno.writeTextFile(
      policy,
      `version: 1
privacy:
  backends:
    up:
      type: openai
      base_url: ${up.url}/v1
      api_key_env: ROUTER_TEST_KEY
      model: m1
  cloud: up
  pseudonymise: [EMAIL_ADDRESS]
`,
    );
    const [cmd, ...args] = selfCommand([
      "router",
      "--policy",
      policy,
      "--listen",
      "127.0.0.1:0",
      "--audit-file",
      `${dir}/audit.jsonl`,
      "--hmac-key-file",
      `${dir}/state/key`,
    ]);
    const child = new Deno.Command(cmd, {
      args,
      env: { ...selfEnv(), ROUTER_TEST_KEY: "sk-cli-test-key-123456" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const [line, rest] = await firstLine(child.stdout);
    const m =
      /^clawcage router listening on (http:\/\/127\.0\.0\.1:\d+) \(local: none, cloud: up\)$/
        .exec(line);
    assert.ok(m, line);
    const res = await fetch(`${m[1]}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "auto",
        messages: [{ role: "user", content: "Write to ann.lee@example.com please." }],
      }),
    });
    const answer = (await res.json()).choices[0].message.content;
    assert.match(answer, /ann\.lee@example\.com/);
    assert.ok(!up.received[0].body.includes("ann.lee@example.com"));

    child.kill("SIGTERM");
    const status = await child.status;
    await rest.cancel();
    const stderr = await new Response(child.stderr).text();
    assert.equal(status.code, 0, stderr);
    const audit = (await Deno.readTextFile(`${dir}/audit.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.equal(audit.length, 1);
    assert.equal(audit[0].backend, "up");
    assert.equal(audit[0].entities.EMAIL_ADDRESS, 1);
    assert.ok(!JSON.stringify(audit).includes("ann.lee"));
    const key = await Deno.stat(`${dir}/state/key`);
    assert.equal(key.mode! & 0o777, 0o600);
    assert.equal(key.size, 32);
  } finally {
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clawcage router refuses a missing key, a policy without privacy, a public address", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/none.yaml`, "version: 1\n");
    await Deno.writeTextFile(
      `${dir}/key.yaml`,
      `version: 1
privacy:
  backends:
    c: { type: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: ROUTER_UNSET_KEY, model: m }
  cloud: c
`,
    );
    const cases: [string[], RegExp][] = [
      [["--policy", `${dir}/none.yaml`], /has no privacy section/],
      [
        ["--policy", `${dir}/key.yaml`, "--listen", "127.0.0.1:0", "--hmac-key-file", `${dir}/k`],
        /ROUTER_UNSET_KEY \(api_key_env\) is not set/,
      ],
      [["--policy", `${dir}/key.yaml`, "--listen", "0.0.0.0:8080"], /only listens on loopback/],
      [[], /--policy FILE is required/],
    ];
    for (const [extra, message] of cases) {
      const [cmd, ...args] = selfCommand(["router", ...extra]);
      const out = await new Deno.Command(cmd, {
        args,
        env: selfEnv(),
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.notEqual(out.code, 0);
      assert.match(stderr, message);
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
