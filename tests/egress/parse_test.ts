// The request parser, host parsing and the SSRF guard on their own, plus fast-check fuzzing:
// arbitrary bytes never crash the parser (only HttpParseError), generated valid requests parse
// back to what was generated, and every IPv4 spelling maps to the address it names.

import assert from "node:assert/strict";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import {
  DEFAULT_HEAD_LIMITS,
  HttpParseError,
  parseChunkSize,
  parseRequestHead,
  parseResponseHead,
  responseFraming,
} from "../../core/egress/http_parse.ts";
import { canonicalIp, parseAuthority, parseHost, parseLooseIPv4 } from "../../core/egress/host.ts";
import { AllowedIps, blockedReason, checkAddresses } from "../../core/egress/ssrf.ts";
import { parseCallerJson } from "../../core/egress/caller.ts";

const enc = (s: string) => Buffer.from(s, "latin1");

Deno.test("request heads: valid forms", () => {
  const r = parseRequestHead(
    enc(
      "POST http://a.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 12\r\nX:  v \r\n\r\n",
    ),
  );
  assert.equal(r.method, "POST");
  assert.equal(r.target, "http://a.test/x?y=1");
  assert.deepEqual(r.framing, { kind: "length", length: 12 });
  assert.deepEqual(r.headers[2], ["X", "v"]);
  const c = parseRequestHead(enc("PUT http://a/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"));
  assert.deepEqual(c.framing, { kind: "chunked" });
  assert.equal(parseRequestHead(enc("GET http://a/ HTTP/1.0\r\n\r\n")).version, "HTTP/1.0");
  assert.equal(
    parseRequestHead(enc("GET http://a/ HTTP/1.1\r\nX: caf\xe9\r\n\r\n")).headers[0][1],
    "caf\xe9",
  );
});

