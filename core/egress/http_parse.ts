// A strict, bounded HTTP/1.1 message-head parser (RFC 9110/9112), written for a proxy that
// must never disagree with an upstream about where a message ends. Anything ambiguous is an
// error: obs-fold, bare CR or LF, control characters, whitespace before the colon, duplicate or
// non-numeric Content-Length, Transfer-Encoding other than a final "chunked", Transfer-Encoding
// together with Content-Length, Transfer-Encoding on HTTP/1.0, duplicate Host.

import { Buffer } from "node:buffer";

export interface HeadLimits {
  /** Longest request line or status line, bytes (without CRLF). */
  maxLineBytes: number;
  /** Most header fields. */
  maxHeaders: number;
  /** Whole head (start line, fields, final CRLF), bytes. */
  maxHeadBytes: number;
}

export const DEFAULT_HEAD_LIMITS: HeadLimits = {
  maxLineBytes: 8192,
  maxHeaders: 100,
  maxHeadBytes: 32 * 1024,
};

export type Header = [name: string, value: string];

/** How the body that follows a head is delimited. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  /** Responses only: the body runs until the upstream closes. */
  | { kind: "close" };

export interface RequestHead {
  method: string;
  target: string;
  version: "HTTP/1.0" | "HTTP/1.1";
  headers: Header[];
  framing: BodyFraming;
}

export interface ResponseHead {
  version: "HTTP/1.0" | "HTTP/1.1";
  status: number;
  reason: string;
  headers: Header[];
}

/** A message the proxy refuses: `status` is what to answer (400, 431, 501, 505). */
export class HttpParseError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** field-value: visible ASCII, obs-text, SP and HTAB; no other controls. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** request-target: visible ASCII only. */
const TARGET = /^[\x21-\x7e]+$/;
const MAX_CONTENT_LENGTH = Number.MAX_SAFE_INTEGER;

/** Index just past the CRLFCRLF that ends a head in `buf`, or -1. */
export function findHeadEnd(buf: Uint8Array, from = 0): number {
  for (let i = Math.max(0, from - 3); i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) {
      return i + 4;
    }
  }
  return -1;
}

/** Splits a head (including its final CRLFCRLF) into lines; bare CR or LF is an error. */
function splitLines(head: Uint8Array, limits: HeadLimits): string[] {
  if (head.length > limits.maxHeadBytes) {
    throw new HttpParseError(431, `head larger than ${limits.maxHeadBytes} bytes`);
  }
  // Node's latin1 keeps every byte as one char (TextDecoder's "latin1" is windows-1252).
  const text = Buffer.from(head.buffer, head.byteOffset, head.length).toString("latin1");
  if (!text.endsWith("\r\n\r\n")) throw new HttpParseError(400, "head does not end in CRLFCRLF");
  const lines = text.slice(0, -4).split("\r\n");
  for (const line of lines) {
    if (line.includes("\r") || line.includes("\n")) {
      throw new HttpParseError(400, "bare CR or LF in head");
    }
  }
  if (lines.length - 1 > limits.maxHeaders) {
    throw new HttpParseError(431, `more than ${limits.maxHeaders} header fields`);
  }
  return lines;
}

