// One supervised child of `clawcage service` (an agent's `clawcage run`, or the router):
// started with a parent-death signal, restarted with exponential backoff, stopped with
// SIGTERM then SIGKILL. Its output goes to the service's own, each line prefixed with its name.

import { systemProgram } from "../self.ts";

export type RestartMode = "always" | "on-failure" | "never";

export interface ChildSpec {
  name: string;
  argv: string[];
  env: Record<string, string>;
  restart: RestartMode;
}

export interface Backoff {
  initial_delay_ms: number;
  max_delay_ms: number;
  healthy_after_ms: number;
  stop_timeout_ms: number;
}

export type ChildState = "running" | "backoff" | "stopping" | "stopped" | "exited";

export interface ExitInfo {
  code: number;
  signal: string | null;
  at: string;
  /** How long that run lasted. */
  ran_ms: number;
}

export interface ChildStatus {
  name: string;
  state: ChildState;
  pid: number | null;
  restarts: number;
  uptime_s: number | null;
  last_exit: ExitInfo | null;
  /** In backoff: the delay being waited and when the next start is due. */
  backoff_ms: number | null;
  next_start: string | null;
}

/** The delay before the next start, given the previous delay and how long the child ran. */
export function nextDelay(previous: number | null, ranMs: number, b: Backoff): number {
  if (previous === null || ranMs >= b.healthy_after_ms) return b.initial_delay_ms;
  return Math.min(previous * 2, b.max_delay_ms);
}

export function shouldRestart(mode: RestartMode, code: number, signal: string | null): boolean {
  if (mode === "always") return true;
  if (mode === "never") return false;
  return code !== 0 || signal !== null;
}

export type LogFn = (line: string) => void;

export class Child {
  #process: Deno.ChildProcess | null = null;
  #state: ChildState = "stopped";
  #restarts = 0;
  #startedAt = 0;
  #lastExit: ExitInfo | null = null;
  #delay: number | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #nextStart = 0;
  #exited: Promise<void> = Promise.resolve();

  constructor(readonly spec: ChildSpec, private backoff: Backoff, private log: LogFn) {}

  setBackoff(backoff: Backoff): void {
    this.backoff = backoff;
  }

  get pid(): number | null {
    return this.#process?.pid ?? null;
  }

