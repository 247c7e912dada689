// The egress proxy: an HTTP/1.1 forward proxy (absolute-form plain HTTP and CONNECT) that asks
// the policy for every connection and, where the policy has request-level rules, for every
// request; resolves names itself behind the SSRF guard; and audits everything.
//
// Listeners: a unix socket for the sandbox's bridge (the caller line is trusted there) and,
// for rootless mode, a loopback TCP port (the caller line is refused there: the agent reaches
// it directly and could claim any identity).

import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import type { Decision, DecisionRequest } from "../policy/decision.ts";
import type { AuditEvent } from "../audit/events.ts";
import { copyBody, write } from "./body.ts";
import { type Caller, readCaller, UNKNOWN_CALLER } from "./caller.ts";
import { formatAuthority, parseAuthority } from "./host.ts";
import {
  DEFAULT_HEAD_LIMITS,
  type Header,
  headerTokens,
  headerValues,
  type HeadLimits,
  HttpParseError,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  responseFraming,
} from "./http_parse.ts";
import { StreamReader, TimeoutError } from "./reader.ts";
import { type Resolver, systemResolver } from "./resolve.ts";
import { type DenialBody, respond, respondError } from "./respond.ts";
import { tunnel } from "./tunnel.ts";
import { openUpstream, type Target } from "./upstream.ts";

export type DecideFn = (req: DecisionRequest) => Promise<Decision>;

/** Where audit events go (core/audit's AuditLog fits). Throwing stops the traffic. */
export interface AuditSink {
  record(event: AuditEvent): unknown;
}

export interface ProxyLimits {
  head: HeadLimits;
  /** A request head must arrive within this time after its first byte (slowloris). */
  headerTimeoutMs: number;
  /** A kept-alive client connection with no new request is closed after this time. */
  idleTimeoutMs: number;
  /** A body or tunnel with no bytes moving for this long is closed. */
  transferIdleMs: number;
  /** Upstream connect and TLS handshake. */
  connectTimeoutMs: number;
  /** Client connections served at once; more are closed on accept. */
  maxConnections: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  head: DEFAULT_HEAD_LIMITS,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  transferIdleMs: 300_000,
  connectTimeoutMs: 10_000,
  maxConnections: 20_000,
};

export interface EgressProxyOptions {
  /** The sandbox's name, for audit records. */
  sandbox: string;
  /** The policy decision function (the PDP client, or decide() bound to a policy). */
  decide: DecideFn;
  /** Default: the system resolver. */
  resolve?: Resolver;
  audit?: AuditSink;
  limits?: Partial<ProxyLimits>;
}

/** One client connection's state. */
interface Conn {
  sock: Duplex;
  reader: StreamReader;
  caller: Caller;
  /** Connection-level decisions already made on this connection, by "host:port". */
  decisions: Map<string, Decision>;
}

/** Upstream connection kept between requests of one client connection. */
interface Upstream {
  key: string;
  sock: Duplex;
  reader: StreamReader;
  ip: string;
}

const HOP_BY_HOP = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

/** The audit record's verdict word for a Decision. */
function auditDecision(d: Decision): "allow" | "deny" | "audit" {
  return d.verdict === "audit-allow" ? "audit" : d.verdict;
}

function ruleName(d: Decision): string | undefined {
  if (d.entry && d.rule) return `${d.entry}.${d.rule}`;
  return d.entry ?? d.rule;
}

/** Splits an absolute-form target "http://authority/path?query". */
export function parseAbsoluteTarget(
  target: string,
): { authority: string; path: string; query: string } {
  const m = target.match(/^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/);
  if (!m) {
    if (target.includes("#")) throw new HttpParseError(400, "fragment in request target");
    throw new HttpParseError(400, "request target must be absolute-form http://host/path");
  }
  const scheme = m[1].toLowerCase();
  if (scheme !== "http") {
    throw new HttpParseError(400, `scheme ${scheme} is not proxied; use CONNECT for https`);
  }
  return { authority: m[2], path: m[3] || "/", query: m[4] ?? "" };
}

