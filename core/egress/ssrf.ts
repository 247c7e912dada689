// The SSRF guard: which destination addresses the proxy refuses unless the policy's
// `allowed_ips` covers them. Private, loopback, link-local, CGNAT, cloud metadata, unspecified,
// multicast, reserved and documentation ranges, IPv4 and IPv6, including IPv6 forms that carry
// an IPv4 address (mapped, compatible, translated, 6to4, NAT64) and Teredo.

import { isIPv4, isIPv6 } from "node:net";
import { canonicalIp, ipv6Bytes } from "./host.ts";

interface Range {
  net: Uint8Array;
  bits: number;
  name: string;
}

function v4(s: string): Uint8Array {
  return new Uint8Array(s.split(".").map(Number));
}

/** Parses "a.b.c.d/n", "x::/n" or a bare address into a range. Throws on bad input. */
export function parseCidr(cidr: string, name = cidr): Range {
  const [addr, bitsText, extra] = cidr.trim().split("/");
  if (extra !== undefined) throw new Error(`bad CIDR: ${cidr}`);
  let net: Uint8Array;
  if (isIPv4(addr)) net = v4(addr);
  else if (isIPv6(addr)) net = ipv6Bytes(addr);
  else throw new Error(`bad CIDR address: ${cidr}`);
  const max = net.length * 8;
  if (bitsText !== undefined && !/^[0-9]{1,3}$/.test(bitsText)) {
    throw new Error(`bad CIDR prefix: ${cidr}`);
  }
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (bits > max) throw new Error(`CIDR prefix too long: ${cidr}`);
  return { net, bits, name };
}

function inRange(addr: Uint8Array, r: Range): boolean {
  if (addr.length !== r.net.length) return false;
  let bits = r.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i] & mask) !== (r.net[i] & mask)) return false;
  }
  return true;
}

const BLOCKED_V4: Range[] = [
  ["0.0.0.0/8", "unspecified"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "carrier-grade NAT"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.169.254/32", "cloud metadata"],
  ["169.254.0.0/16", "link-local"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "IETF protocol assignments"],
  ["192.0.2.0/24", "documentation"],
  ["192.88.99.0/24", "6to4 relay anycast"],
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation"],
  ["203.0.113.0/24", "documentation"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved"],
].map(([c, n]) => parseCidr(c, n));

const BLOCKED_V6: Range[] = [
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["64:ff9b:1::/48", "local-use NAT64"],
  ["100::/64", "discard-only"],
  ["2001::/32", "Teredo"],
  ["2001:db8::/32", "documentation"],
  ["fd00:ec2::254/128", "cloud metadata"],
  ["fc00::/7", "unique local"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "site-local"],
  ["ff00::/8", "multicast"],
].map(([c, n]) => parseCidr(c, n));

/** IPv6 forms that embed an IPv4 destination: where the 4 bytes are. */
const EMBEDDING: { range: Range; offset: number }[] = [
  { range: parseCidr("::ffff:0:0/96", "IPv4-mapped"), offset: 12 },
  { range: parseCidr("::ffff:0:0:0/96", "IPv4-translated"), offset: 12 },
  { range: parseCidr("::/96", "IPv4-compatible"), offset: 12 },
  { range: parseCidr("64:ff9b::/96", "NAT64"), offset: 12 },
  { range: parseCidr("2002::/16", "6to4"), offset: 2 },
];

/** Why `ip` is refused (e.g. "loopback"), or null when it is a public address. */
export function blockedReason(ip: string): string | null {
  const c = canonicalIp(ip);
  if (c.kind === "ipv4") {
    const b = v4(c.ip);
    return BLOCKED_V4.find((r) => inRange(b, r))?.name ?? null;
  }
  const b = ipv6Bytes(c.ip);
  const direct = BLOCKED_V6.find((r) => inRange(b, r));
  if (direct) return direct.name;
  for (const e of EMBEDDING) {
    if (!inRange(b, e.range)) continue;
    const inner = Array.from(b.slice(e.offset, e.offset + 4)).join(".");
    const why = blockedReason(inner);
    if (why) return `${why} (${e.range.name} ${inner})`;
  }
  return null;
}

/** The policy's `allowed_ips`, parsed once. */
export class AllowedIps {
  readonly #ranges: Range[];
  constructor(cidrs: string[]) {
    this.#ranges = cidrs.map((c) => parseCidr(c));
  }
  covers(ip: string): boolean {
    const c = canonicalIp(ip);
    const b = c.kind === "ipv4" ? v4(c.ip) : ipv6Bytes(c.ip);
    return this.#ranges.some((r) => inRange(b, r));
  }
}

/** Refusal of one resolved address: the address and why. */
export interface SsrfRefusal {
  ip: string;
  reason: string;
}

/**
 * Checks every address a name resolved to. All must be public or covered by `allowed`; one
 * refused address refuses the name (a name that mixes public and private answers is a
 * rebinding tool). Returns the canonical addresses, or the first refusal.
 */
export function checkAddresses(
  ips: string[],
  allowed: AllowedIps,
): { ok: true; ips: string[] } | { ok: false; refusal: SsrfRefusal } {
  const out: string[] = [];
  for (const raw of ips) {
    const ip = canonicalIp(raw).ip;
    const why = blockedReason(ip);
    if (why && !allowed.covers(ip)) return { ok: false, refusal: { ip, reason: why } };
    out.push(ip);
  }
  if (out.length === 0) return { ok: false, refusal: { ip: "", reason: "no addresses" } };
  return { ok: true, ips: out };
}
