// Large bodies through every data path of the proxy, byte-exact (SHA-256 of a deterministic
// pseudo-random body): plain HTTP with Content-Length and chunked (odd chunk sizes, written in
// odd pieces so chunk lines straddle socket reads), a body that ends when the upstream closes, a
// CONNECT tunnel, inspected HTTPS, and the bridge in front of the proxy's unix socket. A client
// that stops reading stalls the upstream (backpressure reaches it, the proxy does not buffer the
// body) and still gets every byte when it reads again. Tunnels close when nothing moves either
// way, not while one direction moves.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { join } from "node:path";
import { IdleTimer } from "../../core/egress/idle.ts";
import { serveBridge } from "../../core/sandbox/bridge.ts";
import {
  curlSha as curlShaOf,
  hasCurl,
  randomBytesFor,
  sha,
  startProxy,
  testInspectionCa,
  upstreamPki,
} from "./helpers.ts";

const MB = 1024 * 1024;
/** Chunk sizes for chunked bodies, cycled: tiny, odd, and larger than one socket read. */
const CHUNKS = [1, 7, 4096, 65_537, 300_001, 2, 1_048_576 + 3];

interface BodyServer {
  port: number;
  /** Body bytes the socket accepted so far, per request path. */
  sent: Map<string, number>;
  close(): Promise<void>;
}

/**
 * /random?n=N&seed=S[&chunked=1]: N pseudo-random bytes, written in pieces of odd sizes with
 * backpressure; chunked uses the CHUNKS sizes. /trickle?count=C&gap=MS: C bytes, one every MS.
 */