/** Splits an origin-form target "/path?query". */
function parseOriginTarget(target: string): { path: string; query: string } {
  if (!target.startsWith("/") || target.includes("#")) {
    throw new HttpParseError(400, "request target must be origin-form /path");
  }
  const q = target.indexOf("?");
  return q < 0
    ? { path: target, query: "" }
    : { path: target.slice(0, q), query: target.slice(q + 1) };
}

function wantsWebSocket(req: RequestHead): boolean {
  return headerTokens(req.headers, "upgrade").includes("websocket") &&
    headerTokens(req.headers, "connection").includes("upgrade");
}

function clientKeepsAlive(req: RequestHead): boolean {
  const c = headerTokens(req.headers, "connection");
  if (c.includes("close")) return false;
  return req.version === "HTTP/1.1" || c.includes("keep-alive");
}

/** Request head as sent upstream: origin-form, our Host, no hop-by-hop fields. */
function upstreamRequestHead(
  req: RequestHead,
  originTarget: string,
  hostHeader: string,
  websocket: boolean,
  headers: Header[],
): string {
  const named = new Set(headerTokens(req.headers, "connection"));
  let out = `${req.method} ${originTarget} HTTP/1.1\r\nHost: ${hostHeader}\r\n`;
  for (const [k, v] of headers) {
    const l = k.toLowerCase();
    if (HOP_BY_HOP.has(l) || named.has(l)) continue;
    out += `${k}: ${v}\r\n`;
  }
  if (req.framing.kind === "chunked") out += "Transfer-Encoding: chunked\r\n";
  if (websocket) out += "Connection: Upgrade\r\nUpgrade: websocket\r\n";
  return out + "\r\n";
}

export class EgressProxy {
  readonly #opt: EgressProxyOptions;
  readonly #limits: ProxyLimits;
  readonly #resolve: Resolver;
  readonly #servers: net.Server[] = [];
  readonly #conns = new Set<Duplex>();

  constructor(options: EgressProxyOptions) {
    this.#opt = options;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#resolve = options.resolve ?? systemResolver;
  }

  /** Client connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Listens on a unix stream socket (mode 0600); the caller line is trusted here. */
  async listenUnix(path: string): Promise<void> {
    try {
      if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
    } catch { /* absent */ }
    const server = this.#server(true);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    fs.chmodSync(path, 0o600);
  }

  /** Listens on a loopback TCP port (0: any); returns the port. Caller lines are refused. */
  async listenTcp(port = 0, host = "127.0.0.1"): Promise<number> {
    const server = this.#server(false);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    const closing = this.#servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const c of this.#conns) c.destroy();
    await Promise.all(closing);
  }

  #server(trusted: boolean): net.Server {
    const server = net.createServer({ pauseOnConnect: false }, (sock) => {
      if (this.#conns.size >= this.#limits.maxConnections) {
        sock.destroy();
        return;
      }
      this.#conns.add(sock);
      sock.on("close", () => this.#conns.delete(sock));
      sock.on("error", () => {});
      this.#serve(sock, trusted).catch(() => sock.destroy());
    });
    this.#servers.push(server);
    return server;
  }

