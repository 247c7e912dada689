// Copying a message body from a reader to a writer by its framing (Content-Length, chunked or
// until close), with backpressure and an idle deadline, validating the chunked framing so the
// proxy and the upstream agree on where the message ends.

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { type BodyFraming, HttpParseError, parseChunkSize } from "./http_parse.ts";
import type { StreamReader } from "./reader.ts";

const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER_BYTES = 16 * 1024;

/** How long a write may wait for a peer that does not read (slow-read attacks). */
export const WRITE_STALL_MS = 300_000;

/**
 * Writes (strings as latin1, one byte per char), waiting for 'drain' when the buffer is full;
 * a peer that does not drain within `stallMs` is destroyed and the write rejects.
 */
export async function write(
  to: Duplex,
  data: Uint8Array | string,
  stallMs = WRITE_STALL_MS,
): Promise<void> {
  if (to.destroyed) throw new Error("peer closed");
  if (to.write(typeof data === "string" ? Buffer.from(data, "latin1") : data)) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      to.destroy();
      reject(new Error("peer stopped reading"));
    }, stallMs);
    const cleanup = () => {
      clearTimeout(timer);
      to.off("drain", done);
      to.off("close", closed);
    };
    const done = () => {
      cleanup();
      resolve();
    };
    const closed = () => {
      cleanup();
      reject(new Error("peer closed"));
    };
    to.once("drain", done);
    to.once("close", closed);
  });
}

/** Copies one body. Returns the number of bytes read from `from` (framing included). */
export async function copyBody(
  from: StreamReader,
  to: Duplex,
  framing: BodyFraming,
  idleMs: number,
): Promise<number> {
  const deadline = () => Date.now() + idleMs;
  switch (framing.kind) {
    case "none":
      return 0;
    case "length":
      return await from.pipeTo(to, framing.length, idleMs);
    case "close":
      return await from.pipeTo(to, Infinity, idleMs);
    case "chunked": {
      let n = 0;
      for (;;) {
        const line = await from.readLine(MAX_CHUNK_LINE, deadline());
        const size = parseChunkSize(line);
        await write(to, line + "\r\n");
        n += line.length + 2;
        if (size === 0) break;
        // The chunk's data as it arrives, without a promise per read.
        n += await from.pipeTo(to, size, idleMs).catch((e) => {
          throw e instanceof HttpParseError
            ? new HttpParseError(400, "connection closed in the middle of a chunk")
            : e;
        });
        const crlf = await from.readExact(2, deadline());
        if (crlf[0] !== 13 || crlf[1] !== 10) {
          throw new HttpParseError(400, "chunk not followed by CRLF");
        }
        await write(to, crlf);
        n += 2;
      }
      // Trailer section: fields until an empty line.
      let trailer = 0;
      for (;;) {
        const line = await from.readLine(MAX_CHUNK_LINE, deadline());
        trailer += line.length + 2;
        if (trailer > MAX_TRAILER_BYTES) throw new HttpParseError(431, "trailer section too large");
        if (
          line.length > 0 && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/.test(line)
        ) {
          throw new HttpParseError(400, "bad trailer field");
        }
        await write(to, line + "\r\n");
        n += line.length + 2;
        if (line === "") return n;
      }
    }
  }
}
