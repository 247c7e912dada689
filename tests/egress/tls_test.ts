// HTTPS through the proxy: inspection with the per-sandbox CA and verified re-encryption to a
// real loopback HTTPS upstream (certificate from a test CA), request rules inside TLS,
// tls: skip tunnels, certificate failures, SNI mismatch, WebSocket upgrades.

import assert from "node:assert/strict";
import { join } from "node:path";
import * as net from "node:net";
import * as tls from "node:tls";
import {
  curl,
  type Echo,
  hasCurl,
  httpsUpstream,
  httpUpstream,
  rawExchange,
  startProxy,
  testInspectionCa,
  upstreamPki,
} from "./helpers.ts";
import { InspectionCa } from "../../core/egress/ca.ts";

const ignore = !hasCurl;
if (ignore) console.log("skipping HTTPS egress tests: curl not installed");

const pki = await upstreamPki(["secure.test", "other.test"]);
const wrongPki = await upstreamPki(["elsewhere.test"]);
const ca = await testInspectionCa();
const dir = Deno.makeTempDirSync({ prefix: "clawcage-egress-tls-" });
const caFile = ca.writeCert(dir);
const upstreamCaFile = join(dir, "upstream-ca.pem");
Deno.writeTextFileSync(upstreamCaFile, pki.caPem);

