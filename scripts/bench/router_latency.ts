// Added latency of the privacy router: the same loopback upstream called directly and through
// `clawcage router` (a separate process, as deployed), for 1 KB and 32 KB prompts, in one run.
//
//   deno run --allow-all --no-prompt scripts/bench/router_latency.ts [--iterations N]
//
// The prompts carry names and email addresses, so the routed requests are scanned,
// pseudonymised, sent to the cloud backend and restored: the full path.

import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { selfCommand, selfEnv } from "../../core/self.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    iterations: { type: "string", default: "300" },
    upstream: { type: "boolean" },
  },
});

/** Upstream mode: a minimal OpenAI-compatible server that answers at once. */
if (values.upstream) {
  const answer = JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1,
    model: "m",
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: "Noted, I will write to <PERSON_1> at <EMAIL_ADDRESS_1>.",
      },
      finish_reason: "stop",
    }],
    usage: { prompt_tokens: 10, completion_tokens: 10 },
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (r) => {
    await r.arrayBuffer();
    return new Response(answer, { headers: { "content-type": "application/json" } });
  });
  console.log(server.addr.port);
  await server.finished;
  Deno.exit(0);
}

const ITER = Number(values.iterations);

const SENTENCES = [
  "Customer Maria Garcia (maria.garcia@example.org) reported that the March invoice was charged twice.",
  "Our agent John Smith replied from john.smith@example.com and asked for the order number.",
  "The ticket was escalated to billing because the refund workflow failed with a timeout error.",
  "Please summarise the thread and propose a reply that apologises and explains the next steps.",
  "The customer prefers email over phone and is available on weekdays after five in the evening.",
];

function prompt(bytes: number): string {
  let out = "";
  for (let i = 0; out.length < bytes; i++) out += SENTENCES[i % SENTENCES.length] + " ";
  return out.slice(0, bytes);
}

function body(text: string): string {
  return JSON.stringify({ model: "auto", messages: [{ role: "user", content: text }] });
}

async function readLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`process exited before printing a line: ${buf}`);
    buf += value;
  }
  reader.releaseLock();
  return buf.split("\n")[0];
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function measure(url: string, payload: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < ITER + 30; i++) {
    const t0 = performance.now();
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: payload,
    });
    await res.arrayBuffer();
    const dt = performance.now() - t0;
    if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
    if (i >= 30) times.push(dt);
  }
  return times.sort((a, b) => a - b);
}

const dir = await Deno.makeTempDir({ prefix: "clawcage-bench-" });
const upstream = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-all", "--no-prompt", new URL(import.meta.url).pathname, "--upstream"],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const upstreamPort = Number(await readLine(upstream.stdout));
await Deno.writeTextFile(
  `${dir}/policy.yaml`,
  `version: 1
privacy:
  backends:
    cloud:
      type: openai
      base_url: http://127.0.0.1:${upstreamPort}/v1
      api_key_env: BENCH_KEY
      model: m
  cloud: cloud
  pseudonymise: [PERSON, EMAIL_ADDRESS]
`,
);
const [cmd, ...args] = selfCommand([
  "router",
  "--policy",
  `${dir}/policy.yaml`,
  "--listen",
  "127.0.0.1:0",
  "--audit-file",
  `${dir}/audit.jsonl`,
  "--hmac-key-file",
  `${dir}/key`,
]);
const router = new Deno.Command(cmd, {
  args,
  env: { ...selfEnv(), BENCH_KEY: "sk-bench" },
  clearEnv: true,
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const routerUrl = /listening on (\S+)/.exec(await readLine(router.stdout))![1];

const rows: string[] = [];
try {
  for (const size of [1024, 32 * 1024]) {
    const payload = body(prompt(size));
    console.error(`measuring ${size / 1024} KB prompts, ${ITER} requests each way...`);
    const direct = await measure(`http://127.0.0.1:${upstreamPort}/v1/chat/completions`, payload);
    const routed = await measure(`${routerUrl}/v1/chat/completions`, payload);
    const d50 = quantile(direct, 0.5), d99 = quantile(direct, 0.99);
    const r50 = quantile(routed, 0.5), r99 = quantile(routed, 0.99);
    rows.push(
      `| ${size / 1024} KB | ${d50.toFixed(2)} | ${r50.toFixed(2)} | **${
        (r50 - d50).toFixed(2)
      }** | ${(r50 / d50).toFixed(1)}x | ${d99.toFixed(2)} | ${r99.toFixed(2)} | **${
        (r99 - d99).toFixed(2)
      }** |`,
    );
  }
  const audit = (await Deno.readTextFile(`${dir}/audit.jsonl`)).trim().split("\n");
  const last = JSON.parse(audit.at(-1)!);
  const cpu = cpus();
  console.log(
    `## Privacy router added latency (non-streamed chat completion, ${ITER} requests per cell)\n`,
  );
  console.log(
    "| prompt | direct p50 ms | routed p50 ms | added p50 ms | ratio p50 | direct p99 ms | routed p99 ms | added p99 ms |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
  console.log(
    `\nEvery routed request was scanned, pseudonymised (last one: ${
      JSON.stringify(last.pseudonymised)
    }), sent to the upstream and restored; ${audit.length} audit lines written.`,
  );
  console.log(
    `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores; Deno ${Deno.version.deno}; ` +
      "client, router and upstream are separate processes on 127.0.0.1.",
  );
} finally {
  router.kill("SIGTERM");
  await router.status;
  upstream.kill("SIGTERM");
  await upstream.status;
  await Deno.remove(dir, { recursive: true });
}
