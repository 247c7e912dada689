// The supervisor's side of the policy-decision process: starts `clawcage __pdp`, asks it for
// decisions over its socket with a deadline, reloads it through its control pipe, and FAILS
// CLOSED: while the PDP is dead, stopped, slow or restarting, every pending and every new
// decision is a deny that says why. A PDP that dies or misses a deadline is killed and started
// again with exponential backoff, on the last policy it accepted.

import { cloexecFrom } from "../../ffi/libc.ts";
import type { Decision, DecisionRequest } from "../policy/decision.ts";
import { parsePolicy } from "../policy/load.ts";
import type { Policy } from "../policy/schema.ts";
import { selfCommand, selfEnv } from "../self.ts";
import { trace } from "../start_trace.ts";
import {
  type ControlReply,
  type ControlRequest,
  type LockdownReport,
  MAX_CONTROL_LINE,
  MAX_REPLY_LINE,
  readLines,
  readStreamLines,
  writeAllBytes,
} from "./protocol.ts";

export interface PdpClientOptions {
  /** Policy text and the file name used in its error messages. */
  policyText: string;
  policyFile: string;
  /** `policyText` already parsed and validated by the caller (not parsed again). */
  policy?: Policy;
  /** A 0700 directory only the supervisor can reach; the socket is created in it. */
  runtimeDir: string;
  /** How long a decision may take before it is denied and the PDP restarted (default 200). */
  deadlineMs?: number;
  /** First restart delay, doubled after each failure up to maxBackoffMs (default 100, 5000). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** How long the PDP may take to start and load its policy (default 30000). */
  startTimeoutMs?: number;
  /** How long a reload may take before the PDP counts as failed (default 10000). */
  reloadTimeoutMs?: number;
  /** Told about starts, failures and reloads (the supervisor logs them). */
  onEvent?: (event: PdpEvent) => void;
  /** The command that runs the PDP (default: this program's `__pdp` mode). */
  command?: string[];
  /** Aborting stops a start in progress (start() then rejects) and closes the client. */
  signal?: AbortSignal;
}

export type PdpEvent =
  | { kind: "started"; pid: number; lockdown: LockdownReport; restarts: number }
  | { kind: "failed"; pid: number | null; reason: string; restartInMs: number }
  | { kind: "reloaded"; changed: string[] }
  | { kind: "reload-refused"; error: string };

export type ReloadResult = { ok: true; changed: string[] } | { ok: false; error: string };

/** The PDP could not start (bad policy, host cannot lock it down). */
export class PdpStartError extends Error {}

type State = "starting" | "up" | "down" | "closed";

interface Pending {
  resolve: (d: Decision) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A deny that carries the reason the PDP could not decide. */
export function failClosed(reason: string): Decision {
  return { verdict: "deny", reason, inspect: false, tlsSkip: false, allowedIps: [] };
}

const encoder = new TextEncoder();

/**
 * What the PDP is sent: the policy parsed and validated here (errors carry file:line:column),
 * as JSON. The PDP only compiles it (core/pdp/main.ts). Throws an Error with the message.
 */
export function policyWire(text: string, file: string, parsed?: Policy): string {
  const json = JSON.stringify(parsed ?? parsePolicy(text, file));
  // The control line also carries the op and the file name.
  const limit = MAX_CONTROL_LINE - 64 * 1024;
  const size = encoder.encode(json).length;
  if (size > limit) {
    throw new Error(`${file}: the policy is ${size} bytes as JSON; the limit is ${limit}`);
  }
  return json;
}

/** After this long up, the next failure restarts after the first backoff again. */
const HEALTHY_MS = 10_000;

export class PdpClient {
  #opts:
    & Required<Omit<PdpClientOptions, "onEvent" | "command" | "signal" | "policy">>
    & PdpClientOptions;
  #state: State = "starting";
  #downReason = "policy-decision process is starting";
  #proc: Deno.ChildProcess | null = null;
  #pid: number | null = null;
  #conn: Deno.UnixConn | null = null;
  #control: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #replies: AsyncGenerator<string | { tooLong: true }> | null = null;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #outgoing = "";
  #flushing = false;
  #generation = 0;
  #backoff: number;
  #upSince = 0;
  #restarts = 0;
  #everUp = false;
  #closing: Promise<void> | null = null;
  #restartTimer: ReturnType<typeof setTimeout> | null = null;
  #controlBusy: Promise<unknown> = Promise.resolve();
  /** The last accepted policy as the PDP is sent it (see policyWire). */
  #wire: string;

