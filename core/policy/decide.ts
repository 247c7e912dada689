// The policy decision: one pure function from a compiled policy and a request to a Decision
// (decision.ts). Deny by default; deny_rules beat allow rules; `enforcement: audit` lets a
// request that breaks the endpoint's rules through as "audit-allow" so it is recorded.
//
// Connection level (no method): the host, port and binary must match an endpoint of an entry.
// Request level (method and path): additionally, on endpoints with request rules
// (protocol rest/websocket), the method, canonical path and query must match an allow rule
// (or the access preset) and no deny rule.

import type { Decision, DecisionRequest } from "./decision.ts";
import { compileGlob, type Glob, hasWildcard, unescapeGlob } from "./glob.ts";
import type { Endpoint, NetworkPolicies, RequestMatcher } from "./network.ts";

type Enforcement = "enforce" | "audit";

interface CompiledMatcher {
  /** "endpoints[0].rules[2]", "endpoints[0].deny_rules[0]" or "endpoints[0].access: read-only". */
  rule: string;
  /** Upper-case method names; null: any method. */
  methods: Set<string> | null;
  /** null: any path. */
  path: Glob | null;
  pathText: string;
  query: { name: string; values: Glob[] }[];
}

interface CompiledBinary {
  text: string;
  exact?: string;
  re?: Glob;
}

export interface CompiledEndpoint {
  entry: string;
  index: number;
  /** Lower-case host without trailing dot; undefined for a hostless (allowed_ips) endpoint. */
  host?: string;
  hostRe?: Glob;
  ports: Set<number>;
  protocol?: "rest" | "websocket" | "tcp";
  enforcement: Enforcement;
  /** Has request-level rules: the proxy must see each request. */
  inspect: boolean;
  tlsSkip: boolean;
  allowedIps: string[];
  allowEncodedSlash: boolean;
  allow: CompiledMatcher[];
  deny: CompiledMatcher[];
  binaries: CompiledBinary[];
}

export interface CompiledPolicy {
  /** All endpoints, in entry-name order, then endpoint order. */
  endpoints: CompiledEndpoint[];
  byHost: Map<string, CompiledEndpoint[]>;
  /** Hosts wild only in the first label (`*.example.com`, `**.example.com`), by the rest. */
  bySuffix: Map<string, CompiledEndpoint[]>;
  /** Other wildcard hosts and hostless endpoints (checked for every request). */
  patterns: CompiledEndpoint[];
}

/** Methods of the access presets (OpenShell): REST and WebSocket. */
export const ACCESS_METHODS: Record<string, Record<string, string[] | null>> = {
  rest: {
    "read-only": ["GET", "HEAD", "OPTIONS"],
    "read-write": ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"],
    "full": null,
  },
  websocket: {
    "read-only": ["GET"],
    "read-write": ["GET", "WEBSOCKET_TEXT"],
    "full": null,
  },
};

/** Paths longer than this are refused at request level (bounded matching time). */
export const MAX_PATH_LENGTH = 8192;

export function normalizeHost(host: string): string {
  let h = host;
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h.toLowerCase();
}

function compileMatcher(m: RequestMatcher, rule: string): CompiledMatcher {
  return {
    rule,
    methods: m.method === "*" ? null : new Set([m.method.toUpperCase()]),
    path: m.path === "**" ? null : compileGlob(m.path, "/"),
    pathText: m.path,
    query: Object.entries(m.query ?? {}).map(([name, matcher]) => ({
      name,
      values:
        (typeof matcher === "string" ? [matcher] : "any" in matcher ? matcher.any : [matcher.glob])
          .map((g) => compileGlob(g, ".")),
    })),
  };
}

function compileEndpoint(
  entry: string,
  index: number,
  ep: Endpoint,
  binaries: CompiledBinary[],
): CompiledEndpoint {
  const where = `endpoints[${index}]`;
  const protocol = ep.protocol as CompiledEndpoint["protocol"];
  const l7 = protocol === "rest" || protocol === "websocket";
  const allow: CompiledMatcher[] = [];
  const deny: CompiledMatcher[] = [];
  if (l7) {
    if (ep.access) {
      const methods = ACCESS_METHODS[protocol][ep.access];
      allow.push({
        rule: `${where}.access: ${ep.access}`,
        methods: methods ? new Set(methods) : null,
        path: null,
        pathText: "**",
        query: [],
      });
    }
    ep.rules?.forEach((r, i) => allow.push(compileMatcher(r.allow, `${where}.rules[${i}]`)));
    ep.deny_rules?.forEach((r, i) => deny.push(compileMatcher(r, `${where}.deny_rules[${i}]`)));
  }
  const host = ep.host === undefined ? undefined : normalizeHost(ep.host);
  return {
    entry,
    index,
    host,
    hostRe: host !== undefined && host.includes("*")
      ? compileGlob(host, ".", { caseInsensitive: true })
      : undefined,
    ports: new Set(ep.ports ?? (ep.port === undefined ? [] : [ep.port])),
    protocol,
    enforcement: ep.enforcement ?? "audit",
    inspect: l7,
    tlsSkip: ep.tls === "skip",
    allowedIps: ep.allowed_ips ?? [],
    allowEncodedSlash: ep.allow_encoded_slash ?? false,
    allow,
    deny,
    binaries,
  };
}

