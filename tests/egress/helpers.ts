// Shared by the egress tests: real loopback upstreams (HTTP, HTTPS with a test CA, WebSocket),
// a proxy with an injected resolver (names under .test resolve to 127.0.0.1), a small
// rule-table decision function, and raw-socket clients.
//
// Why an injected resolver plus allowed_ips rather than a network namespace: the SSRF guard
// refuses loopback, so a test either teaches the proxy that "*.test" lives on 127.0.0.1 and
// lets the policy's allowed_ips cover 127.0.0.0/8 (what these tests do, and no root needed),
// or builds a veth pair into a namespace. The guard itself is tested on its own: with an empty
// allowed_ips the same requests are refused.

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { join } from "node:path";
import type { Decision, DecisionRequest } from "../../core/policy/decision.ts";
import { InspectionCa } from "../../core/egress/ca.ts";
import { type AuditSink, EgressProxy, type EgressProxyOptions } from "../../core/egress/proxy.ts";
import type { AuditEvent } from "../../core/audit/events.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64").match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** A CA for test upstream servers (stands in for a public CA) and one server cert from it. */
export async function upstreamPki(
  names: string[],
): Promise<{ caPem: string; cert: string; key: string }> {
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "0a",
    name: "CN=test upstream CA",
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "0b",
    subject: `CN=${names[0]}`,
    issuer: ca.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    signingKey: caKeys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => ({
          type: /^[0-9.]+$/.test(n) ? "ip" as const : "dns" as const,
          value: n,
        })),
      ),
    ],
  });
  return {
    caPem: ca.toString("pem"),
    cert: leaf.toString("pem"),
    key: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", keys.privateKey)),
  };
}

/** `n` deterministic pseudo-random bytes for `seed` (what /random?n=&seed= serves). */
export function randomBytesFor(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

/** What the upstream saw, echoed as JSON. */
export interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  if (url.pathname === "/bytes") {
    const n = Number(url.searchParams.get("n") ?? "0");
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": n });
    const block = Buffer.alloc(64 * 1024, 120);
    let left = n;
    const pump = () => {
      while (left > 0) {
        const c = block.subarray(0, Math.min(left, block.length));
        left -= c.length;
        if (!res.write(c)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
    return;
  }
  if (url.pathname === "/random") {
    // Deterministic pseudo-random bytes (xorshift), so corruption or reordering shows.
    const n = Number(url.searchParams.get("n") ?? "0");
    const body = randomBytesFor(n, Number(url.searchParams.get("seed") ?? "1"));
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": n });
    res.end(body);
    return;
  }
  if (url.pathname === "/chunked") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("part1-");
    setTimeout(() => res.end("part2"), 5);
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const echo: Echo = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    };
    const text = JSON.stringify(echo);
    res.writeHead(200, {
      "content-type": "application/json",
      "x-echo-auth": String(req.headers.authorization ?? ""),
    });
    res.end(text);
  });
}

/** Accepts WebSocket upgrades on /ws and echoes raw bytes after the 101 (enough for a test). */
function upgrade(req: http.IncomingMessage, sock: net.Socket, head: Buffer): void {
  if (req.url !== "/ws") return void sock.destroy();
  sock.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: test\r\n\r\n",
  );
  if (head.length) sock.write(head);
  sock.on("data", (d) => sock.write(d));
  sock.on("end", () => sock.end());
  sock.on("error", () => sock.destroy());
}

export interface Upstream {
  port: number;
  close(): Promise<void>;
}

