// The policy's `network_policies` section (OpenShell-compatible): named entries, each allowing
// its `binaries` to reach its `endpoints`. Validation follows OpenShell's documented rules, so
// OpenShell and NemoClaw policies load unchanged; settings OpenShell accepts but ignores (request
// rules without a protocol, deprecated `tls` modes, a binary's `harness`) load with the same
// meaning, and `policy check` and `clawcage run` warn about each (warnings.ts).

import { z } from "zod";
import { compileGlob, GlobSyntaxError } from "./glob.ts";
import { blockedRange, parseCidr } from "./ip.ts";

export const SUPPORTED_PROTOCOLS = ["rest", "websocket", "tcp"] as const;
export type Protocol = typeof SUPPORTED_PROTOCOLS[number];
/** Protocols OpenShell inspects that clawcage does not implement yet. */
const NOT_YET_PROTOCOLS = ["graphql", "mcp", "json-rpc", "json_rpc", "grpc"];

/** OpenShell endpoint keys that clawcage knows but does not implement yet. */
export const UNSUPPORTED_ENDPOINT_KEYS: Record<string, string> = {
  path: "endpoint path selectors",
  credential_binding: "provider credential binding",
  request_body_credential_rewrite: "credential rewriting",
  websocket_credential_rewrite: "credential rewriting",
  allow_uninspected_credentials: "provider credentials",
  credential_signing: "AWS request signing",
  signing_service: "AWS request signing",
  signing_region: "AWS request signing",
  persisted_queries: "GraphQL inspection",
  graphql_persisted_queries: "GraphQL inspection",
  graphql_max_body_bytes: "GraphQL inspection",
  mcp: "MCP inspection",
  json_rpc: "JSON-RPC inspection",
};

/**
 * Executable paths that any glob matching all of them would match nearly every program: a
 * binary glob that matches all of these is refused as "matches everything".
 */
const EVERYTHING_PROBES = [
  "/bin/sh",
  "/tmp/x",
  "/tmp/a/b/c/d",
  "/home/user/.local/bin/tool",
  "/dev/shm/x",
  "/usr/local/lib/node_modules/x/bin/y",
];

const port = z.number({ message: "port must be a number" }).int().min(1, {
  message: "port must be 1-65535",
}).max(65535, { message: "port must be 1-65535" });

function globCheck(separator: "/" | ".", what: string) {
  return (value: string, ctx: z.RefinementCtx) => {
    try {
      compileGlob(value, separator);
    } catch (e) {
      if (!(e instanceof GlobSyntaxError)) throw e;
      ctx.addIssue({
        code: "custom",
        message: `bad ${what} ${JSON.stringify(value)}: ${e.message}`,
      });
    }
  };
}

const pathGlob = z.string().min(1, { message: "path glob must not be empty" })
  .superRefine((p, ctx) => {
    if (p !== "**" && !p.startsWith("/")) {
      ctx.addIssue({ code: "custom", message: `path glob must start with / (or be **): ${p}` });
      return;
    }
    globCheck("/", "path glob")(p, ctx);
  });

const valueGlob = z.string().superRefine(globCheck(".", "query glob"));

const queryMatcher = z.union([
  valueGlob,
  z.strictObject({ any: z.array(valueGlob).min(1, { message: "any must not be empty" }) }),
  z.strictObject({ glob: valueGlob }),
], { message: "a query matcher is a glob string, { any: [globs] } or { glob: glob }" });

const methodName = z.string().regex(/^(\*|[A-Za-z][A-Za-z_-]*)$/, {
  message: "method must be an HTTP method name or *",
});

/** One matcher: method, path glob, optional query matchers keyed by parameter name. */
export const requestMatcher = z.strictObject({
  method: methodName,
  path: pathGlob,
  query: z.record(z.string().min(1), queryMatcher).optional(),
});

export const allowRule = z.strictObject({ allow: requestMatcher });

const binaryGlob = z.string().superRefine((p, ctx) => {
  if (!p.startsWith("/")) {
    ctx.addIssue({ code: "custom", message: `binary path must be absolute, got ${p}` });
    return;
  }
  if (p.split("/").includes("..")) {
    ctx.addIssue({ code: "custom", message: `binary path must not contain "..": ${p}` });
    return;
  }
  try {
    compileGlob(p, "/");
  } catch (e) {
    if (!(e instanceof GlobSyntaxError)) throw e;
    ctx.addIssue({ code: "custom", message: `bad binary glob ${JSON.stringify(p)}: ${e.message}` });
    return;
  }
});