/** Compiles the network section once: globs parsed, exact hosts indexed. */
export function compilePolicy(policy: { network_policies?: NetworkPolicies }): CompiledPolicy {
  const endpoints: CompiledEndpoint[] = [];
  const names = Object.keys(policy.network_policies ?? {}).sort();
  for (const name of names) {
    const entry = policy.network_policies![name];
    const binaries = entry.binaries.map((b): CompiledBinary =>
      hasWildcard(b.path) ? { text: b.path, re: compileGlob(b.path, "/") } : {
        text: b.path,
        exact: unescapeGlob(b.path),
      }
    );
    entry.endpoints.forEach((ep, i) => endpoints.push(compileEndpoint(name, i, ep, binaries)));
  }
  const byHost = new Map<string, CompiledEndpoint[]>();
  const bySuffix = new Map<string, CompiledEndpoint[]>();
  const patterns: CompiledEndpoint[] = [];
  const add = (map: Map<string, CompiledEndpoint[]>, key: string, ep: CompiledEndpoint) => {
    const list = map.get(key);
    if (list) list.push(ep);
    else map.set(key, [ep]);
  };
  for (const ep of endpoints) {
    if (ep.host === undefined) patterns.push(ep);
    else if (!ep.hostRe) add(byHost, ep.host, ep);
    else {
      const dot = ep.host.indexOf(".");
      const rest = ep.host.slice(dot + 1);
      if (dot > 0 && !rest.includes("*")) add(bySuffix, rest, ep);
      else patterns.push(ep);
    }
  }
  return { endpoints, byHost, bySuffix, patterns };
}

/** An absolute path without empty, `.` or `..` components, as the kernel reports executables. */
function isCanonicalPath(p: string): boolean {
  if (!p.startsWith("/") || p.length > MAX_PATH_LENGTH) return false;
  for (const part of p.slice(1).split("/")) {
    if (part === "" || part === "." || part === "..") return false;
  }
  return true;
}

function binaryMatches(binaries: CompiledBinary[], binary: string): boolean {
  if (!isCanonicalPath(binary)) return false;
  for (const b of binaries) {
    if (b.exact !== undefined ? b.exact === binary : b.re!.test(binary)) return true;
  }
  return false;
}

/** Endpoints whose host matches: exact hosts first, then wildcard and hostless ones. */
function hostCandidates(compiled: CompiledPolicy, host: string): CompiledEndpoint[] {
  const out: CompiledEndpoint[] = [];
  const exact = compiled.byHost.get(host);
  if (exact) out.push(...exact);
  if (compiled.bySuffix.size > 0) {
    for (let dot = host.indexOf("."); dot >= 0; dot = host.indexOf(".", dot + 1)) {
      const list = compiled.bySuffix.get(host.slice(dot + 1));
      if (list) { for (const ep of list) if (ep.hostRe!.test(host)) out.push(ep); }
    }
  }
  for (const ep of compiled.patterns) {
    if (ep.hostRe === undefined || ep.hostRe.test(host)) out.push(ep);
  }
  return out;
}

const DENY_BASE = { inspect: false, tlsSkip: false, allowedIps: [] as string[] };

function deny(reason: string, entry?: string, rule?: string): Decision {
  return { verdict: "deny", entry, rule, reason, ...DENY_BASE };
}