Deno.test({
  name: "inspected HTTPS: agent trusts the sandbox CA, upstream cert is verified, rules apply",
  ignore,
  async fn() {
    const up = await httpsUpstream(pki.cert, pki.key);
    const p = await startProxy(
      [{ host: "secure.test", port: up.port, methods: ["GET"], pathPrefix: "/repos/" }],
      { inspection: { ca, upstreamCa: [pki.caPem] } },
    );
    try {
      const ok = await curl(p.url, [
        "--cacert",
        caFile,
        `https://secure.test:${up.port}/repos/a?x=1`,
        `https://secure.test:${up.port}/repos/b`,
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      const bodies = ok.body.split(/\n\d{3}(?=\{)/);
      assert.equal(bodies.length, 2, ok.body);
      assert.equal((JSON.parse(bodies[0]) as Echo).url, "/repos/a?x=1");
      assert.equal((JSON.parse(bodies[0]) as Echo).headers.host, `secure.test:${up.port}`);
      // Both requests went over one upstream TLS connection.
      const opens = p.audit.events.filter((e) => e.class === "network" && e.activity === "open");
      assert.equal(opens.length, 1);
      const reqs = p.audit.events.filter((e) => e.class === "http" && e.activity === "request");
      assert.equal(reqs.length, 2);
      assert.ok(reqs.every((e) => e.class === "http" && e.http.url.startsWith("https://")));

      const denied = await curl(p.url, [
        "--cacert",
        caFile,
        `https://secure.test:${up.port}/admin`,
      ]);
      assert.equal(denied.status, 403);
      const body = JSON.parse(denied.body);
      assert.equal(body.path, "/admin");
      assert.match(body.reason, /no rule allows GET \/admin/);
      const post = await curl(p.url, [
        "--cacert",
        caFile,
        "-d",
        "x",
        `https://secure.test:${up.port}/repos/a`,
      ]);
      assert.equal(post.status, 403);
    } finally {
      await p.close();
      await up.close();
    }
  },
});

Deno.test({
  name: "the leaf the agent sees is issued by the sandbox CA for the CONNECT host",
  ignore,
  async fn() {
    const up = await httpsUpstream(pki.cert, pki.key);
    const p = await startProxy([{ host: "secure.test", port: up.port, methods: ["GET"] }], {
      inspection: { ca, upstreamCa: [pki.caPem] },
    });
    try {
      const sock = net.connect(p.port, "127.0.0.1");
      await new Promise((r) => sock.once("connect", r));
      sock.write(`CONNECT secure.test:${up.port} HTTP/1.1\r\n\r\n`);
      await new Promise((r) => sock.once("data", r));
      const t = tls.connect({ socket: sock, servername: "secure.test", ca: ca.certPem });
      await new Promise((r, j) => {
        t.once("secureConnect", r);
        t.once("error", j);
      });
      const cert = t.getPeerCertificate();
      assert.equal(cert.subject.CN, "secure.test");
      assert.match(String(cert.issuer.CN), /clawcage inspection CA/);
      assert.equal(t.alpnProtocol, false);
      t.destroy();
      // SNI naming another host than the CONNECT target: handshake refused.
      const s2 = net.connect(p.port, "127.0.0.1");
      await new Promise((r) => s2.once("connect", r));
      s2.write(`CONNECT secure.test:${up.port} HTTP/1.1\r\n\r\n`);
      await new Promise((r) => s2.once("data", r));
      const t2 = tls.connect({ socket: s2, servername: "other.test", ca: ca.certPem });
      const err = await new Promise<Error | null>((r) => {
        t2.once("secureConnect", () => r(null));
        t2.once("error", r);
        t2.once("close", () => r(new Error("closed")));
      });
      assert.ok(err, "handshake with a mismatched SNI must fail");
      t2.destroy();
      await new Promise((r) => setTimeout(r, 50));
      const fail = p.audit.events.find((e) =>
        e.class === "network" && e.activity === "fail" && /SNI other\.test/.test(e.reason ?? "")
      );
      assert.ok(fail, JSON.stringify(p.audit.events));
    } finally {
      await p.close();
      await up.close();
    }
  },
});

Deno.test({
  name: "upstream certificate not trusted or for another name: 502, nothing sent",
  ignore,
  async fn() {
    const untrusted = await httpsUpstream(pki.cert, pki.key);
    const wrongName = await httpsUpstream(wrongPki.cert, wrongPki.key);
    const p = await startProxy([
      { host: "secure.test", port: untrusted.port, methods: ["GET"] },
      { host: "secure.test", port: wrongName.port, methods: ["GET"] },
    ], { inspection: { ca, upstreamCa: [wrongPki.caPem] } });
    const p2 = await startProxy([{ host: "secure.test", port: wrongName.port, methods: ["GET"] }], {
      inspection: { ca, upstreamCa: [wrongPki.caPem] },
    });
    try {
      const a = await curl(p.url, ["--cacert", caFile, `https://secure.test:${untrusted.port}/`]);
      assert.equal(a.status, 502);
      assert.match(a.body, /TLS to secure\.test.*failed/);
      const b = await curl(p2.url, ["--cacert", caFile, `https://secure.test:${wrongName.port}/`]);
      assert.equal(b.status, 502);
      assert.match(b.body, /secure\.test/);
    } finally {
      await p.close();
      await p2.close();
      await untrusted.close();
      await wrongName.close();
    }
  },
});

Deno.test({
  name: "tls: skip and L4 endpoints tunnel: the agent sees the upstream's own certificate",
  ignore,
  async fn() {
    const up = await httpsUpstream(pki.cert, pki.key);
    const p = await startProxy([{ host: "secure.test", port: up.port, tlsSkip: true }], {
      inspection: { ca, upstreamCa: [pki.caPem] },
    });
    try {
      const r = await curl(p.url, [
        "--cacert",
        upstreamCaFile,
        `https://secure.test:${up.port}/anything`,
      ]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal((JSON.parse(r.body) as Echo).url, "/anything");
      assert.equal(
        p.audit.events.filter((e) => e.class === "http" && e.activity === "request").length,
        0,
      );
    } finally {
      await p.close();
      await up.close();
    }
  },
});

Deno.test({
  name: "inspection needed but no CA configured, or client distrusts the CA: refused",
  ignore,
  async fn() {
    const up = await httpsUpstream(pki.cert, pki.key);
    const noCa = await startProxy([{ host: "secure.test", port: up.port, methods: ["GET"] }]);
    const p = await startProxy([{ host: "secure.test", port: up.port, methods: ["GET"] }], {
      inspection: { ca: await InspectionCa.create("another"), upstreamCa: [pki.caPem] },
    });
    try {
      const r = await rawExchange(noCa.port, `CONNECT secure.test:${up.port} HTTP/1.1\r\n\r\n`);
      assert.match(r, /^HTTP\/1.1 403[\s\S]*no inspection CA/);
      const c = await curl(p.url, ["--cacert", caFile, `https://secure.test:${up.port}/`]);
      assert.notEqual(c.code, 0);
      await new Promise((res) => setTimeout(res, 50));
      assert.ok(
        p.audit.events.some((e) =>
          e.class === "network" && e.activity === "fail" &&
          /trust the clawcage CA/.test(e.reason ?? "")
        ),
      );
    } finally {
      await noCa.close();
      await p.close();
      await up.close();
    }
  },
});

Deno.test({
  name: "WebSocket upgrades pass when allowed (plain and inspected), bytes flow both ways",
  ignore,
  async fn() {
    const plain = await httpUpstream();
    const secure = await httpsUpstream(pki.cert, pki.key);
    const p = await startProxy([
      // GET: the upgrade; WEBSOCKET_TEXT: the client's messages after it (websocket_messages_test).
      { host: "ws.test", port: plain.port, methods: ["GET", "WEBSOCKET_TEXT"] },
      { host: "secure.test", port: secure.port, methods: ["GET", "WEBSOCKET_TEXT"] },
    ], { inspection: { ca, upstreamCa: [pki.caPem] } });
    const upgradeHead = (target: string, host = "x") =>
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    try {
      const r = await rawExchange(
        p.port,
        upgradeHead(`http://ws.test:${plain.port}/ws`) + "ping-bytes",
        { timeoutMs: 500 },
      );
      assert.match(r, /^HTTP\/1.1 101/);
      assert.match(r, /ping-bytes$/);

      const sock = net.connect(p.port, "127.0.0.1");
      await new Promise((res) => sock.once("connect", res));
      sock.write(`CONNECT secure.test:${secure.port} HTTP/1.1\r\n\r\n`);
      await new Promise((res) => sock.once("data", res));
      const t = tls.connect({ socket: sock, servername: "secure.test", ca: ca.certPem });
      await new Promise((res) => t.once("secureConnect", res));
      let got = "";
      t.on("data", (d) => got += d);
      t.write(upgradeHead("/ws", `secure.test:${secure.port}`));
      for (let i = 0; i < 300 && !got.includes("\r\n\r\n"); i++) {
        await new Promise((res) => setTimeout(res, 10));
      }
      assert.match(got, /^HTTP\/1.1 101/, got);
      t.write("hello-ws");
      for (let i = 0; i < 300 && !got.endsWith("hello-ws"); i++) {
        await new Promise((res) => setTimeout(res, 10));
      }
      assert.ok(got.endsWith("hello-ws"), got);
      t.destroy();
    } finally {
      await p.close();
      await plain.close();
      await secure.close();
    }
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* already gone */ }
});
