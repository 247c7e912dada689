// The test model writer: llama.cpp (through node-llama-cpp, prebuilt CPU binary) loads what it
// writes, reads its metadata and vocabulary, and generates printable text with it.

import assert from "node:assert/strict";
import { getLlama, LlamaChat, LlamaLogLevel } from "node-llama-cpp";
import { GGML_F32, writeTinyModel } from "../helpers/gguf.ts";

Deno.test("tiny GGUF (F16 and F32): loads, has its template and vocabulary, generates", async () => {
  const llama = await getLlama({
    build: "never",
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
    gpu: false,
  });
  try {
    for (const matrixType of [undefined, GGML_F32]) {
      const path = await writeTinyModel({ matrixType, contextLength: 512 });
      const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
      try {
        assert.equal(model.trainContextSize, 512);
        assert.equal(model.fileInfo.metadata.general.architecture, "llama");
        assert.match(String(model.fileInfo.metadata.tokenizer.chat_template), /im_start/);
        const tokens = model.tokenize("hello world");
        assert.equal(model.detokenize(tokens), "hello world");
        const context = await model.createContext({ contextSize: 256, threads: 1 });
        const chat = new LlamaChat({ contextSequence: context.getSequence() });
        assert.equal(chat.chatWrapper.wrapperName, "ChatML");
        const a = await chat.generateResponse([{ type: "user", text: "hi" }], {
          maxTokens: 12,
          temperature: 0,
        });
        assert.equal(a.metadata.stopReason, "maxTokens");
        assert.match(a.response, /^[\x20-\x7e]+$/);
        await chat.dispose();
        await context.dispose();
      } finally {
        await model.dispose();
        await Deno.remove(path.replace(/\/[^/]*$/, ""), { recursive: true });
      }
    }
  } finally {
    await llama.dispose();
  }
});