  private constructor(opts: PdpClientOptions, wire: string) {
    this.#wire = wire;
    this.#opts = {
      ...opts,
      deadlineMs: opts.deadlineMs ?? 200,
      backoffMs: opts.backoffMs ?? 100,
      maxBackoffMs: opts.maxBackoffMs ?? 5000,
      startTimeoutMs: opts.startTimeoutMs ?? 30_000,
      reloadTimeoutMs: opts.reloadTimeoutMs ?? 10_000,
    };
    this.#backoff = this.#opts.backoffMs;
  }

  /** Starts the PDP and waits until it is locked down and answering. */
  static async start(opts: PdpClientOptions): Promise<PdpClient> {
    let wire: string;
    try {
      wire = policyWire(opts.policyText, opts.policyFile, opts.policy);
    } catch (e) {
      throw new PdpStartError((e as Error).message);
    }
    const client = new PdpClient(opts, wire);
    if (opts.signal?.aborted) throw new PdpStartError("start aborted");
    const onAbort = () => void client.close();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const error = await client.#launch();
    opts.signal?.removeEventListener("abort", onAbort);
    if (error !== null) {
      await client.close();
      throw new PdpStartError(opts.signal?.aborted ? "start aborted" : error);
    }
    return client;
  }

  get socketPath(): string {
    return `${this.#opts.runtimeDir}/pdp.sock`;
  }