/** Whether a binary glob matches every program (OpenShell allows it; warnings.ts warns). */
export function matchesEveryProgram(glob: string): boolean {
  try {
    const re = compileGlob(glob, "/");
    return EVERYTHING_PROBES.every((probe) => re.test(probe));
  } catch {
    return false;
  }
}

export const binaryRef = z.strictObject({
  path: binaryGlob,
  /** OpenShell: deprecated and ignored (kept so such policies load; warnings.ts says so). */
  harness: z.union([z.string(), z.boolean(), z.number()], {
    message: "harness must be a string, number or boolean (it is ignored)",
  }).optional(),
});

/** Why `host` is not an acceptable endpoint host, or null. Accepts IP literals. */
export function hostProblem(host: string): string | null {
  if (host.length === 0) return "host must not be empty";
  if (host.length > 253) return "host is longer than 253 characters";
  const ip = parseCidr(host.replace(/^\[|\]$/g, ""));
  if (ip && !host.includes("/")) {
    const blocked = blockedRange(ip);
    return blocked ? `host ${host} is ${blocked}: policies never open it` : null;
  }
  const name = host.toLowerCase().replace(/\.$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) {
    return `host ${host} is loopback: policies never open it`;
  }
  const labels = name.split(".");
  if (labels.some((l) => l === "")) return `host ${host} has an empty label`;
  const wildcard = name.includes("*");
  for (const [i, label] of labels.entries()) {
    if (!/^[a-z0-9_*-]+$/.test(label)) {
      return `host ${host}: label ${JSON.stringify(label)} has characters a host name cannot ` +
        `have (only * and ** are wildcards in hosts)`;
    }
    if (label.length > 63) return `host ${host}: label longer than 63 characters`;
    if (label.includes("**") && (i !== 0 || label !== "**")) {
      return `host ${host}: ** is allowed only as the whole first label (**.example.com)`;
    }
    if (i > 0 && label.includes("*") && label !== "*") {
      return `host ${host}: * after the first label must be a whole label (api.*.example.com)`;
    }
  }
  if (wildcard && labels.length < 3) {
    return `wildcard host ${host} must have at least three labels (*.example.com, not *.com)`;
  }
  if (wildcard && labels.every((l) => l.includes("*"))) {
    return `wildcard host ${host} matches every host`;
  }
  return null;
}

const ipOrCidr = z.string().superRefine((s, ctx) => {
  const c = parseCidr(s);
  if (!c) {
    ctx.addIssue({ code: "custom", message: `not an IP address or CIDR range: ${s}` });
    return;
  }
  const blocked = blockedRange(c);
  if (blocked) {
    ctx.addIssue({
      code: "custom",
      message: `allowed_ips ${s} overlaps ${blocked}: policies never open it`,
    });
  }
});

const endpointShape = {
  host: z.string().optional(),
  port: port.optional(),
  ports: z.array(port).min(1, { message: "ports must not be empty" }).optional(),
  protocol: z.string().optional(),
  // terminate and passthrough: deprecated in OpenShell, accepted with no effect (warned).
  tls: z.enum(["skip", "terminate", "passthrough"]).optional(),
  enforcement: z.enum(["enforce", "audit"]).optional(),
  access: z.enum(["read-only", "read-write", "full"]).optional(),
  rules: z.array(allowRule).min(1, { message: "rules must not be empty" }).optional(),
  deny_rules: z.array(requestMatcher).min(1, { message: "deny_rules must not be empty" })
    .optional(),
  allowed_ips: z.array(ipOrCidr).min(1, { message: "allowed_ips must not be empty" })
    .optional(),
  allow_encoded_slash: z.boolean().optional(),
  ...Object.fromEntries(
    Object.keys(UNSUPPORTED_ENDPOINT_KEYS).map((k) => [k, z.unknown().optional()]),
  ) as Record<keyof typeof UNSUPPORTED_ENDPOINT_KEYS, z.ZodOptional<z.ZodUnknown>>,
};

