// Pull-style reading from a node stream socket with bounded buffering and deadlines: the proxy
// reads a head, a line or some body bytes when it is ready for them, and the socket is paused
// while more than `highWater` bytes wait, so a fast sender cannot grow memory. Bodies and
// tunnels are moved by pipeTo(), straight from the socket's reads to the other socket.

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { findHeadEnd, HttpParseError } from "./http_parse.ts";
import { IdleTimer } from "./idle.ts";

/** The peer was too slow (slowloris) or idle for too long. */
export class TimeoutError extends Error {}

/** Largest read of a ReadFeed (a bulk transfer); the smallest is FEED_MIN_BYTES. */
export const FEED_BYTES = 256 * 1024;
const FEED_MIN_BYTES = 16 * 1024;

/**
 * Large reads for a connected socket: node's `onread` option for `net.connect` (pass the feed
 * as `onread`). A socket's normal reads are 64 KiB each; a feed reads up to 256 KiB at a time
 * into a new buffer per read, which the reader passes on without copying (a reused buffer
 * would need a copy: Deno's socket writes may read a buffer after they reported completion).
 * The read size follows the traffic: it doubles after a read that filled the buffer and halves
 * after one that used less than half, so a stream of small messages (server-sent events)
 * does not allocate 256 KiB per message.
 */
export class ReadFeed {
  #size = 64 * 1024;
  /**
   * Cap on the next read's size: the reader keeps it at its high-water mark while it parses
   * (what it buffers stays bounded as with a plain socket) and lifts it while it pipes.
   */
  max = FEED_BYTES;
  readonly buffer = (): Uint8Array => Buffer.allocUnsafe(Math.min(this.#size, this.max));
  /** Where each read goes; until a reader attaches, the bytes are kept. */
  sink: (view: Buffer) => boolean = (view) => {
    this.early.push(view);
    return true;
  };
  early: Buffer[] = [];
  readonly callback = (n: number, buf: Uint8Array): boolean => {
    if (n === buf.length) this.#size = Math.min(FEED_BYTES, this.#size * 2);
    else if (n < buf.length / 2) this.#size = Math.max(FEED_MIN_BYTES, this.#size / 2);
    return this.sink(Buffer.from(buf.buffer, buf.byteOffset, n));
  };
}

export class StreamReader {
  #chunks: Buffer[] = [];
  #length = 0;
  #eof = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #detached = false;
  readonly #onData = (c: Buffer) => {
    this.#chunks.push(c);
    this.#length += c.length;
    if (this.#length >= this.highWater) this.sock.pause();
    this.#notify();
  };
  readonly #onEnd = () => {
    this.#eof = true;
    this.#notify();
  };
  readonly #onError = (e: Error) => {
    this.#error = e;
    this.#notify();
  };

