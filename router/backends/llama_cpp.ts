// Backend type llama-cpp: a GGUF model loaded in this process through node-llama-cpp (llama.cpp's
// prebuilt CUDA, Vulkan or CPU binaries from npm; never built or downloaded at run time). It
// answers the OpenAI API shapes (/chat/completions, /completions, /embeddings) itself, so the
// router treats its answers exactly like those of a remote OpenAI-compatible server.
//
// Requests wait in a bounded queue for one of `parallel` context sequences; a client that goes
// away (or a timeout) aborts its generation or its place in the queue. The runtime (device,
// logs, GGUF checks) is in llama_runtime.ts, the reading of OpenAI requests in llama_request.ts.

import type {
  ChatModelFunctions,
  LlamaChat,
  LlamaChatResponseFunctionCall,
  LlamaCompletion,
  LlamaContext,
  LlamaContextSequence,
  LlamaEmbeddingContext,
  LlamaGrammar,
  LlamaModel,
  Token,
} from "node-llama-cpp";
import type { PrivacyBackend } from "../../core/policy/privacy.ts";
import {
  badRequest,
  chatHistory,
  completionPrompt,
  contextError,
  finishReason,
  type Sampling,
  sampling,
  usage,
} from "./llama_request.ts";
import { checkGguf, loadRuntime, nlc, setRuntimeLog, takeLoadError } from "./llama_runtime.ts";
import type { OpenAIPath } from "./openai.ts";
import { type Backend, UpstreamCall, UpstreamError } from "./upstream.ts";

/** Default context when the policy sets none: the model's own, capped here. */
const DEFAULT_MAX_CONTEXT = 8192;
const DEFAULT_MAX_QUEUE = 16;

export interface EngineInfo {
  device: string;
  /** One line: model, device, layers on the GPU, context, load time. */
  summary: string;
  gpuLayers: number;
  totalLayers: number;
  contextSize: number;
  trainContextSize: number;
  chatWrapper: string;
  parallel: number;
}

type Slot = {
  sequence: LlamaContextSequence;
  chat: LlamaChat;
  completion: LlamaCompletion;
};

export type EngineState = "loading" | "ready" | "failed" | "closed";

/** A model loaded from a GGUF file, with its context sequences and request queue. */
export class LlamaCppEngine {
  state: EngineState = "loading";
  /** Why loading failed (state "failed"). */
  error: string | null = null;
  info: EngineInfo | null = null;
  readonly ready: Promise<void>;
  readonly #config: PrivacyBackend;
  #model: LlamaModel | null = null;
  #context: LlamaContext | null = null;
  #free: Slot[] = [];
  #waiting: { resolve: (s: Slot) => void; reject: (e: unknown) => void }[] = [];
  #embedding: Promise<LlamaEmbeddingContext> | null = null;
  #embeddingBusy: Promise<unknown> = Promise.resolve();
  #active = 0;
  #closing = false;