function parseFields(lines: string[], limits: HeadLimits): Header[] {
  const headers: Header[] = [];
  for (const line of lines) {
    if (line.length > limits.maxLineBytes) {
      throw new HttpParseError(431, `header line longer than ${limits.maxLineBytes} bytes`);
    }
    if (line.startsWith(" ") || line.startsWith("\t")) {
      throw new HttpParseError(400, "obsolete line folding is not allowed");
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpParseError(400, "header field without a name");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpParseError(400, `bad header name: ${name.slice(0, 64)}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) {
      throw new HttpParseError(400, `control character in header ${name}`);
    }
    headers.push([name, value]);
  }
  return headers;
}

/** All values of a header (case-insensitive name). */
export function headerValues(headers: Header[], name: string): string[] {
  const n = name.toLowerCase();
  return headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
}

/** Comma-separated list elements of every value of a header, lower-cased, empties dropped. */
export function headerTokens(headers: Header[], name: string): string[] {
  return headerValues(headers, name).flatMap((v) => v.split(",")).map((t) => t.trim().toLowerCase())
    .filter((t) => t !== "");
}

function parseVersion(v: string): "HTTP/1.0" | "HTTP/1.1" {
  if (v === "HTTP/1.1" || v === "HTTP/1.0") return v;
  if (/^HTTP\/[0-9]\.[0-9]$/.test(v)) throw new HttpParseError(505, `unsupported version ${v}`);
  throw new HttpParseError(400, "bad HTTP version");
}

/** Body framing from Content-Length / Transfer-Encoding, rejecting every ambiguous combination. */
function framing(headers: Header[], version: string): BodyFraming {
  const cl = headerValues(headers, "content-length");
  const te = headerValues(headers, "transfer-encoding");
  if (te.length > 0) {
    if (cl.length > 0) {
      throw new HttpParseError(400, "both Content-Length and Transfer-Encoding (smuggling)");
    }
    if (version === "HTTP/1.0") throw new HttpParseError(400, "Transfer-Encoding on HTTP/1.0");
    const codings = headerTokens(headers, "transfer-encoding");
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw new HttpParseError(501, `unsupported Transfer-Encoding: ${te.join(", ").slice(0, 64)}`);
    }
    return { kind: "chunked" };
  }
  if (cl.length > 1) throw new HttpParseError(400, "more than one Content-Length");
  if (cl.length === 1) {
    if (!/^[0-9]{1,16}$/.test(cl[0])) throw new HttpParseError(400, "bad Content-Length");
    const length = Number(cl[0]);
    if (length > MAX_CONTENT_LENGTH) throw new HttpParseError(400, "Content-Length too large");
    return length === 0 ? { kind: "none" } : { kind: "length", length };
  }
  return { kind: "none" };
}

/** Parses a request head: `head` is everything up to and including the CRLFCRLF. */
export function parseRequestHead(
  head: Uint8Array,
  limits: HeadLimits = DEFAULT_HEAD_LIMITS,
): RequestHead {
  const lines = splitLines(head, limits);
  const start = lines[0];
  if (start.length > limits.maxLineBytes) {
    throw new HttpParseError(414, `request line longer than ${limits.maxLineBytes} bytes`);
  }
  const parts = start.split(" ");
  if (parts.length !== 3) throw new HttpParseError(400, "malformed request line");
  const [method, target, v] = parts;
  if (!TOKEN.test(method)) throw new HttpParseError(400, "bad method");
  if (!TARGET.test(target)) throw new HttpParseError(400, "bad request target");
  const version = parseVersion(v);
  const headers = parseFields(lines.slice(1), limits);
  if (headerValues(headers, "host").length > 1) {
    throw new HttpParseError(400, "more than one Host header");
  }
  return { method, target, version, headers, framing: framing(headers, version) };
}

/** Parses a response head. Body framing depends on the request, see responseFraming(). */
export function parseResponseHead(
  head: Uint8Array,
  limits: HeadLimits = DEFAULT_HEAD_LIMITS,
): ResponseHead {
  const lines = splitLines(head, limits);
  const start = lines[0];
  if (start.length > limits.maxLineBytes) {
    throw new HttpParseError(502, "status line too long");
  }
  const m = start.match(/^(HTTP\/[0-9]\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/);
  if (!m) throw new HttpParseError(502, "malformed status line");
  const version = parseVersion(m[1]);
  const headers = parseFields(lines.slice(1), limits);
  return { version, status: Number(m[2]), reason: m[3] ?? "", headers };
}

/** How the body of a response to `method` is delimited (RFC 9112 section 6.3). */
export function responseFraming(method: string, res: ResponseHead): BodyFraming {
  if (
    method === "HEAD" || (res.status >= 100 && res.status < 200) || res.status === 204 ||
    res.status === 304
  ) return { kind: "none" };
  const f = framing(res.headers, res.version);
  if (f.kind === "none" && headerValues(res.headers, "content-length").length === 0) {
    return { kind: "close" };
  }
  return f;
}

/**
 * Parses a chunk-size line ("1a;ext=x", without CRLF). Returns the size. Chunk extensions are
 * allowed (token chars, '=', quotes); sizes are hex, at most 15 digits.
 */
export function parseChunkSize(line: string): number {
  const m = line.match(/^([0-9a-fA-F]{1,15})[ \t]*(;[\t\x20-\x7e]*)?$/);
  if (!m) throw new HttpParseError(400, "bad chunk size line");
  return parseInt(m[1], 16);
}
