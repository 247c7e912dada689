// The llama.cpp runtime of this process, through node-llama-cpp: which prebuilt binary (CUDA,
// Vulkan or CPU) it uses, its log lines, and a first look at GGUF files before llama.cpp reads
// them. node-llama-cpp is imported on first use: it takes about half a second, which a router
// without llama-cpp backends (and `clawcage run`) should not pay.

import process from "node:process";
import type { Llama } from "node-llama-cpp";

let nlcPromise: Promise<typeof import("node-llama-cpp")> | null = null;

/** The signals npm's signal-exit listens to on Linux. */
const SIGNAL_EXIT_SIGNALS = [
  "SIGABRT",
  "SIGALRM",
  "SIGHUP",
  "SIGINT",
  "SIGTERM",
  "SIGVTALRM",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGUSR2",
  "SIGTRAP",
  "SIGSYS",
  "SIGQUIT",
  "SIGIOT",
  "SIGIO",
  "SIGPOLL",
  "SIGPWR",
  "SIGSTKFLT",
] as const;

/**
 * The node-llama-cpp module (imported once, on first use). Its dependencies load npm's
 * signal-exit, which answers the first SIGTERM, SIGINT, SIGHUP, ... by sending the same signal to
 * the process again: a process that has stopped listening by then is killed by it (`clawcage
 * router` exited 143 instead of 0 on SIGTERM). clawcage handles its signals itself, so the
 * listeners that the import adds are removed again.
 */
export function nlc(): Promise<typeof import("node-llama-cpp")> {
  nlcPromise ??= (async () => {
    const before = new Map(SIGNAL_EXIT_SIGNALS.map((s) => [s, new Set(listeners(s))]));
    const mod = await import("node-llama-cpp");
    for (const s of SIGNAL_EXIT_SIGNALS) {
      for (const l of listeners(s)) {
        if (before.get(s)!.has(l)) continue;
        try {
          process.removeListener(s as NodeJS.Signals, l as () => void);
        } catch { /* a signal this platform does not have */ }
      }
    }
    return mod;
  })();
  return nlcPromise;
}

function listeners(signal: string): unknown[] {
  try {
    return process.listeners(signal as NodeJS.Signals);
  } catch {
    return [];
  }
}

let llamaPromise: Promise<Llama> | null = null;

/** Where log lines of the llama.cpp runtime go (warnings and errors only). */
let logSink: (line: string) => void = (line) => console.error(line);
/** The last error llama.cpp logged (its reason for refusing a model is only logged). */
let lastLoadError: string | null = null;

export function setRuntimeLog(log: (line: string) => void): void {
  logSink = log;
}

/** The reason llama.cpp logged for refusing the last model, once (null when none). */
export function takeLoadError(): string | null {
  const e = lastLoadError;
  lastLoadError = null;
  return e;
}

/**
 * The llama.cpp runtime of this process (one, shared by every llama-cpp backend): the best
 * prebuilt binary that works here (CUDA, then Vulkan, then CPU). Never builds from source and
 * never downloads anything.
 */
export function loadRuntime(): Promise<Llama> {
  llamaPromise ??= nlc().then(({ getLlama, LlamaLogLevel }) =>
    getLlama({
      gpu: "auto",
      build: "never",
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        const text = message.trim();
        if (!text) return;
        if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) {
          if (/error loading model: /.test(text)) {
            lastLoadError = text.replace(/^.*error loading model: /, "");
          }
          logSink(`clawcage llama.cpp: error: ${text}`);
        } else if (level === LlamaLogLevel.warn) {
          logSink(`clawcage llama.cpp: ${text}`);
        }
      },
    })
  ).catch((e) => {
    llamaPromise = null;
    throw e;
  });
  return llamaPromise;
}

export interface RuntimeInfo {
  /** "cuda", "vulkan", "metal" or "cpu". */
  device: string;
  /** GPU names (empty on CPU). */
  gpus: string[];
  /** GPU memory in bytes (0 on CPU). */
  vramBytes: number;
  cpuMathCores: number;
}

/** Which device the runtime uses (loads the runtime). */
export async function runtimeInfo(): Promise<RuntimeInfo> {
  const llama = await loadRuntime();
  const device = llama.gpu === false ? "cpu" : llama.gpu;
  const gpus = device === "cpu" ? [] : await llama.getGpuDeviceNames();
  const vramBytes = device === "cpu" ? 0 : (await llama.getVramState()).total;
  return { device, gpus, vramBytes, cpuMathCores: llama.cpuMathCores };
}

export function describeRuntime(info: RuntimeInfo): string {
  if (info.device === "cpu") {
    return `CPU (no usable GPU found; ${info.cpuMathCores} cores for math)`;
  }
  const gib = (info.vramBytes / 2 ** 30).toFixed(1);
  return `${info.device.toUpperCase()} (${info.gpus.join(", ") || "unnamed GPU"}, ${gib} GiB)`;
}

/** Checks that a file looks like a complete GGUF before llama.cpp reads it. */
export async function checkGguf(path: string): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new Error(`cannot open model ${path}: ${(e as Error).message}`);
  }
  try {
    const head = new Uint8Array(24);
    const n = await file.read(head) ?? 0;
    const size = (await file.stat()).size;
    if (n < 24 || new TextDecoder().decode(head.subarray(0, 4)) !== "GGUF") {
      throw new Error(`${path} is not a GGUF model file (no GGUF header)`);
    }
    const version = new DataView(head.buffer).getUint32(4, true);
    if (version < 2 || version > 3) {
      throw new Error(`${path}: GGUF version ${version} is not supported (2 or 3)`);
    }
    if (size < 1024) throw new Error(`${path} is truncated (${size} bytes)`);
  } finally {
    file.close();
  }
}