export async function httpUpstream(host = "127.0.0.1"): Promise<Upstream> {
  const server = http.createServer(handler);
  server.on("upgrade", upgrade);
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

export async function httpsUpstream(
  cert: string,
  key: string,
  host = "127.0.0.1",
): Promise<Upstream> {
  const server = https.createServer({ cert, key }, handler);
  server.on("upgrade", upgrade);
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A rule for tableDecide: host (exact), optional port/binary/method/path prefix. */
export interface TestRule {
  host: string;
  port?: number;
  binary?: string;
  methods?: string[];
  pathPrefix?: string;
  tlsSkip?: boolean;
  allowedIps?: string[];
  audit?: boolean;
}

/**
 * A tiny decision function with the contract's shape, standing in for the PDP: an endpoint is
 * a TestRule; methods/pathPrefix make it request-level (inspect).
 */
export function tableDecide(rules: TestRule[], calls: DecisionRequest[] = []) {
  return (q: DecisionRequest): Promise<Decision> => {
    calls.push(q);
    const i = rules.findIndex((r) =>
      r.host === q.host && (r.port === undefined || r.port === q.port) &&
      (r.binary === undefined || r.binary === q.binary)
    );
    const none = { inspect: false, tlsSkip: false, allowedIps: [] };
    if (i < 0) {
      return Promise.resolve({
        verdict: "deny",
        reason: `no network_policies endpoint allows ${q.host}:${q.port} for binary "${q.binary}"`,
        ...none,
      });
    }
    const r = rules[i];
    const inspect = r.methods !== undefined || r.pathPrefix !== undefined;
    const base = {
      entry: "test",
      inspect,
      tlsSkip: r.tlsSkip ?? false,
      allowedIps: r.allowedIps ?? ["127.0.0.0/8"],
    };
    if (q.method !== undefined) {
      const okMethod = !r.methods || r.methods.includes(q.method);
      const okPath = !r.pathPrefix || (q.path ?? "").startsWith(r.pathPrefix);
      if (!okMethod || !okPath) {
        return Promise.resolve({
          verdict: "deny",
          rule: `endpoints[${i}]`,
          reason: `no rule allows ${q.method} ${q.path} on ${q.host}`,
          ...base,
        });
      }
    }
    return Promise.resolve({
      verdict: r.audit ? "audit-allow" : "allow",
      rule: `endpoints[${i}]`,
      reason: "allowed by test rule",
      ...base,
    });
  };
}

/** Resolves names under .test to `ip` (default 127.0.0.1), counting calls; others fail. */
export function testResolver(calls: string[] = [], ip = "127.0.0.1") {
  return (host: string): Promise<string[]> => {
    calls.push(host);
    if (host.endsWith(".test")) return Promise.resolve([ip]);
    return Promise.reject(new Error(`ENOTFOUND ${host}`));
  };
}

export class MemoryAudit implements AuditSink {
  events: AuditEvent[] = [];
  record(e: AuditEvent): void {
    this.events.push(e);
  }
}

export interface TestProxy {
  proxy: EgressProxy;
  port: number;
  url: string;
  audit: MemoryAudit;
  close(): Promise<void>;
}

export async function startProxy(
  rules: TestRule[],
  extra: Partial<EgressProxyOptions> = {},
): Promise<TestProxy> {
  const audit = new MemoryAudit();
  const proxy = new EgressProxy({
    sandbox: "test-sandbox",
    decide: tableDecide(rules),
    resolve: testResolver(),
    audit,
    ...extra,
  });
  const port = await proxy.listenTcp();
  return { proxy, port, url: `http://127.0.0.1:${port}`, audit, close: () => proxy.close() };
}

export function testInspectionCa(): Promise<InspectionCa> {
  return InspectionCa.create("test");
}

/** Sends raw bytes on a TCP connection and returns everything read until close or timeout. */
export function rawExchange(
  port: number,
  data: string | Uint8Array,
  opts: { timeoutMs?: number; path?: string; end?: boolean } = {},
): Promise<string> {
  return new Promise((resolve) => {
    const sock = opts.path ? net.connect(opts.path) : net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Buffer.concat(chunks).toString("latin1"));
    };
    const timer = setTimeout(done, opts.timeoutMs ?? 3000);
    sock.on("connect", () => opts.end ? sock.end(data) : sock.write(data));
    sock.on("data", (c) => chunks.push(c));
    sock.on("close", done);
    sock.on("error", done);
  });
}

/** Runs curl through the proxy; returns status code, body and stderr. */
export async function curl(
  proxyUrl: string,
  args: string[],
): Promise<{ code: number; status: number; body: string; stderr: string }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", "-x", proxyUrl, "-w", "\n%{http_code}", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const nl = text.lastIndexOf("\n");
  return {
    code: out.code,
    status: Number(text.slice(nl + 1)),
    body: text.slice(0, nl),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

export const hasCurl = (() => {
  try {
    return new Deno.Command("curl", { args: ["--version"], stdout: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** Hex SHA-256 of `b`. */
export const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/**
 * curl (with `options`, e.g. the proxy) downloads each URL to a file, at most `maxTimeS`
 * seconds; returns the SHA-256 of each body, in order. curl failing fails the test.
 */
export async function curlSha(options: string[], urls: string[], maxTimeS = 30): Promise<string[]> {
  const dir = Deno.makeTempDirSync();
  try {
    const outs = urls.flatMap((u, i) => ["-o", join(dir, `out${i}`), u]);
    const r = await new Deno.Command("curl", {
      args: ["-sS", "--fail", "--max-time", String(maxTimeS), ...options, ...outs],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    return urls.map((_, i) => sha(Deno.readFileSync(join(dir, `out${i}`))));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
