// The egress proxy: an HTTP/1.1 forward proxy (absolute-form plain HTTP and CONNECT) that asks
// the policy for every connection and, where the policy has request-level rules, for every
// request (terminating TLS with the per-sandbox CA to see HTTPS requests); resolves names
// itself behind the SSRF guard; substitutes credential placeholders; audits everything.
//
// Listeners: a unix socket for the sandbox's bridge (the caller line is trusted there) and,
// for rootless mode, a loopback TCP port (the caller line is refused there: the agent reaches
// it directly and could claim any identity).

import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import type { AuditEvent } from "../audit/events.ts";
import type { Decision, DecisionRequest } from "../policy/decision.ts";
import { copyBody, write } from "./body.ts";
import type { InspectionCa } from "./ca.ts";
import { type Caller, readCaller, UNKNOWN_CALLER } from "./caller.ts";
import { formatAuthority, parseAuthority } from "./host.ts";
import {
  DEFAULT_HEAD_LIMITS,
  headerTokens,
  headerValues,
  type HeadLimits,
  HttpParseError,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  responseFraming,
  type ResponseHead,
} from "./http_parse.ts";
import {
  clientKeepsAlive,
  clientResponseHead,
  parseAbsoluteTarget,
  parseOriginTarget,
  upstreamRequestHead,
  wantsWebSocket,
} from "./messages.ts";
import type { CredentialStore } from "./placeholders.ts";
import { ReadFeed, StreamReader, TimeoutError } from "./reader.ts";
import { type Resolver, systemResolver } from "./resolve.ts";
import { type DenialBody, respond, respondError } from "./respond.ts";
import { tunnel, type UpWatch } from "./tunnel.ts";
import { ClientFrameScanner, closeFrame, OPCODE } from "./websocket_frames.ts";
import { openUpstream, startTls, type Target } from "./upstream.ts";

export type DecideFn = (req: DecisionRequest) => Promise<Decision>;

/** Finds the process behind a TCP client connection (rootless mode: see core/sandbox/caller.ts). */
export type IdentifyTcpCaller = (
  client: { address: string; port: number },
  server: { address: string; port: number },
) => Promise<Caller>;

/** Where audit events go (core/audit's AuditLog fits). Throwing stops the traffic. */
export interface AuditSink {
  record(event: AuditEvent): unknown;
}