export const endpoint = z.strictObject(endpointShape).superRefine((ep, ctx) => {
  const issue = (key: string, message: string) =>
    ctx.addIssue({ code: "custom", path: [key], message });
  for (const [key, what] of Object.entries(UNSUPPORTED_ENDPOINT_KEYS)) {
    if ((ep as Record<string, unknown>)[key] !== undefined) {
      issue(key, `${key} (OpenShell ${what}) is not supported yet by clawcage`);
    }
  }
  const protocol = ep.protocol;
  if (protocol !== undefined && !(SUPPORTED_PROTOCOLS as readonly string[]).includes(protocol)) {
    issue(
      "protocol",
      NOT_YET_PROTOCOLS.includes(protocol)
        ? `protocol ${JSON.stringify(protocol)} is not supported yet (supported: ${
          SUPPORTED_PROTOCOLS.join(", ")
        })`
        : `unknown protocol ${JSON.stringify(protocol)} (expected ${
          SUPPORTED_PROTOCOLS.join(", ")
        }; HTTP and HTTPS are rest)`,
    );
    return;
  }
  if (ep.host === undefined) {
    if (ep.allowed_ips === undefined) {
      issue("host", "an endpoint needs host (or allowed_ips, for a hostless endpoint)");
    } else if (protocol === "tcp") issue("host", "protocol tcp requires host");
  } else {
    const problem = hostProblem(ep.host);
    if (problem) issue("host", problem);
  }
  if (ep.port !== undefined && ep.ports !== undefined) {
    issue("ports", "set port or ports, not both");
  }
  if (ep.port === undefined && ep.ports === undefined) {
    issue("port", "an endpoint needs port (or ports)");
  }
  if (ep.access !== undefined && ep.rules !== undefined) {
    issue("rules", "access and rules cannot be combined: use one");
  }
  const l7 = protocol === "rest" || protocol === "websocket";
  if (l7) {
    if (ep.access === undefined && ep.rules === undefined) {
      issue("protocol", `protocol ${protocol} needs access or rules`);
    }
    if (ep.tls === "skip") {
      issue(
        "tls",
        `tls: skip cannot be combined with protocol ${protocol} (skip means no inspection)`,
      );
    }
    const methodOk = protocol === "websocket"
      ? (m: string) => ["GET", "WEBSOCKET_TEXT", "*"].includes(m.toUpperCase())
      : (m: string) => m.toUpperCase() !== "WEBSOCKET_TEXT";
    const expected = protocol === "websocket" ? "GET, WEBSOCKET_TEXT or *" : "an HTTP method or *";
    ep.rules?.forEach((r, i) => {
      if (!methodOk(r.allow.method)) {
        ctx.addIssue({
          code: "custom",
          path: ["rules", i, "allow", "method"],
          message:
            `method ${r.allow.method} is not valid for protocol ${protocol} (expected ${expected})`,
        });
      }
    });
    ep.deny_rules?.forEach((r, i) => {
      if (!methodOk(r.method)) {
        ctx.addIssue({
          code: "custom",
          path: ["deny_rules", i, "method"],
          message:
            `method ${r.method} is not valid for protocol ${protocol} (expected ${expected})`,
        });
      }
    });
  } else if (protocol === "tcp") {
    // Without a protocol these are accepted and ignored, as in OpenShell (warnings.ts warns).
    const requestKeys = ["access", "rules", "deny_rules", "allow_encoded_slash"] as const;
    for (const key of requestKeys) {
      if (ep[key] === undefined) continue;
      issue(key, `protocol tcp accepts no request-level field (${key})`);
    }
    if (ep.enforcement !== undefined) {
      issue("enforcement", "protocol tcp accepts no request-level field (enforcement)");
    }
  }
});

export const networkEntry = z.strictObject({
  /** Display name in logs; defaults to the key. */
  name: z.string().min(1).optional(),
  endpoints: z.array(endpoint).default([]),
  /** Executables the entry applies to; an empty list matches no binary. */
  binaries: z.array(binaryRef).default([]),
});

