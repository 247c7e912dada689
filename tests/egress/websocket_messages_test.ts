// WebSocket client messages after an allowed upgrade: OpenShell's `WEBSOCKET_TEXT` (access
// read-only = upgrade only, read-write = + messages, rules/deny_rules) is enforced by the proxy
// reading the client's frame headers. Real proxy, real policy decisions, a loopback upstream that
// records what reaches it.

import assert from "node:assert/strict";
import * as net from "node:net";
import { EgressProxy } from "../../core/egress/proxy.ts";
import { ClientFrameScanner, OPCODE } from "../../core/egress/websocket_frames.ts";
import { compilePolicy, decide } from "../../core/policy/decide.ts";
import { parsePolicy } from "../../core/policy/load.ts";
import { MemoryAudit, testResolver } from "./helpers.ts";

/**
 * A client frame: FIN, opcode, masked payload (RFC 6455 5.2). The mask key is zero (allowed), so
 * the upstream's bytes show whether a payload reached it.
 */
function clientFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const mask = [0, 0, 0, 0];
  const n = payload.length;
  const ext = n < 126 ? [] : n < 65536 ? [n >> 8, n & 0xff] : [0, 0, 0, 0, ...u32(n)];
  const len7 = n < 126 ? n : n < 65536 ? 126 : 127;
  const head = [(fin ? 0x80 : 0) | opcode, 0x80 | len7, ...ext, ...mask];
  const body = payload.map((b, i) => b ^ mask[i % 4]);
  return new Uint8Array([...head, ...body]);
}
function u32(n: number): number[] {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}
const text = (s: string) => clientFrame(OPCODE.text, new TextEncoder().encode(s));

Deno.test("websocket frames: headers are found wherever the chunks are cut", () => {
  const big = new Uint8Array(70_000).fill(7);
  const stream = new Uint8Array([
    ...clientFrame(OPCODE.ping, new Uint8Array(3)),
    ...clientFrame(OPCODE.binary, big),
    ...clientFrame(OPCODE.text, new Uint8Array(300), false),
    ...clientFrame(OPCODE.continuation, new Uint8Array(5)),
    ...text("hi"),
  ]);
  const want = [OPCODE.ping, OPCODE.binary, OPCODE.text, OPCODE.continuation, OPCODE.text];
  for (const cut of [1, 2, 3, 7, 64, 1000, stream.length]) {
    const s = new ClientFrameScanner();
    const got: number[] = [];
    for (let i = 0; i < stream.length; i += cut) {
      for (const ev of s.push(stream.subarray(i, i + cut))) {
        assert.ok(!("error" in ev), JSON.stringify(ev));
        got.push(ev.opcode);
      }
    }
    assert.deepEqual(got, want, `cut ${cut}`);
  }
});

Deno.test("websocket frames: what is not client framing is an error", () => {
  const bad: [string, Uint8Array][] = [
    ["unmasked", new Uint8Array([0x81, 0x02, 0x68, 0x69])],
    ["reserved opcode", clientFrame(0x3, new Uint8Array(1))],
    ["long control frame", clientFrame(OPCODE.ping, new Uint8Array(200))],
    ["fragmented control frame", clientFrame(OPCODE.close, new Uint8Array(2), false)],
    ["huge length", new Uint8Array([0x82, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])],
  ];
  for (const [what, bytes] of bad) {
    const events = new ClientFrameScanner().push(bytes);
    assert.ok(events.some((e) => "error" in e), `${what}: ${JSON.stringify(events)}`);
  }
});

const POLICY = `version: 1
network_policies:
  chat:
    endpoints:
      - {host: ro.test, protocol: websocket, enforcement: enforce, access: read-only}
      - {host: rw.test, protocol: websocket, enforcement: enforce, access: read-write}
      - {host: au.test, protocol: websocket, enforcement: audit, access: read-only}
      - host: rules.test
        protocol: websocket
        enforcement: enforce
        rules:
          - allow: {method: GET, path: "/**"}
          - allow: {method: WEBSOCKET_TEXT, path: "/**"}
        deny_rules:
          - {method: WEBSOCKET_TEXT, path: /admin/**}
    binaries:
      - path: /usr/bin/node
`;

