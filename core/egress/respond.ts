// Answers the proxy writes itself: denials (403 with a JSON body naming the missing rule) and
// errors (4xx/5xx with a one-line JSON reason). Always `Connection: close` unless asked not to.

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";

const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The JSON body of a denial: what was refused and which rule is missing. */
export interface DenialBody {
  error: "denied";
  reason: string;
  host: string;
  port: number;
  binary: string;
  method?: string;
  path?: string;
  /** The policy entry / rule that decided, when one did. */
  entry?: string;
  rule?: string;
}

export function responseBytes(status: number, body: unknown, keepAlive = false): string {
  const text = JSON.stringify(body) + "\n";
  return `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
    `X-Clawcage: egress-proxy\r\n` +
    `Connection: ${keepAlive ? "keep-alive" : "close"}\r\n\r\n${text}`;
}

/** Writes an answer; closes the connection after it unless keepAlive. */
export function respond(sock: Duplex, status: number, body: unknown, keepAlive = false): void {
  if (sock.destroyed || !sock.writable) return;
  sock.write(responseBytes(status, body, keepAlive));
  if (!keepAlive) sock.end();
}

/** An error answer: {"error": "...", "reason": "..."}. */
export function respondError(sock: Duplex, status: number, reason: string): void {
  respond(sock, status, { error: REASONS[status]?.toLowerCase() ?? "error", reason });
}
