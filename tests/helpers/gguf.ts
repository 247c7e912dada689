// Writes GGUF files (the llama.cpp model format, version 3) for tests: a generic writer, and a
// tiny random-weight llama-architecture chat model with a SentencePiece ("llama") vocabulary and
// a ChatML chat template. No weights are downloaded; the model is made from a seed.
//
// The tiny model is random, but its output is steered: every token embedding has a constant
// first component that the layers leave alone and the final norm makes large, and the output
// rows of control and byte tokens have a negative first component, so that free generation never picks end-of-turn or raw bytes. A
// generation therefore runs for exactly max_tokens tokens of printable text, and greedy
// sampling (temperature 0) gives the same text every time.

/** GGUF metadata value types. */
const T = {
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
} as const;

/** ggml tensor types this writer emits. */
export const GGML_F32 = 0 as const;
export const GGML_F16 = 1 as const;

export type MetaValue =
  | { u32: number }
  | { i32: number }
  | { f32: number }
  | { bool: boolean }
  | { str: string }
  | { strs: string[] }
  | { f32s: number[] }
  | { i32s: number[] };

export interface Tensor {
  name: string;
  /** ggml order: dims[0] is the innermost (contiguous) dimension. */
  dims: number[];
  type: typeof GGML_F32 | typeof GGML_F16;
  data: Float32Array;
}

const ALIGNMENT = 32;

class ByteWriter {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #grow(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.#grow(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.#grow(4);
    this.#view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.#grow(8);
    this.#view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  f32(v: number): void {
    this.#grow(4);
    this.#view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u8(v: number): void {
    this.#grow(1);
    this.#buf[this.length++] = v;
  }
  bytes(b: Uint8Array): void {
    this.#grow(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(): void {
    while (this.length % ALIGNMENT !== 0) this.u8(0);
  }
  result(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

function writeValue(w: ByteWriter, v: MetaValue): void {
  if ("u32" in v) (w.u32(T.UINT32), w.u32(v.u32));
  else if ("i32" in v) (w.u32(T.INT32), w.i32(v.i32));
  else if ("f32" in v) (w.u32(T.FLOAT32), w.f32(v.f32));
  else if ("bool" in v) (w.u32(T.BOOL), w.u8(v.bool ? 1 : 0));
  else if ("str" in v) (w.u32(T.STRING), w.str(v.str));
  else if ("strs" in v) {
    w.u32(T.ARRAY), w.u32(T.STRING), w.u64(v.strs.length);
    for (const s of v.strs) w.str(s);
  } else if ("f32s" in v) {
    w.u32(T.ARRAY), w.u32(T.FLOAT32), w.u64(v.f32s.length);
    for (const x of v.f32s) w.f32(x);
  } else {
    w.u32(T.ARRAY), w.u32(T.INT32), w.u64(v.i32s.length);
    for (const x of v.i32s) w.i32(x);
  }
}

function tensorBytes(t: Tensor): Uint8Array {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) {
    throw new Error(`tensor ${t.name}: ${t.data.length} values for dims ${t.dims.join("x")}`);
  }
  if (t.type === GGML_F32) return new Uint8Array(t.data.slice().buffer);
  const out = new Uint8Array(n * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < n; i++) view.setUint16(i * 2, toHalf(t.data[i]), true);
  return out;
}

/** IEEE 754 binary16 bits of a float (round to nearest even; no denormal inputs expected). */
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function toHalf(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp <= 0) return sign; // too small for a normal half: zero
  if (exp >= 31) return sign | 0x7c00; // too large: infinity
  const rounded = mant + 0xfff + ((mant >>> 13) & 1);
  let e = exp;
  if (rounded & 0x800000) {
    mant = 0;
    e += 1;
    if (e >= 31) return sign | 0x7c00;
  } else {
    mant = rounded;
  }
  return sign | (e << 10) | (mant >>> 13);
}

