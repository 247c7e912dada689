// Client-to-server WebSocket frames (RFC 6455 section 5.2), read only as far as the proxy needs
// to enforce `WEBSOCKET_TEXT` rules: where each frame starts and what kind it is. Payloads are
// skipped, never unmasked or kept. A stream that is not valid client framing (an unmasked
// frame, a reserved opcode, an oversized length, a long or fragmented control frame) is reported
// as an error, so
// the caller can close the connection (fail closed). Reserved bits are left alone: extensions
// such as permessage-deflate use them.

export const OPCODE = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

const KNOWN = new Set<number>(Object.values(OPCODE));

/** A frame header: its opcode and payload length; or why the bytes are not client framing. */
export type FrameEvent = { opcode: number; length: number } | { error: string };

export class ClientFrameScanner {
  /** Header bytes of the frame being read (at most 14). */
  #head = new Uint8Array(14);
  #headLen = 0;
  /** Payload bytes of the current frame still to skip. */
  #skip = 0;

  /** Feeds the next bytes; returns an event for each frame header completed in them. */
  push(chunk: Uint8Array): FrameEvent[] {
    const out: FrameEvent[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        continue;
      }
      this.#head[this.#headLen++] = chunk[i++];
      const need = this.#needed();
      if (typeof need === "string") {
        out.push({ error: need });
        return out;
      }
      if (this.#headLen < need) continue;
      const event = this.#complete();
      out.push(event);
      if ("error" in event) return out;
    }
    return out;
  }

  /** Header length the bytes so far call for. */
  #needed(): number | string {
    if (this.#headLen < 2) return 2;
    if ((this.#head[1] & 0x80) === 0) return "a client frame without a mask";
    const len7 = this.#head[1] & 0x7f;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
  }

  #complete(): FrameEvent {
    const h = this.#head;
    const opcode = h[0] & 0x0f;
    const len7 = h[1] & 0x7f;
    let len: number;
    if (len7 === 126) len = (h[2] << 8) | h[3];
    else if (len7 === 127) {
      const v = new DataView(h.buffer, 2, 8).getBigUint64(0);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) return { error: "a frame length out of range" };
      len = Number(v);
    } else len = len7;
    this.#headLen = 0;
    if (!KNOWN.has(opcode)) return { error: `a frame with reserved opcode ${opcode}` };
    if (opcode >= 0x8 && (len > 125 || (h[0] & 0x80) === 0)) {
      return { error: "a control frame that is fragmented or longer than 125 bytes" };
    }
    this.#skip = len;
    return { opcode, length: len };
  }
}

/** A server close frame (unmasked) with `code` and a short UTF-8 reason. */
export function closeFrame(code: number, reason: string): Uint8Array {
  const text = new TextEncoder().encode(reason).slice(0, 123);
  const f = new Uint8Array(4 + text.length);
  f[0] = 0x80 | OPCODE.close;
  f[1] = 2 + text.length;
  f[2] = code >> 8;
  f[3] = code & 0xff;
  f.set(text, 4);
  return f;
}