  constructor(
    readonly name: string,
    config: PrivacyBackend,
    /** The GGUF file (model_path resolved through the model store). */
    readonly modelPath: string,
    log: (line: string) => void = (line) => console.error(line),
  ) {
    this.#config = config;
    setRuntimeLog(log);
    log(
      `clawcage router: local backend ${JSON.stringify(name)}: loading ${modelPath}`,
    );
    this.ready = this.#load().then(
      (info) => {
        this.info = info;
        if (this.#closing) return;
        this.state = "ready";
        log(`clawcage router: local backend ${JSON.stringify(name)}: ${info.summary}`);
      },
      (e) => {
        this.state = "failed";
        this.error = (e as Error)?.message ?? String(e);
        if (this.#closing) return; // removed by a reload while loading: nothing to report
        log(
          `clawcage router: local backend ${JSON.stringify(name)} is unavailable: ${this.error}`,
        );
      },
    );
  }

  get config(): PrivacyBackend {
    return this.#config;
  }

  /** Requests generating or waiting now, and tokens generated since the model loaded. */
  get load(): { active: number; queued: number; generated_tokens: number } {
    return { active: this.#active, queued: this.#waiting.length, generated_tokens: this.#tokens };
  }

  #tokens = 0;

  async #load(): Promise<EngineInfo> {
    const started = performance.now();
    await checkGguf(this.modelPath);
    const llama = await loadRuntime();
    const c = this.#config;
    let model: LlamaModel;
    takeLoadError();
    try {
      model = await llama.loadModel({
        modelPath: this.modelPath,
        gpuLayers: c.gpu_layers ?? "auto",
      });
    } catch (e) {
      const why = takeLoadError();
      throw new Error(
        why
          ? `llama.cpp cannot load ${this.modelPath}: ${why}`
          : `cannot read ${this.modelPath} as a GGUF model (${firstLine(e)})`,
      );
    }
    this.#model = model;
    if (this.#closing) throw new Error("closed while loading");
    const parallel = c.parallel ?? 1;
    const train = model.trainContextSize;
    const contextSize = c.context_size ?? Math.min(train, DEFAULT_MAX_CONTEXT);
    try {
      this.#context = await model.createContext({
        contextSize, // per sequence (node-llama-cpp allocates it for each)
        sequences: parallel,
        threads: c.threads,
      });
    } catch (e) {
      throw new Error(
        `cannot create a ${contextSize}-token context for ${parallel} sequence(s): ${firstLine(e)}`,
      );
    }
    const { LlamaChat, LlamaCompletion } = await nlc();
    for (let i = 0; i < parallel; i++) {
      const sequence = this.#context.getSequence();
      this.#free.push({
        sequence,
        chat: new LlamaChat({ contextSequence: sequence }),
        completion: new LlamaCompletion({ contextSequence: sequence }),
      });
    }
    const totalLayers = Number(
      // deno-lint-ignore no-explicit-any
      (model.fileInfo.architectureMetadata as any)?.block_count ?? 0,
    ) + 1;
    const device = llama.gpu === false || model.gpuLayers === 0 ? "cpu" : llama.gpu;
    let where: string;
    if (device === "cpu") {
      where = llama.gpu === false
        ? "on CPU (no usable GPU found)"
        : `on CPU (gpu_layers 0; ${llama.gpu.toUpperCase()} is available)`;
    } else {
      const names = await llama.getGpuDeviceNames();
      where = `on ${device.toUpperCase()} (${
        names.join(", ") || "GPU"
      }), ${model.gpuLayers}/${totalLayers} layers on the GPU`;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const wrapper = this.#free[0].chat.chatWrapper.wrapperName;
    return {
      device,
      gpuLayers: model.gpuLayers,
      totalLayers,
      contextSize,
      trainContextSize: train,
      chatWrapper: wrapper,
      parallel,
      summary: `${
        basename(this.modelPath)
      } ready ${where}, context ${contextSize} tokens x ${parallel}, chat template ${wrapper}, loaded in ${seconds} s`,
    };
  }

  /** Answers one OpenAI-shaped request; throws UpstreamError for every failure. */
  async handle(path: OpenAIPath, body: Record<string, unknown>, call: UpstreamCall) {
    const signal = call.signal;
    await this.#whenReady(signal, call);
    this.#active++;
    try {
      if (path === "/embeddings") return await this.#embeddings(body, signal, call);
      const job = path === "/chat/completions" ? this.#chatJob(body) : this.#completionJob(body);
      const grammar = await this.#grammar(body);
      const slot = await this.#acquire(signal, call);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.#release(slot);
      };
      try {
        const promptTokens = job.promptTokens(slot);
        const ctx = this.info!.contextSize;
        if (promptTokens + 1 > ctx) {
          throw contextError(
            `the prompt is ${promptTokens} tokens and the context of local model ${
              JSON.stringify(this.#config.model)
            } is ${ctx} tokens`,
          );
        }
        const room = ctx - promptTokens;
        if (job.maxTokens !== null && job.maxTokens > room) {
          throw contextError(
            `the prompt (${promptTokens} tokens) plus max_tokens (${job.maxTokens}) exceeds the context of local model ${
              JSON.stringify(this.#config.model)
            } (${ctx} tokens)`,
          );
        }
        const stop = new AbortController();
        const run: Run = {
          slot,
          grammar,
          maxTokens: job.maxTokens ?? room,
          promptTokens,
          signal: AbortSignal.any([signal, stop.signal]),
          stop,
          model: String(body.model),
        };
        if (body.stream === true) {
          // The stream releases the slot (and counts as active) until it ends.
          released = true;
          this.#active++;
          const stream = job.stream(run, () => {
            this.#release(slot);
            this.#active--;
            this.#maybeDispose();
          });
          return new Response(stream, {
            headers: { "content-type": "text/event-stream; charset=utf-8" },
          });
        }
        return Response.json(await job.once(run));
      } finally {
        release();
      }
    } catch (e) {
      throw e instanceof UpstreamError ? e : generationError(call, e);
    } finally {
      this.#active--;
      this.#maybeDispose();
    }
  }

  async #whenReady(signal: AbortSignal, call: UpstreamCall): Promise<void> {
    if (this.state === "loading") {
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
      try {
        await Promise.race([this.ready, aborted]);
      } catch (e) {
        throw call.failure(e);
      }
    }
    if (this.state === "failed" || this.state === "closed") {
      throw new UpstreamError(
        `local model ${JSON.stringify(this.name)} is not available (${
          this.state === "closed" ? "the backend was removed" : this.error
        })`,
        "unreachable",
        502,
        "local_model_unavailable",
      );
    }
  }

  #acquire(signal: AbortSignal, call: UpstreamCall): Promise<Slot> {
    const slot = this.#free.pop();
    if (slot) return Promise.resolve(slot);
    const max = this.#config.max_queue ?? DEFAULT_MAX_QUEUE;
    if (this.#waiting.length >= max) {
      return Promise.reject(
        new UpstreamError(
          `local model ${JSON.stringify(this.name)} is busy: ${
            this.#config.parallel ?? 1
          } request(s) generating and ${this.#waiting.length} waiting (max_queue ${max}); retry later`,
          "status",
          429,
          "local_model_busy",
        ),
      );
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter = {
        resolve: (s: Slot) => {
          signal.removeEventListener("abort", onAbort);
          resolve(s);
        },
        reject,
      };
      const onAbort = () => {
        this.#waiting = this.#waiting.filter((w) => w !== waiter);
        reject(call.failure(signal.reason));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #release(slot: Slot): void {
    const next = this.#waiting.shift();
    if (next) next.resolve(slot);
    else this.#free.push(slot);
  }

  /**
   * Counts a run's generated tokens: as they come (for the health counter), and exactly at the
   * end from the sequence's meter (onToken does not see tool-call tokens).
   */
  #count(run: Run): { onToken: (t: Token[]) => void; done: () => number } {
    const meter = run.slot.sequence.tokenMeter;
    const start = meter.usedOutputTokens;
    let live = 0;
    return {
      onToken: (t) => {
        live += t.length;
        this.#tokens += t.length;
      },
      done: () => {
        const n = meter.usedOutputTokens - start;
        this.#tokens += n - live;
        live = n;
        return n;
      },
    };
  }

  #chatJob(body: Record<string, unknown>): Job {
    const { history, functions } = chatHistory(body);
    const opts = sampling(body);
    return {
      maxTokens: opts.maxTokens,
      promptTokens: (slot) => {
        const state = slot.chat.chatWrapper.generateContextState({
          chatHistory: history,
          availableFunctions: functions,
          documentFunctionParams: functions ? true : undefined,
        });
        return state.contextText.tokenize(this.#model!.tokenizer).length;
      },
      once: async (run) => {
        const count = this.#count(run);
        const r = await run.slot.chat.generateResponse(history, {
          ...genOptions(opts, run),
          onToken: count.onToken,
          ...(functions ? { functions, documentFunctionParams: true, grammar: undefined } : {}),
        } as ChatOptions);
        const toolCalls = (r.functionCalls ?? []).map((fc, i) => ({
          id: `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`,
          type: "function",
          function: { name: fc.functionName, arguments: JSON.stringify(fc.params ?? {}) },
          index: i,
        }));
        return {
          id: `chatcmpl-${crypto.randomUUID()}`,
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: run.model,
          choices: [{
            index: 0,
            message: {
              role: "assistant",
              content: toolCalls.length && r.response === "" ? null : r.response,
              ...(toolCalls.length ? { tool_calls: toolCalls.map(({ index: _, ...t }) => t) } : {}),
            },
            finish_reason: toolCalls.length ? "tool_calls" : finishReason(r.metadata.stopReason),
          }],
          usage: usage(run.promptTokens, count.done()),
        };
      },
      stream: (run, end) => {
        const id = `chatcmpl-${crypto.randomUUID()}`;
        const created = Math.floor(Date.now() / 1000);
        const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
          id,
          object: "chat.completion.chunk",
          created,
          model: run.model,
          choices: [{ index: 0, ...choice }],
          ...extra,
        });
        return sseStream(run, end, async (emit) => {
          emit(chunk({ delta: { role: "assistant", content: "" }, finish_reason: null }));
          const count = this.#count(run);
          let calls = 0;
          const r = await run.slot.chat.generateResponse(history, {
            ...genOptions(opts, run),
            onToken: count.onToken,
            onTextChunk: (text: string) => {
              if (text) emit(chunk({ delta: { content: text }, finish_reason: null }));
            },
            ...(functions
              ? {
                functions,
                documentFunctionParams: true,
                grammar: undefined,
                onFunctionCall: (fc: LlamaChatResponseFunctionCall<ChatModelFunctions>) => {
                  emit(chunk({
                    delta: {
                      tool_calls: [{
                        index: calls++,
                        id: `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`,
                        type: "function",
                        function: {
                          name: fc.functionName,
                          arguments: JSON.stringify(fc.params ?? {}),
                        },
                      }],
                    },
                    finish_reason: null,
                  }));
                },
              }
              : {}),
          } as ChatOptions);
          emit(chunk(
            {
              delta: {},
              finish_reason: calls > 0 ? "tool_calls" : finishReason(r.metadata.stopReason),
            },
            { usage: usage(run.promptTokens, count.done()) },
          ));
        });
      },
    };
  }

  #completionJob(body: Record<string, unknown>): Job {
    const prompt = completionPrompt(body);
    const opts = sampling(body);
    return {
      maxTokens: opts.maxTokens,
      promptTokens: () => this.#model!.tokenize(prompt, false).length + 1,
      once: async (run) => {
        const count = this.#count(run);
        const r = await run.slot.completion.generateCompletionWithMeta(prompt, {
          ...genOptions(opts, run),
          onToken: count.onToken,
        });
        return {
          id: `cmpl-${crypto.randomUUID()}`,
          object: "text_completion",
          created: Math.floor(Date.now() / 1000),
          model: run.model,
          choices: [{
            index: 0,
            text: r.response,
            logprobs: null,
            finish_reason: finishReason(r.metadata.stopReason),
          }],
          usage: usage(run.promptTokens, count.done()),
        };
      },
      stream: (run, end) => {
        const id = `cmpl-${crypto.randomUUID()}`;
        const created = Math.floor(Date.now() / 1000);
        const chunk = (text: string, finish: string | null, extra = {}) => ({
          id,
          object: "text_completion",
          created,
          model: run.model,
          choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
          ...extra,
        });
        return sseStream(run, end, async (emit) => {
          const count = this.#count(run);
          const r = await run.slot.completion.generateCompletionWithMeta(prompt, {
            ...genOptions(opts, run),
            onToken: count.onToken,
            onTextChunk: (text) => {
              if (text) emit(chunk(text, null));
            },
          });
          emit(chunk("", finishReason(r.metadata.stopReason), {
            usage: usage(run.promptTokens, count.done()),
          }));
        });
      },
    };
  }

  async #grammar(body: Record<string, unknown>): Promise<LlamaGrammar | undefined> {
    // deno-lint-ignore no-explicit-any
    const rf = body.response_format as any;
    if (rf === undefined || rf === null || rf.type === "text") return undefined;
    if (Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== "none") {
      throw badRequest("response_format together with tools is not supported by type llama-cpp");
    }
    const llama = await loadRuntime();
    if (rf.type === "json_object") return await llama.getGrammarFor("json");
    if (rf.type === "json_schema") {
      const schema = rf.json_schema?.schema;
      if (schema === null || typeof schema !== "object") {
        throw badRequest("response_format.json_schema.schema must be a JSON schema object");
      }
      try {
        return await llama.createGrammarForJsonSchema(schema);
      } catch (e) {
        throw badRequest(
          `response_format.json_schema: this schema cannot be turned into a grammar (${
            firstLine(e)
          })`,
        );
      }
    }
    throw badRequest(`response_format.type ${JSON.stringify(rf.type)} is not supported`);
  }

  async #embeddings(body: Record<string, unknown>, signal: AbortSignal, call: UpstreamCall) {
    const input = body.input;
    const texts = typeof input === "string"
      ? [input]
      : Array.isArray(input) && input.every((x) => typeof x === "string")
      ? input as string[]
      : null;
    if (texts === null || texts.length === 0) {
      throw badRequest("input must be a string or a non-empty array of strings for type llama-cpp");
    }
    this.#embedding ??= this.#model!.createEmbeddingContext({
      contextSize: this.info!.contextSize,
      threads: this.#config.threads,
    }).catch((e) => {
      this.#embedding = null;
      throw new UpstreamError(
        `local model ${JSON.stringify(this.name)} cannot make embeddings (${firstLine(e)})`,
        "status",
        400,
        "embeddings_unavailable",
      );
    });
    const ctx = await this.#embedding;
    const turn = this.#embeddingBusy.then(async () => {
      const data = [];
      let tokens = 0;
      for (const [index, text] of texts.entries()) {
        if (signal.aborted) throw call.failure(signal.reason);
        const n = this.#model!.tokenize(text).length;
        if (n > this.info!.contextSize) {
          throw contextError(
            `input ${index} is ${n} tokens and the context of local model ${
              JSON.stringify(this.#config.model)
            } is ${this.info!.contextSize} tokens`,
          );
        }
        tokens += n;
        const e = await ctx.getEmbeddingFor(text);
        data.push({ object: "embedding", index, embedding: [...e.vector] });
      }
      return { object: "list", data, model: body.model, usage: usage(tokens, 0) };
    });
    this.#embeddingBusy = turn.catch(() => {});
    return Response.json(await turn);
  }

  /** Stops taking requests; frees the model once requests in flight are done. */
  close(): Promise<void> {
    this.#closing = true;
    if (this.state !== "failed") this.state = "closed";
    for (const w of this.#waiting.splice(0)) {
      w.reject(
        new UpstreamError(
          `local model ${JSON.stringify(this.name)} was removed`,
          "unreachable",
          502,
          "local_model_unavailable",
        ),
      );
    }
    return this.ready.then(() => this.#maybeDispose());
  }

  #disposed: Promise<void> | null = null;
  #maybeDispose(): Promise<void> {
    if (!this.#closing || this.#active > 0) return Promise.resolve();
    this.#disposed ??= (async () => {
      const emb = this.#embedding;
      this.#embedding = null;
      if (emb) await (await emb.catch(() => null))?.dispose();
      await this.#context?.dispose();
      await this.#model?.dispose();
    })();
    return this.#disposed;
  }
}