/** Serialises a GGUF v3 file. */
export function encodeGguf(meta: Record<string, MetaValue>, tensors: Tensor[]): Uint8Array {
  const w = new ByteWriter();
  w.bytes(new TextEncoder().encode("GGUF"));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(Object.keys(meta).length);
  for (const [key, value] of Object.entries(meta)) {
    w.str(key);
    writeValue(w, value);
  }
  const blobs = tensors.map(tensorBytes);
  let offset = 0;
  tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += Math.ceil(blobs[i].length / ALIGNMENT) * ALIGNMENT;
  });
  w.pad();
  for (const b of blobs) {
    w.bytes(b);
    w.pad();
  }
  return w.result();
}

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Words the tiny model may say (besides single printable characters). */
const WORDS = [
  "hello",
  "world",
  "local",
  "model",
  "cage",
  "privacy",
  "router",
  "token",
  "answer",
  "kernel",
  "sandbox",
  "policy",
];

export interface TinyModelOptions {
  seed?: number;
  layers?: number;
  /** Embedding width (a multiple of heads). */
  embd?: number;
  heads?: number;
  kvHeads?: number;
  ff?: number;
  /** The context length the model says it was trained for. */
  contextLength?: number;
  /** Type of the weight matrices (norms are always F32). */
  matrixType?: typeof GGML_F32 | typeof GGML_F16;
  name?: string;
  /** Leave out the chat template. */
  noChatTemplate?: boolean;
  /**
   * A text added to the vocabulary as one token that free generation always picks first (where a
   * grammar allows it): e.g. a chat template's function-call prefix, to make the model call tools.
   */
  favouredToken?: string;
}

interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Tokens free generation must not pick (control and byte tokens). */
  suppressed: Set<number>;
  /** The favoured token, if any. */
  favoured: number | null;
}

function tinyVocab(favouredToken?: string): Vocab {
  const tokens: string[] = [], scores: number[] = [], types: number[] = [];
  const suppressed = new Set<number>();
  const add = (t: string, type: number, score: number, suppress: boolean) => {
    if (suppress) suppressed.add(tokens.length);
    tokens.push(t), types.push(type), scores.push(score);
  };
  add("<unk>", 2, 0, true);
  add("<s>", 3, 0, true);
  add("</s>", 3, 0, true);
  add("<|im_start|>", 3, 0, true);
  add("<|im_end|>", 3, 0, true);
  for (let b = 0; b < 256; b++) {
    add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, 6, 0, true);
  }
  add("\u2581", 1, -1, false); // the SentencePiece space
  for (let c = 33; c < 127; c++) add(String.fromCharCode(c), 1, -2, false);
  for (const word of WORDS) add(`\u2581${word}`, 1, -0.5, false);
  let favoured: number | null = null;
  if (favouredToken !== undefined) {
    favoured = tokens.length;
    add(favouredToken.replaceAll(" ", "\u2581"), 1, -0.5, false);
  }
  return { tokens, scores, types, suppressed, favoured };
}

/** Token ids of the tiny model's special tokens. */
export const TINY_TOKENS = { unk: 0, bos: 1, eos: 2, imStart: 3, imEnd: 4 } as const;

