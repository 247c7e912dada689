// Request targets and the heads the proxy sends on: origin-form upstream, our own Host and
// connection management, no hop-by-hop fields (RFC 9110 section 7.6.1).

import {
  type Header,
  headerTokens,
  HttpParseError,
  type RequestHead,
  type ResponseHead,
} from "./http_parse.ts";

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
]);

/** Splits an absolute-form target "http://authority/path?query". */
export function parseAbsoluteTarget(
  target: string,
): { authority: string; path: string; query: string } {
  if (target.includes("#")) throw new HttpParseError(400, "fragment in request target");
  const m = target.match(/^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?]*)([^?]*)(?:\?(.*))?$/);
  if (!m) throw new HttpParseError(400, "request target must be absolute-form http://host/path");
  const scheme = m[1].toLowerCase();
  if (scheme !== "http") {
    throw new HttpParseError(400, `scheme ${scheme} is not proxied; use CONNECT for https`);
  }
  return { authority: m[2], path: m[3] || "/", query: m[4] ?? "" };
}

/** Splits an origin-form target "/path?query". */
export function parseOriginTarget(target: string): { path: string; query: string } {
  if (!target.startsWith("/") || target.includes("#")) {
    throw new HttpParseError(400, "request target must be origin-form /path");
  }
  const q = target.indexOf("?");
  return q < 0
    ? { path: target, query: "" }
    : { path: target.slice(0, q), query: target.slice(q + 1) };
}

export function wantsWebSocket(req: RequestHead): boolean {
  return headerTokens(req.headers, "upgrade").includes("websocket") &&
    headerTokens(req.headers, "connection").includes("upgrade");
}

export function clientKeepsAlive(req: RequestHead): boolean {
  const c = headerTokens(req.headers, "connection");
  if (c.includes("close")) return false;
  return req.version === "HTTP/1.1" || c.includes("keep-alive");
}

/** Request head as sent upstream: origin-form, our Host, no hop-by-hop fields. */
export function upstreamRequestHead(
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
    if (l === "host" || HOP_BY_HOP.has(l) || named.has(l)) continue;
    out += `${k}: ${v}\r\n`;
  }
  if (req.framing.kind === "chunked") out += "Transfer-Encoding: chunked\r\n";
  if (websocket) out += "Connection: Upgrade\r\nUpgrade: websocket\r\n";
  return out + "\r\n";
}

/** Response head for the client: our own connection handling, the rest as the upstream sent. */
export function clientResponseHead(
  res: ResponseHead,
  close: boolean,
  chunked: boolean,
  rewrite: (value: string) => string = (v) => v,
): string {
  const named = new Set(headerTokens(res.headers, "connection"));
  let out = `HTTP/1.1 ${res.status} ${res.reason}\r\n`;
  for (const [k, v] of res.headers) {
    const l = k.toLowerCase();
    if (HOP_BY_HOP.has(l) || named.has(l)) continue;
    out += `${k}: ${rewrite(v)}\r\n`;
  }
  if (chunked) out += "Transfer-Encoding: chunked\r\n";
  if (close) out += "Connection: close\r\n";
  return out + "\r\n";
}