type ChatOptions = Parameters<LlamaChat["generateResponse"]>[1];

interface Run {
  slot: Slot;
  grammar: LlamaGrammar | undefined;
  maxTokens: number;
  promptTokens: number;
  signal: AbortSignal;
  /** Aborts the run (a streamed response's client went away). */
  stop: AbortController;
  model: string;
}

interface Job {
  /** max_tokens the client asked for (null: up to the end of the context). */
  maxTokens: number | null;
  promptTokens(slot: Slot): number;
  once(run: Run): Promise<unknown>;
  stream(run: Run, end: () => void): ReadableStream<Uint8Array>;
}

function genOptions(s: Sampling, run: Run) {
  return {
    maxTokens: run.maxTokens,
    temperature: s.temperature,
    topP: s.topP,
    seed: s.seed,
    customStopTriggers: s.stop.length ? s.stop : undefined,
    grammar: run.grammar,
    signal: run.signal,
  };
}

/**
 * Runs `generate` and streams what it emits as SSE; cancelling the stream aborts the run. Events
 * wait in a buffer until the reader asks for more, so that a reader slower than the model gets
 * several tokens per chunk (less work per token) while a fast reader gets each at once.
 */
function sseStream(
  run: Run,
  end: () => void,
  generate: (emit: (data: unknown) => void) => Promise<void>,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let pending = "";
  let finished = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const send = (text: string) => {
    pending += `data: ${text}\n\n`;
    wake?.();
  };
  return new ReadableStream<Uint8Array>({
    start() {
      generate((data) => send(JSON.stringify(data))).then(
        () => send("[DONE]"),
        (e) => (failure = e ?? new Error("generation failed")),
      ).finally(() => {
        finished = true;
        wake?.();
        end();
      });
    },
    async pull(controller) {
      while (pending === "" && !finished) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
      if (pending !== "") {
        controller.enqueue(encoder.encode(pending));
        pending = "";
      } else if (failure !== null) {
        controller.error(failure);
      } else {
        controller.close();
      }
    },
    cancel() {
      run.stop.abort(new DOMException("the client went away", "AbortError"));
    },
  }, { highWaterMark: 0 });
}