  readonly #feed: ReadFeed | null;
  readonly #onFeed = (view: Buffer): boolean => {
    // Kept while a head is parsed: a small read should not pin its whole read buffer.
    this.#onData(view.length < 16 * 1024 ? Buffer.from(view) : view);
    return true;
  };

  /** With `feed` (the `onread` option `sock` was connected with), reads come from it. */
  constructor(readonly sock: Duplex, readonly highWater = 64 * 1024, feed?: ReadFeed) {
    this.#feed = feed ?? null;
    if (feed) {
      for (const c of feed.early.splice(0)) this.#onData(c);
      feed.sink = this.#onFeed;
      feed.max = highWater;
    } else sock.on("data", this.#onData);
    sock.on("end", this.#onEnd);
    sock.on("close", this.#onEnd);
    sock.on("error", this.#onError);
  }

  get buffered(): number {
    return this.#length;
  }

  get ended(): boolean {
    return this.#eof && this.#length === 0;
  }

  #resume(): void {
    if (!this.#detached) this.sock.resume();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Waits for more bytes (or EOF/error). Resolves false at EOF. */
  async #more(timeoutMs: number): Promise<boolean> {
    if (this.#error) throw this.#error;
    if (this.#eof) return false;
    if (!(timeoutMs > 0)) throw new TimeoutError("timed out waiting for the peer");
    this.#resume();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.#wake = resolve;
        if (Number.isFinite(timeoutMs)) {
          timer = setTimeout(() => {
            this.#wake = null;
            reject(new TimeoutError("timed out waiting for the peer"));
          }, timeoutMs);
        }
      });
    } finally {
      clearTimeout(timer);
    }
    if (this.#error) throw this.#error;
    return !this.#eof || this.#length > 0;
  }

  #flat(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  #take(n: number): Buffer {
    // Within the first chunk (a chunk line, its CRLF): no need to join the chunks.
    const first = this.#chunks[0];
    if (first && n <= first.length && this.#chunks.length > 1) {
      const out = first.subarray(0, n);
      if (n === first.length) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#length -= n;
      if (this.#length < this.highWater) this.#resume();
      return out;
    }
    const all = this.#flat();
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length ? [rest] : [];
    this.#length = rest.length;
    if (this.#length < this.highWater) this.#resume();
    return out;
  }

  /** Waits until at least `n` bytes are buffered or EOF; returns a view of what is buffered. */
  async peek(n: number, deadline: number): Promise<Buffer> {
    while (this.#length < n) {
      if (!await this.#more(deadline - Date.now())) break;
    }
    return this.#flat();
  }

  /**
   * Reads a message head (through CRLFCRLF) within `deadline` (epoch ms). Returns null when the
   * peer closed before sending a byte. Throws HttpParseError(431) when it grows past `maxBytes`.
   */
  async readHead(maxBytes: number, deadline: number): Promise<Buffer | null> {
    let scanned = 0;
    for (;;) {
      const buf = this.#flat();
      const end = findHeadEnd(buf, scanned);
      if (end >= 0) {
        if (end > maxBytes) throw new HttpParseError(431, `head larger than ${maxBytes} bytes`);
        return this.#take(end);
      }
      if (buf.length > maxBytes) {
        throw new HttpParseError(431, `head larger than ${maxBytes} bytes`);
      }
      scanned = buf.length;
      const got = await this.#more(deadline - Date.now());
      if (!got) {
        if (this.#length === 0) return null;
        throw new HttpParseError(400, "connection closed in the middle of a head");
      }
    }
  }

  /** Reads one CRLF-terminated line (without the CRLF) of at most `maxBytes`. */
  async readLine(maxBytes: number, deadline: number): Promise<string> {
    let scanned = 0;
    for (;;) {
      // A line inside the first buffered chunk is read without joining the chunks (chunked
      // bodies: the bytes after a chunk's data sit in the same read).
      const first = this.#chunks[0];
      const buf = first && this.#chunks.length > 1 && first.indexOf(10, scanned) >= 0
        ? first
        : this.#flat();
      const lf = buf.indexOf(10, scanned);
      if (lf >= 0) {
        if (lf === 0 || buf[lf - 1] !== 13) throw new HttpParseError(400, "bare LF");
        if (lf - 1 > maxBytes) throw new HttpParseError(400, "line too long");
        const line = this.#take(lf + 1);
        return line.subarray(0, lf - 1).toString("latin1");
      }
      if (buf.length > maxBytes + 1) throw new HttpParseError(400, "line too long");
      scanned = buf.length;
      if (!await this.#more(deadline - Date.now())) {
        throw new HttpParseError(400, "connection closed in the middle of a line");
      }
    }
  }

  /** Reads exactly `n` bytes. */
  async readExact(n: number, deadline: number): Promise<Buffer> {
    while (this.#length < n) {
      if (!await this.#more(deadline - Date.now())) {
        throw new HttpParseError(400, "connection closed in the middle of a body");
      }
    }
    return this.#take(n);
  }

  /** Reads up to `max` bytes (whatever is there, waiting for some); null at EOF. No copy. */
  async read(max: number, idleMs: number): Promise<Buffer | null> {
    if (this.#length === 0 && !await this.#more(idleMs)) return null;
    if (this.#length === 0) return null;
    const first = this.#chunks[0];
    let out: Buffer;
    if (first.length <= max) {
      this.#chunks.shift();
      out = first;
    } else {
      this.#chunks[0] = first.subarray(max);
      out = first.subarray(0, max);
    }
    this.#length -= out.length;
    if (this.#length < this.highWater) this.#resume();
    return out;
  }

  /**
   * Moves exactly `n` bytes (Infinity: until EOF) to `to` without a promise per chunk: the
   * buffered bytes first, then straight from the socket's reads, pausing the socket while `to`
   * is full. Bytes past `n` stay buffered. Rejects (HttpParseError 400) when a finite `n` is cut
   * short, TimeoutError when nothing arrives for `idle` (ms, or a timer shared with the other
   * direction of a tunnel, which this touches). `progress.bytes` counts what moved so far.
   */
  pipeTo(
    to: Duplex,
    n: number,
    idle: number | IdleTimer,
    progress: { bytes: number } = { bytes: 0 },
  ): Promise<number> {
    let moved = 0;
    while (moved < n && this.#length > 0) {
      const c = this.#chunks[0];
      const take = Math.min(c.length, n - moved);
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
      this.#length -= take;
      moved += take;
      progress.bytes += take;
      to.write(take === c.length ? c : c.subarray(0, take));
    }
    if (moved === n) return Promise.resolve(moved);
    if (this.#error) return Promise.reject(this.#error);
    if (this.#eof) {
      return Number.isFinite(n)
        ? Promise.reject(new HttpParseError(400, "connection closed in the middle of a body"))
        : Promise.resolve(moved);
    }
    if (typeof idle !== "number" && idle.stopped) {
      return Promise.reject(new TimeoutError("transfer idle"));
    }
    return new Promise((resolve, reject) => {
      const sock = this.sock;
      const feed = this.#feed;
      const timer = typeof idle === "number" ? new IdleTimer(idle) : idle;
      let done = false;
      const stop = (e: Error | null) => {
        if (done) return;
        done = true;
        offIdle();
        if (typeof idle === "number") timer.stop();
        if (feed) {
          feed.sink = this.#onFeed;
          feed.max = this.highWater;
        } else {
          sock.off("data", onData);
          sock.on("data", this.#onData);
        }
        sock.off("end", onEnd);
        sock.off("close", onEnd);
        sock.off("error", onError);
        to.off("close", onToClose);
        if (e) reject(e);
        else resolve(moved);
      };
      const offIdle = timer.onIdle(() => stop(new TimeoutError("body stalled")));
      const onData = (c: Buffer) => {
        const take = Math.min(c.length, n - moved);
        if (take < c.length) {
          this.#chunks.push(c.subarray(take));
          this.#length += c.length - take;
        }
        moved += take;
        progress.bytes += take;
        timer.touch();
        const ok = to.write(take === c.length ? c : c.subarray(0, take));
        if (moved === n) {
          if (this.#length >= this.highWater) sock.pause();
          return stop(null);
        }
        if (!ok) {
          sock.pause();
          to.once("drain", () => {
            if (!done) sock.resume();
          });
        }
      };
      const onFeed = (view: Buffer): boolean => {
        onData(view);
        return true;
      };
      const onEnd = () =>
        stop(
          Number.isFinite(n)
            ? new HttpParseError(400, "connection closed in the middle of a body")
            : null,
        );
      const onError = (e: Error) => stop(e);
      const onToClose = () => stop(new Error("peer closed"));
      if (feed) {
        feed.sink = onFeed;
        feed.max = FEED_BYTES;
      } else {
        sock.off("data", this.#onData);
        sock.on("data", onData);
      }
      sock.on("end", onEnd);
      sock.on("close", onEnd);
      sock.on("error", onError);
      to.on("close", onToClose);
      this.#resume();
    });
  }

  /** Stops reading: removes the listeners and returns the bytes still buffered. */
  detach(): Buffer {
    this.#detached = true;
    this.sock.pause();
    if (this.#feed) {
      // Nobody reads on: keep what still arrives and stop reading.
      const feed = this.#feed;
      feed.sink = (view) => {
        feed.early.push(view);
        return false;
      };
    }
    this.sock.off("data", this.#onData);
    this.sock.off("end", this.#onEnd);
    this.sock.off("close", this.#onEnd);
    this.sock.off("error", this.#onError);
    const rest = this.#flat();
    this.#chunks = [];
    this.#length = 0;
    return rest;
  }
}
