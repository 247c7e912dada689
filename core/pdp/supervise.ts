// The PDP as `clawcage run` uses it: a private runtime directory for its socket, its events on
// stderr (and in the audit log when one is configured), and reload from the policy file on
// SIGHUP.

import { randomBytes } from "node:crypto";
import type { AuditEvent } from "../audit/events.ts";
import { MAX_POLICY_BYTES, parsePolicy } from "../policy/load.ts";
import type { Policy } from "../policy/schema.ts";
import { PdpClient, type PdpEvent, PdpStartError, type ReloadResult } from "./client.ts";

/** Where per-sandbox runtime directories go when running as root (hidden by the stage's /run). */
export const ROOT_RUNTIME_DIR = "/run/clawcage";

export interface AuditSink {
  record(event: AuditEvent): unknown;
}

export interface RunPdpOptions {
  policyFile: string;
  /**
   * The policy as the caller already read and validated it from `policyFile` (so the PDP decides
   * on exactly that version, without a second read); absent: read from the file here.
   */
  policy?: { text: string; parsed: Policy };
  /** Sandbox name for audit records. */
  sandbox?: string;
  deadlineMs?: number;
  audit?: AuditSink;
  /** Where lines for the user go (default: stderr). */
  log?: (line: string) => void;
  /** Aborting stops a start in progress (e.g. the agent already exited). */
  signal?: AbortSignal;
}

export interface RunPdp {
  client: PdpClient;
  runtimeDir: string;
  /**
   * Re-reads the policy file and reloads the PDP; logs and returns the outcome, with the policy
   * the PDP accepted (so the caller applies the same version, e.g. to the privacy router).
   */
  reloadFromFile(): Promise<ReloadResult & { policy?: Policy }>;
  close(): Promise<void>;
}

/**
 * A fresh 0700 directory for one sandbox's sockets, in a place the sandbox cannot see. Named after
 * the sandbox when given (`<sandbox>.pdp-<random>`, beside the egress proxy's `<sandbox>`
 * directory), so an operator can tell which run a directory belongs to.
 */
export function makeRuntimeDir(isRoot: boolean, sandbox?: string): string {
  const base = isRoot
    ? ROOT_RUNTIME_DIR
    : `${Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp"}/clawcage-${Deno.uid()}`;
  const named = sandbox !== undefined && /^[A-Za-z0-9_-]{1,64}$/.test(sandbox);
  const dir = `${base}/${named ? `${sandbox}.pdp-` : ""}${
    randomBytes(named ? 4 : 16).toString("hex")
  }`;
  try {
    Deno.mkdirSync(base, { recursive: true, mode: 0o700 });
    Deno.chmodSync(base, 0o700);
    Deno.mkdirSync(dir, { mode: 0o700 });
    Deno.chmodSync(dir, 0o700);
  } catch (e) {
    throw new PdpStartError(
      `cannot create its runtime directory in ${base}: ${(e as Error).message}`,
    );
  }
  return dir;
}

async function readPolicy(file: string): Promise<string> {
  const info = await Deno.stat(file);
  if (info.size > MAX_POLICY_BYTES) {
    throw new Error(`${file}: policy is ${info.size} bytes; the limit is ${MAX_POLICY_BYTES}`);
  }
  return await Deno.readTextFile(file);
}

/** Starts the PDP for `clawcage run`. Throws PdpStartError with a one-line reason. */
export async function startRunPdp(opts: RunPdpOptions): Promise<RunPdp> {
  const log = opts.log ?? ((line: string) => console.error(line));
  const runtimeDir = makeRuntimeDir(Deno.uid() === 0, opts.sandbox);
  const audit = (event: AuditEvent) => {
    try {
      opts.audit?.record({ ...event, sandbox: opts.sandbox } as AuditEvent);
    } catch (e) {
      log(`clawcage: audit: cannot record: ${(e as Error).message}`);
    }
  };
  const onEvent = (e: PdpEvent) => {
    if (e.kind === "failed") {
      log(
        `clawcage: policy-decision process failed: ${e.reason}; every decision is deny until it restarts (in ${e.restartInMs} ms)`,
      );
      audit({
        class: "process",
        activity: "terminate",
        process: { pid: e.pid ?? undefined, exe: "clawcage __pdp" },
        decision: "deny",
        reason: e.reason,
      });
    } else if (e.kind === "started") {
      if (e.restarts > 0) log(`clawcage: policy-decision process restarted (pid ${e.pid})`);
      audit({
        class: "process",
        activity: "launch",
        process: { pid: e.pid, exe: "clawcage __pdp" },
        reason: `landlock abi ${e.lockdown.landlockAbi}, seccomp ${e.lockdown.seccompRules} rules` +
          (e.lockdown.noExecMemory ? ", no executable memory" : ""),
      });
    } else if (e.kind === "reloaded") {
      const what = e.changed.length ? `changed: ${e.changed.join(", ")}` : "no change";
      log(`clawcage: policy reloaded from ${opts.policyFile} (${what})`);
      audit({ class: "config", activity: "reload", config: { name: opts.policyFile } });
    } else {
      log(`clawcage: policy reload refused: ${e.error}`);
      audit({
        class: "config",
        activity: "reject",
        config: { name: opts.policyFile, error: e.error },
      });
    }
  };
  let client: PdpClient;
  try {
    client = await PdpClient.start({
      policyText: opts.policy?.text ?? await readPolicy(opts.policyFile),
      ...(opts.policy ? { policy: opts.policy.parsed } : {}),
      policyFile: opts.policyFile,
      runtimeDir,
      deadlineMs: opts.deadlineMs,
      onEvent,
      signal: opts.signal,
    });
  } catch (e) {
    await Deno.remove(runtimeDir, { recursive: true }).catch(() => {});
    throw e;
  }
  return {
    client,
    runtimeDir,
    async reloadFromFile() {
      let text: string;
      try {
        text = await readPolicy(opts.policyFile);
      } catch (e) {
        const error = `cannot read ${opts.policyFile}: ${(e as Error).message}`;
        onEvent({ kind: "reload-refused", error });
        return { ok: false, error };
      }
      let policy: Policy;
      try {
        policy = parsePolicy(text, opts.policyFile);
      } catch (e) {
        const error = (e as Error).message;
        onEvent({ kind: "reload-refused", error });
        return { ok: false, error };
      }
      const result = await client.reload(text, opts.policyFile, policy);
      return result.ok ? { ...result, policy } : result;
    },
    async close() {
      await client.close();
      await Deno.remove(runtimeDir, { recursive: true }).catch(() => {});
    },
  };
}
