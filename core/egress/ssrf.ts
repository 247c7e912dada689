// The SSRF guard: which destination addresses the proxy refuses unless the policy's
// `allowed_ips` covers them. Private, loopback, link-local, CGNAT, cloud metadata, unspecified,
// multicast, reserved and documentation ranges, IPv4 and IPv6, including IPv6 forms that carry
// an IPv4 address (mapped, compatible, translated, 6to4, NAT64) and Teredo.

import { type Cidr, overlaps, parseCidr } from "../policy/ip.ts";
import { canonicalIp } from "./host.ts";

interface Range {
  cidr: Cidr;
  name: string;
}

function range(text: string, name: string): Range {
  const cidr = parseCidr(text);
  if (!cidr) throw new Error(`bad CIDR: ${text}`);
  return { cidr, name };
}

/** The single address `ip` as a range (/32 or /128). */
function host(ip: string): Cidr {
  return parseCidr(ip)!;
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
].map(([c, n]) => range(c, n));

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
].map(([c, n]) => range(c, n));

/** IPv6 forms that embed an IPv4 destination: how many bits the 32 IPv4 bits are shifted. */
const EMBEDDING: { range: Range; shift: bigint }[] = [
  { range: range("::ffff:0:0/96", "IPv4-mapped"), shift: 0n },
  { range: range("::ffff:0:0:0/96", "IPv4-translated"), shift: 0n },
  { range: range("::/96", "IPv4-compatible"), shift: 0n },
  { range: range("64:ff9b::/96", "NAT64"), shift: 0n },
  { range: range("2002::/16", "6to4"), shift: 80n },
];

function v4Text(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join(".");
}

/** Why `ip` is refused (e.g. "loopback"), or null when it is a public address. */
export function blockedReason(ip: string): string | null {
  const c = canonicalIp(ip);
  const addr = host(c.ip);
  if (c.kind === "ipv4") return BLOCKED_V4.find((r) => overlaps(addr, r.cidr))?.name ?? null;
  const direct = BLOCKED_V6.find((r) => overlaps(addr, r.cidr));
  if (direct) return direct.name;
  for (const e of EMBEDDING) {
    if (!overlaps(addr, e.range.cidr)) continue;
    const inner = v4Text((addr.base >> e.shift) & 0xffffffffn);
    const why = blockedReason(inner);
    if (why) return `${why} (${e.range.name} ${inner})`;
  }
  return null;
}

/** The policy's `allowed_ips`, parsed once. */
export class AllowedIps {
  readonly #ranges: Cidr[];
  constructor(cidrs: string[]) {
    this.#ranges = cidrs.map((c) => range(c.trim(), c).cidr);
  }
  covers(ip: string): boolean {
    const addr = host(canonicalIp(ip).ip);
    return this.#ranges.some((r) => overlaps(addr, r));
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
