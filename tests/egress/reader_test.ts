// StreamReader on its own: lines and exact reads across chunk boundaries, pipeTo stopping inside a
// chunk (the rest stays buffered, in order), and a ReadFeed (the `onread` large-read path):
// bytes read before a reader attached are kept, then everything comes out in order.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { PassThrough } from "node:stream";
import { ReadFeed, StreamReader } from "../../core/egress/reader.ts";

const far = () => Date.now() + 2000;

/** Collects what is written to it. */
function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const parts: Buffer[] = [];
  stream.on("data", (c: Buffer) => parts.push(c));
  return { stream, text: () => Buffer.concat(parts).toString("latin1") };
}

Deno.test("reader: lines and exact reads across chunk boundaries, pipeTo leaves the rest", async () => {
  const sock = new PassThrough();
  const r = new StreamReader(sock);
  // A chunked body split at awkward places: inside "\r\n", inside data, two lines in one read.
  for (const part of ["5\r", "\nhel", "lo\r\n3\r\nab", "c\r\n0\r\n\r\nNEXT"]) sock.write(part);
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(await r.readLine(100, far()), "5");
  const out = sink();
  assert.equal(await r.pipeTo(out.stream, 5, 1000), 5);
  assert.equal((await r.readExact(2, far())).toString(), "\r\n");
  assert.equal(await r.readLine(100, far()), "3");
  assert.equal(await r.pipeTo(out.stream, 3, 1000), 3);
  assert.equal((await r.readExact(2, far())).toString(), "\r\n");
  assert.equal(await r.readLine(100, far()), "0");
  assert.equal(await r.readLine(100, far()), "");
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(out.text(), "helloabc");
  assert.equal((await r.readExact(4, far())).toString(), "NEXT");
});

Deno.test("reader: pipeTo waits for bytes that arrive later and stops exactly at n", async () => {
  const sock = new PassThrough();
  const r = new StreamReader(sock);
  const out = sink();
  const moved = r.pipeTo(out.stream, 10, 1000);
  sock.write("01234");
  setTimeout(() => sock.write("56789rest"), 20);
  assert.equal(await moved, 10);
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(out.text(), "0123456789");
  assert.equal((await r.readExact(4, far())).toString(), "rest");
});

Deno.test("reader: a ReadFeed keeps bytes read before the reader attaches, in order", async () => {
  const sock = new PassThrough();
  const feed = new ReadFeed();
  const deliver = (s: string) => {
    const b = feed.buffer(); // each read gets a buffer of its own
    Buffer.from(b.buffer, b.byteOffset, b.length).write(s, "latin1");
    return feed.callback(s.length, b);
  };
  deliver("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01");
  const r = new StreamReader(sock, undefined, feed);
  deliver("2345");
  const head = await r.readHead(1000, far());
  assert.equal(head?.toString("latin1"), "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  const out = sink();
  const moved = r.pipeTo(out.stream, 10, 1000);
  deliver("6789extra");
  assert.equal(await moved, 10);
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(out.text(), "0123456789");
  assert.equal((await r.readExact(5, far())).toString(), "extra");
});

Deno.test("reader: a ReadFeed's read size grows with full reads and shrinks with small ones", () => {
  const feed = new ReadFeed();
  const got: number[] = [];
  feed.sink = (view) => {
    got.push(view.length);
    return true;
  };
  const sizes: number[] = [];
  // Bulk: every read fills its buffer.
  for (let i = 0; i < 4; i++) {
    const b = feed.buffer();
    sizes.push(b.length);
    feed.callback(b.length, b);
  }
  assert.deepEqual(sizes, [64 * 1024, 128 * 1024, 256 * 1024, 256 * 1024]);
  // Small messages: the buffers shrink to 16 KiB.
  for (let i = 0; i < 6; i++) feed.callback(100, feed.buffer());
  assert.equal(feed.buffer().length, 16 * 1024);
  assert.deepEqual(got.slice(0, 4), [64 * 1024, 128 * 1024, 256 * 1024, 256 * 1024]);
  assert.equal(got.length, 10);
});

Deno.test("reader: a ReadFeed reads at most the high-water mark while parsing, more while piping", async () => {
  const sock = new PassThrough();
  const feed = new ReadFeed();
  const r = new StreamReader(sock, 64 * 1024, feed);
  // Full reads would grow the size, but while the reader parses it stays capped.
  for (let i = 0; i < 4; i++) {
    const b = feed.buffer();
    assert.ok(b.length <= 64 * 1024);
    feed.callback(16, b); // small reads: the reader keeps them (copied)
  }
  assert.equal((await r.readExact(64, far())).length, 64);
  const out = sink();
  const moved = r.pipeTo(out.stream, 3 * 256 * 1024, 1000);
  const sizes: number[] = [];
  while (sizes.reduce((a, b) => a + b, 0) < 3 * 256 * 1024) {
    const b = feed.buffer();
    sizes.push(b.length);
    feed.callback(b.length, b);
  }
  assert.equal(await moved, 3 * 256 * 1024);
  assert.ok(Math.max(...sizes) === 256 * 1024, `piping reads grow to 256 KiB: ${sizes}`);
  assert.ok(feed.buffer().length <= 64 * 1024, "capped again after the pipe");
});