/** The policy with every endpoint on the upstream's port. */
function compiledFor(port: number) {
  return compilePolicy(parsePolicy(
    POLICY.replaceAll("test,", `test, port: ${port},`).replaceAll(
      "host: rules.test",
      `host: rules.test\n        port: ${port}`,
    ),
    "ws.yaml",
  ));
}

/** Upgrades any GET and keeps every byte that arrives after the head. */
async function recordingUpstream() {
  const received: Uint8Array[] = [];
  const server = net.createServer((sock) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    sock.on("data", (d: Buffer) => {
      if (upgraded) return void received.push(new Uint8Array(d));
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      upgraded = true;
      sock.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Accept: test\r\n\r\n",
      );
      if (head.length > end + 4) received.push(new Uint8Array(head.subarray(end + 4)));
    });
    sock.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    bytes: () => Buffer.concat(received),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function withProxy(
  fn: (
    open: (host: string, path?: string) => Promise<WsClient>,
    audit: MemoryAudit,
  ) => Promise<void>,
) {
  const up = await recordingUpstream();
  const compiled = compiledFor(up.port);
  const audit = new MemoryAudit();
  const proxy = new EgressProxy({
    sandbox: "sb-ws",
    // The real decision; the upstream is on loopback, which only the test opens to the SSRF guard.
    decide: (q) => Promise.resolve({ ...decide(compiled, q), allowedIps: ["127.0.0.0/8"] }),
    resolve: testResolver(),
    audit,
  });
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-ws-" });
  const path = `${dir}/proxy.sock`;
  await proxy.listenUnix(path);
  const clients: WsClient[] = [];
  try {
    await fn(async (host, p = "/ws") => {
      const c = await WsClient.open(path, `${host}:${up.port}`, p);
      clients.push(c);
      return c;
    }, audit);
  } finally {
    for (const c of clients) c.sock.destroy();
    await proxy.close();
    await up.close();
    Deno.removeSync(dir, { recursive: true });
  }
  return up;
}

class WsClient {
  got = Buffer.alloc(0);
  closed = false;
  constructor(readonly sock: net.Socket) {
    sock.on("data", (d: Buffer) => this.got = Buffer.concat([this.got, d]));
    sock.on("close", () => this.closed = true);
    sock.on("error", () => {});
  }
  static async open(path: string, authority: string, p: string): Promise<WsClient> {
    const sock = net.connect(path);
    await new Promise((r) => sock.once("connect", r));
    const c = new WsClient(sock);
    sock.write(
      'CLAWCAGE-CALLER {"pid":7,"exe":"/usr/bin/node","sha256":""}\r\n' +
        `GET http://${authority}${p} HTTP/1.1\r\nHost: ${authority}\r\nUpgrade: websocket\r\n` +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    );
    await c.until(() => c.got.includes("\r\n\r\n"));
    assert.match(c.got.toString(), /^HTTP\/1.1 101/);
    c.got = c.got.subarray(c.got.indexOf("\r\n\r\n") + 4);
    return c;
  }
  async until(cond: () => boolean, ms = 3000) {
    for (const end = Date.now() + ms; !cond() && Date.now() < end;) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  /** The close frame's status code, once the proxy has closed the connection. */
  closeCode(): number | null {
    return this.got.length >= 4 && this.got[0] === 0x88 ? this.got.readUInt16BE(2) : null;
  }
}

const has = (hay: Buffer, s: string) => hay.includes(Buffer.from(s));

Deno.test("websocket messages: read-only allows the upgrade only; a message closes it (1008)", async () => {
  const up = await withProxy(async (open, audit) => {
    const c = await open("ro.test");
    c.sock.write(clientFrame(OPCODE.ping, new Uint8Array(0))); // an empty ping carries nothing
    c.sock.write(text("secret-report"));
    await c.until(() => c.closed);
    assert.equal(c.closed, true);
    assert.equal(c.closeCode(), 1008);
    assert.match(c.got.toString(), /WEBSOCKET_TEXT \/ws is not allowed/);
    const rec = audit.events.find((e) => e.class === "http" && e.http.method === "WEBSOCKET_TEXT");
    assert.ok(rec && rec.class === "http" && rec.decision === "deny", JSON.stringify(audit.events));
    assert.equal(rec.actor?.exe, "/usr/bin/node");
    // A binary message is a message too.
    const b = await open("ro.test");
    b.sock.write(clientFrame(OPCODE.binary, new TextEncoder().encode("binary-report")));
    await b.until(() => b.closed);
    assert.equal(b.closeCode(), 1008);
  });
  assert.ok(!has(up.bytes(), "secret-report") && !has(up.bytes(), "binary-report"));
});

Deno.test("websocket messages: read-write passes them; audit enforcement records and passes", async () => {
  const up = await withProxy(async (open, audit) => {
    const rw = await open("rw.test");
    rw.sock.write(text("hello-rw"));
    const au = await open("au.test");
    au.sock.write(text("hello-audit"));
    au.sock.write(text("second"));
    await rw.until(() => false, 300);
    assert.equal(rw.closed, false);
    assert.equal(au.closed, false);
    const recs = audit.events.filter((e) =>
      e.class === "http" && e.http.method === "WEBSOCKET_TEXT"
    );
    assert.equal(
      recs.length,
      1,
      "read-write is not recorded per message; audit once per connection",
    );
    assert.equal(recs[0].class === "http" && recs[0].decision, "audit");
  });
  for (const s of ["hello-rw", "hello-audit", "second"]) assert.ok(has(up.bytes(), s), s);
});

Deno.test("websocket messages: deny_rules on a path; unreadable framing closes (1002)", async () => {
  const up = await withProxy(async (open) => {
    const ok = await open("rules.test", "/chat");
    ok.sock.write(text("to-chat"));
    const admin = await open("rules.test", "/admin/x");
    admin.sock.write(text("to-admin"));
    await admin.until(() => admin.closed);
    assert.equal(admin.closeCode(), 1008);
    const raw = await open("ro.test");
    raw.sock.write("unframed bytes");
    await raw.until(() => raw.closed);
    assert.equal(raw.closeCode(), 1002);
    await ok.until(() => false, 200);
    assert.equal(ok.closed, false);
  });
  assert.ok(has(up.bytes(), "to-chat"));
  assert.ok(!has(up.bytes(), "to-admin") && !has(up.bytes(), "unframed"));
});

Deno.test("websocket messages: under deny, continuation frames and ping/pong payloads are data too", async () => {
  const enc = (t: string) => new TextEncoder().encode(t);
  const up = await withProxy(async (open) => {
    const cases: [string, Uint8Array][] = [
      ["continuation", clientFrame(OPCODE.continuation, enc("cont-leak"))],
      ["ping payload", clientFrame(OPCODE.ping, enc("ping-leak"))],
      ["pong payload", clientFrame(OPCODE.pong, enc("pong-leak"))],
    ];
    for (const [what, frame] of cases) {
      const c = await open("ro.test");
      c.sock.write(frame);
      await c.until(() => c.closed);
      assert.equal(c.closeCode(), 1008, what);
    }
  });
  for (const leak of ["cont-leak", "ping-leak", "pong-leak"]) {
    assert.ok(!has(up.bytes(), leak), `${leak} reached the upstream`);
  }
});

Deno.test("websocket messages: an upgrade request with a body is refused before anything goes up", async () => {
  // Its own proxy: withProxy's client sends body-less upgrades only.
  const upstream = await recordingUpstream();
  const compiled = compiledFor(upstream.port);
  const proxy = new EgressProxy({
    sandbox: "sb-ws",
    decide: (q) => Promise.resolve({ ...decide(compiled, q), allowedIps: ["127.0.0.0/8"] }),
    resolve: testResolver(),
  });
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-ws-" });
  try {
    await proxy.listenUnix(`${dir}/p.sock`);
    const body = text("smuggled-in-body");
    const authority = `ro.test:${upstream.port}`;
    const sock = net.connect(`${dir}/p.sock`);
    await new Promise((r) => sock.once("connect", r));
    let got = "";
    sock.on("data", (d) => got += d);
    sock.write(
      'CLAWCAGE-CALLER {"pid":7,"exe":"/usr/bin/node","sha256":""}\r\n' +
        `GET http://${authority}/ws HTTP/1.1\r\nHost: ${authority}\r\nUpgrade: websocket\r\n` +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        `Sec-WebSocket-Version: 13\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    sock.write(body);
    for (let i = 0; i < 300 && !got.includes("\r\n\r\n"); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.match(got, /^HTTP\/1.1 400/);
    sock.destroy();
    assert.ok(!has(upstream.bytes(), "smuggled-in-body"));
  } finally {
    await proxy.close();
    await upstream.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