/** Builds the GGUF bytes of a tiny random llama chat model. */
export function tinyLlamaGguf(options: TinyModelOptions = {}): Uint8Array {
  const layers = options.layers ?? 2;
  const embd = options.embd ?? 64;
  const heads = options.heads ?? 4;
  const kvHeads = options.kvHeads ?? 2;
  const ff = options.ff ?? 128;
  const ctx = options.contextLength ?? 2048;
  const mat = options.matrixType ?? GGML_F16;
  const rand = prng(options.seed ?? 42);
  const vocab = tinyVocab(options.favouredToken);
  const nVocab = vocab.tokens.length;
  const headDim = embd / heads;
  const kvDim = headDim * kvHeads;

  const uniform = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);

  // token_embd: [embd, vocab]; component 0 of every token is 1, the rest random.
  const tokEmbd = uniform(embd * nVocab, 1);
  for (let t = 0; t < nVocab; t++) tokEmbd[t * embd] = 1;
  // output: [embd, vocab]; suppressed tokens get a large negative weight on component 0.
  // (Scales shrink with the width so that wider models keep the same behaviour.)
  const output = uniform(embd * nVocab, 1.7 * Math.sqrt(64 / embd));
  for (let t = 0; t < nVocab; t++) {
    output[t * embd] = vocab.suppressed.has(t) ? -20 : t === vocab.favoured ? 20 : 0;
  }

  const tensors: Tensor[] = [
    { name: "token_embd.weight", dims: [embd, nVocab], type: mat, data: tokEmbd },
    { name: "output_norm.weight", dims: [embd], type: GGML_F32, data: ones(embd) },
    { name: "output.weight", dims: [embd, nVocab], type: mat, data: output },
  ];
  // Layers neither read nor write component 0 (their norms zero it, their output rows for it
  // are zero), so it stays 1 in the residual stream and the final norm scales it up.
  const w = 0.5 * (64 / embd);
  const norm = (n: number) => {
    const a = ones(n);
    a[0] = 0;
    return a;
  };
  const writer = (inDim: number, outDim: number) => {
    const a = uniform(inDim * outDim, w);
    a.fill(0, 0, inDim); // output component 0
    return a;
  };
  (tensors[1].data as Float32Array)[0] = 50;
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: p + "attn_norm.weight", dims: [embd], type: GGML_F32, data: norm(embd) },
      { name: p + "attn_q.weight", dims: [embd, embd], type: mat, data: uniform(embd * embd, w) },
      { name: p + "attn_k.weight", dims: [embd, kvDim], type: mat, data: uniform(embd * kvDim, w) },
      { name: p + "attn_v.weight", dims: [embd, kvDim], type: mat, data: uniform(embd * kvDim, w) },
      { name: p + "attn_output.weight", dims: [embd, embd], type: mat, data: writer(embd, embd) },
      { name: p + "ffn_norm.weight", dims: [embd], type: GGML_F32, data: norm(embd) },
      { name: p + "ffn_gate.weight", dims: [embd, ff], type: mat, data: uniform(embd * ff, w) },
      { name: p + "ffn_up.weight", dims: [embd, ff], type: mat, data: uniform(embd * ff, w) },
      { name: p + "ffn_down.weight", dims: [ff, embd], type: mat, data: writer(ff, embd) },
    );
  }

  const meta: Record<string, MetaValue> = {
    "general.architecture": { str: "llama" },
    "general.name": { str: options.name ?? "clawcage-tiny-test" },
    "general.alignment": { u32: ALIGNMENT },
    "general.file_type": { u32: mat === GGML_F16 ? 1 : 0 },
    "llama.context_length": { u32: ctx },
    "llama.embedding_length": { u32: embd },
    "llama.block_count": { u32: layers },
    "llama.feed_forward_length": { u32: ff },
    "llama.attention.head_count": { u32: heads },
    "llama.attention.head_count_kv": { u32: kvHeads },
    "llama.attention.layer_norm_rms_epsilon": { f32: 1e-5 },
    "llama.rope.dimension_count": { u32: headDim },
    "llama.rope.freq_base": { f32: 10000 },
    "llama.vocab_size": { u32: nVocab },
    "tokenizer.ggml.model": { str: "llama" },
    "tokenizer.ggml.tokens": { strs: vocab.tokens },
    "tokenizer.ggml.scores": { f32s: vocab.scores },
    "tokenizer.ggml.token_type": { i32s: vocab.types },
    "tokenizer.ggml.bos_token_id": { u32: TINY_TOKENS.bos },
    "tokenizer.ggml.eos_token_id": { u32: TINY_TOKENS.imEnd },
    "tokenizer.ggml.unknown_token_id": { u32: TINY_TOKENS.unk },
    "tokenizer.ggml.add_bos_token": { bool: true },
    "tokenizer.ggml.add_eos_token": { bool: false },
  };
  if (!options.noChatTemplate) meta["tokenizer.chat_template"] = { str: CHATML_TEMPLATE };
  return encodeGguf(meta, tensors);
}

/** Writes the tiny model to a new temporary file and returns its path. */
export async function writeTinyModel(options: TinyModelOptions = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-gguf-" });
  const path = `${dir}/${options.name ?? "tiny"}.gguf`;
  await Deno.writeFile(path, tinyLlamaGguf(options));
  return path;
}
