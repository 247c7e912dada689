// The PDP's two wire protocols, both newline-delimited JSON with bounded lines.
//
// Decision socket (unix stream, many connections): the client writes
//   {"id":7,"binary":"/usr/bin/curl","host":"api.github.com","port":443}
// and the PDP answers each line, in order, with {"id":7, ...Decision} or, for a line it cannot
// use, {"id":7|null,"error":"..."}. A bad line never closes the connection.
//
// Control pipe (the PDP's stdin and stdout, inherited from the supervisor): one message per
// line, see ControlRequest / ControlReply. Only the supervisor holds these descriptors.

import type { Decision, DecisionRequest } from "../policy/decision.ts";

/** Longest decision request line (bytes, newline excluded). */
export const MAX_REQUEST_LINE = 16 * 1024;
/** Longest control line: a policy of up to 1 MiB, JSON-escaped (at most 6 bytes per byte). */
export const MAX_CONTROL_LINE = 7 * 1024 * 1024;
/**
 * Longest decision reply the client accepts. Replies carry policy text (entry names, allowed
 * IPs), so they are bounded by the policy's size, like control lines.
 */
export const MAX_REPLY_LINE = MAX_CONTROL_LINE;
/** A decision's `reason` is cut to this many characters (it is for people, and it echoes input). */
export const MAX_REASON = 4096;

export type RequestId = number | string;

export type DecisionReply = { id: RequestId } & Decision;
export interface ErrorReply {
  id: RequestId | null;
  error: string;
}

/**
 * Supervisor -> PDP. `load` comes once, first; `reload` any number of times after. `policy` is
 * JSON of a policy the client has parsed and validated (see policyWire in client.ts).
 */
export type ControlRequest =
  | { op: "load"; policy: string; file: string; socket: string }
  | { op: "reload"; policy: string; file: string };

/** PDP -> supervisor: one reply per request. */
export type ControlReply =
  | { op: "ready"; pid: number; lockdown: LockdownReport }
  | { op: "reloaded"; changed: string[] }
  | { op: "error"; error: string };

export interface LockdownReport {
  landlockAbi: number;
  seccompRules: number;
  /** V8 runs without a JIT and the filter refuses executable memory (mmap/mprotect PROT_EXEC). */
  noExecMemory: boolean;
}

/** At most this many ancestors (parent executables) per request. */
export const MAX_ANCESTORS = 64;

const LIMITS = {
  id: 128,
  binary: 4096,
  host: 1024,
  method: 32,
  path: 8192,
  query: 8192,
} as const;

/** Parses one request line: a DecisionRequest with an id, or an error reply for it. */
export function parseRequest(line: string): { id: RequestId; req: DecisionRequest } | ErrorReply {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { id: null, error: "not JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { id: null, error: "expected a JSON object" };
  }
  const v = value as Record<string, unknown>;
  const id = v.id;
  const idOk = (typeof id === "number" && Number.isSafeInteger(id)) ||
    (typeof id === "string" && id.length <= LIMITS.id);
  if (!idOk) return { id: null, error: "id must be an integer or a string of at most 128 chars" };
  const fail = (error: string): ErrorReply => ({ id: id as RequestId, error });
  for (const key of Object.keys(v)) {
    if (!(key in LIMITS) && key !== "port" && key !== "ancestors") {
      return fail(`unknown field ${JSON.stringify(key)}`);
    }
  }
  for (const key of ["binary", "host"] as const) {
    if (typeof v[key] !== "string") return fail(`${key} must be a string`);
  }
  for (const key of ["binary", "host", "method", "path", "query"] as const) {
    const s = v[key];
    if (s === undefined) continue;
    if (typeof s !== "string") return fail(`${key} must be a string`);
    if (s.length > LIMITS[key]) return fail(`${key} is longer than ${LIMITS[key]} characters`);
  }
  const port = v.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    return fail("port must be an integer from 0 to 65535");
  }
  const ancestors = v.ancestors;
  if (ancestors !== undefined) {
    if (
      !Array.isArray(ancestors) || ancestors.length > MAX_ANCESTORS ||
      !ancestors.every((a) => typeof a === "string" && a.length <= LIMITS.binary)
    ) {
      return fail(
        `ancestors must be a list of at most ${MAX_ANCESTORS} paths of at most ${LIMITS.binary} characters`,
      );
    }
  }
  if ((v.method === undefined) !== (v.path === undefined)) {
    return fail("method and path come together (request level) or not at all (connection level)");
  }
  const req: DecisionRequest = { binary: v.binary as string, host: v.host as string, port };
  if (ancestors !== undefined) req.ancestors = ancestors as string[];
  if (v.method !== undefined) req.method = v.method as string;
  if (v.path !== undefined) req.path = v.path as string;
  if (v.query !== undefined) req.query = v.query as string;
  return { id: id as RequestId, req };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Splits a byte stream into lines of at most `maxLine` bytes. A longer line is reported once
 * as `{ tooLong: true }` and skipped up to its newline, without buffering it.
 */
export class LineSplitter {
  #parts: Uint8Array[] = [];
  #size = 0;
  #skipping = false;

  constructor(readonly maxLine: number) {}

  /** Feeds a chunk; returns the complete lines it finished (strings, or tooLong markers). */
  push(chunk: Uint8Array): (string | { tooLong: true })[] {
    const out: (string | { tooLong: true })[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.#skipping) {
        const piece = chunk.subarray(start, end);
        if (this.#size + piece.length > this.maxLine) {
          this.#parts = [];
          this.#size = 0;
          this.#skipping = true;
          out.push({ tooLong: true });
        } else if (piece.length > 0) {
          this.#parts.push(piece.slice());
          this.#size += piece.length;
        }
      }
      if (nl === -1) break;
      if (!this.#skipping) out.push(this.#take());
      this.#skipping = false;
      start = nl + 1;
    }
    return out;
  }

  #take(): string {
    const parts = this.#parts;
    this.#parts = [];
    this.#size = 0;
    if (parts.length === 1) return decoder.decode(parts[0]);
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return decoder.decode(all);
  }
}

/** Reads `reader` line by line (bounded); ends at EOF. A partial last line is dropped. */
export async function* readLines(
  reader: { read(p: Uint8Array): Promise<number | null> },
  maxLine: number,
): AsyncGenerator<string | { tooLong: true }> {
  const splitter = new LineSplitter(maxLine);
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await reader.read(buf);
    if (n === null) return;
    yield* splitter.push(buf.subarray(0, n));
  }
}

/** Reads a byte stream (e.g. a child's stdout) line by line (bounded); ends at EOF. */
export async function* readStreamLines(
  stream: ReadableStream<Uint8Array>,
  maxLine: number,
): AsyncGenerator<string | { tooLong: true }> {
  const splitter = new LineSplitter(maxLine);
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield* splitter.push(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/** Writes all of `text` (plus a newline) to `writer`, looping over partial writes. */
export async function writeLine(
  writer: { write(p: Uint8Array): Promise<number> },
  text: string,
): Promise<void> {
  await writeAllBytes(writer, encoder.encode(text + "\n"));
}

export async function writeAllBytes(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await writer.write(bytes.subarray(off));
}
