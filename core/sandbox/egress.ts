// Egress for one sandbox, on the supervisor's side: the runtime directory, the egress proxy
// (on a unix socket for the stage's bridge, or on a loopback TCP port rootless), the CA bundle
// the agent trusts, and tearing all of it down. The decision function is one parameter: the
// PDP client in `clawcage run`, or decide() bound to a policy in tests and benchmarks.

import {
  type AuditSink,
  type DecideFn,
  EgressProxy,
  type IdentifyTcpCaller,
} from "../egress/proxy.ts";
import { SockDiag } from "../../ffi/sock_diag.ts";
import { type Endpoint, ExeHasher, identifyCaller } from "./caller.ts";
import { InspectionCa } from "../egress/ca.ts";
import type { CredentialStore } from "../egress/placeholders.ts";
import type { Resolver } from "../egress/resolve.ts";
import type { EgressEndpoint, StagePlan } from "./plan.ts";
import { trace } from "../start_trace.ts";
import { createRuntimeDir, type RuntimeDir, writeCaBundle } from "./runtime_dir.ts";

export interface EgressOptions {
  decide: DecideFn;
  audit?: AuditSink;
  /** Default: the system resolver. */
  resolve?: Resolver;
  /** Secrets the proxy substitutes for placeholders; the agent gets the placeholders. */
  credentials?: CredentialStore;
  /**
   * HTTPS inspection with a fresh per-sandbox CA (default true): its certificate goes into the
   * agent's CA bundle, its key stays in this process's memory.
   */
  inspection?: boolean;
  /** CA certificates (PEM) upstream servers are verified against; default: the root store. */
  upstreamCa?: string[];
  /** Default: a new id (also the runtime directory's name). */
  sandboxId?: string;
  /** Default: /run/clawcage (root) or $XDG_RUNTIME_DIR/clawcage-egress (see runtime_dir.ts). */
  runtimeBase?: string;
  /** The privacy router's loopback port: serves http://inference.local to the agent. */
  inferenceLocal?: { port: number };
}

export interface RunningEgress {
  sandboxId: string;
  endpoint: EgressEndpoint;
  proxy: EgressProxy;
  close(): Promise<void>;
}

export async function startEgress(plan: StagePlan, opts: EgressOptions): Promise<RunningEgress> {
  const dir: RuntimeDir = createRuntimeDir({
    root: plan.namespaces,
    agentUid: plan.user.uid,
    agentGid: plan.user.gid,
    id: opts.sandboxId,
    base: opts.runtimeBase,
  });
  let proxy: EgressProxy | null = null;
  let identity: { identify: IdentifyTcpCaller; close(): void } | null = null;
  try {
    trace("egress: runtime dir made");
    const ca = opts.inspection === false ? null : await InspectionCa.create(dir.id);
    trace("egress: inspection CA made");
    proxy = new EgressProxy({
      sandbox: dir.id,
      decide: opts.decide,
      audit: opts.audit,
      resolve: opts.resolve,
      credentials: opts.credentials,
      inferenceLocal: opts.inferenceLocal,
      ...(ca ? { inspection: { ca, upstreamCa: opts.upstreamCa } } : {}),
    });
    let proxyPort: number | null = null;
    if (dir.socketDir !== null) {
      const path = `${dir.socketDir}/${dir.socketName}`;
      await proxy.listenUnix(path);
      // The stage connects after dropping to the agent's uid (see bridge.ts).
      Deno.chownSync(path, plan.user.uid, plan.user.gid);
    } else {
      // Rootless: the agent connects to this port directly, so no caller line can be trusted
      // here; the proxy asks the kernel instead (sock_diag, then /proc of the host).
      identity = rootlessIdentity();
      proxyPort = await proxy.listenTcp(0, "127.0.0.1", identity.identify);
    }
    const caBundle = ca ? writeCaBundle(dir, ca.certPem) : null;
    trace("egress: proxy listening");
    const running = proxy;
    return {
      sandboxId: dir.id,
      endpoint: {
        runtimeDir: dir.path,
        socketDir: dir.socketDir,
        socketName: dir.socketName,
        proxyPort,
        caBundle,
        agentEnv: opts.credentials?.agentEnv() ?? {},
      },
      proxy: running,
      async close() {
        await running.close();
        identity?.close();
        dir.remove();
      },
    };
  } catch (e) {
    await proxy?.close();
    identity?.close();
    dir.remove();
    throw e;
  }
}

/** Caller identity for the rootless TCP listener, from the host's sockets and processes. */
function rootlessIdentity(): { identify: IdentifyTcpCaller; close(): void } {
  const hasher = new ExeHasher();
  let diag: SockDiag | null = null;
  try {
    diag = SockDiag.open();
  } catch { /* no inet_diag: /proc/net/tcp */ }
  const socketOf = diag ? (c: Endpoint, s: Endpoint) => diag!.tcpLookup(c, s) : undefined;
  return {
    async identify(client, server) {
      const c = await identifyCaller(client, server, hasher, { socketOf, sameUidOnly: true });
      if (c.pid <= 0) return { exe: "" };
      return {
        pid: c.pid,
        exe: c.exe,
        ...(c.sha256 ? { sha256: c.sha256 } : {}),
        ...(c.ancestors ? { ancestors: c.ancestors } : {}),
      };
    },
    close() {
      diag?.close();
    },
  };
}