  #record(event: AuditEvent): void {
    this.#opt.audit?.record({ sandbox: this.#opt.sandbox, ...event });
  }

  async #serve(sock: net.Socket, trusted: boolean): Promise<void> {
    if ("setNoDelay" in sock) sock.setNoDelay(true);
    const reader = new StreamReader(sock);
    let caller: Caller = UNKNOWN_CALLER;
    try {
      caller = await readCaller(reader, Date.now() + this.#limits.headerTimeoutMs, trusted);
    } catch (e) {
      this.#fail(sock, e);
      return;
    }
    const conn: Conn = { sock, reader, caller, decisions: new Map() };
    await this.#httpLoop(conn, null);
  }

  /** Answers a failure the client caused or suffered, then closes. */
  #fail(sock: Duplex, e: unknown): void {
    if (e instanceof HttpParseError) respondError(sock, e.status, e.message);
    else if (e instanceof TimeoutError) respondError(sock, 408, e.message);
    else sock.destroy();
  }

  async #decide(req: DecisionRequest): Promise<Decision> {
    try {
      return await this.#opt.decide(req);
    } catch (e) {
      // Fail closed: no answer from the policy is a denial.
      return {
        verdict: "deny",
        reason: `policy decision failed: ${(e as Error).message}`,
        inspect: false,
        tlsSkip: false,
        allowedIps: [],
      };
    }
  }

  #deny(conn: Conn, d: Decision, t: Target, method?: string, path?: string, keepAlive = false) {
    const body: DenialBody = {
      error: "denied",
      reason: d.reason,
      host: t.host,
      port: t.port,
      binary: conn.caller.exe,
      ...(method ? { method } : {}),
      ...(path ? { path } : {}),
      ...(d.entry ? { entry: d.entry } : {}),
      ...(d.rule ? { rule: d.rule } : {}),
    };
    respond(conn.sock, 403, body, keepAlive);
  }

  #actor(conn: Conn) {
    return {
      ...(conn.caller.pid !== undefined ? { pid: conn.caller.pid } : {}),
      exe: conn.caller.exe,
    };
  }

  /**
   * Serves requests on a client connection. `fixed` is null for a forward-proxy connection
   * (absolute-form requests and CONNECT), or the CONNECT target and decision when the proxy
   * reads requests inside a tunnel it terminated (origin-form requests to that one target).
   */
  async #httpLoop(
    conn: Conn,
    fixed: { target: Target; decision: Decision; tls: boolean } | null,
  ): Promise<void> {
    const { reader, sock } = conn;
    const L = this.#limits;
    let upstream: Upstream | null = null;
    const dropUpstream = () => {
      upstream?.sock.destroy();
      upstream = null;
    };
    try {
      for (;;) {
        await reader.peek(1, Date.now() + L.idleTimeoutMs);
        if (reader.ended) return;
        const head = await reader.readHead(L.head.maxHeadBytes, Date.now() + L.headerTimeoutMs);
        if (!head) return;
        const req = parseRequestHead(head, L.head);
        const started = performance.now();

        if (req.method === "CONNECT") {
          if (fixed) throw new HttpParseError(400, "CONNECT inside a tunnel");
          dropUpstream();
          await this.#connect(conn, req);
          return;
        }

        let target: Target, path: string, query: string;
        if (fixed) {
          const t = req.target.startsWith("/")
            ? parseOriginTarget(req.target)
            : parseAbsoluteTarget(req.target);
          target = fixed.target;
          ({ path, query } = t);
          const hostHeader = headerValues(req.headers, "host")[0];
          if (hostHeader !== undefined) {
            const h = parseAuthority(hostHeader, fixed.tls ? 443 : 80);
            if (h.host !== target.host || h.port !== target.port) {
              throw new HttpParseError(400, "Host header does not match the CONNECT target");
            }
          }
        } else {
          const t = parseAbsoluteTarget(req.target);
          try {
            target = parseAuthority(t.authority, 80);
          } catch (e) {
            throw new HttpParseError(400, (e as Error).message);
          }
          ({ path, query } = t);
        }
        const binary = conn.caller.exe;
        const url = `${fixed?.tls ? "https" : "http"}://${
          formatAuthority(target.host, target.port, fixed?.tls ? 443 : 80)
        }${path}${query ? `?${query}` : ""}`;
        const httpEvent = (d: Decision, status?: number, ip?: string) =>
          this.#record({
            class: "http",
            activity: "request",
            dst: { host: target.host, port: target.port, ...(ip ? { ip } : {}) },
            http: { method: req.method, url, ...(status !== undefined ? { status } : {}) },
            actor: this.#actor(conn),
            decision: auditDecision(d),
            ...(ruleName(d) ? { rule: ruleName(d) } : {}),
            reason: d.reason,
          });

        // Connection-level decision (once per target on this connection).
        const key = `${target.host}:${target.port}`;
        let decision = fixed?.decision ?? conn.decisions.get(key);
        if (!decision) {
          decision = await this.#decide({ binary, host: target.host, port: target.port });
          conn.decisions.set(key, decision);
        }
        const keepAlive = clientKeepsAlive(req) && req.framing.kind === "none";
        if (decision.verdict === "deny") {
          httpEvent(decision, 403);
          this.#deny(conn, decision, target, req.method, path, keepAlive);
          if (!keepAlive) return;
          continue;
        }
        // Request-level decision where the endpoint has request rules.
        let effective = decision;
        if (decision.inspect) {
          const rd = await this.#decide({
            binary,
            host: target.host,
            port: target.port,
            method: req.method,
            path,
            query,
          });
          effective = { ...decision, ...rd, allowedIps: decision.allowedIps };
          if (rd.verdict === "deny") {
            httpEvent(rd, 403);
            this.#deny(conn, rd, target, req.method, path, keepAlive);
            if (!keepAlive) return;
            continue;
          }
        }

        // Upstream: reuse the kept one for the same target, else open (resolve + SSRF check).
        const upKey = `${fixed?.tls ? "tls" : "tcp"}:${key}`;
        if (upstream && (upstream.key !== upKey || upstream.reader.ended)) dropUpstream();
        if (!upstream) {
          const up = await this.#openUpstream(conn, target, effective, fixed?.tls ?? false);
          if (!up) {
            httpEvent(effective, 502);
            return;
          }
          upstream = { key: upKey, ...up };
        }
        const up: Upstream = upstream;

        const websocket = wantsWebSocket(req);
        const hostHeader = formatAuthority(target.host, target.port, fixed?.tls ? 443 : 80);
        const originTarget = `${path}${query ? `?${query}` : ""}`;
        await write(
          up.sock,
          upstreamRequestHead(req, originTarget, hostHeader, websocket, req.headers),
        );
        const up1 = await copyBody(reader, up.sock, req.framing, L.transferIdleMs);

        // Response: skip interim 1xx (forwarding them), then the final head and body.
        let res;
        let resHead: Buffer | null;
        for (;;) {
          resHead = await up.reader.readHead(
            L.head.maxHeadBytes,
            Date.now() + L.transferIdleMs,
          );
          if (!resHead) throw new UpstreamClosed();
          res = parseResponseHead(resHead, L.head);
          if (res.status >= 100 && res.status < 200 && res.status !== 101) {
            await write(sock, resHead);
            continue;
          }
          break;
        }
        if (res.status === 101) {
          if (!websocket) throw new UpstreamClosed();
          await write(sock, resHead);
          httpEvent(effective, 101, up.ip);
          const rest = up.reader.detach();
          const clientRest = reader.detach();
          upstream = null;
          await tunnel(sock, up.sock, L.transferIdleMs, { up: clientRest, down: rest });
          return;
        }
        const framing = responseFraming(req.method, res);
        const closeAfter = !clientKeepsAlive(req) || framing.kind === "close";
        await write(sock, responseHeadFor(res, closeAfter, framing.kind === "chunked"));
        const down = await copyBody(up.reader, sock, framing, L.transferIdleMs);
        httpEvent(effective, res.status, up.ip);
        void up1;
        void down;
        void started;
        if (framing.kind === "close" || headerTokens(res.headers, "connection").includes("close")) {
          dropUpstream();
        }
        if (closeAfter) {
          sock.end();
          return;
        }
      }
    } catch (e) {
      if (e instanceof UpstreamClosed) sock.destroy();
      else this.#fail(sock, e);
    } finally {
      dropUpstream();
    }
  }

  /** Opens the upstream for a target; on failure answers the client and returns null. */
  async #openUpstream(
    conn: Conn,
    target: Target,
    decision: Decision,
    _tls: boolean,
  ): Promise<{ sock: Duplex; reader: StreamReader; ip: string } | null> {
    const r = await openUpstream(
      target,
      decision.allowedIps,
      this.#resolve,
      this.#limits.connectTimeoutMs,
    );
    if (!r.ok) {
      this.#record({
        class: "network",
        activity: r.status === 403 ? "refuse" : "fail",
        dst: { host: target.host, port: target.port, ...(r.ip ? { ip: r.ip } : {}) },
        actor: this.#actor(conn),
        decision: r.status === 403 ? "deny" : auditDecision(decision),
        reason: r.reason,
      });
      if (r.status === 403) {
        respond(
          conn.sock,
          403,
          {
            error: "denied",
            reason: r.reason,
            host: target.host,
            port: target.port,
            binary: conn.caller.exe,
            rule: "allowed_ips",
          } satisfies DenialBody,
        );
      } else {
        respondError(conn.sock, r.status, r.reason);
      }
      return null;
    }
    r.sock.on("error", () => {});
    return { sock: r.sock, reader: new StreamReader(r.sock), ip: r.ip };
  }

  /** CONNECT host:port: decide, check, connect, then tunnel. */
  async #connect(conn: Conn, req: RequestHead): Promise<void> {
    let target: Target;
    try {
      target = parseAuthority(req.target);
    } catch (e) {
      throw new HttpParseError(400, `bad CONNECT target: ${(e as Error).message}`);
    }
    if (req.framing.kind !== "none") throw new HttpParseError(400, "CONNECT with a body");
    const started = performance.now();
    const decision = await this.#decide({
      binary: conn.caller.exe,
      host: target.host,
      port: target.port,
    });
    const base = {
      dst: { host: target.host, port: target.port },
      actor: this.#actor(conn),
      decision: auditDecision(decision),
      ...(ruleName(decision) ? { rule: ruleName(decision) } : {}),
      reason: decision.reason,
    };
    this.#record({
      class: "http",
      activity: "connect",
      ...base,
      http: { method: "CONNECT", url: formatAuthority(target.host, target.port) },
    });
    if (decision.verdict === "deny") {
      this.#deny(conn, decision, target, "CONNECT");
      return;
    }
    const up = await this.#openUpstream(conn, target, decision, false);
    if (!up) return;
    this.#record({ class: "network", activity: "open", ...base, dst: { ...base.dst, ip: up.ip } });
    const early = conn.reader.detach();
    up.reader.detach();
    await write(conn.sock, "HTTP/1.1 200 Connection Established\r\n\r\n");
    const t = await tunnel(conn.sock, up.sock, this.#limits.transferIdleMs, { up: early });
    this.#record({
      class: "network",
      activity: "close",
      ...base,
      dst: { ...base.dst, ip: up.ip },
      bytes_out: t.up,
      bytes_in: t.down,
      duration_ms: Math.round(performance.now() - started),
    });
  }
}

class UpstreamClosed extends Error {}

/** Response head for the client: our own Connection handling, the rest as the upstream sent. */
function responseHeadFor(
  res: { version: string; status: number; reason: string; headers: Header[] },
  close: boolean,
  chunked: boolean,
): string {
  const named = new Set(headerTokens(res.headers, "connection"));
  let out = `HTTP/1.1 ${res.status} ${res.reason}\r\n`;
  for (const [k, v] of res.headers) {
    const l = k.toLowerCase();
    if (
      l === "connection" || l === "keep-alive" || l === "proxy-connection" ||
      l === "transfer-encoding" || named.has(l)
    ) continue;
    out += `${k}: ${v}\r\n`;
  }
  if (chunked) out += "Transfer-Encoding: chunked\r\n";
  if (close) out += "Connection: close\r\n";
  return out + "\r\n";
}
