// core/policy/ip.ts validates IP text without node:net (the policy-decision process loads it
// without a JIT; node:net would cost it ~0.2 s of CPU at every start). Its isIPv4/isIPv6 must
// accept exactly what node:net's accept: checked on known cases and on random strings built from
// the characters addresses are made of.

import assert from "node:assert/strict";
import * as net from "node:net";
import fc from "fast-check";
import { isIPv4, isIPv6, parseCidr } from "../../core/policy/ip.ts";

const KNOWN = [
  "",
  "0.0.0.0",
  "255.255.255.255",
  "256.1.1.1",
  "01.2.3.4",
  "1.2.3",
  "1.2.3.4.5",
  " 1.2.3.4",
  "1.2.3.4\n",
  "::",
  "::1",
  "1::",
  "1:2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7:8:9",
  "1:2:3:4:5:6:7::",
  "::2:3:4:5:6:7:8",
  "::ffff:1.2.3.4",
  "::ffff:01.2.3.4",
  "1:2:3:4:5:6:1.2.3.4",
  "1:2:3:4:5:6:7:1.2.3.4",
  "fe80::1%eth0",
  "fe80::1%",
  "2001:db8::g",
  "2001:0db8:0000:0000:0000:0000:0000:0001",
  "12345::1",
  ":::",
  "1:::2",
  "[::1]",
  "::1/128",
];

Deno.test("ip syntax: isIPv4/isIPv6 agree with node:net on known cases", () => {
  for (const s of KNOWN) {
    assert.equal(isIPv4(s), net.isIPv4(s), `isIPv4(${JSON.stringify(s)})`);
    assert.equal(isIPv6(s), net.isIPv6(s), `isIPv6(${JSON.stringify(s)})`);
  }
  assert.ok(isIPv6("::ffff:1.2.3.4") && isIPv4("10.0.0.1") && !isIPv4("::1"));
  assert.deepEqual(parseCidr("10.1.2.3/8"), { version: 4, base: 10n << 24n, bits: 8 });
  assert.equal(parseCidr("010.1.2.3/8"), null);
});

Deno.test("ip syntax: isIPv4/isIPv6 agree with node:net on random address-like strings", () => {
  const chars = [..."0123456789abcdefABCDEFg.:%/ -"];
  const piece = fc.oneof(
    fc.constantFrom(...chars),
    fc.integer({ min: 0, max: 300 }).map(String),
    fc.integer({ min: 0, max: 0xfffff }).map((n) => n.toString(16)),
    fc.constantFrom("::", ":", ".", "%eth0"),
  );
  const address = fc.array(piece, { maxLength: 20 }).map((p) => p.join(""));
  // Shaped like addresses: groups of hex or dotted quads joined by ':' (often valid, so both
  // answers are exercised).
  const group = fc.integer({ min: 0, max: 0x1ffff }).map((n) => n.toString(16));
  const quad = fc.tuple(...Array(4).fill(fc.integer({ min: 0, max: 299 }))).map((q) => q.join("."));
  const shaped = fc.tuple(
    fc.array(group, { maxLength: 9 }),
    fc.boolean(),
    fc.option(quad),
    fc.nat(8),
  ).map(([groups, gap, v4, at]) => {
    const parts = [...groups];
    if (gap) parts.splice(Math.min(at, parts.length), 0, "");
    if (v4) parts.push(v4);
    return parts.join(":");
  });
  let valid = 0;
  fc.assert(
    fc.property(fc.oneof(address, shaped, quad), (s) => {
      if (net.isIPv6(s) || net.isIPv4(s)) valid++;
      return isIPv4(s) === net.isIPv4(s) && isIPv6(s) === net.isIPv6(s);
    }),
    { numRuns: 20_000 },
  );
  assert.ok(valid > 1000, `only ${valid} valid addresses generated`);
});