  /** Starts the child now (first start, or a restart after a config change). */
  start(): void {
    if (this.#state === "running" || this.#state === "stopping") return;
    clearTimeout(this.#timer);
    this.#spawn();
  }

  #spawn(): void {
    // PR_SET_PDEATHSIG: if the service dies without stopping its children (SIGKILL, crash),
    // the kernel kills each child, and `clawcage run` has the same arrangement with its stage.
    // The service checks at start that setpriv exists; a child is never started without it.
    const setpriv = systemProgram("setpriv");
    const argv = [setpriv ?? "setpriv", "--pdeathsig", "KILL", "--", ...this.spec.argv];
    let proc: Deno.ChildProcess;
    try {
      if (!setpriv) throw new Error("setpriv(1) from util-linux not found");
      proc = new Deno.Command(argv[0], {
        args: argv.slice(1),
        clearEnv: true,
        env: this.spec.env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      this.log(`${this.spec.name}: cannot start: ${(e as Error).message}`);
      this.#onExit({ code: 127, signal: null }, Date.now());
      return;
    }
    this.#process = proc;
    this.#state = "running";
    this.#startedAt = Date.now();
    const startedAt = this.#startedAt;
    this.log(`${this.spec.name}: started (pid ${proc.pid})`);
    const copies = [
      prefixLines(proc.stdout, `[${this.spec.name}] `, Deno.stdout),
      prefixLines(proc.stderr, `[${this.spec.name}] `, Deno.stderr),
    ];
    this.#exited = proc.status.then(async (status) => {
      // The rest of its output, but a process it left behind holding the pipe (possible
      // without a PID namespace, --rootless) must not keep the exit from being seen.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled(copies),
        new Promise((r) => timer = setTimeout(r, OUTPUT_GRACE_MS)),
      ]);
      clearTimeout(timer);
      this.#process = null;
      this.#onExit(status, startedAt);
    });
  }

  #onExit(status: { code: number; signal: string | null }, startedAt: number): void {
    const now = Date.now();
    const ranMs = now - startedAt;
    this.#lastExit = {
      code: status.code,
      signal: status.signal,
      at: new Date(now).toISOString(),
      ran_ms: ranMs,
    };
    const how = status.signal ? `killed by ${status.signal}` : `exited with ${status.code}`;
    if (this.#state === "stopping") {
      this.#state = "stopped";
      this.log(`${this.spec.name}: stopped (${how})`);
      return;
    }
    if (!shouldRestart(this.spec.restart, status.code, status.signal)) {
      this.#state = "exited";
      this.log(`${this.spec.name}: ${how}; not restarted (restart: ${this.spec.restart})`);
      return;
    }
    this.#delay = nextDelay(this.#delay, ranMs, this.backoff);
    this.#state = "backoff";
    this.#nextStart = now + this.#delay;
    this.log(`${this.spec.name}: ${how} after ${ranMs} ms; restarting in ${this.#delay} ms`);
    this.#timer = setTimeout(() => {
      if (this.#state !== "backoff") return;
      this.#restarts++;
      this.#spawn();
    }, this.#delay);
  }

  /** SIGTERM, then SIGKILL after the stop timeout; resolves when the child is gone. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    const proc = this.#process;
    if (!proc) {
      if (this.#state === "backoff") this.#state = "stopped";
      return;
    }
    this.#state = "stopping";
    try {
      proc.kill("SIGTERM");
    } catch { /* already gone */ }
    const timeout = setTimeout(() => {
      this.log(
        `${this.spec.name}: still running ${this.backoff.stop_timeout_ms} ms after SIGTERM; SIGKILL`,
      );
      try {
        proc.kill("SIGKILL");
      } catch { /* already gone */ }
    }, this.backoff.stop_timeout_ms);
    await this.#exited;
    clearTimeout(timeout);
  }

  /** Sends a signal to the running child (e.g. SIGHUP to the router); false when none runs. */
  signal(sig: Deno.Signal): boolean {
    if (!this.#process || this.#state !== "running") return false;
    try {
      this.#process.kill(sig);
      return true;
    } catch {
      return false;
    }
  }

  status(): ChildStatus {
    const now = Date.now();
    const running = this.#state === "running" || this.#state === "stopping";
    return {
      name: this.spec.name,
      state: this.#state,
      pid: this.pid,
      restarts: this.#restarts,
      uptime_s: running ? Math.floor((now - this.#startedAt) / 1000) : null,
      last_exit: this.#lastExit,
      backoff_ms: this.#state === "backoff" ? this.#delay : null,
      next_start: this.#state === "backoff" ? new Date(this.#nextStart).toISOString() : null,
    };
  }
}

/** How long the output of a child that exited is still copied. */
const OUTPUT_GRACE_MS = 1000;

/** Longer output without a newline is passed on in pieces of about this many characters. */
export const MAX_LINE = 16 * 1024;

/** Copies `stream` to `out` line by line, each line prefixed. */
export async function prefixLines(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  out: { write(p: Uint8Array): Promise<number> },
): Promise<void> {
  const encoder = new TextEncoder();
  const writeAll = async (s: string) => {
    const bytes = encoder.encode(s);
    let off = 0;
    while (off < bytes.length) off += await out.write(bytes.subarray(off));
  };
  let pending = "";
  let broken = false;
  const emit = async (s: string) => {
    if (broken) return;
    try {
      await writeAll(s);
    } catch {
      broken = true; // the service's own output is gone: keep draining, drop the child's
    }
  };
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      // A child that never ends a line cannot make the service buffer without bound.
      if (pending.length > MAX_LINE) {
        lines.push(pending);
        pending = "";
      }
      if (lines.length) await emit(lines.map((l) => prefix + l + "\n").join(""));
    }
    if (pending) await emit(prefix + pending + "\n");
  } catch { /* the pipe broke: the child is gone */ }
}