  /** The running PDP's pid, or null while it is down. */
  get pid(): number | null {
    return this.#state === "up" ? this.#pid : null;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** The policy the PDP serves (the last one it accepted). */
  get policyText(): string {
    return this.#opts.policyText;
  }

  /** Asks for a decision. Never rejects: any failure is a deny with the reason. */
  decide(req: DecisionRequest): Promise<Decision> {
    if (this.#state !== "up") return Promise.resolve(failClosed(this.#downReason));
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const generation = this.#generation;
      const timer = setTimeout(() => {
        if (this.#generation !== generation) return;
        this.#fail(`policy-decision process did not answer within ${this.#opts.deadlineMs} ms`);
      }, this.#opts.deadlineMs);
      this.#pending.set(id, { resolve, timer });
      const { binary, ancestors, host, port, method, path, query } = req;
      this.#send(
        JSON.stringify({ id, binary, ancestors, host, port, method, path, query }) + "\n",
      );
    });
  }

  /**
   * Sends new policy text (`parsed`: already parsed and validated by the caller) to the PDP. Only
   * network_policies and privacy may change.
   */
  reload(
    policyText: string,
    policyFile = this.#opts.policyFile,
    parsed?: Policy,
  ): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      if (this.#state !== "up") {
        return { ok: false, error: `cannot reload: ${this.#downReason}` };
      }
      let wire: string;
      try {
        wire = policyWire(policyText, policyFile, parsed);
      } catch (e) {
        const error = (e as Error).message;
        this.#opts.onEvent?.({ kind: "reload-refused", error });
        return { ok: false, error };
      }
      const reply = await this.#ask(
        { op: "reload", policy: wire, file: policyFile },
        this.#opts.reloadTimeoutMs,
      );
      if (reply?.op === "reloaded") {
        this.#wire = wire;
        this.#opts.policyText = policyText;
        this.#opts.policyFile = policyFile;
        this.#opts.onEvent?.({ kind: "reloaded", changed: reply.changed });
        return { ok: true, changed: reply.changed };
      }
      if (reply === null) {
        // A late answer would desynchronise the control pipe: treat the PDP as failed (it is
        // restarted on the policy it had).
        this.#fail("policy-decision process did not answer a reload");
      }
      const error = reply?.op === "error"
        ? reply.error
        : "policy-decision process did not answer the reload; it is restarted on the previous policy";
      this.#opts.onEvent?.({ kind: "reload-refused", error });
      return { ok: false, error };
    };
    const result = this.#controlBusy.then(run, run);
    this.#controlBusy = result;
    return result;
  }

  /** Stops the PDP; later decisions deny. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = "closed";
    this.#generation++;
    this.#downReason = "the sandbox is shutting down";
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    this.#denyPending(this.#downReason);
    await this.#stopProcess();
  }

  // ---- internals ------------------------------------------------------------------------

  /** Starts a PDP process; returns null when it is up, or why it is not. */
  async #launch(): Promise<string | null> {
    const generation = ++this.#generation;
    this.#state = "starting";
    this.#downReason = "policy-decision process is starting";
    const argv = this.#opts.command ?? selfCommand(["__pdp"], ["--no-code-cache"]);
    let proc: Deno.ChildProcess;
    try {
      // Descriptors whoever started clawcage leaked to it (no O_CLOEXEC) must not reach the
      // PDP: a compromised PDP may still read and write every descriptor it holds.
      cloexecFrom(3);
      proc = new Deno.Command(argv[0], {
        args: argv.slice(1),
        clearEnv: true,
        // No JIT in the PDP: its filter can then refuse executable memory (lockdown.ts).
        env: { ...selfEnv(), DENO_V8_FLAGS: "--jitless" },
        cwd: "/",
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      trace("pdp spawned");
    } catch (e) {
      return `cannot start the policy-decision process: ${(e as Error).message}`;
    }
    this.#proc = proc;
    this.#pid = proc.pid;
    this.#control = proc.stdin.getWriter();
    this.#replies = readStreamLines(proc.stdout, MAX_CONTROL_LINE);
    proc.status.then((status) => {
      if (this.#generation !== generation || this.#state === "closed") return;
      // Before the first successful start, start() reports the failure instead.
      if (!this.#everUp) return;
      const how = status.signal !== null
        ? `was killed by ${status.signal}`
        : `exited (code ${status.code})`;
      const during = this.#state === "starting" ? "restart failed: " : "";
      this.#fail(`${during}policy-decision process ${how}`);
    });

    const reply = await this.#ask({
      op: "load",
      policy: this.#wire,
      file: this.#opts.policyFile,
      socket: this.socketPath,
    }, this.#opts.startTimeoutMs);
    if (this.#generation !== generation) return this.#downReason;
    if (reply?.op !== "ready") {
      const why = reply?.op === "error" ? reply.error : `policy-decision process exited or did ` +
        `not become ready within ${this.#opts.startTimeoutMs / 1000} s (see its messages above)`;
      this.#generation++; // its exit is this failure, not another one
      await this.#stopProcess();
      return why;
    }
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path: this.socketPath });
    } catch (e) {
      this.#generation++;
      await this.#stopProcess();
      return `cannot connect to the policy-decision process: ${(e as Error).message}`;
    }
    if (this.#generation !== generation) {
      conn.close();
      return this.#downReason;
    }
    this.#conn = conn;
    this.#everUp = true;
    this.#state = "up";
    trace("pdp answering");
    this.#upSince = Date.now();
    void this.#readDecisions(this.#conn, generation);
    this.#opts.onEvent?.({
      kind: "started",
      pid: reply.pid,
      lockdown: reply.lockdown,
      restarts: this.#restarts,
    });
    return null;
  }

  /** Sends a control message and waits for its reply (null on timeout or a closed pipe). */
  async #ask(msg: ControlRequest, timeoutMs: number): Promise<ControlReply | null> {
    const control = this.#control;
    const replies = this.#replies;
    if (control === null || replies === null) return null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) =>
      timer = setTimeout(() => resolve(null), timeoutMs)
    );
    const answer = (async () => {
      try {
        await writeAllBytes(
          { write: async (p) => (await control.write(p), p.length) },
          encoder.encode(JSON.stringify(msg) + "\n"),
        );
        const next = await replies.next();
        if (next.done || typeof next.value !== "string") return null;
        return JSON.parse(next.value) as ControlReply;
      } catch {
        return null;
      }
    })();
    try {
      return await Promise.race([answer, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #send(line: string): void {
    this.#outgoing += line;
    if (!this.#flushing) void this.#flush();
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    const conn = this.#conn;
    try {
      while (this.#outgoing !== "" && conn !== null && conn === this.#conn) {
        const bytes = encoder.encode(this.#outgoing);
        this.#outgoing = "";
        await writeAllBytes(conn, bytes);
      }
    } catch (e) {
      if (conn === this.#conn) {
        this.#fail(`cannot write to the policy-decision process: ${(e as Error).message}`);
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #readDecisions(conn: Deno.UnixConn, generation: number): Promise<void> {
    try {
      for await (const line of readLines(conn, MAX_REPLY_LINE)) {
        if (typeof line !== "string") continue;
        let reply: { id?: unknown; error?: string } & Partial<Decision>;
        try {
          reply = JSON.parse(line);
        } catch {
          continue;
        }
        const pending = typeof reply.id === "number" ? this.#pending.get(reply.id) : undefined;
        if (!pending) continue;
        this.#pending.delete(reply.id as number);
        clearTimeout(pending.timer);
        if (typeof reply.error === "string" || typeof reply.verdict !== "string") {
          pending.resolve(
            failClosed(`policy-decision process refused the request: ${reply.error}`),
          );
        } else {
          delete reply.id;
          pending.resolve(reply as Decision);
        }
      }
    } catch { /* reset: handled below */ }
    if (this.#generation === generation && this.#state === "up") {
      this.#fail("policy-decision process closed its socket");
    }
  }

  /** The PDP failed: deny everything, kill it, and restart it after the backoff. */
  #fail(reason: string): void {
    if (this.#state === "closed" || this.#state === "down") return;
    const pid = this.#pid;
    this.#generation++;
    this.#state = "down";
    this.#downReason = `${reason}; denying until it is restarted`;
    this.#denyPending(this.#downReason);
    void this.#stopProcess();
    if (this.#upSince > 0 && Date.now() - this.#upSince >= HEALTHY_MS) {
      this.#backoff = this.#opts.backoffMs;
    }
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, this.#opts.maxBackoffMs);
    this.#opts.onEvent?.({ kind: "failed", pid, reason, restartInMs: delay });
    this.#restartTimer = setTimeout(async () => {
      this.#restartTimer = null;
      if (this.#state === "closed") return;
      this.#restarts++;
      const error = await this.#launch();
      // When the new PDP died while starting, #fail has already run (state "down").
      if (error !== null && this.#state === "starting") this.#fail(`restart failed: ${error}`);
    }, delay);
  }

  #denyPending(reason: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.resolve(failClosed(reason));
    }
  }

  async #stopProcess(): Promise<void> {
    const proc = this.#proc;
    const conn = this.#conn;
    const control = this.#control;
    const replies = this.#replies;
    this.#proc = null;
    this.#conn = null;
    this.#control = null;
    this.#replies = null;
    this.#outgoing = "";
    try {
      conn?.close();
    } catch { /* closed */ }
    try {
      await control?.close();
    } catch { /* closed */ }
    if (proc === null) return;
    try {
      proc.kill("SIGKILL");
    } catch { /* already gone */ }
    await proc.status;
    await replies?.return(undefined);
    try {
      await proc.stdout.cancel();
    } catch { /* closed */ }
  }
}
