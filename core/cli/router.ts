// `clawcage router --policy FILE --listen 127.0.0.1:PORT`: the privacy router on its own.

import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { loadPolicyFile, PolicyError } from "../policy/load.ts";
import type { PrivacyPolicy } from "../policy/privacy.ts";
import type { InferenceAuditEvent } from "../../router/audit_event.ts";
import { createRouter, RouterConfigError } from "../../router/app.ts";
import { detect } from "../../router/pii/detect.ts";
import { modelPathResolver } from "../models/store.ts";
import { UsageError } from "./common.ts";

export const ROUTER_HELP = `Usage: clawcage router --policy FILE [options]

Serves the privacy router: OpenAI-compatible /v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models (with availability), Anthropic-compatible /v1/messages, and
GET /healthz (each backend's state; 503 when one is down). Requests are scanned for
PII; keep_local types go to the policy's local backend, the rest to its cloud backend with the
pseudonymise types replaced by placeholders (restored in the answer).

Options:
  -p, --policy FILE        policy YAML with a privacy section (required)
  -l, --listen HOST:PORT   loopback address to listen on (default 127.0.0.1:8787; port 0 picks one)
      --audit-file FILE    append one JSON line per inference call here (default: stderr)
      --hmac-key-file FILE per-install key for prompt HMACs in audit records; created (0600)
                           when missing (default: $CLAWCAGE_STATE_DIR, $XDG_STATE_HOME/clawcage
                           or ~/.local/state/clawcage, file inference-hmac.key)
      --client NAME        label audit records with NAME instead of the peer address
      --json               print the listening line as JSON
  -h, --help               show this help

Signals: SIGTERM or SIGINT stop it (requests in flight finish); SIGHUP reloads the policy's
privacy section.`;

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]|::1)$/;

export function parseListen(value: string): { hostname: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535) {
    throw new UsageError(`--listen must be HOST:PORT, got ${JSON.stringify(value)}`);
  }
  const host = m[1];
  if (!LOOPBACK.test(host)) {
    throw new UsageError(
      `--listen ${value}: the router holds cloud keys and has no client authentication, so it only listens on loopback (127.0.0.0/8 or [::1])`,
    );
  }
  return { hostname: host.replace(/^\[(.*)\]$/, "$1"), port: Number(m[2]) };
}

export function defaultKeyPath(): string {
  const env = (name: string) => Deno.env.get(name);
  const dir = env("CLAWCAGE_STATE_DIR") ??
    (env("XDG_STATE_HOME") ? `${env("XDG_STATE_HOME")}/clawcage` : null) ??
    `${env("HOME") ?? "/root"}/.local/state/clawcage`;
  return `${dir}/inference-hmac.key`;
}

/** Reads the install's HMAC key, creating it (32 random bytes, mode 0600) when missing. */
export function loadOrCreateKey(path: string): Uint8Array {
  try {
    const key = Deno.readFileSync(path);
    if (key.byteLength < 16) {
      throw new UsageError(`HMAC key file ${path} is shorter than 16 bytes`);
    }
    return key;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`cannot read HMAC key file ${path}: ${(e as Error).message}`);
    }
  }
  const key = new Uint8Array(randomBytes(32));
  try {
    Deno.mkdirSync(path.replace(/\/[^/]*$/, "") || "/", { recursive: true, mode: 0o700 });
    Deno.writeFileSync(path, key, { mode: 0o600, createNew: true });
  } catch (e) {
    throw new UsageError(`cannot create HMAC key file ${path}: ${(e as Error).message}`);
  }
  return key;
}

async function loadPrivacy(path: string): Promise<PrivacyPolicy> {
  let policy;
  try {
    policy = await loadPolicyFile(path);
  } catch (e) {
    if (e instanceof PolicyError) throw new UsageError(e.message);
    throw e;
  }
  if (!policy.privacy) throw new UsageError(`${path}: the policy has no privacy section`);
  return policy.privacy;
}

export async function routerCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        policy: { type: "string", short: "p" },
        listen: { type: "string", short: "l", default: "127.0.0.1:8787" },
        "audit-file": { type: "string" },
        "hmac-key-file": { type: "string" },
        client: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (see clawcage router --help)`);
  }
  if (values.help) {
    console.log(ROUTER_HELP);
    return 0;
  }
  if (!values.policy) {
    throw new UsageError("--policy FILE is required (see clawcage router --help)");
  }
  const policyPath = values.policy;
  const listen = parseListen(values.listen!);
  const privacy = await loadPrivacy(policyPath);
  const hmacKey = loadOrCreateKey(values["hmac-key-file"] ?? defaultKeyPath());

  let auditFile: Deno.FsFile | null = null;
  if (values["audit-file"]) {
    try {
      auditFile = Deno.openSync(values["audit-file"], { append: true, create: true, mode: 0o600 });
    } catch (e) {
      throw new UsageError(`cannot open --audit-file: ${(e as Error).message}`);
    }
  }
  const encoder = new TextEncoder();
  const audit = (event: InferenceAuditEvent) => {
    const line = encoder.encode(JSON.stringify(event) + "\n");
    if (auditFile) auditFile.writeSync(line);
    else Deno.stderr.writeSync(line);
  };

  let router;
  try {
    router = createRouter({
      policy: privacy,
      detect,
      hmacKey,
      audit,
      client: values.client,
      resolveModelPath: modelPathResolver(),
    });
  } catch (e) {
    if (e instanceof RouterConfigError) throw new UsageError(`${policyPath}: ${e.message}`);
    throw e;
  }

  const stopped = Promise.withResolvers<void>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: listen.hostname,
      port: listen.port,
      onListen: () => {},
      onError: (e) => {
        console.error(`clawcage router: internal error: ${(e as Error)?.message ?? e}`);
        return Response.json({
          error: { message: "internal error", type: "server_error", code: "internal_error" },
        }, { status: 500 });
      },
    }, router.fetch);
  } catch (e) {
    throw new UsageError(`cannot listen on ${values.listen}: ${(e as Error).message}`);
  }
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `http://${host}:${addr.port}`;
  if (values.json) {
    console.log(JSON.stringify({
      listening: url,
      local: privacy.local ?? null,
      cloud: privacy.cloud ?? null,
    }));
  } else {
    console.log(
      `clawcage router listening on ${url} (local: ${privacy.local ?? "none"}, cloud: ${
        privacy.cloud ?? "none"
      })`,
    );
  }

  const stop = () => stopped.resolve();
  const reload = async () => {
    try {
      router.reload(await loadPrivacy(policyPath));
      console.error(`clawcage router: reloaded the privacy section of ${policyPath}`);
    } catch (e) {
      console.error(
        `clawcage router: reload failed, keeping the previous policy: ${(e as Error).message}`,
      );
    }
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGHUP", reload);
  await stopped.promise;
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGHUP", reload);
  await server.shutdown();
  await router.close();
  auditFile?.close();
  return 0;
}