export interface ProxyLimits {
  head: HeadLimits;
  /** A request head must arrive within this time after its first byte (slowloris). */
  headerTimeoutMs: number;
  /** A client connection with no request (first or next) is closed after this time. */
  idleTimeoutMs: number;
  /** A body or tunnel with no bytes moving for this long is closed. */
  transferIdleMs: number;
  /** Upstream connect and TLS handshakes. */
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

export interface InspectionOptions {
  /** The per-sandbox CA that signs the leaf certificates the agent sees. */
  ca: InspectionCa;
  /** CA certificates (PEM) upstream servers are verified against; default: the root store. */
  upstreamCa?: string[];
}

export interface EgressProxyOptions {
  /** The sandbox's name, for audit records. */
  sandbox: string;
  /** The policy decision function (the PDP client, or decide() bound to a policy). */
  decide: DecideFn;
  /** Default: the system resolver. */
  resolve?: Resolver;
  audit?: AuditSink;
  limits?: Partial<ProxyLimits>;
  /** HTTPS inspection; without it, connections that need inspection are refused. */
  inspection?: InspectionOptions;
  credentials?: CredentialStore;
  /**
   * `http://inference.local` is served by the privacy router listening on this loopback port
   * in the supervisor. The router applies the policy's privacy section itself, so these
   * requests are not asked of the PDP; they are audited like any other request.
   */
  inferenceLocal?: { port: number };
}

/** The name agents use for the privacy router (plain HTTP, port 80). */
export const INFERENCE_LOCAL_HOST = "inference.local";

const INFERENCE_LOCAL_DECISION: Decision = {
  verdict: "allow",
  entry: "privacy",
  rule: "inference.local",
  reason: "inference.local is served by the privacy router (the policy's privacy section)",
  inspect: false,
  tlsSkip: false,
  allowedIps: ["127.0.0.1/32"],
};

/** One client connection's state. */
interface Conn {
  sock: Duplex;
  reader: StreamReader;
  caller: Caller;
  /** The caller's pid is in the sandbox's PID namespace (it came from the bridge's caller line). */
  pidInSandbox: boolean;
  /** Connection-level decisions made on this connection, by "host:port". */
  decisions: Map<string, Decision>;
}

/** An upstream connection, kept between requests of one client connection. */
interface Upstream {
  key: string;
  sock: Duplex;
  reader: StreamReader;
  ip: string;
  target: Target;
  opened: number;
  up: number;
  down: number;
}

/** Inside a CONNECT the proxy terminated: every request goes to this one target. */
interface Fixed {
  target: Target;
  decision: Decision;
  tls: boolean;
}

/** The audit record's verdict word for a Decision. */
function auditDecision(d: Decision): "allow" | "deny" | "audit" {
  return d.verdict === "audit-allow" ? "audit" : d.verdict;
}

function ruleName(d: Decision): string | undefined {
  if (d.entry && d.rule) return `${d.entry}.${d.rule}`;
  return d.entry ?? d.rule;
}

/** Connection-level decisions remembered per client connection. */
const MAX_CACHED_DECISIONS = 64;

/** The decision request's view of the caller: the executable and, if known, its parents. */
function callerOf(c: Caller): { binary: string; ancestors?: string[] } {
  return c.ancestors?.length ? { binary: c.exe, ancestors: c.ancestors } : { binary: c.exe };
}

function denial(reason: string, rule?: string): Decision {
  return { verdict: "deny", reason, rule, inspect: false, tlsSkip: false, allowedIps: [] };
}

class UpstreamClosed extends Error {}

/** Ends a served client socket; destroys it if the peer has not closed its side 2 s later. */
function finish(sock: net.Socket): void {
  if (sock.destroyed) return;
  sock.end();
  const timer = setTimeout(() => sock.destroy(), 2000);
  sock.once("close", () => clearTimeout(timer));
}

/** The audit sink refused a record: the connection is dropped (fail closed). */
class AuditStopped extends Error {}

export class EgressProxy {
  readonly #opt: EgressProxyOptions;
  readonly #limits: ProxyLimits;
  readonly #resolve: Resolver;
  readonly #servers: net.Server[] = [];
  readonly #conns = new Set<Duplex>();
  /** Client sockets on which a response (or 100 Continue) has started and not completed. */
  readonly #answering = new WeakSet<Duplex>();

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

  /**
   * Listens on a loopback TCP port (0: any); returns the port. Caller lines are refused. With
   * `identify` (rootless mode), the caller is whatever it finds from the kernel's view of the
   * client socket, looked up when the connection is accepted.
   */
  async listenTcp(port = 0, host = "127.0.0.1", identify?: IdentifyTcpCaller): Promise<number> {
    const server = this.#server(false, identify);
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

  #server(trusted: boolean, identify?: IdentifyTcpCaller): net.Server {
    // Half-open allowed: a client may send its request and FIN and still read the answer.
    const server = net.createServer({ allowHalfOpen: true }, (sock) => {
      if (this.#conns.size >= this.#limits.maxConnections) {
        sock.destroy();
        return;
      }
      this.#conns.add(sock);
      sock.on("close", () => this.#conns.delete(sock));
      sock.on("error", () => {});
      const identified = identify?.(
        { address: sock.remoteAddress ?? "", port: sock.remotePort ?? 0 },
        { address: sock.localAddress ?? "", port: sock.localPort ?? 0 },
      ).catch(() => UNKNOWN_CALLER);
      this.#serve(sock, trusted, identified).catch(() => sock.destroy()).finally(() =>
        finish(sock)
      );
    });
    this.#servers.push(server);
    return server;
  }