function handler(sent: Map<string, number>) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/trickle") {
      const count = Number(url.searchParams.get("count"));
      res.writeHead(200, { "content-length": String(count) });
      let i = 0;
      const t = setInterval(() => {
        res.write("x");
        if (++i === count) {
          clearInterval(t);
          res.end();
        }
      }, Number(url.searchParams.get("gap")));
      res.on("close", () => clearInterval(t));
      return;
    }
    const n = Number(url.searchParams.get("n"));
    const body = randomBytesFor(n, Number(url.searchParams.get("seed") ?? "1"));
    const chunked = url.searchParams.get("chunked") === "1";
    res.writeHead(200, chunked ? {} : { "content-length": String(n) });
    let off = 0, k = 0;
    sent.set(req.url!, 0);
    const pump = () => {
      while (off < n) {
        const size = chunked ? CHUNKS[k++ % CHUNKS.length] : 65_536 + 333 * (k++ % 7);
        const piece = body.subarray(off, Math.min(n, off + size));
        off += piece.length;
        sent.set(req.url!, off);
        if (!res.write(piece)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  };
}

async function bodyServer(tls?: { cert: string; key: string }): Promise<BodyServer> {
  const sent = new Map<string, number>();
  const server = tls ? https.createServer(tls, handler(sent)) : http.createServer(handler(sent));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sent,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Large bodies take longer than the default limit on a loaded machine. */
const curlSha = (options: string[], urls: string[]) => curlShaOf(options, urls, 60);

const N = 24 * MB + 11;

Deno.test({
  name: "large bodies: plain HTTP (length and chunked) and CONNECT arrive byte-exact",
  ignore: !hasCurl,
  async fn() {
    const up = await bodyServer();
    const p = await startProxy([{ host: "data.test", port: up.port }]);
    try {
      const base = `http://data.test:${up.port}/random`;
      const urls = [`${base}?n=${N}&seed=3`, `${base}?n=${N - 5}&seed=4&chunked=1`];
      const want = [sha(randomBytesFor(N, 3)), sha(randomBytesFor(N - 5, 4))];
      // Both on one kept-alive connection: the second response starts inside a read.
      assert.deepEqual(await curlSha(["-x", p.url], urls), want);
      assert.deepEqual(await curlSha(["-p", "-x", p.url], urls), want);
      const request = p.audit.events.filter((e) => e.class === "http" && e.activity === "request");
      assert.equal(request.length, 2);
      const first = request[0];
      assert.ok(first.class === "http" && first.bytes_in! > N, "body bytes in the audit record");
    } finally {
      await p.close();
      await up.close();
    }
  },
});

Deno.test({
  name: "large bodies: inspected HTTPS arrives byte-exact (length and chunked)",
  ignore: !hasCurl,
  async fn() {
    const pki = await upstreamPki(["data.test"]);
    const ca = await testInspectionCa();
    const dir = Deno.makeTempDirSync();
    const up = await bodyServer({ cert: pki.cert, key: pki.key });
    const p = await startProxy([{ host: "data.test", port: up.port, methods: ["GET"] }], {
      inspection: { ca, upstreamCa: [pki.caPem] },
    });
    try {
      const n = 8 * MB + 3;
      const base = `https://data.test:${up.port}/random`;
      assert.deepEqual(
        await curlSha(["--cacert", ca.writeCert(dir), "-x", p.url], [
          `${base}?n=${n}&seed=5`,
          `${base}?n=${n}&seed=6&chunked=1`,
        ]),
        [sha(randomBytesFor(n, 5)), sha(randomBytesFor(n, 6))],
      );
    } finally {
      await p.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "large bodies: through the bridge and the proxy's unix socket, byte-exact",
  ignore: !hasCurl,
  async fn() {
    const up = await bodyServer();
    const p = await startProxy([{ host: "data.test", port: up.port }]);
    const dir = Deno.makeTempDirSync();
    const path = join(dir, "proxy.sock");
    await p.proxy.listenUnix(path);
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const bridge = serveBridge([listener], {
      proxyPath: path,
      identify: () => Promise.resolve({ pid: 7, exe: "/usr/bin/curl", sha256: "" }),
    });
    try {
      const via = `http://127.0.0.1:${listener.addr.port}`;
      const base = `http://data.test:${up.port}/random`;
      const urls = [`${base}?n=${N}&seed=8`, `${base}?n=${N}&seed=9&chunked=1`];
      const want = [sha(randomBytesFor(N, 8)), sha(randomBytesFor(N, 9))];
      assert.deepEqual(await curlSha(["-x", via], urls), want);
      assert.deepEqual(await curlSha(["-p", "-x", via], urls), want);
      const open = p.audit.events.find((e) => e.class === "network" && e.activity === "open");
      assert.ok(open?.class === "network", "an upstream was opened");
      assert.equal(open.actor?.exe, "/usr/bin/curl", "the caller line came through the bridge");
    } finally {
      listener.close();
      await bridge;
      await p.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "large bodies: a body delimited by the upstream closing arrives byte-exact",
  ignore: !hasCurl,
  async fn() {
    const n = 12 * MB + 5;
    const body = randomBytesFor(n, 21);
    // A raw upstream: no Content-Length, not chunked; the end of the body is the close.
    const server = net.createServer((sock) => {
      sock.once("data", () => {
        sock.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let off = 0;
        const pump = () => {
          while (off < n) {
            const piece = body.subarray(off, off + 100_003);
            off += piece.length;
            if (!sock.write(piece)) return void sock.once("drain", pump);
          }
          sock.end();
        };
        pump();
      });
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const p = await startProxy([{ host: "data.test", port }]);
    try {
      const url = `http://data.test:${port}/x`;
      assert.deepEqual(await curlSha(["-x", p.url], [url]), [sha(body)]);
      assert.deepEqual(await curlSha(["-p", "-x", p.url], [url]), [sha(body)]);
    } finally {
      await p.close();
      await new Promise((r) => server.close(r));
    }
  },
});

/** A raw client through the proxy that reads `pauseAt` bytes, stops, then reads the rest. */
async function slowClient(
  proxyPort: number,
  head: string,
  pauseAt: number,
  whilePaused: () => Promise<void>,
): Promise<Buffer> {
  const sock = net.connect(proxyPort, "127.0.0.1");
  const chunks: Buffer[] = [];
  let got = 0;
  let paused: Promise<void> | null = null;
  const done = new Promise<void>((resolve, reject) => {
    sock.on("data", (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= pauseAt && !paused) {
        sock.pause();
        paused = whilePaused().then(() => void sock.resume(), reject);
      }
    });
    sock.on("end", () => resolve());
    sock.on("error", reject);
  });
  sock.write(head);
  await done;
  await paused;
  sock.destroy();
  return Buffer.concat(chunks);
}

/** Waits until `read()` has not changed for `quietMs`; returns its value. */
async function settled(read: () => number, quietMs: number): Promise<number> {
  let last = read();
  for (;;) {
    await new Promise((r) => setTimeout(r, quietMs));
    const now = read();
    if (now === last) return now;
    last = now;
  }
}

for (const mode of ["plain", "CONNECT"] as const) {
  Deno.test({
    name:
      `large bodies: a client that stops reading stalls the upstream (${mode}), then gets it all`,
    async fn() {
      const up = await bodyServer();
      const p = await startProxy([{ host: "data.test", port: up.port }]);
      const n = 160 * MB;
      const target = `/random?n=${n}&seed=11`;
      const authority = `data.test:${up.port}`;
      const head = mode === "plain"
        ? `GET http://${authority}${target} HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`
        : `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n` +
          `GET ${target} HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`;
      let stalledAt = 0;
      try {
        const all = await slowClient(p.port, head, 2 * MB, async () => {
          stalledAt = await settled(() => up.sent.get(target) ?? 0, 400);
        });
        // Kernel socket buffers on loopback hold tens of MB; the proxy itself holds little.
        assert.ok(stalledAt < n - 32 * MB, `upstream sent ${stalledAt} of ${n} while paused`);
        const text = all.toString("latin1");
        const start = text.lastIndexOf("\r\n\r\n") + 4;
        const body = all.subarray(start);
        assert.equal(body.length, n);
        assert.equal(sha(body), sha(randomBytesFor(n, 11)));
      } finally {
        await p.close();
        await up.close();
      }
    },
  });
}

Deno.test("tunnel idle: one direction moving keeps it open; nothing moving closes it", async () => {
  const up = await bodyServer();
  const p = await startProxy([{ host: "data.test", port: up.port }], {
    limits: { transferIdleMs: 600 },
  });
  const authority = `data.test:${up.port}`;
  try {
    // 12 bytes, one every 100 ms (1.2 s in all): the client sends nothing after its request.
    const t0 = performance.now();
    const got = await slowClient(
      p.port,
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n` +
        `GET /trickle?count=12&gap=100 HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
      Infinity,
      () => Promise.resolve(),
    );
    assert.ok(got.toString("latin1").endsWith("\r\n\r\nxxxxxxxxxxxx"), got.toString("latin1"));
    assert.ok(performance.now() - t0 > 1000);
    // A tunnel where nothing moves is closed after the idle time.
    const sock = net.connect(p.port, "127.0.0.1");
    sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    sock.on("data", () => {});
    const t1 = performance.now();
    await new Promise((r) => sock.on("close", r));
    const ms = performance.now() - t1;
    assert.ok(ms >= 550 && ms < 5000, `closed after ${ms} ms`);
    const close = p.audit.events.filter((e) => e.class === "network" && e.activity === "close");
    assert.equal(close.length, 2);
  } finally {
    await p.close();
    await up.close();
  }
});

Deno.test("IdleTimer: fires once after `ms` without touch; touch postpones; stop cancels", async () => {
  const fired: number[] = [];
  const t0 = performance.now();
  const a = new IdleTimer(150);
  a.onIdle(() => fired.push(performance.now() - t0));
  // Touched every 50 ms for 400 ms: must not fire meanwhile.
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 50));
    a.touch();
  }
  assert.deepEqual(fired, []);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(fired.length, 1);
  assert.ok(fired[0] >= 400 + 140, `fired at ${fired[0]} ms`);
  assert.equal(a.stopped, true);
  const b = new IdleTimer(50);
  let bFired = false;
  b.onIdle(() => bFired = true);
  b.stop();
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(bFired, false);
});
