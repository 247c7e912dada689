// The policy's `privacy` section: which model backends exist, which one is local and which is
// cloud, which entity types force the local backend and which are pseudonymised before a cloud call.

import { z } from "zod";
import { envVarName, httpUrl } from "./fields.ts";
import { ENTITY_TYPES } from "../../router/pii/types.ts";

const entityType = z.enum(ENTITY_TYPES, {
  message: `unknown entity type; expected one of ${ENTITY_TYPES.join(", ")}`,
});

/** An http(s) URL without credentials, query or fragment. */
const baseUrl = httpUrl("base_url", "api_key_env", { noQuery: true });

const envName = envVarName("api_key_env must be the name of an environment variable");

export const privacyBackend = z.strictObject({
  type: z.enum(["openai", "anthropic", "llama-cpp"]),
  /** openai: up to and including /v1 (https://api.openai.com/v1); anthropic: the host root. */
  base_url: baseUrl.optional(),
  /** Name of the environment variable that holds the API key (read by the router only). */
  api_key_env: envName.optional(),
  /** The model the router asks this backend for, whatever model name the client sent. */
  model: z.string().min(1).optional(),
  /** The model used for /v1/embeddings on this backend (none: embeddings are refused). */
  embedding_model: z.string().min(1).optional(),
  /** type llama-cpp: the GGUF file (absolute path) or the name of a model in the model store. */
  model_path: z.string().min(1).optional(),
  /** type llama-cpp: tokens of context per request (default: the model's, at most 8192). */
  context_size: z.number().int().min(64).max(1_048_576).optional(),
  /** type llama-cpp: layers offloaded to the GPU ("auto": as many as fit; 0: CPU only). */
  gpu_layers: z.union([z.literal("auto"), z.literal("max"), z.number().int().min(0)]).optional(),
  /** type llama-cpp: CPU threads (default: llama.cpp's choice). */
  threads: z.number().int().min(1).max(1024).optional(),
  /** type llama-cpp: requests generated at the same time (context sequences). */
  parallel: z.number().int().min(1).max(64).optional(),
  /** type llama-cpp: requests that may wait for a free sequence; more are refused with 429. */
  max_queue: z.number().int().min(0).max(100_000).optional(),
  /** Time allowed for the response headers and between two streamed chunks. */
  timeout_ms: z.number().int().min(100).max(3_600_000).default(120_000),
}).superRefine((b, ctx) => {
  const llamaOnly = [
    "model_path",
    "context_size",
    "gpu_layers",
    "threads",
    "parallel",
    "max_queue",
  ] as const;
  if (b.type === "llama-cpp") {
    if (b.model_path === undefined) {
      ctx.addIssue({ code: "custom", message: "a llama-cpp backend needs model_path" });
    }
    if (b.model === undefined) {
      ctx.addIssue({
        code: "custom",
        message: "a llama-cpp backend needs model (the name clients use for it)",
      });
    }
    for (const key of ["base_url", "api_key_env"] as const) {
      if (b[key] !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `${key} is not used by type llama-cpp (the model runs in this process)`,
        });
      }
    }
    return;
  }
  if (b.base_url === undefined) {
    ctx.addIssue({ code: "custom", message: `a ${b.type} backend needs base_url` });
  }
  if (b.model === undefined) {
    ctx.addIssue({ code: "custom", message: `a ${b.type} backend needs model` });
  }
  for (const key of llamaOnly) {
    if (b[key] !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: `${key} is only for type llama-cpp`,
      });
    }
  }
});

const backendName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, {
  message: "backend names are letters, digits, '.', '_' and '-'",
});

export const privacyPolicy = z.strictObject({
  backends: z.record(backendName, privacyBackend),
  /** Name of the backend that runs on this machine (gets keep_local requests). */
  local: z.string().optional(),
  /** Name of the backend that leaves the machine (gets the rest, pseudonymised). */
  cloud: z.string().optional(),
  /** Any of these entity types in a request forces the local backend. */
  keep_local: z.array(entityType).default([]),
  /** These entity types are replaced by placeholders before any cloud call. */
  pseudonymise: z.array(entityType).default([]),
  /** Findings scored below this are ignored. */
  min_score: z.number().min(0).max(1).default(0.5),
  /** If a request must stay local and the local backend fails, answer 503 (never use the cloud). */
  fail_closed: z.boolean().default(true),
  /** Request bodies larger than this are refused with 413. */
  max_body_bytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(8 * 1024 * 1024),
}).superRefine((p, ctx) => {
  for (const role of ["local", "cloud"] as const) {
    const name = p[role];
    if (name !== undefined && !Object.hasOwn(p.backends, name)) {
      ctx.addIssue({
        code: "custom",
        path: [role],
        message: `${role} names backend ${JSON.stringify(name)}, which is not in backends (${
          Object.keys(p.backends).join(", ") || "none"
        })`,
      });
    }
  }
  if (p.local === undefined && p.cloud === undefined) {
    ctx.addIssue({ code: "custom", message: "privacy needs a local or a cloud backend (or both)" });
  }
  if (p.local !== undefined && p.local === p.cloud) {
    ctx.addIssue({
      code: "custom",
      path: ["cloud"],
      message: "local and cloud must be different backends",
    });
  }
  if (p.local === undefined && p.keep_local.length > 0) {
    ctx.addIssue({
      code: "custom",
      path: ["keep_local"],
      message: "keep_local needs a local backend",
    });
  }
});

export type PrivacyPolicy = z.infer<typeof privacyPolicy>;
export type PrivacyBackend = z.infer<typeof privacyBackend>;