function generationError(call: UpstreamCall, e: unknown): UpstreamError {
  if (call.signal.aborted) return call.failure(e);
  return new UpstreamError(
    `local model ${JSON.stringify(call.backend.name)} failed: ${firstLine(e)}`,
    "status",
    500,
    "local_model_error",
  );
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0];
}

function basename(path: string): string {
  return path.replace(/^.*\//, "");
}

/** POST to a llama-cpp backend, with the same contract as openaiPost. */
export function llamaCppPost(
  backend: Backend,
  path: OpenAIPath,
  body: Record<string, unknown>,
): { call: UpstreamCall; response: Promise<Response> } {
  const call = new UpstreamCall(backend);
  // Bounds the wait for the model, the queue and (not streamed) the whole generation; a stream
  // re-arms it for each chunk.
  call.arm();
  const response = backend.engine!.handle(path, body, call);
  response.then(() => call.disarm(), () => call.disarm());
  return { call, response };
}

/**
 * The engines of a router, one per llama-cpp backend. A policy reload keeps an engine whose
 * settings did not change and closes the others once their requests are done.
 */
export class EnginePool {
  #engines = new Map<string, LlamaCppEngine>();

  constructor(
    readonly log: (line: string) => void = (line) => console.error(line),
    readonly resolvePath: (modelPath: string) => string = (p) => p,
  ) {}

  /** Engines for `backends` (name to settings); starts loading new ones. */
  sync(backends: [string, PrivacyBackend][]): Map<string, LlamaCppEngine> {
    const next = new Map<string, LlamaCppEngine>();
    for (const [name, config] of backends) {
      if (config.type !== "llama-cpp") continue;
      const key = JSON.stringify([name, config]);
      const engine = this.#engines.get(key) ??
        new LlamaCppEngine(name, config, this.resolvePath(config.model_path!), this.log);
      next.set(key, engine);
    }
    for (const [key, engine] of this.#engines) {
      if (!next.has(key)) engine.close().catch(() => {});
    }
    this.#engines = next;
    return new Map([...next.values()].map((e) => [e.name, e]));
  }

  async close(): Promise<void> {
    const all = [...this.#engines.values()];
    this.#engines.clear();
    await Promise.all(all.map((e) => e.close()));
  }
}
