// Helpers for the sandbox side of egress: a runtime directory laid out as the supervisor lays
// it out, a recording stand-in for the proxy on its unix socket, and an in-process sandbox run.

import { parsePolicy } from "../../core/policy/load.ts";
import {
  buildPlan,
  type EgressEndpoint,
  type StagePlan,
  withEgress,
} from "../../core/sandbox/plan.ts";
import { hostView, runSandbox, runSandboxWithEgress } from "../../core/sandbox/supervisor.ts";
import type { EgressOptions } from "../../core/sandbox/egress.ts";
import { createRuntimeDir, writeCaBundle } from "../../core/sandbox/runtime_dir.ts";

export const NOBODY = 65534;

/** A unix-socket listener that records caller lines and answers each request with them. */
export interface RecordingProxy {
  endpoint: EgressEndpoint;
  /** Caller JSON objects, in arrival order. */
  callers: { pid: number; exe: string; sha256: string; ancestors?: string[] }[];
  /** First line of each request after the caller line. */
  requests: string[];
  close(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function readUntil(conn: Deno.Conn, buf: Uint8Array[], marker: string): Promise<string> {
  let text = dec.decode(concat(buf));
  const chunk = new Uint8Array(4096);
  while (!text.includes(marker)) {
    const n = await conn.read(chunk);
    if (n === null) break;
    buf.push(chunk.slice(0, n));
    text = dec.decode(concat(buf));
  }
  return text;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A runtime directory as `clawcage run` makes it, with a recording listener on its socket. */
export async function recordingProxy(opts: { caPem?: string } = {}): Promise<RecordingProxy> {
  const dir = createRuntimeDir({ root: true, agentUid: NOBODY, agentGid: NOBODY });
  const socketDir = dir.socketDir!;
  const socketPath = `${socketDir}/${dir.socketName}`;
  const listener = Deno.listen({ transport: "unix", path: socketPath });
  await Deno.chown(socketPath, NOBODY, NOBODY);
  await Deno.chmod(socketPath, 0o600);
  const caBundle = opts.caPem === undefined ? null : writeCaBundle(dir, opts.caPem);
  const callers: RecordingProxy["callers"] = [];
  const requests: string[] = [];
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        try {
          const buf: Uint8Array[] = [];
          const head = await readUntil(conn, buf, "\r\n\r\n");
          const [callerLine, requestLine] = head.split("\r\n");
          const caller = JSON.parse(callerLine.replace(/^CLAWCAGE-CALLER /, ""));
          callers.push(caller);
          requests.push(requestLine);
          const body = `${JSON.stringify(caller)}\n${requestLine}\n`;
          await conn.write(
            enc.encode(
              `HTTP/1.1 200 OK\r\nContent-Length: ${
                enc.encode(body).length
              }\r\nConnection: close\r\n\r\n${body}`,
            ),
          );
        } catch { /* client went away */ }
        try {
          conn.close();
        } catch { /* closed */ }
        conns.delete(conn);
      })();
    }
  })();
  return {
    endpoint: {
      runtimeDir: dir.path,
      socketDir,
      socketName: dir.socketName,
      proxyPort: null,
      caBundle,
    },
    callers,
    requests,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await serving.catch(() => {});
      dir.remove();
    },
  };
}

/** A fresh working directory the agent (nobody) may write. */
export async function agentWorkdir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-egress-" });
  await Deno.chown(dir, NOBODY, NOBODY);
  return dir;
}

const DEFAULT_POLICY = new URL("../../policies/default.yaml", import.meta.url);

async function agentPlan(workdir: string, script: string, rootless: boolean): Promise<StagePlan> {
  const policy = parsePolicy(await Deno.readTextFile(DEFAULT_POLICY), DEFAULT_POLICY.pathname);
  const host = { ...hostView(), stdinIsTerminal: false };
  return buildPlan(policy, {
    argv: ["/bin/sh", "-c", `exec >${workdir}/out.txt 2>${workdir}/err.txt; ${script}`],
    workdir,
    env: [],
    rootless,
  }, host);
}

async function agentResult(workdir: string, code: number) {
  const read = (f: string) => Deno.readTextFile(`${workdir}/${f}`).catch(() => "");
  return { code, stdout: await read("out.txt"), stderr: await read("err.txt") };
}

/**
 * Runs `sh -c script` in a real sandbox (the default policy, namespaces) whose egress goes to
 * `endpoint`. The agent's stdout and stderr go to out.txt and err.txt in the workdir.
 */
export async function runWithEgress(
  endpoint: EgressEndpoint,
  workdir: string,
  script: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const plan = withEgress(await agentPlan(workdir, script, false), endpoint);
  return agentResult(workdir, await runSandbox(plan));
}

/** Runs `sh -c script` in a real sandbox behind the real egress proxy, as `clawcage run` does. */
export async function runThroughProxy(
  workdir: string,
  script: string,
  egress: EgressOptions,
  opts: { rootless?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string; plan: StagePlan }> {
  let routed: StagePlan | null = null;
  const code = await runSandboxWithEgress(
    await agentPlan(workdir, script, opts.rootless ?? false),
    egress,
    (p) => routed = p,
  );
  return { ...await agentResult(workdir, code), plan: routed! };
}

/** The filesystem and process sections of the egress tests' policies (agent runs as nobody). */
export const AGENT_POLICY_HEAD = `version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc]
  read_write: [/dev/null]
process:
  run_as_user: nobody
`;