/** The canonical form of a request path, or why it has none. */
export function canonicalPath(
  raw: string,
  allowEncodedSlash: boolean,
): { path: string } | { error: string } {
  if (raw.length > MAX_PATH_LENGTH) return { error: `path longer than ${MAX_PATH_LENGTH}` };
  if (!raw.startsWith("/")) return { error: "path does not start with /" };
  const out: string[] = [];
  const parts = raw.split("/");
  let last = "";
  for (let i = 1; i < parts.length; i++) {
    let seg = parts[i];
    const semi = seg.indexOf(";");
    if (semi >= 0) seg = seg.slice(0, semi);
    if (seg.includes("%")) {
      if (/%2f/i.test(seg) && !allowEncodedSlash) {
        return { error: "path has an encoded slash (%2F)" };
      }
      let decoded = "";
      for (const piece of seg.split(/(%2[fF])/)) {
        if (/^%2[fF]$/.test(piece)) {
          decoded += "%2F";
          continue;
        }
        try {
          decoded += decodeURIComponent(piece);
        } catch {
          return { error: "path has invalid percent-encoding" };
        }
      }
      seg = decoded;
    }
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x1f\x7f]/.test(seg)) return { error: "path has control characters" };
    last = seg;
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length === 0) return { error: "path climbs above /" };
      out.pop();
      continue;
    }
    out.push(seg);
  }
  const trailing = out.length > 0 && (last === "" || last === "." || last === "..");
  return { path: "/" + out.join("/") + (trailing ? "/" : "") };
}

/** Query string to parameter values (form decoding, as servers read it). */
export function parseQuery(raw: string | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!raw) return out;
  for (const [k, v] of new URLSearchParams(raw)) {
    const list = out.get(k);
    if (list) list.push(v);
    else out.set(k, [v]);
  }
  return out;
}

function methodMatches(m: CompiledMatcher, method: string): boolean {
  if (m.methods === null) return true;
  return m.methods.has(method) || (method === "HEAD" && m.methods.has("GET"));
}

/** Allow rules: every configured parameter present and every one of its values matching. */
function allowQueryMatches(m: CompiledMatcher, query: Map<string, string[]>): boolean {
  for (const q of m.query) {
    const values = query.get(q.name);
    if (!values || values.length === 0) return false;
    for (const v of values) if (!q.values.some((re) => re.test(v))) return false;
  }
  return true;
}

/** Deny rules: every configured parameter present, one matching value each is enough. */
function denyQueryMatches(m: CompiledMatcher, query: Map<string, string[]>): boolean {
  for (const q of m.query) {
    const values = query.get(q.name);
    if (!values || !values.some((v) => q.values.some((re) => re.test(v)))) return false;
  }
  return true;
}

function requestMatches(
  m: CompiledMatcher,
  method: string,
  path: string,
  query: Map<string, string[]>,
  kind: "allow" | "deny",
): boolean {
  if (!methodMatches(m, method)) return false;
  if (kind === "allow") {
    return (m.path === null || m.path.test(path)) && allowQueryMatches(m, query);
  }
  // A deny rule for /x also denies /x/ (servers commonly serve both alike).
  const pathHit = m.path === null || m.path.test(path) ||
    (path.length > 1 && path.endsWith("/") && m.path.test(path.slice(0, -1)));
  return pathHit && denyQueryMatches(m, query);
}

function describeAllowed(ep: CompiledEndpoint): string {
  return ep.allow.map((m) =>
    `${m.methods ? [...m.methods].join("/") : "any method"} ${
      m.pathText === "**" ? "any path" : m.pathText
    }`
  ).join("; ");
}