Deno.test("request heads: every ambiguity is an error with the right status", () => {
  const bad: [string, number][] = [
    ["GET http://a/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nContent-Length: 99999999999999999\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501],
    ["GET http://a/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 501],
    ["GET http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nX : a\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\n: a\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nX\x00: a\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nX: a\x7fb\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400],
    ["GET http://a/\x01 HTTP/1.1\r\n\r\n", 400],
    ["GET http://a/ HTTP/1.1 \r\n\r\n", 400],
    ["G(T http://a/ HTTP/1.1\r\n\r\n", 400],
    ["GET http://a/ HTTP/3.0\r\n\r\n", 505],
    ["GET http://a/ FOO/1.1\r\n\r\n", 400],
    [`GET http://a/${"x".repeat(9000)} HTTP/1.1\r\n\r\n`, 414],
    [`GET http://a/ HTTP/1.1\r\nX: ${"x".repeat(9000)}\r\n\r\n`, 431],
    [`GET http://a/ HTTP/1.1\r\n${"A: b\r\n".repeat(101)}\r\n`, 431],
  ];
  for (const [text, status] of bad) {
    assert.throws(
      () => parseRequestHead(enc(text)),
      (e: unknown) => e instanceof HttpParseError && e.status === status,
      JSON.stringify(text.slice(0, 80)),
    );
  }
});

Deno.test("response framing follows RFC 9112 6.3", () => {
  const res = (s: string) => parseResponseHead(enc(s));
  assert.equal(
    responseFraming("HEAD", res("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")).kind,
    "none",
  );
  assert.equal(responseFraming("GET", res("HTTP/1.1 204 No Content\r\n\r\n")).kind, "none");
  assert.equal(responseFraming("GET", res("HTTP/1.1 304 x\r\n\r\n")).kind, "none");
  assert.equal(responseFraming("GET", res("HTTP/1.1 200 OK\r\n\r\n")).kind, "close");
  assert.equal(
    responseFraming("GET", res("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).kind,
    "none",
  );
  assert.equal(
    responseFraming("GET", res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")).kind,
    "chunked",
  );
  assert.throws(() => res("HTTP/1.1 2000 OK\r\n\r\n"), HttpParseError);
  assert.equal(parseChunkSize("1a;name=val"), 26);
  assert.throws(() => parseChunkSize("-1"), HttpParseError);
  assert.throws(() => parseChunkSize("1234567890abcdef0"), HttpParseError);
});

Deno.test("hosts: names, odd IPv4 spellings, IPv6 and authority ports", () => {
  assert.deepEqual(parseHost("API.Example.COM."), { host: "api.example.com", kind: "name" });
  for (
    const s of [
      "127.1",
      "0x7f.1",
      "0177.0.0.1",
      "2130706433",
      "0x7f000001",
      "127.0.1",
      "017700000001",
    ]
  ) {
    assert.deepEqual(parseHost(s), { host: "127.0.0.1", kind: "ipv4" }, s);
  }
  assert.deepEqual(parseHost("[::ffff:7f00:1]"), { host: "127.0.0.1", kind: "ipv4" });
  assert.deepEqual(parseHost("[0:0:0:0:0:0:0:1]"), { host: "::1", kind: "ipv6" });
  for (
    const s of [
      "256.0.0.1",
      "1.2.3.4.5",
      "a..b",
      "-a.com",
      "a_b!.com",
      "foo.123",
      "x.0x1f",
      "[::1",
      "[fe80::1%eth0]",
    ]
  ) {
    assert.throws(() => parseHost(s), Error, s);
  }
  assert.deepEqual(parseAuthority("a.test:8080"), { host: "a.test", kind: "name", port: 8080 });
  assert.deepEqual(parseAuthority("[2001:db8::1]:443"), {
    host: "2001:db8::1",
    kind: "ipv6",
    port: 443,
  });
  assert.equal(parseAuthority("a.test", 80).port, 80);
  for (
    const s of [
      "a.test:0",
      "a.test:65536",
      "a.test:",
      "a.test:1e3",
      "::1:443",
      "a@b:1",
      "a.test: 80",
    ]
  ) {
    assert.throws(() => parseAuthority(s, 80), Error, s);
  }
});

Deno.test("SSRF guard: blocked ranges in every form, allowed_ips opens exactly what it names", () => {
  const blocked: [string, RegExp][] = [
    ["127.0.0.1", /loopback/],
    ["10.1.2.3", /private/],
    ["172.31.255.255", /private/],
    ["192.168.1.1", /private/],
    ["100.100.100.200", /carrier-grade NAT/],
    ["169.254.169.254", /cloud metadata/],
    ["169.254.1.1", /link-local/],
    ["0.0.0.0", /unspecified/],
    ["224.0.0.1", /multicast/],
    ["255.255.255.255", /reserved/],
    ["::", /unspecified/],
    ["::1", /loopback/],
    ["fe80::1", /link-local/],
    ["fc00::1", /unique local/],
    ["fd00:ec2::254", /cloud metadata/],
    ["ff02::1", /multicast/],
    ["::ffff:127.0.0.1", /loopback/],
    ["::ffff:a9fe:a9fe", /cloud metadata/],
    ["::127.0.0.1", /loopback \(IPv4-compatible/],
    ["::ffff:0:10.0.0.1", /private \(IPv4-translated/],
    ["64:ff9b::a9fe:a9fe", /cloud metadata \(NAT64/],
    ["2002:7f00:1::", /loopback \(6to4/],
    ["2002:c0a8:0101::1", /private \(6to4/],
    ["2001:0:4136:e378::1", /Teredo/],
    ["64:ff9b:1::1", /local-use NAT64/],
  ];
  for (const [ip, why] of blocked) assert.match(blockedReason(ip) ?? "", why, ip);
  for (
    const ip of [
      "8.8.8.8",
      "2606:4700::1111",
      "::ffff:8.8.8.8",
      "64:ff9b::808:808",
      "2002:808:808::1",
    ]
  ) {
    assert.equal(blockedReason(ip), null, ip);
  }
  const allowed = new AllowedIps(["10.0.0.0/24", "fd00::/64"]);
  assert.ok(allowed.covers("10.0.0.7"));
  assert.ok(allowed.covers("::ffff:10.0.0.7"));
  assert.ok(!allowed.covers("10.0.1.7"));
  assert.ok(allowed.covers("fd00::5"));
  assert.deepEqual(checkAddresses(["10.0.0.7"], allowed), { ok: true, ips: ["10.0.0.7"] });
  const r = checkAddresses(["8.8.8.8", "10.0.1.1"], allowed);
  assert.equal(r.ok, false);
  assert.equal(canonicalIp("0:0:0:0:0:ffff:0a00:0001").ip, "10.0.0.1");
  assert.throws(() => new AllowedIps(["10.0.0.0/33"]));
});

Deno.test("caller line JSON: only the documented shape", () => {
  assert.deepEqual(parseCallerJson('{"pid":5,"exe":"/usr/bin/curl","sha256":""}'), {
    pid: 5,
    exe: "/usr/bin/curl",
  });
  assert.deepEqual(
    parseCallerJson('{"exe":"/usr/bin/curl","ancestors":["/bin/sh","/usr/bin/node"]}'),
    { exe: "/usr/bin/curl", ancestors: ["/bin/sh", "/usr/bin/node"] },
  );
  for (
    const bad of [
      '{"exe":"curl"}',
      '{"pid":-1,"exe":"/x"}',
      "[]",
      '{"exe":"/x","sha256":"zz"}',
      "nope",
      '{"exe":"/x","ancestors":["rel"]}',
      '{"exe":"/x","ancestors":"/a"}',
    ]
  ) {
    assert.throws(() => parseCallerJson(bad), Error, bad);
  }
});

Deno.test("fuzz: arbitrary bytes only ever raise HttpParseError", () => {
  const headish = fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc.array(
      fc.constantFrom(
        "GET ",
        "CONNECT ",
        "http://",
        "a.test",
        ":80",
        "/",
        " HTTP/1.1",
        "\r\n",
        "\n",
        "\r",
        "Host: x",
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        " ",
        "\t",
        ":",
        "\x00",
        "\xff",
        ",",
      ),
      { maxLength: 40 },
    ).map((parts) => enc(parts.join(""))),
  ).map((b) => Buffer.concat([Buffer.from(b), enc("\r\n\r\n")]));
  fc.assert(
    fc.property(headish, (buf) => {
      try {
        const r = parseRequestHead(buf, DEFAULT_HEAD_LIMITS);
        // Anything accepted is unambiguous.
        const cl = r.headers.filter(([k]) => k.toLowerCase() === "content-length").length;
        const te = r.headers.filter(([k]) => k.toLowerCase() === "transfer-encoding").length;
        assert.ok(!(cl > 0 && te > 0) && cl <= 1);
        assert.ok(r.headers.every(([k, v]) => !/[\r\n\0]/.test(k + v)));
      } catch (e) {
        if (!(e instanceof HttpParseError)) throw e;
      }
    }),
    { numRuns: 3000 },
  );
});

Deno.test("fuzz: generated valid requests parse back exactly", () => {
  const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/);
  const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,40}[\x21-\x7e])?$/);
  fc.assert(
    fc.property(
      fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"),
      fc.stringMatching(/^\/[A-Za-z0-9\/._~%-]{0,50}$/),
      fc.array(fc.tuple(token, value), { maxLength: 20 }).filter((hs) =>
        !hs.some(([k]) => ["host", "content-length", "transfer-encoding"].includes(k.toLowerCase()))
      ),
      (method, path, headers) => {
        const text = `${method} http://a.test${path} HTTP/1.1\r\n` +
          headers.map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
        const r = parseRequestHead(enc(text));
        assert.equal(r.method, method);
        assert.equal(r.target, `http://a.test${path}`);
        assert.deepEqual(r.headers, headers);
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("fuzz: every inet_aton spelling of an address parses to that address", () => {
  const spell = (n: number, base: 8 | 10 | 16) =>
    base === 16 ? `0x${n.toString(16)}` : base === 8 ? `0${n.toString(8)}` : String(n);
  fc.assert(
    fc.property(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.constantFrom(1, 2, 3, 4),
      fc.array(fc.constantFrom(8 as const, 10 as const, 16 as const), {
        minLength: 4,
        maxLength: 4,
      }),
      ([a, b, c, d], parts, bases) => {
        const v = ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;
        const nums = parts === 1
          ? [v]
          : parts === 2
          ? [a, v & 0xffffff]
          : parts === 3
          ? [a, b, v & 0xffff]
          : [a, b, c, d];
        const text = nums.map((n, i) => spell(n, bases[i])).join(".");
        assert.equal(parseLooseIPv4(text), `${a}.${b}.${c}.${d}`, text);
      },
    ),
    { numRuns: 2000 },
  );
});