  /** Records an audit event. Throws (stopping the traffic) when the audit log fails. */
  #record(event: AuditEvent): void {
    try {
      this.#opt.audit?.record({ sandbox: this.#opt.sandbox, ...event } as AuditEvent);
    } catch (e) {
      throw new AuditStopped(`audit log refused a record: ${(e as Error).message}`);
    }
  }

  async #serve(sock: net.Socket, trusted: boolean, identified?: Promise<Caller>): Promise<void> {
    sock.setNoDelay(true);
    const reader = new StreamReader(sock);
    let caller: Caller = UNKNOWN_CALLER;
    try {
      caller = await readCaller(reader, Date.now() + this.#limits.idleTimeoutMs, trusted);
      if (identified) caller = await identified;
    } catch (e) {
      this.#fail(sock, e);
      return;
    }
    await this.#httpLoop(
      { sock, reader, caller, pidInSandbox: trusted && !identified, decisions: new Map() },
      null,
      null,
    );
  }

  /** Answers a failure the client caused or suffered, then closes. */
  #fail(sock: Duplex, e: unknown): void {
    // Once response bytes went out, an answer of our own would corrupt the stream: just close.
    if (this.#answering.has(sock)) sock.destroy();
    else if (e instanceof HttpParseError) respondError(sock, e.status, e.message);
    else if (e instanceof TimeoutError) respondError(sock, 408, e.message);
    else if (e instanceof UpstreamClosed || e instanceof AuditStopped) sock.destroy();
    else respondError(sock, 502, (e as Error).message ?? String(e));
  }

  async #decide(req: DecisionRequest): Promise<Decision> {
    try {
      return await this.#opt.decide(req);
    } catch (e) {
      // Fail closed: no answer from the policy is a denial.
      return denial(`policy decision failed: ${(e as Error).message}`);
    }
  }

  /** The audit record's actor: the same pid fields as process records, and the exe's hash. */
  #actor(conn: Conn) {
    const c = conn.caller;
    return {
      ...(c.pid === undefined ? {} : conn.pidInSandbox ? { ns_pid: c.pid } : { pid: c.pid }),
      exe: c.exe,
      ...(c.sha256 ? { sha256: c.sha256 } : {}),
    };
  }

  #deny(
    conn: Conn,
    d: Decision,
    t: Target,
    method: string,
    path: string | undefined,
    keepAlive: boolean,
  ): void {
    const body: DenialBody = {
      error: "denied",
      reason: d.reason,
      host: t.host,
      port: t.port,
      binary: conn.caller.exe,
      method,
      ...(path !== undefined ? { path } : {}),
      ...(d.entry ? { entry: d.entry } : {}),
      ...(d.rule ? { rule: d.rule } : {}),
    };
    respond(conn.sock, 403, body, keepAlive);
  }

  /**
   * Serves requests on a client connection. `fixed` is null for a forward-proxy connection
   * (absolute-form requests and CONNECT), or the CONNECT target and decision when the proxy
   * reads requests inside a tunnel it terminated. `initial` is an upstream already open.
   */
  async #httpLoop(conn: Conn, fixed: Fixed | null, initial: Upstream | null): Promise<void> {
    const { reader, sock } = conn;
    const L = this.#limits;
    let upstream: Upstream | null = initial;
    const dropUpstream = () => {
      if (upstream) this.#closeUpstream(conn, upstream);
      upstream = null;
    };
    try {
      for (;;) {
        await reader.peek(1, Date.now() + L.idleTimeoutMs);
        if (reader.ended) return;
        const head = await reader.readHead(L.head.maxHeadBytes, Date.now() + L.headerTimeoutMs);
        if (!head) return;
        const req = parseRequestHead(head, L.head);
        if (req.method === "CONNECT") {
          if (fixed) throw new HttpParseError(400, "CONNECT inside a tunnel");
          dropUpstream();
          await this.#connect(conn, req);
          return;
        }
        const next = await this.#exchange(conn, fixed, req, upstream);
        upstream = next.upstream;
        if (!next.keepAlive) {
          sock.end();
          return;
        }
      }
    } catch (e) {
      this.#fail(sock, e);
    } finally {
      dropUpstream();
    }
  }

  /** One request and its response. Returns the upstream to keep and whether to go on. */
  async #exchange(
    conn: Conn,
    fixed: Fixed | null,
    req: RequestHead,
    kept: Upstream | null,
  ): Promise<{ upstream: Upstream | null; keepAlive: boolean }> {
    const L = this.#limits;
    const started = performance.now();
    const scheme = fixed?.tls ? "https" : "http";
    const defaultPort = fixed?.tls ? 443 : 80;
    let target: Target, path: string, query: string;
    try {
      if (fixed) {
        ({ path, query } = req.target.startsWith("/")
          ? parseOriginTarget(req.target)
          : parseAbsoluteTarget(req.target));
        target = fixed.target;
        const host = headerValues(req.headers, "host")[0];
        if (host !== undefined) {
          const h = parseAuthority(host, defaultPort);
          if (h.host !== target.host || h.port !== target.port) {
            throw new HttpParseError(400, "Host header does not match the CONNECT target");
          }
        }
      } else {
        const t = parseAbsoluteTarget(req.target);
        target = parseAuthority(t.authority, 80);
        ({ path, query } = t);
      }
    } catch (e) {
      if (e instanceof HttpParseError) throw e;
      throw new HttpParseError(400, `bad request target: ${(e as Error).message}`);
    }
    const authority = formatAuthority(target.host, target.port, defaultPort);
    const originTarget = `${path}${query ? `?${query}` : ""}`;
    const who = callerOf(conn.caller);
    // The WebSocket handshake has no body (RFC 6455 4.1); one would reach the upstream before the
    // 101, where servers read it as the first frames, unseen by the message rules.
    if (wantsWebSocket(req) && req.framing.kind !== "none") {
      throw new HttpParseError(400, "a WebSocket upgrade request must not have a body");
    }
    const io = { up: 0, down: 0, ip: "" };
    const audit = (d: Decision, status: number) =>
      this.#record({
        class: "http",
        activity: "request",
        dst: { host: target.host, port: target.port, ...(io.ip ? { ip: io.ip } : {}) },
        http: { method: req.method, url: `${scheme}://${authority}${originTarget}`, status },
        actor: this.#actor(conn),
        decision: auditDecision(d),
        ...(ruleName(d) ? { rule: ruleName(d) } : {}),
        reason: d.reason,
        bytes_out: io.up,
        bytes_in: io.down,
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      });
    // A denied request without a body leaves the connection usable.
    const keepAfterDenial = clientKeepsAlive(req) && req.framing.kind === "none";
    const refuse = (d: Decision) => {
      audit(d, 403);
      this.#deny(conn, d, target, req.method, path, keepAfterDenial);
      return { upstream: kept, keepAlive: keepAfterDenial };
    };

    // Connection-level decision, once per target on this connection.
    const key = `${target.host}:${target.port}`;
    const inference = !fixed && this.#opt.inferenceLocal !== undefined &&
      target.host === INFERENCE_LOCAL_HOST && target.port === 80;
    let decision = inference
      ? INFERENCE_LOCAL_DECISION
      : fixed?.decision ?? conn.decisions.get(key);
    if (!decision) {
      decision = await this.#decide({ ...who, host: target.host, port: target.port });
      // Bounded: a connection that visits many targets starts the cache over.
      if (conn.decisions.size >= MAX_CACHED_DECISIONS) conn.decisions.clear();
      conn.decisions.set(key, decision);
    }
    if (decision.verdict === "deny") return refuse(decision);
    // Request-level decision where the endpoint has request rules.
    let effective = decision;
    if (decision.inspect) {
      const rd = await this.#decide({
        ...who,
        host: target.host,
        port: target.port,
        method: req.method,
        path,
        query,
      });
      if (rd.verdict === "deny") return refuse(rd);
      effective = { ...rd, allowedIps: decision.allowedIps };
    }
    // Credential placeholders: substituted only over inspected TLS, refused elsewhere.
    let headers = req.headers;
    let used: string[] = [];
    const creds = this.#opt.credentials;
    if (creds) {
      const sub = creds.substitute(target.host, req.target, req.headers);
      if (!sub.ok) {
        return refuse(denial(
          `credential placeholder "${sub.credential}" may only be sent in headers to ` +
            `${sub.hosts.join(", ")} (found in the ${sub.where} of a request to ${target.host})`,
          `credentials.${sub.credential}`,
        ));
      }
      if (sub.used.length > 0 && !fixed?.tls) {
        return refuse(denial(
          `credential "${sub.used[0]}" is substituted only over HTTPS; use https://${target.host}`,
          `credentials.${sub.used[0]}`,
        ));
      }
      headers = sub.headers;
      used = sub.used;
    }

    // Upstream: reuse the kept one for the same target, else open (resolve + SSRF check).
    const upKey = `${scheme}:${key}`;
    let up = kept;
    if (up && (up.key !== upKey || up.reader.ended || up.sock.destroyed)) {
      this.#closeUpstream(conn, up);
      up = null;
    }
    if (!up) {
      const to: Target = inference
        ? { host: "127.0.0.1", kind: "ipv4", port: this.#opt.inferenceLocal!.port }
        : target;
      up = await this.#openUpstream(conn, to, effective, fixed?.tls ?? false, !fixed?.tls);
      if (!up) {
        audit(effective, 502);
        return { upstream: null, keepAlive: false };
      }
      if (inference) up.key = upKey; // kept for the next inference.local request
    }
    io.ip = up.ip;

    const websocket = wantsWebSocket(req);
    // Expect: 100-continue is answered here (the request is allowed) and not sent on, so the
    // client sends its body without waiting for an upstream that never sees the expectation.
    if (headerTokens(req.headers, "expect").includes("100-continue")) {
      headers = headers.filter(([k]) => k.toLowerCase() !== "expect");
      if (req.framing.kind !== "none") await write(conn.sock, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    const outHead = upstreamRequestHead(req, originTarget, authority, websocket, headers);
    await write(up.sock, outHead);
    io.up = outHead.length + await copyBody(conn.reader, up.sock, req.framing, L.transferIdleMs);

    // Response: interim 1xx are passed on; then the final head and its body.
    let res: ResponseHead, resHead: Buffer | null;
    for (;;) {
      try {
        resHead = await up.reader.readHead(L.head.maxHeadBytes, Date.now() + L.transferIdleMs);
        if (!resHead) throw new HttpParseError(502, "upstream closed before answering");
        res = parseResponseHead(resHead, L.head);
      } catch (e) {
        // The upstream's fault, whatever the parser called it: the client gets 502 (504 if slow).
        if (e instanceof TimeoutError) throw new HttpParseError(504, "upstream did not answer");
        if (e instanceof HttpParseError) throw new HttpParseError(502, `upstream: ${e.message}`);
        throw e;
      }
      io.down += resHead.length;
      if (res.status >= 100 && res.status < 200 && res.status !== 101) {
        this.#answering.add(conn.sock);
        await write(conn.sock, resHead);
        continue;
      }
      break;
    }
    if (res.status === 101) {
      if (!websocket) throw new UpstreamClosed("101 without a WebSocket upgrade");
      // Client messages: on an endpoint with request rules, `WEBSOCKET_TEXT` decides whether the
      // client may send data messages after the upgrade (OpenShell: read-only allows the upgrade
      // only). Asked once per connection; a denied message closes it (1008).
      const messages = decision.inspect
        ? await this.#decide({
          ...who,
          host: target.host,
          port: target.port,
          method: "WEBSOCKET_TEXT",
          path,
          query,
        })
        : null;
      await write(conn.sock, resHead);
      const t = await tunnel(
        conn.reader,
        up.reader,
        L.transferIdleMs,
        messages && messages.verdict !== "allow"
          ? this.#watchMessages(conn, messages, target, `${scheme}://${authority}${originTarget}`)
          : undefined,
      );
      io.up += t.up;
      io.down += t.down;
      up.up += io.up;
      up.down += io.down;
      audit(effective, 101);
      return { upstream: up, keepAlive: false };
    }
    const framing = responseFraming(req.method, res);
    const keepAlive = clientKeepsAlive(req) && framing.kind !== "close";
    const secrets = creds?.credentials.filter((c) => used.includes(c.name)) ?? [];
    const scrub = (v: string) =>
      secrets.reduce((acc, c) => acc.split(c.secret).join(c.placeholder), v);
    this.#answering.add(conn.sock);
    await write(conn.sock, clientResponseHead(res, !keepAlive, framing.kind === "chunked", scrub));
    io.down += await copyBody(up.reader, conn.sock, framing, L.transferIdleMs);
    this.#answering.delete(conn.sock);
    up.up += io.up;
    up.down += io.down;
    audit(effective, res.status);
    if (framing.kind === "close" || headerTokens(res.headers, "connection").includes("close")) {
      this.#closeUpstream(conn, up);
      return { upstream: null, keepAlive };
    }
    return { upstream: up, keepAlive };
  }

  /**
   * Watches a WebSocket client's frames when its messages are not plainly allowed: under `deny`
   * the first data message (text or binary: either carries what the rule is about) closes the
   * connection with 1008; under `audit-allow` the first one is recorded and all pass. Frames the
   * proxy cannot read as client framing close the connection (1002).
   */
  #watchMessages(conn: Conn, d: Decision, target: Target, url: string): UpWatch {
    const scanner = new ClientFrameScanner();
    let recorded = false;
    let stopAll = false;
    let passing = false;
    const record = (decision: Decision) => {
      if (recorded) return;
      recorded = true;
      try {
        this.#record({
          class: "http",
          activity: "request",
          dst: { host: target.host, port: target.port },
          http: { method: "WEBSOCKET_TEXT", url },
          actor: this.#actor(conn),
          decision: auditDecision(decision),
          ...(ruleName(decision) ? { rule: ruleName(decision) } : {}),
          reason: decision.reason,
        });
      } catch {
        // The audit log failed: the traffic stops (fail closed), as everywhere else.
        stopAll = true;
      }
    };
    return (chunk) => {
      if (passing) return null;
      for (const ev of scanner.push(chunk)) {
        if ("error" in ev) return closeFrame(1002, `clawcage: ${ev.error}`);
        // Data is whatever carries bytes the rule is about: text, binary and continuation
        // frames, and ping/pong payloads (up to 125 bytes each, as many as the client likes).
        // A close frame passes: it ends the connection.
        const data = ev.opcode === OPCODE.text || ev.opcode === OPCODE.binary ||
          ev.opcode === OPCODE.continuation ||
          ((ev.opcode === OPCODE.ping || ev.opcode === OPCODE.pong) && ev.length > 0);
        if (!data) continue;
        record(d);
        if (stopAll) return closeFrame(1011, "clawcage: audit log unavailable");
        if (d.verdict === "deny") return closeFrame(1008, `clawcage: ${d.reason}`.slice(0, 123));
        passing = true; // audit-allow: recorded once, the rest passes unread
        return null;
      }
      return stopAll ? closeFrame(1011, "clawcage: audit log unavailable") : null;
    };
  }

  #closeUpstream(conn: Conn, up: Upstream): void {
    up.sock.destroy();
    this.#record({
      class: "network",
      activity: "close",
      dst: { host: up.target.host, port: up.target.port, ip: up.ip },
      actor: this.#actor(conn),
      bytes_out: up.up,
      bytes_in: up.down,
      duration_ms: Math.round(performance.now() - up.opened),
    });
  }

  /**
   * Opens the upstream for a target; on failure answers the client and returns null. `feed`:
   * read plain bytes through a ReadFeed (only where no TLS will ever run over the socket).
   */
  async #openUpstream(
    conn: Conn,
    target: Target,
    decision: Decision,
    useTls: boolean,
    feed: boolean,
  ): Promise<Upstream | null> {
    const L = this.#limits;
    const dst = { host: target.host, port: target.port };
    const reads = feed && !useTls ? new ReadFeed() : undefined;
    const r = await openUpstream(
      target,
      decision.allowedIps,
      this.#resolve,
      L.connectTimeoutMs,
      reads,
    );
    if (!r.ok) {
      this.#record({
        class: "network",
        activity: r.status === 403 ? "refuse" : "fail",
        dst: { ...dst, ...(r.ip ? { ip: r.ip } : {}) },
        actor: this.#actor(conn),
        decision: r.status === 403 ? "deny" : auditDecision(decision),
        ...(r.status === 403 ? { rule: "allowed_ips" } : {}),
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
    let sock: Duplex = r.sock;
    sock.on("error", () => {});
    if (useTls) {
      try {
        sock = await startTls(
          r.sock,
          target.host,
          target.kind,
          this.#opt.inspection?.upstreamCa,
          L.connectTimeoutMs,
        );
        sock.on("error", () => {});
      } catch (e) {
        r.sock.destroy();
        const reason = `TLS to ${target.host}:${target.port} failed: ${(e as Error).message}`;
        this.#record({
          class: "network",
          activity: "fail",
          dst: { ...dst, ip: r.ip },
          actor: this.#actor(conn),
          decision: auditDecision(decision),
          reason,
        });
        respondError(conn.sock, 502, reason);
        return null;
      }
    }
    this.#record({
      class: "network",
      activity: "open",
      dst: { ...dst, ip: r.ip },
      actor: this.#actor(conn),
      decision: auditDecision(decision),
      ...(ruleName(decision) ? { rule: ruleName(decision) } : {}),
      protocol: useTls ? "tls" : "tcp",
    });
    return {
      key: `${useTls ? "https" : "http"}:${target.host}:${target.port}`,
      sock,
      reader: new StreamReader(sock, undefined, reads),
      ip: r.ip,
      target,
      opened: performance.now(),
      up: 0,
      down: 0,
    };
  }

  /** CONNECT host:port: decide; then tunnel, or terminate TLS and serve requests inside. */
  async #connect(conn: Conn, req: RequestHead): Promise<void> {
    let target: Target;
    try {
      target = parseAuthority(req.target);
    } catch (e) {
      throw new HttpParseError(400, `bad CONNECT target: ${(e as Error).message}`);
    }
    if (req.framing.kind !== "none") throw new HttpParseError(400, "CONNECT with a body");
    let decision = await this.#decide({
      ...callerOf(conn.caller),
      host: target.host,
      port: target.port,
    });
    const inspect = !decision.tlsSkip &&
      (decision.inspect || (this.#opt.credentials?.boundTo(target.host) ?? false));
    if (decision.verdict !== "deny" && inspect && !this.#opt.inspection) {
      decision = denial(
        `${target.host} needs request inspection, but this proxy has no inspection CA`,
        decision.rule,
      );
    }
    this.#record({
      class: "http",
      activity: "connect",
      dst: { host: target.host, port: target.port },
      http: { method: "CONNECT", url: formatAuthority(target.host, target.port) },
      actor: this.#actor(conn),
      decision: auditDecision(decision),
      ...(ruleName(decision) ? { rule: ruleName(decision) } : {}),
      reason: decision.reason,
    });
    if (decision.verdict === "deny") {
      this.#deny(conn, decision, target, "CONNECT", undefined, false);
      return;
    }
    const up = await this.#openUpstream(conn, target, decision, false, !inspect);
    if (!up) return;

    if (!inspect) {
      await write(conn.sock, "HTTP/1.1 200 Connection Established\r\n\r\n");
      const t = await tunnel(conn.reader, up.reader, this.#limits.transferIdleMs);
      up.up = t.up;
      up.down = t.down;
      this.#closeUpstream(conn, up);
      return;
    }

    const ca = this.#opt.inspection!.ca;
    let ctx: tls.SecureContext;
    try {
      ctx = await ca.contextFor(target.host);
    } catch (e) {
      this.#closeUpstream(conn, up);
      respondError(conn.sock, 502, `cannot make a certificate: ${(e as Error).message}`);
      return;
    }
    await write(conn.sock, "HTTP/1.1 200 Connection Established\r\n\r\n");
    const first = await conn.reader.peek(1, Date.now() + this.#limits.headerTimeoutMs);
    if (first.length === 0) {
      this.#closeUpstream(conn, up);
      return;
    }
    if (first[0] !== 0x16) {
      // Not TLS: plain HTTP inside the tunnel, inspected as such.
      await this.#httpLoop(conn, { target, decision, tls: false }, up);
      return;
    }
    const client = await this.#acceptTls(conn, target, ctx);
    if (!client) {
      this.#closeUpstream(conn, up);
      return;
    }
    // Re-encrypt upstream on the connection already opened to the checked address.
    const raw = up.sock as net.Socket;
    up.reader.detach();
    let upTls: tls.TLSSocket;
    try {
      upTls = await startTls(
        raw,
        target.host,
        target.kind,
        this.#opt.inspection!.upstreamCa,
        this.#limits.connectTimeoutMs,
      );
      upTls.on("error", () => {});
    } catch (e) {
      const reason = `TLS to ${target.host}:${target.port} failed: ${(e as Error).message}`;
      this.#record({
        class: "network",
        activity: "fail",
        dst: { host: target.host, port: target.port, ip: up.ip },
        actor: this.#actor(conn),
        decision: auditDecision(decision),
        reason,
      });
      raw.destroy();
      respondError(client.sock, 502, reason);
      return;
    }
    const upstream: Upstream = {
      ...up,
      key: `https:${target.host}:${target.port}`,
      sock: upTls,
      reader: new StreamReader(upTls),
    };
    await this.#httpLoop(client, { target, decision, tls: true }, upstream);
  }

  /** Terminates the client's TLS with a leaf for the CONNECT host; null when it fails. */
  async #acceptTls(conn: Conn, target: Target, ctx: tls.SecureContext): Promise<Conn | null> {
    const early = conn.reader.detach();
    const raw = conn.sock as net.Socket;
    raw.unshift(early);
    let sniMismatch: string | null = null;
    const t = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: ctx,
      ALPNProtocols: ["http/1.1"],
      SNICallback: (name, cb) => {
        const sni = name.toLowerCase().replace(/\.$/, "");
        if (sni === target.host) cb(null, ctx);
        else {
          sniMismatch = sni;
          cb(new Error(`SNI ${sni} does not match CONNECT ${target.host}`), undefined);
        }
      },
    });
    t.on("error", () => {});
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.#limits.headerTimeoutMs);
      t.once("secure", () => {
        clearTimeout(timer);
        resolve(true);
      });
      t.once("error", () => {
        clearTimeout(timer);
        resolve(false);
      });
      t.once("close", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ok) {
      this.#record({
        class: "network",
        activity: "fail",
        dst: { host: target.host, port: target.port },
        actor: this.#actor(conn),
        reason: sniMismatch
          ? `TLS SNI ${sniMismatch} does not match the CONNECT host`
          : "client TLS handshake failed (does the client trust the clawcage CA?)",
      });
      t.destroy();
      return null;
    }
    return { ...conn, sock: t, reader: new StreamReader(t) };
  }
}