/** Decides one request. Pure: the same policy and request always give the same decision. */
export function decide(compiled: CompiledPolicy, req: DecisionRequest): Decision {
  const host = normalizeHost(req.host);
  const target = `${host}:${req.port}`;
  if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535) {
    return deny(`port ${req.port} is not a TCP port`);
  }
  if (!/^[a-z0-9._:-]{1,253}$/.test(host)) {
    return deny(`host ${JSON.stringify(req.host)} is not a host name or IP address`);
  }
  const hostHits = hostCandidates(compiled, host);
  const portHits = hostHits.filter((ep) => ep.ports.has(req.port));
  if (portHits.length === 0) {
    const ep = hostHits.find((e) => e.host !== undefined);
    if (ep) {
      return deny(
        `port ${req.port} is not allowed for ${host} (entry ${ep.entry} allows port ${
          [...ep.ports].join(", ")
        })`,
        ep.entry,
        `endpoints[${ep.index}]`,
      );
    }
    return deny(`no network_policies entry allows ${target}`);
  }
  const hits = portHits.filter((ep) =>
    binaryMatches(ep.binaries, req.binary) ||
    (req.ancestors !== undefined && req.ancestors.some((a) => binaryMatches(ep.binaries, a)))
  );
  if (hits.length === 0) {
    const ep = portHits[0];
    const who = req.binary === ""
      ? "an unidentified program"
      : isCanonicalPath(req.binary)
      ? req.binary
      : `${JSON.stringify(req.binary)} (not a canonical absolute path)`;
    const parents = req.ancestors?.length ? ` (nor its parents ${req.ancestors.join(", ")})` : "";
    const allowed = ep.binaries.map((b) => b.text).join(", ") || "no binaries";
    return deny(
      `${who}${parents} may not connect to ${target} (entry ${ep.entry} allows: ${allowed})`,
      ep.entry,
      "binaries",
    );
  }

  if (req.method === undefined || req.path === undefined) {
    const inspect = hits.some((ep) => ep.inspect);
    const first = hits.find((ep) => ep.inspect === inspect)!;
    const ips = new Set<string>();
    for (const ep of hits) for (const ip of ep.allowedIps) ips.add(ip);
    return {
      verdict: "allow",
      entry: first.entry,
      rule: `endpoints[${first.index}]`,
      reason: `entry ${first.entry} allows ${req.binary} to reach ${target}`,
      inspect,
      tlsSkip: !inspect && hits.some((ep) => ep.tlsSkip),
      allowedIps: [...ips],
    };
  }

  const inspected = hits.filter((ep) => ep.inspect);
  if (inspected.length === 0) {
    const ep = hits[0];
    return {
      verdict: "allow",
      entry: ep.entry,
      rule: `endpoints[${ep.index}]`,
      reason: `entry ${ep.entry} allows ${target} without request rules`,
      ...DENY_BASE,
    };
  }

  const method = req.method.toUpperCase();
  const query = parseQuery(req.query);
  let canonical: { path: string } | { error: string } | undefined;
  let canonicalSlash: { path: string } | { error: string } | undefined;
  let allowHit: { ep: CompiledEndpoint; m: CompiledMatcher } | undefined;
  let auditDeny: { ep: CompiledEndpoint; m: CompiledMatcher } | undefined;
  let broken: { ep: CompiledEndpoint; why: string } | undefined;
  for (const ep of inspected) {
    const c = ep.allowEncodedSlash
      ? (canonicalSlash ??= canonicalPath(req.path, true))
      : (canonical ??= canonicalPath(req.path, false));
    if ("error" in c) {
      if (ep.enforcement === "enforce") {
        return deny(
          `${method} ${req.path} refused: ${c.error}`,
          ep.entry,
          `endpoints[${ep.index}]`,
        );
      }
      broken ??= { ep, why: c.error };
      continue;
    }
    for (const m of ep.deny) {
      if (requestMatches(m, method, c.path, query, "deny")) {
        if (ep.enforcement === "enforce") {
          return deny(
            `${method} ${c.path} on ${target} is blocked by a deny rule`,
            ep.entry,
            m.rule,
          );
        }
        auditDeny ??= { ep, m };
      }
    }
    if (!allowHit) {
      for (const m of ep.allow) {
        if (requestMatches(m, method, c.path, query, "allow")) {
          allowHit = { ep, m };
          break;
        }
      }
    }
  }
  const shown = canonical && "path" in canonical ? canonical.path : req.path;
  if (auditDeny) {
    return {
      verdict: "audit-allow",
      entry: auditDeny.ep.entry,
      rule: auditDeny.m.rule,
      reason:
        `${method} ${shown} matches a deny rule; allowed because the endpoint is in audit mode`,
      ...DENY_BASE,
    };
  }
  if (allowHit) {
    return {
      verdict: "allow",
      entry: allowHit.ep.entry,
      rule: allowHit.m.rule,
      reason: `entry ${allowHit.ep.entry} allows ${method} ${shown} on ${target}`,
      ...DENY_BASE,
    };
  }
  const audit = broken?.ep ?? inspected.find((ep) => ep.enforcement === "audit");
  if (audit) {
    return {
      verdict: "audit-allow",
      entry: audit.entry,
      rule: `endpoints[${audit.index}]`,
      reason: `${method} ${shown} is not allowed by entry ${audit.entry}` +
        (broken ? ` (${broken.why})` : "") + "; allowed because the endpoint is in audit mode",
      ...DENY_BASE,
    };
  }
  const ep = inspected[0];
  return deny(
    `${method} ${shown} is not allowed on ${target} (entry ${ep.entry} allows ${
      describeAllowed(ep)
    })`,
    ep.entry,
    `endpoints[${ep.index}]`,
  );
}
