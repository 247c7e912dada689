// Embedded llama.cpp through the privacy router vs node-llama-cpp called directly, on the same
// GGUF in the same run: time to first token (TTFT) and decode tokens per second.
//
//   deno task bench llama [--reps N] [--tokens N] [--threads N] [--size small|medium]
//                         [--gpu-layers auto|N] [--model FILE.gguf]
//
// The router runs as deployed (`clawcage router`, its own process, over loopback HTTP with SSE
// streaming, PII scan included); the direct side runs LlamaChat in this process. Both use the
// same prebuilt llama.cpp binary, greedy sampling and a fresh prompt per repetition, and are
// measured alternately. Without --model the benchmark writes a random-weight llama model
// (tests/helpers/gguf.ts) into .bench/: "medium" is 12 layers x 768 wide (152 MB, F16).
// llama-server (llama.cpp's own server) is not a peer here: it is not packaged for this
// machine's Debian and cannot be fetched without internet.

import { parseArgs } from "node:util";
import process from "node:process";
import { type ChatHistoryItem, LlamaChat } from "node-llama-cpp";
import { selfCommand, selfEnv } from "../../core/self.ts";
import { describeRuntime, loadRuntime, runtimeInfo } from "../../router/backends/llama_runtime.ts";
import { tinyLlamaGguf } from "../../tests/helpers/gguf.ts";
import { machineLine, median } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    reps: { type: "string", default: "5" },
    tokens: { type: "string", default: "64" },
    threads: { type: "string", default: "1" },
    size: { type: "string", default: "medium" },
    "gpu-layers": { type: "string", default: "auto" },
    model: { type: "string" },
  },
});
const REPS = Number(values.reps);
const TOKENS = Number(values.tokens);
const THREADS = Number(values.threads);
const GPU_LAYERS = values["gpu-layers"] === "auto" ? "auto" : Number(values["gpu-layers"]);
const CONTEXT = 1024;

const SIZES: Record<string, Parameters<typeof tinyLlamaGguf>[0]> = {
  small: { layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128 },
  medium: { layers: 12, embd: 768, heads: 12, kvHeads: 4, ff: 2048 },
};

async function modelFile(): Promise<string> {
  if (values.model) return values.model;
  const opts = SIZES[values.size!];
  if (!opts) throw new Error(`--size must be one of ${Object.keys(SIZES).join(", ")}`);
  const path = new URL(`../../.bench/llama-${values.size}.gguf`, import.meta.url).pathname;
  try {
    await Deno.stat(path);
  } catch {
    console.error(`writing a ${values.size} random-weight model to ${path} ...`);
    await Deno.mkdir(path.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeFile(path, tinyLlamaGguf({ ...opts, contextLength: 4096 }));
  }
  return path;
}

interface Sample {
  ttftMs: number;
  tokensPerS: number;
  tokens: number;
}

/** A question of fixed shape, different each time (no prompt cache helps either side). */
function prompt(i: number): string {
  return `Question ${i}: summarise the sandbox policy for agent number ${1000 + i} in a few words.`;
}

/** TTFT: until the first text a client sees; decode: the remaining tokens until the end. */
function sample(start: number, first: number, end: number, tokens: number): Sample {
  return {
    ttftMs: first - start,
    tokensPerS: tokens > 1 && end > first ? (tokens - 1) / ((end - first) / 1000) : NaN,
    tokens,
  };
}

/** CPU time (user + system) of a process, in ms, from /proc (clock ticks of 10 ms). */
function procCpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function startRouter(
  modelPath: string,
): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-bench-" });
  const policy = `${dir}/policy.yaml`;
  await Deno.writeTextFile(
    policy,
    `version: 1
privacy:
  backends:
    local:
      type: llama-cpp
      model: bench
      model_path: ${modelPath}
      context_size: ${CONTEXT}
      gpu_layers: ${GPU_LAYERS}
      threads: ${THREADS}
  local: local
`,
  );
  const argv = selfCommand([
    "router",
    "--policy",
    policy,
    "--listen",
    "127.0.0.1:0",
    "--json",
    "--audit-file",
    `${dir}/audit.jsonl`,
    "--hmac-key-file",
    `${dir}/key`,
  ]);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: selfEnv(),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("clawcage router exited before listening");
    buf += value;
  }
  reader.releaseLock();
  const url = JSON.parse(buf.split("\n")[0]).listening as string;
  for (;;) {
    const h = await fetch(`${url}/healthz`);
    const body = await h.json();
    if (h.status === 200) break;
    if (body.backends[0].state === "failed") throw new Error(body.backends[0].detail);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function viaRouter(url: string, i: number): Promise<Sample> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "bench",
      messages: [{ role: "user", content: prompt(i) }],
      max_tokens: TOKENS,
      temperature: 0,
      stream: true,
    }),
  });
  if (!res.ok) throw new Error(`router: HTTP ${res.status}: ${await res.text()}`);
  let first = NaN, end = NaN;
  let tokens = 0;
  let buf = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body!) {
    const now = performance.now();
    buf += decoder.decode(chunk, { stream: true });
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, at).replace(/^data: /, "");
      buf = buf.slice(at + 2);
      if (event === "[DONE]") continue;
      const j = JSON.parse(event);
      if (j.choices?.[0]?.delta?.content && Number.isNaN(first)) first = now;
      if (j.choices?.[0]?.finish_reason) end = now;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return sample(start, first, end, tokens);
}