/** Whether two single labels (literal, `*`, or with `*` inside) can match the same label. */
function labelsOverlap(a: string, b: string): boolean {
  if (!a.includes("*") && !b.includes("*")) return a === b;
  if (a === "*" || b === "*") return true;
  if (!a.includes("*")) return compileGlob(b, ".").test(a);
  if (!b.includes("*")) return compileGlob(a, ".").test(b);
  // Both partial wildcards: their literal prefixes and suffixes must be compatible.
  const pre = (x: string) => x.slice(0, x.indexOf("*"));
  const suf = (x: string) => x.slice(x.lastIndexOf("*") + 1);
  const compatible = (x: string, y: string, f: (s: string, t: string) => boolean) =>
    f(x, y) || f(y, x);
  return compatible(pre(a), pre(b), (s, t) => s.startsWith(t)) &&
    compatible(suf(a), suf(b), (s, t) => s.endsWith(t));
}

/** Whether some host name matches both host patterns (lower-case, validated by hostProblem). */
export function hostsOverlap(a: string, b: string): boolean {
  const la = a.toLowerCase().replace(/\.$/, "").split(".");
  const lb = b.toLowerCase().replace(/\.$/, "").split(".");
  const starA = la[0] === "**";
  const starB = lb[0] === "**";
  const restA = starA ? la.slice(1) : la;
  const restB = starB ? lb.slice(1) : lb;
  if (!starA && !starB && la.length !== lb.length) return false;
  // `**` stands for one or more labels: the other pattern needs more labels than the rest.
  if (starA && !starB && lb.length <= restA.length) return false;
  if (starB && !starA && la.length <= restB.length) return false;
  const n = Math.min(restA.length, restB.length);
  for (let i = 1; i <= n; i++) {
    if (!labelsOverlap(restA[restA.length - i], restB[restB.length - i])) return false;
  }
  return true;
}

/** OpenShell: endpoints that can match the same host and port must agree on these settings. */
function checkOverlaps(map: Record<string, NetworkEntry>, ctx: z.RefinementCtx): void {
  const all: { entry: string; i: number; ep: Endpoint; ports: number[] }[] = [];
  for (const [entry, e] of Object.entries(map)) {
    e.endpoints.forEach((ep, i) => {
      if (ep.host === undefined || hostProblem(ep.host) !== null) return;
      all.push({ entry, i, ep, ports: ep.ports ?? (ep.port === undefined ? [] : [ep.port]) });
    });
  }
  for (let j = 1; j < all.length; j++) {
    const b = all[j];
    for (let k = 0; k < j; k++) {
      const a = all[k];
      if (!a.ports.some((p) => b.ports.includes(p))) continue;
      if (!hostsOverlap(a.ep.host!, b.ep.host!)) continue;
      const inspected = (ep: Endpoint) => ep.protocol === "rest" || ep.protocol === "websocket";
      const fields: [string, (ep: Endpoint) => string][] = [
        // terminate and passthrough have no effect: the same as no tls at all.
        ["tls", (ep) => ep.tls === "skip" ? "skip" : "(none)"],
        ["allowed_ips", (ep) => [...(ep.allowed_ips ?? [])].sort().join(", ") || "(none)"],
      ];
      if (inspected(a.ep) && inspected(b.ep)) {
        fields.push(["protocol", (ep) => ep.protocol ?? "(none)"]);
        fields.push(["enforcement", (ep) => ep.enforcement ?? "audit"]);
      }
      for (const [field, value] of fields) {
        if (value(a.ep) === value(b.ep)) continue;
        ctx.addIssue({
          code: "custom",
          path: [b.entry, "endpoints", b.i, field in b.ep ? field : "host"],
          message:
            `${field} ${value(b.ep)} differs from ${value(a.ep)} in ${a.entry}.endpoints[${a.i}] ` +
            `(host ${a.ep.host}), which can match the same host and port; endpoints that overlap ` +
            `must agree on ${field}`,
        });
      }
    }
  }
}

export const networkPolicies = z.record(z.string(), networkEntry).superRefine((map, ctx) => {
  checkOverlaps(map, ctx);
  for (const key of Object.keys(map)) {
    if (key.startsWith("_provider_")) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: `entry names starting with _provider_ are reserved (${key})`,
      });
    } else if (!/^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/.test(key)) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: `entry name ${
          JSON.stringify(key)
        } must be 1-128 letters, digits, _ . : - (not starting with . : -)`,
      });
    }
  }
});

export type NetworkPolicies = z.infer<typeof networkPolicies>;
export type NetworkEntry = z.infer<typeof networkEntry>;
export type Endpoint = z.infer<typeof endpoint>;
export type RequestMatcher = z.infer<typeof requestMatcher>;