async function main() {
  const path = await modelFile();
  const info = await runtimeInfo();
  console.log(machineLine());
  console.log(`llama.cpp: ${describeRuntime(info)}; model ${path}`);
  console.log(
    `settings: ${TOKENS} tokens, greedy, context ${CONTEXT}, threads ${THREADS}, gpu_layers ${GPU_LAYERS}, ${REPS} repetitions each (medians)`,
  );

  const llama = await loadRuntime();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: GPU_LAYERS });
  const context = await model.createContext({ contextSize: CONTEXT, threads: THREADS });
  const chat = new LlamaChat({ contextSequence: context.getSequence() });
  const direct = async (i: number): Promise<Sample> => {
    const history: ChatHistoryItem[] = [{ type: "user", text: prompt(i) }, {
      type: "model",
      response: [],
    }];
    let first = NaN;
    let tokens = 0;
    const start = performance.now();
    await chat.generateResponse(history, {
      maxTokens: TOKENS,
      temperature: 0,
      onToken: (t) => {
        tokens += t.length;
      },
      onTextChunk: (text) => {
        if (text && Number.isNaN(first)) first = performance.now();
      },
    });
    return sample(start, first, performance.now(), tokens);
  };

  const router = await startRouter(path);
  const d: Sample[] = [], r: Sample[] = [];
  // CPU time: the direct side is this process; the router side is the router's process (the
  // client's reading of the stream, in this process, is not counted for either).
  const cpu = { direct: 0, router: 0 };
  try {
    await direct(-1); // warm-up, both sides
    await viaRouter(router.url, -1);
    for (let i = 0; i < REPS; i++) {
      let c = ownCpuMs();
      d.push(await direct(i));
      cpu.direct += ownCpuMs() - c;
      c = procCpuMs(router.pid);
      r.push(await viaRouter(router.url, i));
      cpu.router += procCpuMs(router.pid) - c;
    }
  } finally {
    await router.stop();
    await context.dispose();
    await model.dispose();
  }
  const row = (name: string, xs: Sample[], cpuMs: number) => {
    const ttft = median(xs.map((x) => x.ttftMs));
    const tps = median(xs.map((x) => x.tokensPerS).filter((x) => !Number.isNaN(x)));
    const tokens = xs.reduce((a, x) => a + x.tokens, 0);
    const perToken = cpuMs / tokens;
    console.log(
      `${name.padEnd(40)} TTFT ${ttft.toFixed(1).padStart(7)} ms   decode ${
        tps.toFixed(1).padStart(7)
      } tokens/s   CPU ${perToken.toFixed(2)} ms/token   (${xs[0].tokens} tokens)`,
    );
    return { ttft, tps, perToken };
  };
  console.log("");
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  console.log(`load average during the run: ${load} (on ${navigator.hardwareConcurrency} cores)`);
  const a = row("node-llama-cpp direct (LlamaChat)", d, cpu.direct);
  const b = row("clawcage router, llama-cpp backend (SSE)", r, cpu.router);
  console.log("");
  console.log(
    `router / direct: decode tokens/s ${(b.tps / a.tps * 100).toFixed(1)}% (goal >= 95%), TTFT ${
      (b.ttft - a.ttft).toFixed(1)
    } ms more (goal < 5 ms), CPU per token ${(b.perToken / a.perToken).toFixed(2)}x`,
  );
}

await main();
